"""Marketo: the stand-in speaks Marketo's REST wire format, and the connector turns it into exactly the world's
activities and people, whatever faults the stand-in throws at it."""

from __future__ import annotations

import base64
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml

from config.sources import SourceConfig
from connectors.http import Backoff, PermanentError, TransientError
from connectors.marketing.marketo import MarketoSource
from domain.activity import ActivityRecord, PersonRecord, Rejection, normalize_email, screen
from sandbox import world as w
from sandbox.faults import RequestFaults
from sandbox.marketo import LEAD_ID_BASE, UNKNOWN_TYPE_ID
from sandbox.world import WorldSpec, generate
from tests.expectations import expected_activity

pytestmark = pytest.mark.slow

FORM_TYPES = yaml.safe_load((Path(__file__).parents[1] / "config" / "sources.yaml").read_text())["form_types"]
FAST = Backoff(base=0.001, cap=0.01)
MAX_PAYLOAD = 100_000
FAULTY = WorldSpec(people=80, activities=900, malformed_rate=0.05, duplicate_rate=0.05, two_tool_share=0.4)


@dataclass
class Fetch:
    activities: list[ActivityRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    people: list[PersonRecord] = field(default_factory=list)
    checkpoints: list[datetime | None] = field(default_factory=list)
    fetched: int = 0

    def by_id(self) -> dict[str, ActivityRecord]:
        return {a.external_id: a for a in self.activities}


class FakeClock:
    def __init__(self, start: float = 1_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def source_for(box, *, secrets=None, sleep=None, timeout=(5.0, 10.0), clock=None, **config) -> MarketoSource:
    cfg = SourceConfig(name="marketo", kind="marketo", base_url=box.url("marketo"), form_types=FORM_TYPES, **config)
    extra = {"clock": clock} if clock else {}
    return MarketoSource(cfg, secrets or box.credentials["marketo"], timeout=timeout, backoff=FAST,
                         sleep=sleep or (lambda _: None), **extra)


def fetch(source: MarketoSource, since: datetime | None = None, now: datetime | None = None,
          until: datetime | None = None) -> Fetch:
    """Everything the connector yields, with the run's payload screen applied as ingest does."""
    out = Fetch()
    try:
        for page in source.pages(since) if until is None else source.pages(since, until):
            out.fetched += page.fetched
            out.people += page.people
            out.rejected += page.rejected
            out.checkpoints.append(page.checkpoint)
            kept, dropped = screen(page.activities, now=now or datetime(2100, 1, 1, tzinfo=timezone.utc),
                                   max_payload_bytes=MAX_PAYLOAD, future_tolerance=timedelta(minutes=5))
            out.activities += kept
            out.rejected += dropped
    finally:
        source.close()
    return out


def state_of(box):
    return box.servers["marketo"].app.state.marketo


def assert_matches_world(world: w.World, got: Fetch, good: list[w.Event]) -> None:
    by_id = got.by_id()
    assert set(by_id) == {str(e.id) for e in good}
    for event in good:
        want, record = expected_activity(world, event), by_id[str(event.id)]
        assert (record.type, record.asset, record.campaign, record.email, record.occurred_at) == (
            want.type, want.asset, want.campaign, want.email, want.occurred_at), event
        assert record.source == "marketo" and record.source_contact_id == str(LEAD_ID_BASE + event.person)


def token_text(token: str) -> str:
    return base64.b32decode(token + "=" * (-len(token) % 8)).decode()


# --- the connector against a clean and a damaged world ---


def test_a_full_fetch_returns_every_good_activity_as_the_world_expects(sandbox_factory):
    box = sandbox_factory(FAULTY, tools=("marketo",))
    got = fetch(source_for(box))
    good, malformed = box.world.expected("marketo")
    assert_matches_world(box.world, got, good)
    assert len(good) > 200


def test_every_malformed_record_is_rejected_with_a_reason_that_names_the_damage(sandbox_factory):
    box = sandbox_factory(FAULTY, tools=("marketo",))
    got = fetch(source_for(box))
    _, malformed = box.world.expected("marketo")
    assert {e.fault for e in malformed} == set(w.MALFORMED)
    reasons = {r.external_id: r.reason for r in got.rejected}
    assert set(reasons) == {str(e.id) for e in malformed}
    expected_words = {
        "unknown_type": f"unknown activity type 'activityTypeId {UNKNOWN_TYPE_ID}, not in types.json'",
        "no_identity": "missing identity",
        "bad_time": "unparseable occurred_at '0000-00-00T00:00:00Z'",
        "oversized": "oversized payload",
    }
    for event in malformed:
        assert expected_words[event.fault] in reasons[str(event.id)], event
    assert all(r.raw.startswith("{") and r.source == "marketo" for r in got.rejected)


def test_people_come_once_per_run_with_their_firmographics(sandbox_factory):
    box = sandbox_factory(FAULTY, tools=("marketo",))
    got = fetch(source_for(box))
    counts = Counter(p.source_contact_id for p in got.people)
    assert counts and max(counts.values()) == 1
    seen = {e.person for e in box.world.expected("marketo")[0]}
    assert {int(c) - LEAD_ID_BASE for c in counts} >= seen
    for record in got.people:
        person = box.world.people[int(record.source_contact_id) - LEAD_ID_BASE]
        assert record.email == normalize_email(person.email)
        assert record.fields() == {
            "first_name": person.first_name, "last_name": person.last_name, "company": person.company,
            "title": person.title, "industry": person.industry, "company_size": person.company_size,
            "country": person.country, "product_interest": person.product_interest,
            "lead_source_channel": person.channel,
        }
        assert isinstance(record.company_size, int)


def test_the_second_tools_capitalized_email_normalizes_to_the_same_address(sandbox_factory):
    box = sandbox_factory(FAULTY, tools=("marketo",))
    second = [p for p in box.world.tool_people("marketo") if p.tools[1:] == ("marketo",)]
    events = [e for e in box.world.expected("marketo")[0] if e.person in {p.index for p in second}]
    assert events, "the world should have shared people whose second tool is Marketo"
    stored = box.world.email_in(box.world.people[events[0].person], "marketo")
    assert stored != stored.lower()
    got = fetch(source_for(box)).by_id()
    for event in events:
        assert got[str(event.id)].email == box.world.people[event.person].email.lower()


def test_since_makes_the_fetch_incremental(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=60, activities=700), tools=("marketo",))
    good, _ = box.world.expected("marketo")
    since = good[len(good) // 2].occurred_at
    got = fetch(source_for(box), since=since)
    later = [e for e in good if e.occurred_at >= since]
    assert_matches_world(box.world, got, later)
    asked = [p for path, p in state_of(box).requests if path.endswith("pagingtoken.json")]
    assert asked[-1]["sinceDatetime"] == since.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_time_windows_cut_the_feed_exactly_where_the_next_window_s_paging_token_starts(sandbox_factory):
    box = sandbox_factory(FAULTY, tools=("marketo",))
    whole = fetch(source_for(box, page_size=70))
    times = sorted(a.occurred_at for a in whole.activities)
    cut = times[len(times) // 2].replace(microsecond=0) + timedelta(seconds=1)
    early = fetch(source_for(box, page_size=70), until=cut)
    late = fetch(source_for(box, page_size=70), since=cut)

    assert early.activities and late.activities
    assert set(early.by_id()) | set(late.by_id()) == set(whole.by_id())
    assert not set(early.by_id()) & set(late.by_id())
    assert max(a.occurred_at for a in early.activities) < cut <= min(a.occurred_at for a in late.activities)
    assert max(c for c in early.checkpoints if c) < cut
    # A damaged record is rejected in one window or the other (both, at most, right at the cut); none is lost.
    assert {r.raw for r in early.rejected} | {r.raw for r in late.rejected} == {r.raw for r in whole.rejected}


def test_the_first_activity_time_is_where_the_feed_s_data_begins(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=60, activities=700), tools=("marketo",))
    first = min(e.occurred_at for e in box.world.events if e.tool == "marketo").replace(microsecond=0)
    assert source_for(box).first_activity_at(None) == first
    assert source_for(box).first_activity_at(first + timedelta(seconds=1)) > first
    assert source_for(box).first_activity_at(box.world.now + timedelta(days=1)) is None


def test_pages_carry_a_checkpoint_that_never_goes_back_and_ends_at_the_newest_activity(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=60, activities=700), tools=("marketo",))
    got = fetch(source_for(box, page_size=40))
    assert len(got.checkpoints) > 5 and None not in got.checkpoints
    assert got.checkpoints == sorted(got.checkpoints)
    assert got.checkpoints[-1] == max(a.occurred_at for a in got.activities)


def test_late_arrivals_appear_once_the_clock_passes_them_when_fetching_since_before_them(sandbox_factory):
    world = generate(WorldSpec(people=60, activities=800, weeks=1, late_rate=0.3, late_by_hours=6))
    delayed = [e for e in world.events if e.tool == "marketo" and e.available_ts > e.ts]
    world.clock = delayed[len(delayed) // 2].ts + 60  # mid-history: that activity happened but has not arrived
    box = sandbox_factory(world=world, tools=("marketo",))
    since = world.now - timedelta(days=3)
    late = [e for e in world.events if e.tool == "marketo" and e.ts <= world.clock < e.available_ts]
    assert late
    first = fetch(source_for(box), since=since)
    assert not {str(e.id) for e in late} & set(first.by_id())
    world.advance(7)
    second = fetch(source_for(box), since=since)
    assert {str(e.id) for e in late} <= set(second.by_id())
    assert_matches_world(world, second, [e for e in world.expected("marketo")[0] if e.occurred_at >= since])


def test_duplicates_are_served_again_and_yield_the_same_content(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=60, activities=700, duplicate_rate=0.2), tools=("marketo",))
    got = fetch(source_for(box, page_size=40))
    duplicated = [e for e in box.world.expected("marketo")[0] if e.fault == w.DUPLICATE]
    seen = Counter(a.external_id for a in got.activities)
    assert duplicated and all(seen[str(e.id)] == 2 for e in duplicated)
    assert got.fetched == len(got.activities) + len(got.rejected)
    first: dict[str, ActivityRecord] = {}
    for record in got.activities:
        assert first.setdefault(record.external_id, record) == record
    assert_matches_world(box.world, got, box.world.expected("marketo")[0])


# --- request faults: each one fires, and the result is still complete and correct ---


@pytest.mark.parametrize(
    "switch, faults",
    [
        ("rate_limit", RequestFaults(rate_limit_every=3)),
        ("server_error", RequestFaults(server_error_every=3)),
        ("expire_token", RequestFaults(expire_token_every=4)),
        ("empty_page", RequestFaults(empty_page_every=2)),
    ],
)
def test_request_faults_are_survived_and_the_result_is_complete(sandbox_factory, switch, faults):
    box = sandbox_factory(FAULTY, tools=("marketo",), faults={"marketo": faults})
    sleeps: list[float] = []
    got = fetch(source_for(box, sleep=sleeps.append, page_size=60))
    assert faults.fired(switch) > 0
    assert_matches_world(box.world, got, box.world.expected("marketo")[0])
    errors = state_of(box).errors
    if switch == "rate_limit":
        assert errors["606"] == faults.fired("rate_limit") and 20.0 in sleeps  # waits out Marketo's 20 s window
    if switch == "server_error":
        assert errors["502"] > 0 and errors["611"] > 0
    if switch == "expire_token":
        assert errors["602"] > 0 and state_of(box).identity_calls > 1


def test_a_slow_instance_is_waited_for(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=30, activities=300), tools=("marketo",), faults={"marketo": RequestFaults(slow_ms=5)})
    got = fetch(source_for(box))
    assert_matches_world(box.world, got, box.world.expected("marketo")[0])


def test_a_response_slower_than_the_read_timeout_is_retried_then_reported_as_transient(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=30, activities=300), tools=("marketo",), faults={"marketo": RequestFaults(slow_ms=400)})
    with pytest.raises(TransientError, match="Timeout.*gave up after"):
        fetch(source_for(box, timeout=(5.0, 0.05)))


def test_a_token_is_renewed_before_it_expires(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=60, activities=700), tools=("marketo",))
    clock = FakeClock()
    state_of(box).clock = clock
    source = source_for(box, clock=clock, page_size=50, options={"pages_ahead": 0})  # in lockstep with the clock
    pages = source.pages(None)
    next(pages)
    first = set(state_of(box).tokens)
    clock.now += 3600 - 30  # inside the renewal margin: the connector asks Identity before its next call
    next(pages)
    assert state_of(box).identity_calls == 2 and set(state_of(box).tokens) == first  # the same token, 30 s left
    clock.now += 31  # that token has lapsed: the connector gets a new one before calling, not after a 602
    assert list(pages)
    source.close()
    assert state_of(box).identity_calls == 3 and set(state_of(box).tokens).isdisjoint(first)
    assert "602" not in state_of(box).errors


def test_an_expired_token_is_renewed_on_602(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=60, activities=700), tools=("marketo",))
    state = state_of(box)
    state.clock = FakeClock()
    # its own clock never moves, so only the 602 tells it; one thread, so exactly one request meets it
    source = source_for(box, page_size=50, options={"pages_ahead": 0})
    pages = source.pages(None)
    next(pages)
    state.clock.now += 3601
    assert list(pages)
    source.close()
    assert state.errors["602"] == 1 and state.identity_calls == 2


def test_concurrent_access_limit_615_is_retried(sandbox_factory):
    box = sandbox_factory(FAULTY, tools=("marketo",))
    state_of(box).concurrent_limit_every = 3
    got = fetch(source_for(box, page_size=60))
    assert state_of(box).errors["615"] > 0
    assert_matches_world(box.world, got, box.world.expected("marketo")[0])


def test_daily_quota_607_ends_the_run_with_a_permanent_error_and_no_retries(sandbox_factory):
    box = sandbox_factory(FAULTY, tools=("marketo",))
    state_of(box).daily_quota = 4
    with pytest.raises(PermanentError, match="607") as raised:
        fetch(source_for(box, page_size=60, options={"pages_ahead": 0}))
    assert state_of(box).errors == {"607": 1}
    assert box.credentials["marketo"]["client_secret"] not in str(raised.value)


def test_wrong_credentials_raise_a_permanent_error_that_names_no_credential(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=10, activities=50), tools=("marketo",))
    real = box.credentials["marketo"]
    wrong = {"client_id": real["client_id"], "client_secret": "not-the-secret-" + real["client_secret"][:6]}
    with pytest.raises(PermanentError) as raised:
        fetch(source_for(box, secrets=wrong))
    message = f"{raised.value} {raised.value!r}"
    assert "401" in message and "refused" in message
    for secret in (*real.values(), *wrong.values()):
        assert secret not in message
    assert state_of(box).identity_calls == 1


def test_missing_credentials_are_a_permanent_error_before_any_call(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=10, activities=50), tools=("marketo",))
    with pytest.raises(PermanentError, match="client_secret"):
        source_for(box, secrets={"client_id": "x"})


def test_type_ids_are_read_from_types_json_and_leads_are_fetched_in_batches(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=400, activities=2500), tools=("marketo",))
    fetch(source_for(box))
    requests_made = state_of(box).requests
    types = requests.get(f"{box.url('marketo')}/rest/v1/activities/types.json", headers=auth(box)).json()["result"]
    wanted = {"Visit Webpage", "Fill Out Form", "Email Bounced", "Unsubscribe Email", "Open Email", "Click Email",
              "Change Status in Progression"}
    ids = sorted(t["id"] for t in types if t["name"] in wanted)
    feed = [p for path, p in requests_made if path == "/rest/v1/activities.json"]
    assert {p["activityTypeIds"] for p in feed} == {",".join(map(str, ids))}
    lookups = [p["filterValues"].split(",") for path, p in requests_made if path == "/rest/v1/leads.json"]
    looked_up = [i for chunk in lookups for i in chunk]
    assert all(len(chunk) <= 300 for chunk in lookups) and len(looked_up) == len(set(looked_up))
    assert len(lookups) <= len(feed)
    assert sum(1 for path, _ in requests_made if path.endswith("describe.json")) == 1


# --- the stand-in's wire format, over HTTP ---


def auth(box) -> dict[str, str]:
    creds = box.credentials["marketo"]
    token = requests.get(f"{box.url('marketo')}/identity/oauth/token",
                         params={"grant_type": "client_credentials", **creds}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_identity_issues_a_bearer_token_and_hands_back_the_same_one_until_it_lapses(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=10, activities=50), tools=("marketo",))
    state_of(box).clock = clock = FakeClock()
    url, creds = f"{box.url('marketo')}/identity/oauth/token", box.credentials["marketo"]
    first = requests.get(url, params={"grant_type": "client_credentials", **creds})
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600 and re.fullmatch(r"[0-9a-f-]{36}:\w+", body["access_token"])
    clock.now += 100
    again = requests.post(url, data={"grant_type": "client_credentials", **creds}).json()
    assert again["access_token"] == body["access_token"] and again["expires_in"] == 3500
    clock.now += 3600
    assert requests.get(url, params={"grant_type": "client_credentials", **creds}).json()["access_token"] != body["access_token"]
    refused = requests.get(url, params={"grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": "x"})
    assert refused.status_code == 401 and refused.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}


def test_rest_calls_answer_601_602_and_606_inside_http_200_envelopes(sandbox_factory):
    faults = RequestFaults()
    box = sandbox_factory(WorldSpec(people=10, activities=50), tools=("marketo",), faults={"marketo": faults})
    url = f"{box.url('marketo')}/rest/v1/activities/types.json"
    state_of(box).clock = clock = FakeClock()
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        answer = requests.get(url, headers=headers)
        assert answer.status_code == 200
        assert answer.json()["success"] is False and answer.json()["errors"] == [{"code": "601", "message": "Access token invalid"}]
        assert re.fullmatch(r"[0-9a-f]+#[0-9a-f]+", answer.json()["requestId"])
    headers = auth(box)
    token = headers["Authorization"][7:]
    assert requests.get(url, params={"access_token": token}).json()["success"] is True  # the deprecated query parameter
    faults.update(rate_limit_every=1)
    assert requests.get(url, headers=headers).json()["errors"] == [
        {"code": "606", "message": "Max rate limit '100' exceeded with in '20' secs"}]
    faults.update(rate_limit_every=0)
    clock.now += 3600
    assert requests.get(url, headers=headers).json()["errors"] == [{"code": "602", "message": "Access token expired"}]
    assert requests.get(f"{box.url('marketo')}/rest/v1/nothing.json", headers=auth(box)).json()["errors"][0]["code"] == "610"


def test_paging_tokens_are_base32_datetimes_and_pages_come_oldest_first_in_marketo_shape(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=60, activities=700), tools=("marketo",))
    base, headers = box.url("marketo"), auth(box)
    made = requests.get(f"{base}/rest/v1/activities/pagingtoken.json", params={"sinceDatetime": "2026-09-01T02:00:00-05:00"},
                        headers=headers).json()
    assert made["success"] is True and token_text(made["nextPageToken"]) == "2026-09-01T07:00:00.000+0000,0"
    assert requests.get(f"{base}/rest/v1/activities/pagingtoken.json", headers=headers).json()["errors"] == [
        {"code": "701", "message": "sinceDatetime cannot be blank"}]
    assert requests.get(f"{base}/rest/v1/activities/pagingtoken.json", params={"sinceDatetime": "yesterday"},
                        headers=headers).json()["errors"][0]["code"] == "704"
    start = requests.get(f"{base}/rest/v1/activities/pagingtoken.json", params={"sinceDatetime": "2020-01-01"},
                         headers=headers).json()["nextPageToken"]
    page = requests.get(f"{base}/rest/v1/activities.json", headers=headers,
                        params={"nextPageToken": start, "activityTypeIds": "1,2,8,9,10,11,104", "batchSize": 25}).json()
    assert list(page) == ["requestId", "result", "success", "nextPageToken", "moreResult"]
    assert len(page["result"]) == 25 and page["moreResult"] is True
    dates = [r["activityDate"] for r in page["result"]]
    assert dates == sorted(dates) and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d) for d in dates)
    for record in page["result"]:
        assert {"id", "marketoGUID", "leadId", "activityDate", "activityTypeId", "primaryAttributeValueId",
                "primaryAttributeValue", "attributes"} <= set(record)
        assert record["marketoGUID"] == str(record["id"])
        assert all(set(a) == {"name", "value"} for a in record["attributes"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000,\d+(,[\d;]+)?", token_text(page["nextPageToken"]))


def test_native_records_name_pages_forms_emails_and_program_statuses_as_marketo_does(sandbox_factory):
    box = sandbox_factory(FAULTY, tools=("marketo",))
    base, headers = box.url("marketo"), auth(box)
    token = requests.get(f"{base}/rest/v1/activities/pagingtoken.json", params={"sinceDatetime": "2020-01-01T00:00:00Z"},
                         headers=headers).json()["nextPageToken"]
    records, more = [], True
    while more:
        page = requests.get(f"{base}/rest/v1/activities.json", headers=headers,
                            params=[("nextPageToken", token), ("activityTypeIds", "1"), ("activityTypeIds", "2,8,9"),
                                    ("activityTypeIds", "10,11,104")]).json()
        records += page.get("result", [])
        token, more = page["nextPageToken"], page["moreResult"]
    events = {e.id: e for e in box.world.events}
    by_type: dict[int, list] = {}
    for record in records:
        by_type.setdefault(record["activityTypeId"], []).append(record)
    visit = by_type[1][0]
    attributes = {a["name"]: a["value"] for a in visit["attributes"]}
    assert visit["primaryAttributeValue"] == "www.handoff-demo.example" + events[visit["id"]].asset == (
        "www.handoff-demo.example" + attributes["Webpage URL"])
    for record in by_type[10] + by_type[11]:
        event = events[record["id"]]
        assert record["primaryAttributeValue"] == f"{event.campaign}.{event.asset}" and isinstance(record["campaignId"], int)
    forms = {r["primaryAttributeValue"] for r in by_type[2]}
    assert "Newsletter Signup" in forms and any(f.startswith("Whitepaper - ") for f in forms)
    attended = by_type[104][0]
    assert {a["name"]: a["value"] for a in attended["attributes"]}["New Status"] == "Attended"
    assert attended["primaryAttributeValue"] == events[attended["id"]].asset
    assert UNKNOWN_TYPE_ID in by_type


def test_a_type_filter_gives_sparse_and_empty_pages_that_still_say_more_results(sandbox_factory):
    faults = RequestFaults()
    box = sandbox_factory(WorldSpec(people=60, activities=700), tools=("marketo",), faults={"marketo": faults})
    base, headers = box.url("marketo"), auth(box)
    token = requests.get(f"{base}/rest/v1/activities/pagingtoken.json", params={"sinceDatetime": "2020-01-01T00:00:00Z"},
                         headers=headers).json()["nextPageToken"]
    pages, more = [], True
    while more:
        page = requests.get(f"{base}/rest/v1/activities.json", headers=headers,
                            params={"nextPageToken": token, "activityTypeIds": "104", "batchSize": 20}).json()
        pages.append(page)
        token, more = page["nextPageToken"], page["moreResult"]
    assert any("result" not in p and p["moreResult"] for p in pages)
    assert all(r["activityTypeId"] == 104 for p in pages for r in p.get("result", []))
    faults.update(empty_page_every=1)
    empty = requests.get(f"{base}/rest/v1/activities.json", headers=headers,
                         params={"nextPageToken": token, "activityTypeIds": "1"}).json()
    assert "result" not in empty and empty["moreResult"] is True and empty["nextPageToken"] == token
    too_many = requests.get(f"{base}/rest/v1/activities.json", headers=headers,
                            params={"nextPageToken": token, "activityTypeIds": ",".join(map(str, range(1, 12)))}).json()
    assert too_many["success"] is False
    assert requests.get(f"{base}/rest/v1/activities.json", headers=headers,
                        params={"nextPageToken": token}).json()["errors"][0]["message"] == "activityTypeIds cannot be blank"


def test_leads_are_looked_up_by_id_with_chosen_fields_up_to_300_at_a_time(sandbox_factory):
    box = sandbox_factory(WorldSpec(people=40, activities=200, two_tool_share=0.5), tools=("marketo",))
    base, headers = box.url("marketo"), auth(box)
    people = box.world.tool_people("marketo")
    ids = [LEAD_ID_BASE + p.index for p in people[:3]] + [7]
    answer = requests.get(f"{base}/rest/v1/leads.json", headers=headers, params={
        "filterType": "id", "filterValues": ",".join(map(str, ids)), "fields": "email,company,numberOfEmployees,productInterest"}).json()
    assert answer["success"] is True and [r["id"] for r in answer["result"]] == sorted(ids[:3])
    first = answer["result"][0]
    assert first == {"id": ids[0], "email": box.world.email_in(people[0], "marketo"), "company": people[0].company,
                     "numberOfEmployees": people[0].company_size, "productInterest": people[0].product_interest}
    default = requests.get(f"{base}/rest/v1/leads.json", headers=headers, params={"filterType": "id", "filterValues": str(ids[0])})
    assert set(default.json()["result"][0]) == {"id", "email", "updatedAt", "createdAt", "firstName", "lastName"}
    posted = requests.post(f"{base}/rest/v1/leads.json?_method=GET", headers=headers,
                           data={"filterType": "id", "filterValues": str(ids[1]), "fields": "email"}).json()
    assert posted["result"] == [{"id": ids[1], "email": box.world.email_in(people[1], "marketo")}]
    too_many = ",".join(str(LEAD_ID_BASE + i) for i in range(301))
    assert requests.get(f"{base}/rest/v1/leads.json", headers=headers,
                        params={"filterType": "id", "filterValues": too_many}).json()["success"] is False
    unknown = requests.get(f"{base}/rest/v1/leads.json", headers=headers,
                           params={"filterType": "id", "filterValues": str(ids[0]), "fields": "shoeSize"}).json()
    assert unknown["errors"] == [{"code": "1006", "message": "Field 'shoeSize' not found"}]
    described = requests.get(f"{base}/rest/v1/leads/describe.json", headers=headers).json()["result"]
    names = {f["rest"]["name"] for f in described}
    assert {"email", "firstName", "numberOfEmployees", "leadSource", "productInterest"} <= names
    assert all({"id", "displayName", "dataType", "rest"} <= set(f) for f in described)
