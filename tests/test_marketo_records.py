"""Marketo records to Handoff activities, without a server: the envelope reader, the type mapping and the
meaning of Marketo's error codes."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from config.sources import SourceConfig
from connectors.http import PermanentError, TokenExpired, TransientError
from connectors.marketing.marketo import MarketoSource, _envelope_error
from domain.activity import ActivityRecord, ActivityType, PersonRecord, Rejection

TYPES = {1: "Visit Webpage", 2: "Fill Out Form", 10: "Open Email", 11: "Click Email", 104: "Change Status in Progression"}
FORMS = {"Webinar Registration - {asset}": ActivityType.WEBINAR_REGISTRATION, "Demo Request*": ActivityType.DEMO_REQUEST}


@pytest.fixture
def source() -> MarketoSource:
    config = SourceConfig(name="marketo", kind="marketo", base_url="http://127.0.0.1:9", form_types=FORMS)
    src = MarketoSource(config, {"client_id": "id", "client_secret": "secret"})
    src._people[7] = PersonRecord("marketo", "7", "ada@northwind.example")
    yield src
    src.close()


def record(type_id: int, value: str | None, *attributes: tuple[str, object], **extra) -> dict:
    return {"id": 55, "marketoGUID": "55", "leadId": 7, "activityDate": "2026-10-01T09:30:00Z",
            "activityTypeId": type_id, "primaryAttributeValue": value,
            "attributes": [{"name": n, "value": v} for n, v in attributes], **extra}


def normalize(source: MarketoSource, rec: dict):
    return source._activity(rec, json.dumps(rec), TYPES)


def test_an_activity_keeps_its_record_as_raw_payload_and_the_lead_email(source):
    rec = record(10, "Nurture Q4.Welcome to the newsletter")
    result = normalize(source, rec)
    assert isinstance(result, ActivityRecord)
    assert result.raw_json == json.dumps(rec) and result.email == "ada@northwind.example"
    assert (result.type, result.asset, result.campaign) == (ActivityType.EMAIL_OPEN, "Welcome to the newsletter", "Nurture Q4")
    assert result.occurred_at == datetime(2026, 10, 1, 9, 30, tzinfo=timezone.utc) and result.source_contact_id == "7"


def test_an_email_outside_a_program_has_no_campaign(source):
    result = normalize(source, record(11, "Global Welcome"))
    assert (result.type, result.asset, result.campaign) == (ActivityType.EMAIL_CLICK, "Global Welcome", None)


def test_a_page_view_is_the_url_path_even_without_the_webpage_url_attribute(source):
    assert normalize(source, record(1, "www.x.example/pricing", ("Webpage URL", "/pricing"))).asset == "/pricing"
    assert normalize(source, record(1, "www.x.example/security")).asset == "/security"
    assert normalize(source, record(1, "www.x.example")).asset == "/"


def test_forms_are_classified_by_name(source):
    webinar = normalize(source, record(2, "Webinar Registration - RevOps Office Hours"))
    assert (webinar.type, webinar.asset) == (ActivityType.WEBINAR_REGISTRATION, "RevOps Office Hours")
    other = normalize(source, record(2, "Partner Inquiry"))
    assert (other.type, other.asset) == (ActivityType.FORM_FILL, "Partner Inquiry")


def test_only_attendance_among_program_status_changes_is_an_activity(source):
    attended = normalize(source, record(104, "Pipeline Alignment Live", ("New Status", "Attended On-demand")))
    assert (attended.type, attended.asset, attended.campaign) == (ActivityType.WEBINAR_ATTENDED, "Pipeline Alignment Live", None)
    assert normalize(source, record(104, "Pipeline Alignment Live", ("New Status", "Registered"))) is None
    registered = record(104, "Pipeline Alignment Live", ("New Status", "Registered"))
    page = source._page([registered], TYPES)
    assert (page.fetched, page.activities, page.rejected) == (0, [], [])


def test_an_activity_type_missing_from_types_json_is_rejected_by_name(source):
    result = normalize(source, record(100_099, "Booth Visit"))
    assert isinstance(result, Rejection)
    assert result.reason == "unknown activity type 'activityTypeId 100099, not in types.json'"


def test_an_activity_without_a_lead_or_with_a_zero_date_is_rejected(source):
    anonymous = record(1, "www.x.example/")
    del anonymous["leadId"]
    assert normalize(source, anonymous).reason == "missing identity: no e-mail and no contact id"
    assert "unparseable occurred_at" in normalize(source, record(1, "www.x.example/", activityDate="0000-00-00T00:00:00Z")).reason
    page = source._page([[1, 2]], TYPES)
    assert (page.rejected[0].reason, page.rejected[0].raw) == ("an activity must be a JSON object", "[1,2]")


@pytest.mark.parametrize(
    "code, kind, retry_after",
    [("601", TokenExpired, None), ("602", TokenExpired, None), ("606", TransientError, 20.0), ("615", TransientError, None),
     ("611", TransientError, None), ("604", TransientError, None), ("607", PermanentError, None),
     ("603", PermanentError, None), ("1003", PermanentError, None)],
)
def test_marketo_error_codes_map_to_retry_renew_or_stop(code, kind, retry_after):
    error = _envelope_error("marketo GET /rest/v1/activities.json", code, "message")
    assert type(error) is kind and code in str(error)
    assert getattr(error, "retry_after", None) == retry_after
