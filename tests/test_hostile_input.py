"""Bad input never stops the line: each kind of hostile record, in a file of good ones, is stored faithfully or
quarantined with a clear reason, and every good record around it is stored, on SQLite and PostgreSQL."""

from __future__ import annotations

import codecs
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from config.settings import Settings
from config.sources import SourceConfig
from store.engine import get_engine
from store.tables import Activity, Lead, Quarantine
from tasks.ingest import ingest_source_once

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
GOOD_LINES = 200


def good(i: int) -> dict:
    return {"id": f"good-{i}", "email": f"p{i}@acme.example", "type": "page_view", "asset": "/pricing",
            "occurred_at": (NOW - timedelta(minutes=i)).isoformat(), "company": "Acme", "first_name": f"P{i}"}


def hostile_file(tmp_path, bad: bytes | list[bytes], *, prefix: bytes = b"") -> SourceConfig:
    """200 good lines with the bad line(s) near the top."""
    lines = [json.dumps(good(i)).encode() for i in range(GOOD_LINES)]
    for n, line in enumerate(bad if isinstance(bad, list) else [bad]):
        lines.insert(3 + n, line)
    path = tmp_path / "export.jsonl"
    path.write_bytes(prefix + b"\n".join(lines) + b"\n")
    return SourceConfig(name="files", kind="jsonl", path=str(path), page_size=50)


def ingest(database_url, config):
    settings = Settings(database_url=database_url, batch_size=60, fetch_in_subprocess=False)
    return ingest_source_once(config, {}, now=NOW, run_id="run-1", settings=settings)


def line(**fields) -> bytes:
    return json.dumps({**good(999), "id": "bad", **fields}).encode()


def stored(database_url):
    engine = get_engine(database_url)
    with engine.connect() as conn:
        activities = {row.external_id: row for row in conn.execute(select(Activity.__table__))}
        quarantined = list(conn.execute(select(Quarantine.__table__)))
        leads = {row.email: row for row in conn.execute(select(Lead.__table__))}
    return activities, quarantined, leads


def assert_good_records_stored(database_url, summary, *, extra_new: int = 0):
    activities, _, _ = stored(database_url)
    assert summary.status == "ok" and summary.error is None
    assert {f"good-{i}" for i in range(GOOD_LINES)} <= set(activities)
    assert summary.new == GOOD_LINES + extra_new


def only_quarantined(database_url) -> tuple:
    _, quarantined, _ = stored(database_url)
    assert len(quarantined) == 1, [q.reason for q in quarantined]
    return quarantined[0]


# ---------------------------------------------------------------- structure

def test_json_nested_deeper_than_the_parser_goes_is_quarantined_and_the_file_goes_on(database_url, tmp_path):
    deep = b'{"id": "bad", "properties": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    summary = ingest(database_url, hostile_file(tmp_path, deep))
    assert_good_records_stored(database_url, summary)
    record = only_quarantined(database_url)
    assert record.reason == "export.jsonl:4: invalid JSON: depth limit exceeded: line 1 column 1053 (char 1052)"
    assert record.raw == deep.decode() and record.raw_size == len(deep) and record.raw_bytes is None


# ---------------------------------------------------------------- numbers

def test_a_company_size_too_large_for_its_column_refuses_the_person_and_keeps_the_activity(database_url, tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, [line(company_size=2**40), line(id="bad-2", email="q@acme.example",
                                                                                           company_size=1e30)]))
    assert_good_records_stored(database_url, summary, extra_new=2)
    activities, quarantined, leads = stored(database_url)
    assert {"bad", "bad-2"} <= set(activities)
    assert sorted(q.reason for q in quarantined) == [
        "export.jsonl:4: person details refused: company_size 1099511627776 is not a number of employees "
        "(0 to 2,147,483,647)",
        "export.jsonl:5: person details refused: company_size 1e+30 is not a number of employees (0 to 2,147,483,647)",
    ]
    assert leads["p999@acme.example"].company_size is None  # not stored cut down to something else


def test_numbers_that_are_not_finite_are_not_json_and_are_quarantined(database_url, tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, [b'{"id": "bad", "company_size": NaN}',
                                                           b'{"id": "bad-2", "occurred_at": 1e400}']))
    assert_good_records_stored(database_url, summary)
    _, quarantined, _ = stored(database_url)
    assert sorted(q.reason for q in quarantined) == [
        "export.jsonl:4: invalid JSON: unexpected character, expected a JSON value: line 1 column 31 (char 30)",
        "export.jsonl:5: invalid JSON: number is infinity when parsed as double: line 1 column 32 (char 31)",
    ]


def test_an_external_id_too_large_to_read_exactly_is_quarantined_not_rounded(database_url, tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, line(id=123456789012345678901234567890)))
    assert_good_records_stored(database_url, summary)
    assert only_quarantined(database_url).reason == \
        "export.jsonl:4: external id 1.2345678901234568e+29 is not text or a whole number"


# ---------------------------------------------------------------- control characters

def test_a_nul_or_escape_in_an_email_is_quarantined_not_stored_cut(database_url, tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, [line(email="eve\x00@acme.example"),
                                                           line(id="bad-2", email="eve\x1b[2J@acme.example")]))
    assert_good_records_stored(database_url, summary)
    _, quarantined, leads = stored(database_url)
    assert sorted(q.reason for q in quarantined) == [
        "export.jsonl:4: e-mail 'eve\\x00@acme.example' contains a control character",
        "export.jsonl:5: e-mail 'eve\\x1b[2J@acme.example' contains a control character",
    ]
    assert not [email for email in leads if email and "eve" in email]


def test_a_nul_in_a_name_refuses_the_person_and_other_control_characters_are_stored_as_they_came(database_url,
                                                                                                 tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, [line(first_name="Ev\x00e"),
                                                           line(id="bad-2", email="q@acme.example",
                                                                company="Acme\x1b]8;;http://evil\x07 \r\u202e")]))
    assert_good_records_stored(database_url, summary, extra_new=2)
    _, quarantined, leads = stored(database_url)
    assert [q.reason for q in quarantined] == ["export.jsonl:4: person details refused: first_name contains a NUL character"]
    assert leads["q@acme.example"].company == "Acme\x1b]8;;http://evil\x07 \r\u202e"


def test_a_nul_in_an_asset_is_quarantined(database_url, tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, line(asset="/pricing\x00")))
    assert_good_records_stored(database_url, summary)
    assert only_quarantined(database_url).reason == "export.jsonl:4: asset contains a NUL character"


def test_a_lone_surrogate_is_quarantined_with_its_text_kept(database_url, tmp_path):
    bad = b'{"id": "bad", "email": "p1@acme.example", "type": "page_view", "asset": "\\ud83d"}'
    summary = ingest(database_url, hostile_file(tmp_path, bad))
    assert_good_records_stored(database_url, summary)
    record = only_quarantined(database_url)
    assert record.reason.startswith("export.jsonl:4: invalid JSON: no low surrogate in string")
    assert record.raw == bad.decode()


# ---------------------------------------------------------------- lengths

def test_a_page_url_longer_than_500_characters_is_stored_whole(database_url, tmp_path):
    url = "/pricing?" + "&".join(f"utm_param_{n}=value-{n}" for n in range(60))
    assert len(url) > 1000
    summary = ingest(database_url, hostile_file(tmp_path, line(asset=url, campaign="c" * 700, title="t" * 800,
                                                               company="Acme " * 200)))
    assert_good_records_stored(database_url, summary, extra_new=1)
    activities, quarantined, leads = stored(database_url)
    assert (activities["bad"].asset, activities["bad"].campaign) == (url, "c" * 700)
    assert (leads["p999@acme.example"].title, leads["p999@acme.example"].company) == ("t" * 800, "Acme " * 200)
    assert quarantined == []


def test_keys_longer_than_their_columns_are_quarantined_not_cut(database_url, tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, [line(id="x" * 201), line(id="bad-2", source="s" * 41),
                                                           line(id="bad-3", contact_id="c" * 201)]))
    assert_good_records_stored(database_url, summary)
    _, quarantined, _ = stored(database_url)
    assert sorted(q.reason for q in quarantined) == [
        "export.jsonl:4: external id is 201 characters long, more than 200",
        "export.jsonl:5: source is 41 characters long, more than 40",
        "export.jsonl:6: contact id is 201 characters long, more than 200",
    ]
    assert {q.source for q in quarantined} == {"files"}  # the batch's own source stands in for one too long


# ---------------------------------------------------------------- times

def test_epoch_seconds_are_read_as_seconds_not_as_january_1970(database_url, tmp_path):
    seconds = int((NOW - timedelta(days=1)).timestamp())
    summary = ingest(database_url, hostile_file(tmp_path, [line(occurred_at=seconds),
                                                           line(id="bad-2", occurred_at=seconds * 1000 + 250)]))
    assert_good_records_stored(database_url, summary, extra_new=2)
    activities, _, _ = stored(database_url)
    assert activities["bad"].occurred_at == NOW - timedelta(days=1)
    assert activities["bad-2"].occurred_at == NOW - timedelta(days=1) + timedelta(milliseconds=250)


def test_zero_and_negative_epochs_are_quarantined_as_not_real_activity_times(database_url, tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, [line(occurred_at=0), line(id="bad-2", occurred_at=-86_400),
                                                           line(id="bad-3", occurred_at="0001-01-01T00:00:00Z")]))
    assert_good_records_stored(database_url, summary)
    _, quarantined, _ = stored(database_url)
    assert sorted(q.reason for q in quarantined) == [
        "export.jsonl:4: occurred_at 0 is 1970-01-01T00:00:00+00:00, before 1990: not a real activity time",
        "export.jsonl:5: occurred_at -86400 is 1969-12-31T00:00:00+00:00, before 1990: not a real activity time",
        "export.jsonl:6: occurred_at '0001-01-01T00:00:00Z' is 0001-01-01T00:00:00+00:00, before 1990: not a real "
        "activity time",
    ]


# ---------------------------------------------------------------- bytes

def test_a_line_that_is_not_utf8_is_quarantined_with_its_bytes(database_url, tmp_path):
    bad = b'{"id": "bad", "email": "caf\xe9@acme.example"}'
    summary = ingest(database_url, hostile_file(tmp_path, bad))
    assert_good_records_stored(database_url, summary)
    record = only_quarantined(database_url)
    assert record.reason == "export.jsonl:4: invalid JSON: not UTF-8 text (byte 0xe9 at offset 27)"
    assert bytes(record.raw_bytes) == bad and record.raw_size == len(bad)
    assert record.raw == '{"id": "bad", "email": "caf\\xe9@acme.example"}'


def test_a_byte_order_mark_at_the_start_of_a_file_is_not_part_of_its_first_line(database_url, tmp_path):
    summary = ingest(database_url, hostile_file(tmp_path, [], prefix=codecs.BOM_UTF8))
    assert_good_records_stored(database_url, summary)
    assert stored(database_url)[1] == []


def test_a_quarantined_payload_is_cut_at_the_cap_with_its_size_noted(database_url, tmp_path):
    huge = line(properties={"notes": "x" * 100_000})
    summary = ingest(database_url, hostile_file(tmp_path, huge))
    assert_good_records_stored(database_url, summary)
    record = only_quarantined(database_url)
    assert record.reason == f"oversized payload: {len(huge)} bytes > 65536"
    assert record.raw_size == len(huge) and len(bytes(record.raw_bytes)) == 64 * 1024
    assert bytes(record.raw_bytes) == huge[:64 * 1024] and record.raw == huge[:64 * 1024].decode()
