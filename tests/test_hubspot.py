"""HubSpot: the stand-in speaks HubSpot's wire formats and the connector turns them into the expected activities."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from config.loading import read_yaml
from config.sources import SourceConfig
from config.sources import load_sources
from connectors.http import Backoff, PermanentError
from connectors.marketing import build_source
from connectors.marketing.hubspot import HubSpotSource
from domain.activity import ActivityType, normalize_email, screen
from sandbox import hubspot as standin
from sandbox.faults import RequestFaults
from sandbox.world import MALFORMED, WorldSpec
from tests.expectations import expected_activity

FORM_TYPES = read_yaml(Path(__file__).resolve().parents[1] / "config" / "sources.yaml")["form_types"]
FAULTY = WorldSpec(people=80, activities=900, malformed_rate=0.08, duplicate_rate=0.05)
SMALL = WorldSpec(people=40, activities=300)
REASONS = {
    "unknown_type": "unknown activity type",
    "no_identity": "missing identity",
    "bad_time": "unparseable occurred_at",
    "oversized": "oversized payload",
}


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def start(sandbox_factory, spec: WorldSpec = SMALL, **faults):
    return sandbox_factory(spec, tools=("hubspot",), faults={"hubspot": RequestFaults(**faults)})


def connector(box, *, page_size: int = 40, secrets: dict | None = None, sleep=None, **options) -> HubSpotSource:
    config = SourceConfig(name="hubspot", kind="hubspot", base_url=box.url("hubspot"), page_size=page_size,
                          form_types=FORM_TYPES, options=options)
    creds = box.credentials["hubspot"]
    secrets = secrets if secrets is not None else {k: creds[k] for k in ("access_token", "client_id", "client_secret", "refresh_token")}
    return HubSpotSource(config, secrets, backoff=Backoff(base=0.001, cap=0.01), sleep=sleep if sleep is not None else Sleeps())


def fetch(source: HubSpotSource, since: datetime | None = None):
    try:
        return list(source.pages(since))
    finally:
        source.close()


def activities(pages):
    return [a for page in pages for a in page.activities]


def by_id(pages) -> dict:
    seen = {}
    for record in activities(pages):
        assert seen.setdefault(record.external_id, record) == record, "one id, two contents"
    return seen


def hub(box) -> standin.HubSpot:
    return box.servers["hubspot"].app.state.hubspot


def api(box, path: str, *, method: str = "GET", token: str | None = None, **kwargs) -> requests.Response:
    token = token or box.credentials["hubspot"]["private_app_token"]
    return requests.request(method, box.url("hubspot") + path, headers={"Authorization": f"Bearer {token}"},
                            timeout=10, **kwargs)


# --- what a fetch returns ---------------------------------------------------------------------------------------

def test_full_fetch_returns_every_good_event_as_its_expected_activity(sandbox_factory):
    box = start(sandbox_factory, FAULTY)
    pages = fetch(connector(box))
    accepted, oversized = screen(activities(pages), now=box.world.now, max_payload_bytes=100_000,
                                 future_tolerance=timedelta(minutes=5))
    good, bad = box.world.expected("hubspot")
    found = {a.external_id: a for a in accepted}
    assert set(found) == {standin.native_id(e) for e in good}
    for event in good:
        record, want = found[standin.native_id(event)], expected_activity(box.world, event)
        assert (record.type, record.asset, record.campaign, record.email, record.occurred_at) == (
            want.type, want.asset, want.campaign, want.email, want.occurred_at), event
        assert record.source_contact_id == standin.contact_id(box.world.people[event.person])
    assert {r.external_id for r in oversized} == {standin.native_id(e) for e in bad if e.fault == "oversized"}


def test_every_malformed_record_is_rejected_with_a_clear_reason(sandbox_factory):
    box = start(sandbox_factory, FAULTY)
    pages = fetch(connector(box))
    _, oversized = screen(activities(pages), now=box.world.now, max_payload_bytes=100_000,
                          future_tolerance=timedelta(minutes=5))
    rejected = {r.external_id: r.reason for r in [*oversized, *(r for p in pages for r in p.rejected)]}
    _, bad = box.world.expected("hubspot")
    assert {e.fault for e in bad} == set(MALFORMED), "the world should damage every kind here"
    for event in bad:
        assert REASONS[event.fault] in rejected[standin.native_id(event)], event.fault
    assert len(rejected) == len(bad)


def test_each_kind_of_world_event_arrives_through_its_hubspot_feed(sandbox_factory):
    box = start(sandbox_factory, FAULTY)
    found = by_id(fetch(connector(box)))
    kinds = Counter(found[standin.native_id(e)].type for e in box.world.expected("hubspot")[0])
    assert {ActivityType.EMAIL_OPEN, ActivityType.EMAIL_CLICK, ActivityType.PAGE_VIEW, ActivityType.NEWSLETTER_SIGNUP,
            ActivityType.WHITEPAPER_DOWNLOAD, ActivityType.WEBINAR_REGISTRATION} <= set(kinds)
    asked = hub(box).stats.requests
    assert asked["/email/public/v1/events"] >= 1 and asked["/events/v3/events"] >= 3
    assert "/crm/v3/objects/contacts" not in asked, "contacts are looked up in batches, never listed"


def test_people_come_once_each_with_their_firmographics(sandbox_factory):
    box = start(sandbox_factory, FAULTY)
    pages = fetch(connector(box))
    people = [p for page in pages for p in page.people]
    assert len(people) == len({p.source_contact_id for p in people})
    world = box.world
    active = {world.people[e.person] for e in world.expected("hubspot")[0]}
    got = {p.source_contact_id: p for p in people}
    for person in active:
        record = got[standin.contact_id(person)]
        assert record.email == normalize_email(person.email)
        assert (record.first_name, record.last_name, record.company, record.title, record.industry) == (
            person.first_name, person.last_name, person.company, person.title, person.industry)
        assert record.company_size == person.company_size and isinstance(record.company_size, int)
        assert (record.country, record.product_interest, record.lead_source_channel) == (
            person.country, person.product_interest, person.channel)


def test_the_sources_file_with_the_sandbox_env_builds_a_working_hubspot_source(sandbox_factory):
    box = start(sandbox_factory)
    sources = load_sources(Path(__file__).resolve().parents[1] / "config" / "sources.yaml", env=box.env)
    config = next(s for s in sources if s.kind == "hubspot")
    secrets = {key: value.get_secret_value() for key, value in config.credentials.items()}
    source = build_source(config, secrets, backoff=Backoff(base=0.001, cap=0.01))
    found = by_id(fetch(source))
    assert set(found) == {standin.native_id(e) for e in box.world.expected("hubspot")[0]}
    assert hub(box).stats.tokens_issued == 1  # the sandbox hands out OAuth refresh credentials


def test_a_second_tools_capitalized_address_normalizes_to_the_same_email(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=80, activities=800, two_tool_share=0.6))
    world = box.world
    shared = [e for e in world.expected("hubspot")[0] if world.people[e.person].tools[1:] == ("hubspot",)]
    assert shared, "the world should have people whose second tool is HubSpot"
    found = by_id(fetch(connector(box)))
    for event in shared:
        person = world.people[event.person]
        assert world.email_in(person, "hubspot") != person.email
        assert found[standin.native_id(event)].email == person.email.lower()


# --- incremental runs and checkpoints ------------------------------------------------------------------------

def test_since_makes_the_fetch_incremental_and_reads_only_the_contacts_it_needs(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=200, activities=2000))
    good, _ = box.world.expected("hubspot")
    since = box.world.now - timedelta(days=1)
    found = by_id(fetch(connector(box), since))
    assert set(found) == {standin.native_id(e) for e in good if e.occurred_at >= since}
    newer_people = {e.person for e in good if e.occurred_at >= since}
    assert 0 < len(found) < len(good) / 3
    assert hub(box).stats.contacts_read == len(newer_people) < len(hub(box).people)


def test_only_the_last_page_carries_a_checkpoint_the_newest_activity_time(sandbox_factory):
    box = start(sandbox_factory)
    pages = fetch(connector(box, page_size=20))
    assert len(pages) > 3
    assert all(page.checkpoint is None for page in pages[:-1])
    assert pages[-1].checkpoint == max(a.occurred_at for a in activities(pages))


def test_an_incremental_run_with_nothing_new_sets_no_checkpoint(sandbox_factory):
    box = start(sandbox_factory)
    pages = fetch(connector(box), box.world.now + timedelta(hours=1))
    assert activities(pages) == [] and pages[-1].checkpoint is None


def test_late_arrivals_appear_once_the_clock_passes_them(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=60, activities=600, weeks=1, late_rate=0.3, late_by_hours=6))
    world = box.world
    since = world.now - timedelta(hours=24)
    late = {standin.native_id(e) for e in world.events
            if e.tool == "hubspot" and e.available_ts > world.clock and not e.malformed}
    assert late, "the world should hold late events"
    first = by_id(fetch(connector(box), since))
    assert not late & set(first)
    world.advance(7)
    second = by_id(fetch(connector(box), since))
    assert late <= set(second) and set(first) <= set(second)


def test_duplicates_are_served_twice_and_keep_one_id_and_one_content(sandbox_factory):
    box = start(sandbox_factory, WorldSpec(people=60, activities=600, duplicate_rate=0.2))
    pages = fetch(connector(box, page_size=15))
    counts = Counter(a.external_id for a in activities(pages))
    doubled = {standin.native_id(e) for e in box.world.expected("hubspot")[0] if e.fault == "duplicate"}
    assert doubled and all(counts[i] == 2 for i in doubled)
    assert all(n == 1 for i, n in counts.items() if i not in doubled)
    by_id(pages)  # the repeats are identical
    assert sum(p.fetched for p in pages) == sum(counts.values())


# --- request faults -------------------------------------------------------------------------------------------

def test_429_with_hubspot_rate_limit_headers_is_waited_out_and_the_fetch_completes(sandbox_factory):
    box = start(sandbox_factory, rate_limit_every=3)
    sleeps = Sleeps()
    found = by_id(fetch(connector(box, page_size=20, sleep=sleeps)))
    assert box.faults["hubspot"].fired("rate_limit") > 0
    assert sleeps.count(10.0) >= box.faults["hubspot"].fired("rate_limit")  # X-HubSpot-RateLimit-Interval-Milliseconds
    assert set(found) == {standin.native_id(e) for e in box.world.expected("hubspot")[0]}


def test_server_errors_are_retried_and_the_fetch_completes(sandbox_factory):
    box = start(sandbox_factory, server_error_every=4)
    found = by_id(fetch(connector(box, page_size=20)))
    assert box.faults["hubspot"].fired("server_error") > 0
    assert set(found) == {standin.native_id(e) for e in box.world.expected("hubspot")[0]}


def test_slow_responses_still_complete(sandbox_factory):
    box = start(sandbox_factory, slow_ms=30)
    found = by_id(fetch(connector(box, page_size=100)))
    assert set(found) == {standin.native_id(e) for e in box.world.expected("hubspot")[0]}


def test_empty_pages_with_a_cursor_are_followed(sandbox_factory):
    box = start(sandbox_factory, empty_page_every=3)
    found = by_id(fetch(connector(box, page_size=20)))
    assert box.faults["hubspot"].fired("empty_page") > 0
    assert set(found) == {standin.native_id(e) for e in box.world.expected("hubspot")[0]}


def test_an_expired_token_is_refreshed_and_the_request_repeated(sandbox_factory):
    box = start(sandbox_factory, expire_token_every=4)
    found = by_id(fetch(connector(box, page_size=20)))
    assert box.faults["hubspot"].fired("expire_token") > 0
    assert hub(box).stats.tokens_issued == 1 + box.faults["hubspot"].fired("expire_token")
    assert set(found) == {standin.native_id(e) for e in box.world.expected("hubspot")[0]}


def test_a_token_past_its_lifetime_is_refused_as_expired_and_renewed(sandbox_factory, monkeypatch):
    box = start(sandbox_factory, token_ttl_seconds=600)
    offset = [0.0]
    monkeypatch.setattr(standin, "_clock", lambda: 1_000_000.0 + offset[0])
    pages = []
    for page in connector(box, page_size=20).pages(None):
        pages.append(page)
        offset[0] += 700  # the stand-in's clock passes the token's expires_in between pages
    assert hub(box).stats.tokens_issued > 2
    assert set(by_id(pages)) == {standin.native_id(e) for e in box.world.expected("hubspot")[0]}


def test_the_connector_pauses_by_itself_when_the_burst_budget_reaches_zero(sandbox_factory):
    box = start(sandbox_factory)
    hub(box).limits.burst = 3
    sleeps = Sleeps()
    fetch(connector(box, page_size=50, sleep=sleeps))
    assert sleeps and set(sleeps) == {10.0}
    assert box.faults["hubspot"].fired("rate_limit") == 0


# --- permanent failures -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrong", ["refresh_token", "client_secret", "client_id"])
def test_wrong_oauth_credentials_are_permanent_and_never_quoted(sandbox_factory, wrong):
    box = start(sandbox_factory)
    creds = box.credentials["hubspot"]
    secrets = {k: creds[k] for k in ("client_id", "client_secret", "refresh_token")}
    secrets[wrong] = "wrong-" + secrets[wrong]
    with pytest.raises(PermanentError) as raised:
        fetch(connector(box, secrets=secrets))
    message = str(raised.value)
    assert "400" in message and all(value not in message for value in [*secrets.values(), *creds.values()] if value)


def test_a_wrong_private_app_token_is_permanent_and_never_quoted(sandbox_factory):
    box = start(sandbox_factory)
    with pytest.raises(PermanentError) as raised:
        fetch(connector(box, secrets={"access_token": "pat-na1-not-valid"}))
    assert "INVALID_AUTHENTICATION" in str(raised.value) and "pat-na1" not in str(raised.value)


def test_a_private_app_token_needs_no_oauth(sandbox_factory):
    box = start(sandbox_factory)
    found = by_id(fetch(connector(box, secrets={"access_token": box.credentials["hubspot"]["private_app_token"]})))
    assert hub(box).stats.tokens_issued == 0
    assert set(found) == {standin.native_id(e) for e in box.world.expected("hubspot")[0]}


def test_an_exhausted_daily_limit_is_permanent(sandbox_factory):
    box = start(sandbox_factory)
    hub(box).limits.daily = 4
    with pytest.raises(PermanentError, match="daily"):
        fetch(connector(box, page_size=20))


def test_no_credentials_is_permanent(sandbox_factory):
    box = start(sandbox_factory)
    with pytest.raises(PermanentError, match="no credentials"):
        fetch(connector(box, secrets={"access_token": "", "client_id": "x"}))


# --- the stand-in's wire format, over HTTP ------------------------------------------------------------------------

def test_the_token_endpoint_refreshes_with_a_form_and_answers_expires_in(sandbox_factory):
    box = start(sandbox_factory, token_ttl_seconds=1234)
    creds = box.credentials["hubspot"]
    form = {"grant_type": "refresh_token", "client_id": creds["client_id"], "client_secret": creds["client_secret"],
            "refresh_token": creds["refresh_token"]}
    grant = requests.post(box.url("hubspot") + "/oauth/v1/token", data=form, timeout=10).json()
    assert grant["token_type"] == "bearer" and grant["expires_in"] == 1234
    assert grant["refresh_token"] == creds["refresh_token"] and grant["access_token"]
    assert api(box, "/marketing/v3/forms", token=grant["access_token"]).status_code == 200
    bad = requests.post(box.url("hubspot") + "/oauth/v1/token", data={**form, "refresh_token": "nope"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["status"] == "BAD_REFRESH_TOKEN"
    assert "nope" not in bad.text and creds["client_secret"] not in bad.text


def test_requests_without_a_valid_token_get_401_invalid_authentication(sandbox_factory):
    box = start(sandbox_factory)
    response = api(box, "/email/public/v1/events", token="not-a-token")
    body = response.json()
    assert response.status_code == 401 and body["category"] == "INVALID_AUTHENTICATION"
    assert body["status"] == "error" and body["correlationId"]


def test_an_expired_token_gets_401_expired_authentication(sandbox_factory, monkeypatch):
    box = start(sandbox_factory, token_ttl_seconds=60)
    now = [5_000.0]
    monkeypatch.setattr(standin, "_clock", lambda: now[0])
    token, _ = hub(box).issue_token()
    assert api(box, "/marketing/v3/forms", token=token).status_code == 200
    now[0] += 2 * 3600
    response = api(box, "/marketing/v3/forms", token=token)
    body = response.json()
    assert response.status_code == 401 and body["category"] == "EXPIRED_AUTHENTICATION"
    assert body["message"].startswith("The OAuth token used to make this call expired 1 hour(s) ago")


def test_rate_limit_headers_come_on_every_response_and_a_429_has_hubspots_body(sandbox_factory):
    box = start(sandbox_factory, rate_limit_every=2)
    names = ["Daily", "Daily-Remaining", "Interval-Milliseconds", "Max", "Remaining", "Secondly", "Secondly-Remaining"]
    ok, limited = api(box, "/marketing/v3/forms"), api(box, "/marketing/v3/forms")
    assert ok.status_code == 200 and limited.status_code == 429
    for response in (ok, limited):
        assert all(f"X-HubSpot-RateLimit-{name}" in response.headers for name in names)
    assert int(ok.headers["X-HubSpot-RateLimit-Daily-Remaining"]) < int(ok.headers["X-HubSpot-RateLimit-Daily"])
    body = limited.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["status"] == "error" and body["correlationId"] and "limit" in body["message"]
    assert limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"


def test_contacts_list_pages_with_after_and_returns_properties_as_strings(sandbox_factory):
    box = start(sandbox_factory)
    ids, params = [], {"limit": 7, "properties": "email,numberofemployees,lead_source"}
    while True:
        body = api(box, "/crm/v3/objects/contacts", params=params).json()
        ids += [c["id"] for c in body["results"]]
        contact = body["results"][0]
        assert set(contact["properties"]) == {"email", "numberofemployees", "lead_source", "createdate",
                                              "hs_object_id", "lastmodifieddate"}
        assert isinstance(contact["properties"]["numberofemployees"], str) and contact["archived"] is False
        if "paging" not in body:
            break
        params["after"] = body["paging"]["next"]["after"]
    assert ids == sorted((standin.contact_id(p) for p in box.world.tool_people("hubspot")), key=int)
    assert api(box, "/crm/v3/objects/contacts", params={"limit": 101}).status_code == 400


def test_batch_read_finds_contacts_by_id_or_email_and_answers_207_for_unknown_ones(sandbox_factory):
    box = start(sandbox_factory)
    person = box.world.tool_people("hubspot")[0]
    path = "/crm/v3/objects/contacts/batch/read"
    by_id_ = api(box, path, method="POST", json={"properties": ["email"], "inputs": [{"id": standin.contact_id(person)}]})
    assert by_id_.status_code == 200 and by_id_.json()["status"] == "COMPLETE"
    address = box.world.email_in(person, "hubspot").upper()
    by_email = api(box, path, method="POST", json={"properties": ["firstname"], "idProperty": "email",
                                                   "inputs": [{"id": address}, {"id": "nobody@nowhere.example"}]})
    body = by_email.json()
    assert by_email.status_code == 207 and body["numErrors"] == 1
    assert body["results"][0]["properties"]["firstname"] == person.first_name
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    too_many = api(box, path, method="POST", json={"properties": [], "inputs": [{"id": str(i)} for i in range(101)]})
    assert too_many.status_code == 400


def test_email_events_come_newest_first_with_offset_paging_from_an_inclusive_start(sandbox_factory):
    box = start(sandbox_factory)
    feed = [e for e in box.world.expected("hubspot")[0] if e.kind in standin.EMAIL_KINDS]
    start_ms = feed[len(feed) // 2].ts * 1000
    events, params = [], {"limit": 7, "startTimestamp": start_ms}
    while True:
        body = api(box, "/email/public/v1/events", params=params).json()
        events += body["events"]
        if not body["hasMore"]:
            break
        params["offset"] = body["offset"]
    created = [e["created"] for e in events]
    assert created == sorted(created, reverse=True) and min(created) == start_ms
    assert {e["id"] for e in events} == {standin.native_id(e) for e in feed if e.ts * 1000 >= start_ms}
    first = events[0]
    assert {"appId", "appName", "created", "emailCampaignId", "id", "portalId", "recipient", "sentBy", "type"} <= set(first)
    assert api(box, "/email/public/v1/events", params={"limit": 1001}).status_code == 400


def test_web_events_come_oldest_first_with_after_paging_from_an_exclusive_start(sandbox_factory):
    box = start(sandbox_factory)
    visits = [e for e in box.world.expected("hubspot")[0] if e.kind == "page_visited"]
    after = visits[len(visits) // 3]
    occurred_after = after.occurred_at.isoformat().replace("+00:00", "Z")
    results, params = [], {"objectType": "contact", "eventType": "e_visited_page", "limit": 5,
                           "occurredAfter": occurred_after}
    while True:
        body = api(box, "/events/v3/events", params=params).json()
        results += body["results"]
        if "paging" not in body:
            break
        params["after"] = body["paging"]["next"]["after"]
    times = [r["occurredAt"] for r in results]
    assert times == sorted(times) and all(t > occurred_after.replace("Z", ".000Z") for t in times)
    assert {r["id"] for r in results} == {standin.native_id(e) for e in visits if e.ts > after.ts}
    record = results[0]
    assert record["objectType"] == "CONTACT" and record["eventType"] == "e_visited_page"
    assert record["properties"]["hs_url"].startswith("https://")
    newest_first = api(box, "/events/v3/events", params={"eventType": "e_visited_page", "sort": "-occurredAt"}).json()
    assert newest_first["results"][0]["occurredAt"] == max(r["occurredAt"] for r in results)
    person = box.world.people[after.person]
    timeline = api(box, "/events/v3/events", params={"objectType": "contact", "objectId": standin.contact_id(person)})
    assert {r["objectId"] for r in timeline.json()["results"]} == {standin.contact_id(person)}
    types = api(box, "/events/v3/events/event-types").json()["eventTypes"]
    assert standin.WEBINAR_EVENT in types and "e_submitted_form" in types


def test_marketing_emails_name_their_campaigns_and_forms_list_their_names(sandbox_factory):
    box = start(sandbox_factory)
    emails = api(box, "/marketing/v3/emails", params={"limit": 100, "marketingCampaignNames": "true"}).json()
    assert emails["total"] == len(emails["results"]) > 0
    assert all(e["campaignName"] and e["allEmailCampaignIds"] for e in emails["results"])
    assert "campaignName" not in api(box, "/marketing/v3/emails").json()["results"][0]
    forms = api(box, "/marketing/v3/forms", params={"limit": 3}).json()
    assert len(forms["results"]) == 3 and forms["paging"]["next"]["after"]
    assert {"id", "name", "formType", "createdAt", "updatedAt", "archived"} <= set(forms["results"][0])
