"""Mautic: the stand-in speaks Mautic's REST API and the connector turns its activity feed into the expected
activities, with each contact's firmographics, through every fault the stand-in can throw."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from config.loading import read_yaml
from config.sources import SourceConfig, load_sources
from connectors.http import Backoff, PermanentError, TransientError
from connectors.marketing import build_source
from connectors.marketing.mautic import COUNTRY_CODES, IGNORED_TYPES, MauticSource
from domain.activity import ActivityType, normalize_email, screen
from sandbox import mautic as standin
from sandbox import world as w
from sandbox.faults import RequestFaults
from sandbox.world import WorldSpec
from tests.expectations import expected_activity

FORM_TYPES = read_yaml(Path(__file__).resolve().parents[1] / "config" / "sources.yaml")["form_types"]
SMALL = WorldSpec(people=60, activities=600)
FAULTY = WorldSpec(people=80, activities=900, malformed_rate=0.08, duplicate_rate=0.05)
REASONS = {
    "unknown_type": "unknown activity type 'meeting.attended'",
    "no_identity": "missing identity",
    "bad_time": "unparseable occurred_at '-0001-11-30T00:00:00+00:00'",
    "oversized": "oversized payload",
}


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def start(sandbox_factory, spec: WorldSpec = SMALL, **faults):
    return sandbox_factory(spec, tools=("mautic",), faults={"mautic": RequestFaults(**faults)})


def connector(box, *, page_size: int = 15, secrets: dict | None = None, sleep=None, timeout=(5.0, 30.0), **options):
    config = SourceConfig(name="mautic", kind="mautic", base_url=box.url("mautic"), page_size=page_size,
                          form_types=FORM_TYPES, options=options)
    return MauticSource(config, secrets if secrets is not None else box.credentials["mautic"], timeout=timeout,
                        backoff=Backoff(base=0.001, cap=0.01), sleep=sleep if sleep is not None else Sleeps())


def fetch(source: MauticSource, since: datetime | None = None):
    try:
        return list(source.pages(since))
    finally:
        source.close()


def activities(pages):
    return [a for page in pages for a in page.activities]


def by_event(pages) -> dict[int, object]:
    """Records keyed by the world event they came from (the stand-in numbers rows by event id); one content each."""
    seen: dict[int, object] = {}
    for record in activities(pages) + [r for page in pages for r in page.rejected]:
        event_id = int(re.search(r"(\d+)$", record.external_id).group(1))
        assert seen.setdefault(event_id, record) == record, "one external id, two contents"
    return seen


def api(box, path: str, auth: tuple[str, str] | None = None, **params) -> requests.Response:
    creds = box.credentials["mautic"]
    return requests.get(box.url("mautic") + path, params=params, auth=auth or (creds["username"], creds["password"]),
                        timeout=10)


def assert_matches_the_world(box, pages, events) -> None:
    records = by_event(pages)
    for event in events:
        record, expected = records[event.id], expected_activity(box.world, event)
        assert (record.type, record.asset, record.campaign, record.email, record.occurred_at) == (
            expected.type, expected.asset, expected.campaign, expected.email, expected.occurred_at
        ), event


# --- a full fetch ------------------------------------------------------------------------------------------------

def test_a_full_fetch_yields_every_good_event_as_the_expectations_say(sandbox_factory):
    box = start(sandbox_factory)
    pages = fetch(connector(box))
    good, malformed = box.world.expected("mautic")

    assert not malformed
    assert len(activities(pages)) == len(good) == len({a.external_id for a in activities(pages)})
    assert_matches_the_world(box, pages, good)
    assert {a.type for a in activities(pages)} >= {
        ActivityType.PAGE_VIEW, ActivityType.EMAIL_OPEN, ActivityType.EMAIL_CLICK, ActivityType.WHITEPAPER_DOWNLOAD,
        ActivityType.NEWSLETTER_SIGNUP, ActivityType.WEBINAR_REGISTRATION,
    }
    assert all(a.source == "mautic" and a.source_contact_id for a in activities(pages))


def test_every_malformed_record_is_rejected_with_its_reason_and_the_rest_goes_through(sandbox_factory):
    box = start(sandbox_factory, FAULTY)
    pages = fetch(connector(box, page_size=40))
    good, malformed = box.world.expected("mautic")
    assert {e.fault for e in malformed} == set(w.MALFORMED)

    accepted, oversized = screen(activities(pages), now=box.world.now, max_payload_bytes=64 * 1024,
                                 future_tolerance=timedelta(minutes=10))
    records = by_event(pages)
    rejected = {int(re.search(r"(\d+)$", r.external_id).group(1)): r for page in pages for r in page.rejected}
    rejected.update({int(re.search(r"(\d+)$", r.external_id).group(1)): r for r in oversized})
    assert set(rejected) == {e.id for e in malformed}
    for event in malformed:
        assert REASONS[event.fault] in rejected[event.id].reason, (event.fault, rejected[event.id].reason)
        assert rejected[event.id].raw.startswith("{")
    assert len({a.external_id for a in accepted}) == len(good)
    assert_matches_the_world(box, pages, good)
    assert all(records[e.id].external_id == rejected[e.id].external_id for e in malformed)


def test_people_come_once_each_with_their_firmographics(sandbox_factory):
    box = start(sandbox_factory)
    pages = fetch(connector(box))
    people = [p for page in pages for p in page.people]
    world_people = {str(p.index + 1): p for p in box.world.tool_people("mautic")}

    assert len(people) == len({p.source_contact_id for p in people})
    assert {p.source_contact_id for p in people} == {a.source_contact_id for a in activities(pages)}
    for record in people:
        person = world_people[record.source_contact_id]
        assert record.email == normalize_email(person.email)
        assert record.fields() == {
            "first_name": person.first_name, "last_name": person.last_name, "company": person.company,
            "title": person.title, "industry": person.industry, "company_size": person.company_size,
            "country": person.country, "product_interest": person.product_interest,
            "lead_source_channel": person.channel,
        }
    first_page_people = {p.source_contact_id for p in pages[0].people}
    assert first_page_people == {a.source_contact_id for a in pages[0].activities}


def test_an_address_stored_with_capitals_by_the_second_tool_normalizes_to_the_same_lead(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=120, activities=900, two_tool_share=0.6))
    second = [p for p in box.world.tool_people("mautic") if p.tools[1:] == ("mautic",)]
    stored = [api(box, f"/api/contacts/{p.index + 1}").json()["contact"]["fields"]["all"]["email"] for p in second]
    assert second and all(email != email.lower() for email in stored)

    pages = fetch(connector(box, page_size=50))
    emails = {a.source_contact_id: a.email for a in activities(pages)}
    for person in second:
        if str(person.index + 1) in emails:
            assert emails[str(person.index + 1)] == normalize_email(person.email)


def test_a_page_checkpoints_the_time_up_to_which_every_event_type_is_complete(sandbox_factory):
    box = start(sandbox_factory)
    good, _ = box.world.expected("mautic")
    pages = fetch(connector(box, page_size=10))

    assert len(pages) > 2
    checkpoints = [page.checkpoint for page in pages]
    assert all(checkpoints) and checkpoints == sorted(checkpoints)
    assert checkpoints[-1] == max(a.occurred_at for a in activities(pages))
    for n, checkpoint in enumerate(checkpoints):
        seen = set(by_event(pages[: n + 1]))
        assert all(e.id in seen for e in good if e.occurred_at <= checkpoint), n
    # a page holds events of a quiet type newer than the busy types reached: its checkpoint is not its newest event
    assert any(page.checkpoint < max(a.occurred_at for a in page.activities) for page in pages[:-1])


def test_since_fetches_only_activities_at_or_after_it(sandbox_factory):
    box = start(sandbox_factory)
    good, _ = box.world.expected("mautic")
    everything = activities(fetch(connector(box)))
    for since in (good[len(good) // 2].occurred_at, good[len(good) // 3].occurred_at - timedelta(seconds=0.5)):
        recent = fetch(connector(box), since=since)
        wanted = [e for e in good if e.occurred_at >= since]
        assert len(activities(recent)) == len(wanted) < len(everything)
        assert_matches_the_world(box, recent, wanted)
        assert recent[-1].checkpoint == max(e.occurred_at for e in wanted)


def test_a_since_after_everything_gives_one_empty_page(sandbox_factory):
    box = start(sandbox_factory)
    pages = fetch(connector(box), since=box.world.now + timedelta(days=1))
    assert len(pages) == 1 and pages[0].fetched == 0 and pages[0].checkpoint is None


# --- request faults ----------------------------------------------------------------------------------------------

def test_the_rate_limiter_429_is_waited_out_as_retry_after_asks_and_nothing_is_lost(sandbox_factory):
    box = start(sandbox_factory, rate_limit_every=3)
    sleeps = Sleeps()
    pages = fetch(connector(box, sleep=sleeps))

    assert box.faults["mautic"].fired("rate_limit") > 0
    assert sleeps and min(sleeps) >= 1.0  # the Retry-After of 1 s wins over the fast backoff
    good, _ = box.world.expected("mautic")
    assert len(by_event(pages)) == len(good)
    assert_matches_the_world(box, pages, good)


def test_server_errors_are_retried_and_nothing_is_lost(sandbox_factory):
    box = start(sandbox_factory, server_error_every=4)
    pages = fetch(connector(box))

    assert box.faults["mautic"].fired("server_error") > 0
    good, _ = box.world.expected("mautic")
    assert len(by_event(pages)) == len(good)
    assert_matches_the_world(box, pages, good)


def test_a_slow_server_is_waited_for_and_one_slower_than_the_read_timeout_is_a_transient_failure(sandbox_factory):
    box = start(sandbox_factory, slow_ms=30)
    good, _ = box.world.expected("mautic")
    assert len(by_event(fetch(connector(box, page_size=100)))) == len(good)

    box.faults["mautic"].update(slow_ms=400)
    with pytest.raises(TransientError) as failed:
        fetch(connector(box, timeout=(5.0, 0.05)))
    assert "ReadTimeout" in str(failed.value) and "gave up" in str(failed.value)
    assert box.credentials["mautic"]["password"] not in str(failed.value)


def test_basic_auth_has_no_token_to_expire_so_the_expiry_switch_changes_nothing(sandbox_factory):
    box = start(sandbox_factory, expire_token_every=2, token_ttl_seconds=0.001)
    good, _ = box.world.expected("mautic")
    assert len(by_event(fetch(connector(box)))) == len(good)


def test_duplicates_are_served_twice_and_yield_each_external_id_with_one_content(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=60, activities=600, duplicate_rate=0.1))
    pages = fetch(connector(box))
    good, _ = box.world.expected("mautic")
    duplicated = [e for e in good if e.fault == w.DUPLICATE]

    counts = Counter(a.external_id for a in activities(pages))
    assert duplicated and sum(p.fetched for p in pages) == len(good) + len(duplicated)
    assert sorted(n for n in counts.values() if n > 1) == [2] * len(duplicated)
    assert len(by_event(pages)) == len(good)  # by_event asserts one content per id
    assert_matches_the_world(box, pages, good)


def test_late_arrivals_appear_once_the_clock_passes_them_when_fetching_since_before_them(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=60, activities=600, weeks=1, late_rate=0.3, late_by_hours=6))
    hidden = [e for e in box.world.events if e.tool == "mautic" and e.available_ts > box.world.clock]
    assert hidden
    since = min(e.occurred_at for e in hidden) - timedelta(minutes=5)

    before = by_event(fetch(connector(box), since=since))
    assert not {e.id for e in hidden} & set(before)

    box.world.advance(hours=7)
    after = fetch(connector(box), since=since)
    assert {e.id for e in hidden} <= set(by_event(after))
    assert_matches_the_world(box, after, [e for e in box.world.expected("mautic")[0] if e.occurred_at >= since])


def test_paging_oldest_first_loses_nothing_while_late_events_arrive_mid_run(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=60, activities=600, late_rate=0.3, late_by_hours=240))
    visible = {e.id for e in box.world.expected("mautic")[0]}
    source = connector(box, page_size=10)
    pages = []
    for page in source.pages(None):
        pages.append(page)
        if len(pages) == 2:
            box.world.advance(hours=240)  # a third of the feed lands mid-run, mostly behind the pages read
    source.close()
    assert visible <= set(by_event(pages))


# --- permanent failures ------------------------------------------------------------------------------------------

def test_wrong_credentials_are_a_permanent_failure_that_names_no_credential(sandbox_factory):
    box = start(sandbox_factory)
    secrets = {"username": box.credentials["mautic"]["username"], "password": "wrong-Pa55word"}
    with pytest.raises(PermanentError) as failed:
        fetch(connector(box, secrets=secrets))
    message = str(failed.value)
    assert "401" in message and "Authorization denied, invalid credentials." in message
    assert "wrong-Pa55word" not in message and box.credentials["mautic"]["username"] not in message


def test_missing_credentials_are_a_permanent_failure(sandbox_factory):
    box = start(sandbox_factory)
    with pytest.raises(PermanentError, match="missing credentials: password"):
        connector(box, secrets={"username": "someone"})


# --- the connector's reading of Mautic records -------------------------------------------------------------------

def page_of(source: MauticSource, *events: dict):
    source._people["7"] = None
    source._emails.update({"3": ("November release notes", "Product Update")})
    page, _ = source._page(list(events), limit=25)
    return page


def test_a_manual_do_not_contact_is_no_lead_activity_and_an_unknown_reason_is_quarantined(sandbox_factory):
    box = start(sandbox_factory)
    source = connector(box)
    manual = {"event": "lead.donotcontact", "eventId": "lead.donotcontact1", "timestamp": "2026-10-01T10:00:00+00:00",
              "contactId": "7", "details": {"dnc": {"channel": "email", "channelId": "3",
                                                    "reason": "Contact was manually set as do not contact for this channel."}}}
    odd = {**manual, "eventId": "lead.donotcontact2", "details": {"dnc": {"channel": "email", "reason": "Abgemeldet"}}}
    page = page_of(source, manual, odd)
    source.close()
    assert page.fetched == 2 and not page.activities
    assert [r.external_id for r in page.rejected] == ["lead.donotcontact2"]
    assert "Abgemeldet" in page.rejected[0].reason


def test_mautic_5_snake_case_stat_keys_and_a_gotowebinar_registration_are_understood(sandbox_factory):
    box = start(sandbox_factory)
    source = connector(box)
    read = {"event": "email.read", "eventId": "email.read9", "timestamp": "2026-10-01T12:00:00+02:00", "contactId": "7",
            "details": {"stat": {"email_id": "3", "email_name": "November release notes"}, "type": "read"}}
    registered = {"event": "webinar.registered", "eventId": "webinar.registered4", "contactId": "7",
                  "timestamp": "2026-10-02T09:00:00+00:00", "eventLabel": "Registration to Webinar - RevOps Office Hours",
                  "details": {"eventName": "revops-office-hours", "eventId": "1", "eventDesc": "RevOps Office Hours"}}
    page = page_of(source, read, registered)
    source.close()
    email, webinar = page.activities
    assert (email.type, email.asset, email.campaign) == (ActivityType.EMAIL_OPEN, "November release notes", "Product Update")
    assert email.occurred_at == datetime(2026, 10, 1, 10, 0, tzinfo=timezone.utc)
    assert (webinar.type, webinar.asset) == (ActivityType.WEBINAR_REGISTRATION, "RevOps Office Hours")


def test_countries_stored_by_mautic_name_come_out_as_iso_codes():
    assert COUNTRY_CODES["United States"] == "US" and COUNTRY_CODES["United Kingdom"] == "GB"
    assert COUNTRY_CODES["Türkiye"] == "TR" and COUNTRY_CODES["Ivory Coast"] == "CI"
    assert all(COUNTRY_CODES[name] == code for code, name in standin.COUNTRY_NAMES.items())


def test_the_rate_limiters_reset_time_stands_in_for_a_missing_retry_after(monkeypatch):
    from connectors.marketing import mautic as module

    monkeypatch.setattr(module.time, "time", lambda: 1_000.0)
    response = requests.Response()
    response.status_code = 429
    response.headers["X-RateLimit-Reset"] = "1007"
    response.request = requests.Request("GET", "http://mautic.example/api/contacts/activity").prepare()
    response.url = response.request.url
    with pytest.raises(TransientError) as limited:
        module._refusals("mautic", response)
    assert limited.value.retry_after == 7


def test_the_sources_file_and_the_sandbox_environment_build_a_working_source(sandbox_factory):
    box = start(sandbox_factory)
    [config] = load_sources(Path(__file__).resolve().parents[1] / "config" / "sources.yaml", env=box.env)
    secrets = {key: value.get_secret_value() for key, value in config.credentials.items()}
    source = build_source(config, secrets, backoff=Backoff(base=0.001, cap=0.01))
    assert config.kind == "mautic" and isinstance(source, MauticSource)
    assert len(by_event(fetch(source))) == len(box.world.expected("mautic")[0])


# --- the stand-in's wire format ----------------------------------------------------------------------------------

def test_requests_without_or_with_wrong_basic_auth_get_mautics_401_bodies(sandbox_factory):
    box = start(sandbox_factory)
    anonymous = requests.get(box.url("mautic") + "/api/contacts", timeout=10)
    wrong = api(box, "/api/contacts", auth=("admin", "nope"))

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json() == {"errors": [{"message": "API authorization denied.", "code": 401, "type": "access_denied"}]}
    assert wrong.json() == {"errors": [{"message": "Authorization denied, invalid credentials.", "code": 401,
                                        "type": "access_denied"}]}


def test_the_rate_limiter_answers_429_in_text_html_with_its_headers(sandbox_factory):
    box = start(sandbox_factory, rate_limit_every=1)
    limited = api(box, "/api/contacts")

    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith("text/html")
    assert limited.json()["errors"][0]["message"] == f"You exceeded the rate limit of {standin.RATE_LIMIT} API calls per hour."
    assert limited.headers["X-RateLimit-Remaining"] == "0" and limited.headers["X-RateLimit-Reset"].isdigit()
    assert limited.headers["Retry-After"] == "1"


def test_a_server_error_has_mautics_generic_error_body(sandbox_factory):
    box = start(sandbox_factory, server_error_every=1)
    failed = api(box, "/api/contacts/activity")
    assert failed.status_code == 500
    [error] = failed.json()["errors"]
    assert error["code"] == 500 and error["message"].startswith("Looks like I encountered an error (error #500).")


def test_contacts_list_has_a_string_total_and_contacts_keyed_by_id_with_grouped_fields(sandbox_factory):
    box = start(sandbox_factory)
    people = box.world.tool_people("mautic")
    ids = [str(p.index + 1) for p in people[:3]]
    listing = api(box, "/api/contacts", **{"where[0][col]": "id", "where[0][expr]": "in", "where[0][val]": ",".join(ids)})
    body = listing.json()

    assert body["total"] == "3" and sorted(body["contacts"]) == sorted(ids)
    contact = body["contacts"][ids[0]]
    assert contact["id"] == int(ids[0])
    assert set(contact["fields"]) == {"core", "social", "personal", "professional", "all"}
    industry = contact["fields"]["professional"]["industry"]
    assert industry["type"] == "select" and industry["value"] == standin._option_value("industry", people[0].industry)
    assert industry["normalizedValue"] == people[0].industry
    assert contact["fields"]["professional"]["company_size"]["value"] == people[0].company_size
    assert contact["fields"]["all"]["country"] == standin.COUNTRY_NAMES[people[0].country]

    empty = api(box, "/api/contacts", search="ids:999999").json()
    assert empty == {"total": "0", "contacts": {}}
    paged = api(box, "/api/contacts", start=2, limit=5, minimal=1).json()
    assert paged["total"] == str(len(people)) and len(paged["contacts"]) == 5
    assert set(next(iter(paged["contacts"].values()))) == {"id", "points", "color", "fields"}


def test_contacts_select_returns_only_those_fields(sandbox_factory):
    box = start(sandbox_factory)
    cid = str(box.world.tool_people("mautic")[0].index + 1)
    body = api(box, "/api/contacts", search=f"ids:{cid}", **{"select[]": ["email", "company"]}).json()
    fields = body["contacts"][cid]["fields"]
    assert set(fields["core"]) == {"email", "company"} and fields["professional"] == []
    assert set(fields["all"]) == {"id", "email", "company"}


def test_emails_list_has_an_int_total_a_json_list_and_the_campaign_in_utm_tags(sandbox_factory):
    box = start(sandbox_factory)
    body = api(box, "/api/emails", **{"where[0][col]": "id", "where[0][expr]": "in", "where[0][val]": "1,4"}).json()
    assert body["total"] == 2 and isinstance(body["emails"], list)
    assert [(e["id"], e["utmTags"]["utmCampaign"]) for e in body["emails"]] == [(1, "Nurture Q4"), (4, "Product Update")]


def test_the_activity_feed_has_mautics_shape_and_slices_each_event_type_by_the_limit(sandbox_factory):
    box = start(sandbox_factory)
    limit = 7
    response = api(box, "/api/contacts/activity", limit=limit, **{"order[0]": "timestamp", "order[1]": "ASC"})
    body = response.json()
    assert '"href":"https:\\/\\/' in response.text  # json_encode escapes slashes

    assert set(body) == {"events", "filters", "order", "types", "total", "page", "limit", "maxPages"}
    assert body["filters"] == {"search": "", "includeEvents": [], "excludeEvents": []}
    assert body["order"] == ["timestamp", "ASC"] and body["page"] == 1 and body["limit"] == limit
    per_type = Counter(e["event"] for e in body["events"])
    assert max(per_type.values()) == limit and len(body["events"]) > limit
    visible = Counter(standin.KIND_TYPE[e.kind] for e in box.world.tool_events("mautic"))
    assert isinstance(body["total"], int) and body["total"] == sum(visible.values())
    assert body["maxPages"] == math.ceil(max(visible.values()) / limit)
    stamps = [e["timestamp"] for e in body["events"]]
    assert [datetime.fromisoformat(s) for s in stamps] == sorted(datetime.fromisoformat(s) for s in stamps)
    assert {"page.hit": "Page hit", "webinar.attended": "Attended webinar"}.items() <= body["types"].items()
    for event in body["events"]:
        assert set(event) == {"event", "eventId", "eventLabel", "eventType", "timestamp", "contactId", "details"}
        assert isinstance(event["contactId"], str)


def test_the_feed_is_newest_first_by_default_and_dates_without_an_offset_are_the_instances_local_time(sandbox_factory):
    box = start(sandbox_factory)
    newest = api(box, "/api/contacts/activity", limit=5).json()
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in newest["events"]]
    assert newest["order"] == ["timestamp", "DESC"] and stamps == sorted(stamps, reverse=True)

    events = box.world.tool_events("mautic")
    since = events[len(events) // 2].occurred_at + timedelta(minutes=30)  # half an hour after an event
    explicit = api(box, "/api/contacts/activity", limit=1, **{"filters[dateFrom]": since.isoformat()}).json()
    naive = api(box, "/api/contacts/activity", limit=1,
                **{"filters[dateFrom]": since.strftime("%Y-%m-%d %H:%M:%S")}).json()
    local = since.replace(tzinfo=standin.INSTANCE_TZ)  # the same wall-clock time in Berlin: an hour or two earlier
    assert explicit["total"] == sum(1 for e in events if e.occurred_at >= since)
    assert naive["total"] == sum(1 for e in events if e.occurred_at >= local) > explicit["total"]
    assert explicit["filters"]["dateFrom"] == since.isoformat()


def test_native_events_render_clicks_unsubscribes_bounces_and_webinars_as_mautic_records_them(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=150, activities=2500))
    body = api(box, "/api/contacts/activity", limit=2000, **{"order[0]": "timestamp", "order[1]": "ASC"}).json()
    events = body["events"]
    kinds = {e.id: e.kind for e in box.world.tool_events("mautic")}

    def native(kind):
        return [e for e in events if kinds[int(re.search(r"(\d+)$", e["eventId"]).group(1))] == kind]

    click = native(w.EMAIL_CLICKED)[0]
    assert click["event"] == "page.hit" and click["details"]["hit"]["source"] == "email"
    assert click["details"]["hit"]["sourceName"] and click["details"]["hit"]["sourceId"].isdigit()
    unsubscribe, bounce = native(w.UNSUBSCRIBED)[0], native(w.EMAIL_BOUNCED)[0]
    assert unsubscribe["event"] == bounce["event"] == "lead.donotcontact"
    assert unsubscribe["details"]["dnc"]["reason"] == "Contact unsubscribed from this channel."
    assert bounce["details"]["dnc"]["reason"] == "Communication bounced for this channel."
    assert bounce["eventLabel"]["label"].startswith("Email / ")
    attended = native(w.WEBINAR_ATTENDED)[0]
    assert attended["event"] == "webinar.attended" and attended["eventType"] == "Webinar attendance"
    assert attended["eventLabel"] == f"Attended webinar - {attended['details']['eventDesc']}"
    registered = native(w.WEBINAR_REGISTERED)[0]
    assert registered["event"] == "form.submitted"
    assert registered["eventLabel"]["label"].startswith("Webinar Registration - ")
    page_view = native(w.PAGE_VISITED)[0]
    assert page_view["eventId"] == page_view["details"]["hit"]["hitId"]  # page hits are numbered by hit id alone
    assert page_view["timestamp"].endswith(("+01:00", "+02:00"))  # the instance's local time
    download = native(w.WHITEPAPER_DOWNLOADED)[0]
    assert download["event"] == "asset.download" and download["timestamp"].endswith("+00:00")


def test_excluded_event_types_are_left_out_of_events_and_totals(sandbox_factory):
    box = start(sandbox_factory)
    every = api(box, "/api/contacts/activity", limit=1).json()
    some = api(box, "/api/contacts/activity", limit=1, **{"filters[excludeEvents][]": ["page.hit", *IGNORED_TYPES]}).json()
    hits = sum(1 for e in box.world.tool_events("mautic") if standin.KIND_TYPE[e.kind] == "page.hit")
    assert some["total"] == every["total"] - hits
    assert "page.hit" not in {e["event"] for e in some["events"]}
    assert some["filters"]["excludeEvents"][0] == "page.hit"


def test_unknown_paths_and_contacts_are_mautic_404s(sandbox_factory):
    box = start(sandbox_factory)
    missing = api(box, "/api/contacts/999999")
    assert missing.status_code == 404 and missing.json()["errors"][0]["message"] == "Item was not found."
    assert api(box, "/api/nothing-here").status_code == 404
