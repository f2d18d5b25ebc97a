"""The fuzz suite of hostile records: generated records (structure, sizes, numbers, unicode, control characters,
times), mixed with good ones, go through each source's own normalizer and the batch writer, on SQLite and
PostgreSQL. Whatever comes: the run finishes, every good record is stored, every bad one is stored as it came
or quarantined with a reason.

A new kind of record (a CRM record, a webhook body) plugs in as a `Feed`: how a page of its records is put on
the wire, and how its connector reads that page back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from config.settings import Settings
from config.sources import SourceConfig
from connectors.marketing.base import Page
from connectors.marketing.hubspot import HubSpotSource
from connectors.marketing.marketo import MarketoSource
from connectors.marketing.mautic import MauticSource
from connectors.records import loads_page
from domain.activity import dump_raw, parse_instant, screen, screen_people
from store.ingest import write_batch
from store.tables import Activity, Quarantine
from tasks.ingest import ingest_source_once

SCALE = int(os.environ.get("HANDOFF_PROPERTY_SCALE", "1"))  # e.g. 20 for a deeper search; the suite uses 1
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=20 * SCALE,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
CAP = 64 * 1024
TABLES = ("activity", "lead_contact", "lead_dirty", "quarantine", "source_watermark", "source_file", "lead")

# ---------------------------------------------------------------- what hostile input is made of

SPECIALS = ["\x00", "\ud800", "\udfff", "\x1b[2J", "\x1b]8;;http://evil.example\x07", "\u202e", "\r", "\x7f", "\x85",
            "\ufeff", "\u0085", "🙂", "e\u0301", "'", '"', "\\", "[red]", "\n"]
texts = st.one_of(
    st.lists(st.one_of(st.text(max_size=12), st.sampled_from(SPECIALS)), max_size=6).map("".join),
    st.text(alphabet="abc/?=&%", min_size=400, max_size=1500),
)
numbers = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, 1e15, 1.5, 1_700_000_000, -86_400]))
anything = st.recursive(st.none() | st.booleans() | numbers | texts,
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                        max_leaves=6)
# Records no JSON parser takes: nested past any parser's depth, not UTF-8, not finite; a line may also be cut
# short (inside a page, a record cut short is a page cut short: the page fails and is fetched again).
unparseable = [
    b'{"id": "x", "p": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"id": "caf\xe9", "email": "x@acme.example"}',
    b'{"id": "n", "value": NaN}',
    b'{"id": "i", "value": -Infinity}',
    b'{"id": "\xff\xfe"}',
]
broken_lines = st.sampled_from([*unparseable, b'{"id": "cut", "email": "x@acme', b"[1, 2]", b"17"])
broken_records = st.sampled_from(unparseable)
moments = st.integers(0, 60 * 24 * 30).map(lambda minutes: NOW - timedelta(minutes=minutes))


@st.composite
def record_mix(draw, good_record: Callable[[int], dict], fields: list[str], broken=broken_records) -> list[tuple[str, Any]]:
    """Good records and hostile ones, in any order: ("good", record), ("bad", record with fields replaced by
    hostile values) or ("raw", bytes no parser takes)."""
    items = [("good", good_record(n)) for n in range(draw(st.integers(1, 12)))]
    for n in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            record = good_record(1000 + n)
            for name in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
                record[name] = draw(anything)
            items.append(("bad", record))
        else:
            items.append(("raw", draw(broken)))
    return draw(st.permutations(items))


def dumps(record: dict) -> bytes:
    """JSON as a tool might write it: lone surrogates escaped, NaN and Infinity written out."""
    return json.dumps(record, allow_nan=True).encode()


# ---------------------------------------------------------------- the stores' side of the oracle

def reset(engine) -> None:
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))


def stored(engine) -> tuple[dict, list]:
    with engine.connect() as conn:
        activities = {(r.source, r.external_id): r for r in conn.execute(select(Activity.__table__))}
        quarantined = list(conn.execute(select(Quarantine.__table__)))
    return activities, quarantined


def quarantined_as_it_came(quarantined: list, payload: bytes | str) -> bool:
    raw = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    return any(q.reason and (q.raw_bytes is not None and bytes(q.raw_bytes) == raw[:CAP] or q.raw_bytes is None and
                             q.raw.encode("utf-8", "surrogatepass") == raw) for q in quarantined)


def assert_accounted(activities: dict, quarantined: list, key: tuple[str, str] | None, payload: bytes | str,
                     faithful: Callable[[Any], None] | None = None) -> None:
    """A good or bad record is stored under its key (the first of a key wins; its fields as they came) or
    quarantined with a reason and its payload."""
    row = activities.get(key) if key else None
    if row is not None:
        if faithful and row.raw == (payload if isinstance(payload, str) else payload.decode("utf-8", "replace")):
            faithful(row)
        return
    assert quarantined_as_it_came(quarantined, payload), (key, payload[:300])


def kept(value: Any) -> Any:
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------- JSON Lines, end to end through the ingest

def jsonl_good(n: int) -> dict:
    return {"id": f"e-{n}", "email": f"p{n}@acme.example", "type": ["page_view", "email_open", "demo_request"][n % 3],
            "occurred_at": (NOW - timedelta(hours=n)).isoformat(), "asset": f"/page-{n}", "campaign": "Q4",
            "company": "Acme", "first_name": "Ada", "company_size": 250, "title": "VP Sales", "contact_id": f"c{n}"}


JSONL_FIELDS = ["id", "email", "type", "occurred_at", "asset", "campaign", "company", "first_name", "company_size",
                "title", "contact_id", "source", "properties"]


@FUZZ
@given(mix=record_mix(jsonl_good, JSONL_FIELDS, broken_lines))
def test_a_json_lines_file_of_hostile_and_good_lines_is_stored_or_quarantined_line_by_line(engine, tmp_path_factory,
                                                                                          mix):
    reset(engine)
    lines = [dumps(r) if kind != "raw" else r for kind, r in mix]
    path = tmp_path_factory.mktemp("fuzz") / "export.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    config = SourceConfig(name="files", kind="jsonl", path=str(path), page_size=7)
    summary = ingest_source_once(config, {}, now=NOW, run_id="fuzz", settings=Settings(
        database_url=engine.url.render_as_string(hide_password=False), batch_size=9, fetch_in_subprocess=False))
    assert summary.status == "ok" and summary.fetched == len(lines)
    activities, quarantined = stored(engine)
    for (kind, record), line in zip(mix, lines):
        if kind == "raw":
            assert quarantined_as_it_came(quarantined, line), line[:200]
            continue
        key = (str(record.get("source") or "files"), str(record.get("id")))
        if kind == "good":
            assert activities[key].raw == line.decode()
            continue

        def faithful(row, record=record):
            assert (row.asset, row.campaign) == (kept(record.get("asset")), kept(record.get("campaign")))
            assert row.occurred_at == parse_instant(record.get("occurred_at"))

        assert_accounted(activities, quarantined, key, line.decode("utf-8", "surrogatepass"), faithful)


# ---------------------------------------------------------------- the HTTP connectors' normalizers

@dataclass
class Feed:
    """A kind of record: its good shape, the fields a hostile one replaces, how a page of them is put on the
    wire, and how its connector reads such a page (the connector's own parsing and normalizing, no server)."""

    name: str
    good: Callable[[int], dict]
    fields: list[str]
    page: Callable[[list[bytes]], bytes]
    read: Callable[[bytes], Page]
    key: Callable[[dict], tuple[str, str]]


def marketo_read(body: bytes) -> Page:
    source = MarketoSource(SourceConfig(name="marketo", kind="marketo", base_url="http://127.0.0.1:9"),
                           {"client_id": "id", "client_secret": "secret"})
    source._fields = "id,email"
    source._get = lambda path, params=None: {"result": [  # the lead lookup answers with people, one hostile
        {"id": 7, "email": "ada@acme.example", "company": "Acme", "numberOfEmployees": "250"},
        {"id": 8, "email": "bob@acme.example", "numberOfEmployees": 1e30, "firstName": "B\x00b"}]}
    records = loads_page(body, "result")["result"]
    return source._page(records, {1: "Visit Webpage", 10: "Open Email"})


def hubspot_read(body: bytes) -> Page:
    source = HubSpotSource(SourceConfig(name="hubspot", kind="hubspot", base_url="http://127.0.0.1:9"),
                           {"access_token": "t"})
    data = loads_page(body, "events")
    return source._page(data["events"], source._email_activity)


def mautic_read(body: bytes) -> Page:
    source = MauticSource(SourceConfig(name="mautic", kind="mautic", base_url="http://127.0.0.1:9"),
                          {"username": "u", "password": "p"})
    source._get = lambda path, params, records="": {"contacts": {
        "5": {"id": 5, "fields": {"all": {"email": "cy@acme.example", "company_size": "NaN"}}}, "6": [1, 2]}}
    page, _ = source._page(loads_page(body, "events")["events"], limit=100)
    return page


FEEDS = [
    Feed("marketo",
         lambda n: {"id": n, "marketoGUID": f"g-{n}", "leadId": 7 + n % 2, "activityDate": (NOW - timedelta(hours=n)).isoformat(),
                    "activityTypeId": [1, 10][n % 2], "primaryAttributeValue": f"Program.Email {n}",
                    "attributes": [{"name": "Webpage URL", "value": f"/page-{n}"}]},
         ["marketoGUID", "leadId", "activityDate", "activityTypeId", "primaryAttributeValue", "attributes"],
         lambda items: b'{"requestId": "r", "success": true, "moreResult": false, "result": [' + b",".join(items) + b"]}",
         marketo_read, lambda r: ("marketo", str(r.get("marketoGUID") or r.get("id")))),
    Feed("hubspot",
         lambda n: {"id": f"h-{n}", "type": ["OPEN", "CLICK"][n % 2], "recipient": f"p{n}@acme.example",
                    "created": int((NOW - timedelta(hours=n)).timestamp() * 1000), "emailCampaignId": 3},
         ["id", "type", "recipient", "created", "emailCampaignId"],
         lambda items: b'{"hasMore": false, "offset": "x", "events": [' + b",".join(items) + b"]}",
         hubspot_read, lambda r: ("hubspot", str(r.get("id")))),
    Feed("mautic",
         lambda n: {"event": "page.hit", "eventId": n, "timestamp": (NOW - timedelta(hours=n)).isoformat(),
                    "contactId": "5", "details": {"hit": {"url": f"https://acme.example/page-{n}"}}},
         ["event", "eventId", "timestamp", "contactId", "details", "eventLabel"],
         lambda items: b'{"total": 1, "maxPages": 1, "limit": 100, "events": [' + b",".join(items) + b"]}",
         mautic_read, lambda r: ("mautic", f"{r.get('event')}{r.get('eventId')}")),
]


@pytest.mark.parametrize("feed", FEEDS, ids=lambda feed: feed.name)
def test_each_feed_s_good_records_are_read_as_activities(feed):
    page = feed.read(feed.page([dumps(feed.good(n)) for n in range(4)]))
    assert len(page.activities) == 4 and page.fetched == 4


@pytest.mark.parametrize("feed", FEEDS, ids=lambda feed: feed.name)
@FUZZ
@given(data=st.data())
def test_a_page_of_hostile_and_good_records_is_read_record_by_record_and_stored_or_quarantined(engine, feed, data):
    reset(engine)
    mix = data.draw(record_mix(feed.good, feed.fields))
    items = [dumps(r) if kind != "raw" else r for kind, r in mix]
    page = feed.read(feed.page(items))
    assert page.fetched == len(items)
    accepted, late = screen(page.activities, now=NOW, max_payload_bytes=CAP, future_tolerance=timedelta(minutes=10))
    people, refused = screen_people(page.people)
    write_batch(engine, source=feed.name, activities=accepted, people=people, rejections=page.rejected + late + refused,
                checkpoint=None, now=NOW, raw_cap=CAP)
    assert_each_accounted(engine, mix, items, feed.key)


def assert_each_accounted(engine, mix: list, items: list[bytes], key: Callable[[dict], Any],
                          passed_over: Callable[[dict], bool] = lambda record: False) -> None:
    """Each raw item is quarantined as it came, each good record stored under its key, each bad one stored,
    quarantined (parsed, its payload is the record as the reader writes it; unparsed, the bytes as they came) or,
    when the reader may pass it over as no activity, passed over."""
    activities, quarantined = stored(engine)
    for (kind, record), item in zip(mix, items):
        if kind == "raw":
            assert quarantined_as_it_came(quarantined, item), item[:200]
        elif kind == "good":
            assert key(record) in activities, record
        else:
            payloads = [item]
            try:
                payloads.append(dump_raw(orjson.loads(item)))
            except orjson.JSONDecodeError:
                pass
            assert key(record) in activities or any(quarantined_as_it_came(quarantined, p) for p in payloads) or \
                passed_over(record), record


# ---------------------------------------------------------------- records pulled from the CRM

@dataclass
class CrmFeed:
    """A kind the CRM connector pulls: its good record, the fields a hostile one replaces, and what a record read
    from it must hold (the values as they came). Read by the connector's own page reading, no server."""

    kind: str
    good: Callable[[int], dict]
    fields: list[str]
    faithful: Callable[[dict, Any], None]


def _sf_id(prefix: str, n: int) -> str:
    return f"{prefix}5e{n:010d}AAA"


def _sf_time(n: int) -> str:
    return (NOW - timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _stamp(value: Any) -> datetime:
    from connectors.crm.salesforce_records import parse_datetime
    return parse_datetime(value)


def _lead_faithful(raw: dict, person) -> None:
    assert (person.crm_id, person.email, person.handoff_key, person.status, person.recycle_reason) == \
        (raw["Id"], raw.get("Email"), raw.get("Handoff_Id__c"), raw.get("Status"), raw.get("Recycle_Reason__c"))
    assert (person.deleted, person.converted, person.master_id) == \
        (bool(raw.get("IsDeleted")), bool(raw.get("IsConverted")), raw.get("MasterRecordId") or None)
    assert person.modified_at == _stamp(raw["SystemModstamp"])


def _task_faithful(raw: dict, activity) -> None:
    from connectors.crm.salesforce_records import task_kind
    assert (activity.crm_id, activity.who_id or None, activity.subject) == \
        (raw["Id"], raw.get("WhoId") or None, raw.get("Subject"))
    assert activity.kind is task_kind(raw.get("TaskSubtype"), raw.get("Type"))
    assert activity.occurred_at == _stamp(raw.get("CompletedDateTime") or raw["CreatedDate"])


def _opportunity_faithful(raw: dict, opportunity) -> None:
    amount = raw.get("Amount")
    assert (opportunity.crm_id, opportunity.stage_name, opportunity.close_date) == \
        (raw["Id"], raw.get("StageName"), raw.get("CloseDate"))
    assert opportunity.amount == (None if amount is None else float(amount))
    assert (opportunity.closed, opportunity.won) == (bool(raw.get("IsClosed")), bool(raw.get("IsWon")))


CRM_FEEDS = [
    CrmFeed("leads",
            lambda n: {"attributes": {"type": "Lead"}, "Id": _sf_id("00Q", n), "Email": f"p{n}@acme.example",
                       "Handoff_Id__c": f"handoff-{n}", "OwnerId": _sf_id("005", 2), "Status": "Working - Contacted",
                       "IsConverted": False, "ConvertedContactId": None, "ConvertedOpportunityId": None,
                       "ConvertedAccountId": None, "IsDeleted": False, "MasterRecordId": None,
                       "LastModifiedById": _sf_id("005", 3), "SystemModstamp": _sf_time(n),
                       "Product_Line__c": "Scoring", "Recycle_Reason__c": None},
            ["Id", "Email", "Handoff_Id__c", "OwnerId", "Status", "IsConverted", "ConvertedContactId", "IsDeleted",
             "MasterRecordId", "SystemModstamp", "Recycle_Reason__c"],
            _lead_faithful),
    CrmFeed("tasks",
            lambda n: {"attributes": {"type": "Task"}, "Id": _sf_id("00T", n), "WhoId": _sf_id("00Q", n),
                       "OwnerId": _sf_id("005", 2), "Subject": "Call", "Type": "Call", "TaskSubtype": "Call",
                       "CreatedDate": _sf_time(n + 1), "CompletedDateTime": _sf_time(n), "IsDeleted": False,
                       "SystemModstamp": _sf_time(n)},
            ["Id", "WhoId", "Subject", "Type", "TaskSubtype", "CreatedDate", "CompletedDateTime", "SystemModstamp"],
            _task_faithful),
    CrmFeed("opportunities",
            lambda n: {"attributes": {"type": "Opportunity"}, "Id": _sf_id("006", n), "AccountId": _sf_id("001", n),
                       "StageName": "Prospecting", "IsClosed": False, "IsWon": False, "Amount": 12000.0,
                       "OwnerId": _sf_id("005", 2), "CloseDate": "2026-12-01", "IsDeleted": False,
                       "SystemModstamp": _sf_time(n)},
            ["Id", "StageName", "IsClosed", "IsWon", "Amount", "CloseDate", "SystemModstamp"],
            _opportunity_faithful),
]


def _crm_stream(kind: str):
    from config.crm import load_crm_config
    from connectors.crm.salesforce_records import streams
    return {s.kind: s for s in streams(load_crm_config(env={"HANDOFF_SALESFORCE_ENABLED": "true"}))}[kind]


@pytest.mark.parametrize("feed", CRM_FEEDS, ids=lambda feed: feed.kind)
def test_each_crm_feed_s_good_records_are_read_as_they_came(feed):
    from connectors.crm.salesforce_records import read_page
    page = [feed.good(n) for n in range(4)]
    taken, refused, newest = read_page(_crm_stream(feed.kind), page)
    assert refused == [] and len(taken) == 4 and newest == _stamp(page[0]["SystemModstamp"])
    for raw, record in zip(page, taken):
        feed.faithful(raw, record)


@pytest.mark.parametrize("feed", CRM_FEEDS, ids=lambda feed: feed.kind)
@FUZZ
@given(data=st.data())
def test_a_pulled_page_of_hostile_crm_records_is_refused_or_read_faithfully_record_by_record(feed, data):
    from connectors.crm.salesforce_records import read_page
    mix = data.draw(record_mix(feed.good, feed.fields))
    # A CRM page is one JSON document: a record no parser takes cannot come in it, a record that is not an object can
    sent = [record if kind != "raw" else record.decode("latin-1") for kind, record in mix]
    page = json.loads(json.dumps({"records": sent}, allow_nan=True))["records"]
    taken, refused, _ = read_page(_crm_stream(feed.kind), page)
    assert len(taken) + len(refused) == len(page)
    taken, refused = iter(taken), iter(refused)
    pending_refusal = next(refused, None)
    for (kind, _), raw in zip(mix, page):
        if pending_refusal is not None and pending_refusal[2] is raw:
            assert kind != "good", pending_refusal[1]
            assert pending_refusal[0] == feed.kind and pending_refusal[1]
            pending_refusal = next(refused, None)
            continue
        assert kind != "raw"
        feed.faithful(raw, next(taken))


# ---------------------------------------------------------------- webhook bodies

WEBHOOK_SECRET = "fuzz-webhook-secret"


def _signed(kind: str, url: str) -> Callable[[bytes], dict[str, str]]:
    """Each tool's signature, by its documented scheme (computed here, not by the code under test)."""
    def sign(body: bytes) -> dict[str, str]:
        if kind == "mautic":
            return {"Webhook-Signature": base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), body,
                                                                   hashlib.sha256).digest()).decode()}
        if kind == "hubspot":
            stamp = str(int(NOW.timestamp() * 1000))
            digest = hmac.new(WEBHOOK_SECRET.encode(), b"POST" + url.encode() + body + stamp.encode(), hashlib.sha256)
            return {"X-HubSpot-Signature-v3": base64.b64encode(digest.digest()).decode(),
                    "X-HubSpot-Request-Timestamp": stamp}
        if kind == "marketo":
            return {"X-Handoff-Webhook-Secret": WEBHOOK_SECRET}
        return {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
    return sign


def webhook_read(kind: str, name: str, body: bytes, headers: dict[str, str] | None = None):
    from connectors.webhooks import webhook_reader

    config = SourceConfig(name=name, kind=kind, base_url=None if kind == "webhook" else "http://127.0.0.1:9",
                          form_types={"Demo Request*": "demo_request"})
    reader = webhook_reader(config, {"webhook_token" if kind == "webhook" else "webhook_secret": WEBHOOK_SECRET})
    url = f"https://handoff.example.com/webhooks/{name}"
    return reader.read("POST", url, _signed(kind, url)(body) if headers is None else headers, body, NOW)


def _ms(value: Any) -> int | None:
    moment = parse_instant(value)
    return None if moment is None else int(moment.timestamp() * 1000)


@dataclass
class Hook:
    """A webhook body of many records: a good record, the fields a hostile one replaces, how records make a body,
    and the key a record is stored by."""

    kind: str
    name: str
    good: Callable[[int], dict]
    fields: list[str]
    body: Callable[[list[bytes]], bytes]
    key: Callable[[dict], tuple[str, str] | None]


def _mautic_key(record: dict) -> tuple[str, str] | None:
    submission = record.get("submission")
    number = submission.get("id") if isinstance(submission, dict) else None
    return ("mautic", f"form.submitted{number}") if number not in (None, "") else None


HOOKS = [
    Hook("mautic", "mautic",
         lambda n: {"submission": {"id": n, "form": {"id": 2, "name": "Demo Request"}, "results": {},
                                   "lead": {"id": 5 + n % 2, "fields": {"core": {"email": {"value": f"p{n}@acme.example"}}}},
                                   "dateSubmitted": (NOW - timedelta(hours=n)).isoformat()},
                    "timestamp": (NOW - timedelta(hours=n)).isoformat()},
         ["submission", "timestamp"],
         lambda items: b'{"mautic.form_on_submit": [' + b",".join(items) + b'], "mautic.lead_post_save_update": []}',
         _mautic_key),
    Hook("hubspot", "hubspot",
         lambda n: {"eventId": n, "subscriptionId": 7, "portalId": 62515, "appId": 54321, "attemptNumber": 0,
                    "subscriptionType": "contact.propertyChange", "propertyName": "recent_conversion_event_name",
                    "propertyValue": "Demo Request", "objectId": 100 + n, "changeSource": "FORM",
                    "occurredAt": int((NOW - timedelta(hours=n)).timestamp() * 1000)},
         ["eventId", "propertyValue", "objectId", "occurredAt", "attemptNumber", "changeSource"],
         lambda items: b"[" + b",".join(items) + b"]",
         lambda r: ("hubspot", f"form-submission-{r.get('objectId')}-{_ms(r.get('occurredAt'))}")),
    Hook("webhook", "inbound", jsonl_good, JSONL_FIELDS, lambda items: b"\n".join(items),
         lambda r: (str(r.get("source") or "inbound"), str(r.get("id")))),
]


@pytest.mark.parametrize("hook", HOOKS, ids=lambda hook: hook.name)
@FUZZ
@given(data=st.data())
def test_a_webhook_body_of_hostile_and_good_records_is_read_record_by_record_and_stored_or_quarantined(engine, hook,
                                                                                                       data):
    reset(engine)
    mix = data.draw(record_mix(hook.good, hook.fields, broken_lines if hook.kind == "webhook" else broken_records))
    items = [dumps(r) if kind != "raw" else r for kind, r in mix]
    delivery = webhook_read(hook.kind, hook.name, hook.body(items))  # a good record in it: never refused
    write_batch(engine, source=hook.name, activities=delivery.activities, people=delivery.people,
                rejections=delivery.rejections, checkpoint=None, now=NOW, raw_cap=CAP)
    assert_each_accounted(engine, mix, items, hook.key, lambda record: _passed_over(hook, record))


def _passed_over(hook: Hook, record: dict) -> bool:
    """A record the reader need not account for: a HubSpot event of another property is no activity."""
    return hook.kind == "hubspot" and record.get("propertyName") != "recent_conversion_event_name"


bodies = st.one_of(
    st.binary(max_size=300),
    anything.map(lambda value: json.dumps(value, allow_nan=True).encode()),
    st.dictionaries(st.sampled_from(["mautic.form_on_submit", "mautic.page_on_hit", "mautic.email_on_open",
                                     "mautic.lead_points_change", "timestamp"]),
                    st.lists(anything, max_size=3) | anything, max_size=3).map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.lists(st.dictionaries(st.sampled_from(["subscriptionType", "propertyName", "propertyValue", "objectId",
                                              "occurredAt", "vid", "properties", "form-submissions"]),
                             anything, max_size=6), max_size=3).map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.lists(st.one_of(broken_lines, anything.map(lambda v: json.dumps(v, allow_nan=True).encode())), max_size=4)
    .map(b"\n".join),
)
header_values = st.one_of(st.none(), texts, st.sampled_from(["Bearer ", "Bearer fuzz-webhook-secret", "0", "1" * 30]))


@pytest.mark.parametrize("kind", ["mautic", "hubspot", "marketo", "webhook"])
@FUZZ
@given(body=bodies, signed=st.booleans(), forged=st.dictionaries(
    st.sampled_from(["Webhook-Signature", "X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp",
                     "X-Handoff-Webhook-Secret", "Authorization"]), header_values, max_size=3))
def test_any_webhook_body_and_headers_are_read_or_refused_and_nothing_else(kind, body, signed, forged):
    from connectors.webhooks import Delivery, Refused

    headers = None if signed else {k: v for k, v in forged.items() if v is not None}
    try:
        delivery = webhook_read(kind, "inbound" if kind == "webhook" else kind, body, headers)
    except Refused as refused:
        assert refused.status in (400, 401, 413) and "\n" not in refused.reason
        assert WEBHOOK_SECRET not in refused.reason
        # unsigned, only the 401 of verification, which comes before any reading (unless the forgery is the secret)
        assert signed or refused.status == 401 or any(v and WEBHOOK_SECRET in v for v in forged.values())
        return
    assert isinstance(delivery, Delivery)
    for record in delivery.rejections:
        assert record.reason and record.raw is not None
