"""The acceptance rules every activity passes, whichever tool it came from."""

from datetime import datetime, timedelta, timezone

from domain.activity import ActivityRecord, ActivityType, Rejection, build_activity, normalize_email, parse_instant, screen
from domain.forms import FormRule, FormTypes

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def make(**overrides):
    values = dict(source="marketo", external_id=17, type_name="email_open", occurred_at="2026-11-01T10:00:00Z",
                  raw={"id": 17}, email=" Jane.Doe@Acme.EXAMPLE ", source_contact_id=None)
    values.update(overrides)
    return build_activity(**values)


def test_email_is_trimmed_and_lower_cased_so_two_tools_agree_on_one_person():
    record = make()
    assert isinstance(record, ActivityRecord)
    assert record.email == "jane.doe@acme.example"
    assert normalize_email("not-an-address") is None


def test_times_parse_from_iso_text_epoch_milliseconds_and_offsets_into_utc():
    expected = datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
    assert parse_instant("2026-11-01T10:00:00Z") == expected
    assert parse_instant("2026-11-01T11:00:00+01:00") == expected
    assert parse_instant(int(expected.timestamp() * 1000)) == expected
    assert parse_instant(str(int(expected.timestamp() * 1000))) == expected
    assert parse_instant("2026-11-01 10:00:00") == expected


def test_unknown_activity_type_is_rejected_with_the_type_named():
    record = make(type_name="booth_visit")
    assert isinstance(record, Rejection)
    assert "unknown activity type 'booth_visit'" in record.reason
    assert record.external_id == "17"


def test_activity_without_email_or_contact_id_is_rejected_for_missing_identity():
    record = make(email=None)
    assert isinstance(record, Rejection) and "missing identity" in record.reason
    assert isinstance(make(email=None, source_contact_id=42), ActivityRecord)


def test_invalid_email_without_contact_id_is_rejected_and_says_why():
    record = make(email="nobody")
    assert isinstance(record, Rejection) and "invalid e-mail 'nobody'" in record.reason


def test_unparseable_time_is_rejected_with_the_value():
    record = make(occurred_at="2026-13-45T99:00")
    assert isinstance(record, Rejection) and "unparseable occurred_at '2026-13-45T99:00'" in record.reason


def test_missing_external_id_is_rejected():
    assert isinstance(make(external_id=None), Rejection)


def test_oversized_payload_is_quarantined_whole_not_truncated():
    big = make(raw={"blob": "x" * 100_000})
    accepted, rejected = screen([big], now=NOW, max_payload_bytes=65_536, future_tolerance=timedelta(minutes=10))
    assert accepted == []
    assert rejected[0].reason.startswith("oversized payload:")
    assert rejected[0].raw == big.raw_json


def test_activity_from_the_future_is_quarantined_but_small_clock_skew_is_tolerated():
    skewed = make(occurred_at=(NOW + timedelta(minutes=5)).isoformat())
    future = make(external_id=18, occurred_at=(NOW + timedelta(days=1)).isoformat())
    accepted, rejected = screen([skewed, future], now=NOW, max_payload_bytes=65_536, future_tolerance=timedelta(minutes=10))
    assert [a.external_id for a in accepted] == ["17"]
    assert "in the future" in rejected[0].reason


def test_form_names_map_to_canonical_types_and_assets():
    forms = FormTypes([
        FormRule("Demo Request*", ActivityType.DEMO_REQUEST),
        FormRule("Whitepaper - {asset}", ActivityType.WHITEPAPER_DOWNLOAD),
    ])
    assert forms.classify("Demo Request (EMEA)") == (ActivityType.DEMO_REQUEST, "Demo Request (EMEA)")
    assert forms.classify("whitepaper - State of RevOps 2026") == (ActivityType.WHITEPAPER_DOWNLOAD, "State of RevOps 2026")
    assert forms.classify("Contact Us") == (ActivityType.FORM_FILL, "Contact Us")
