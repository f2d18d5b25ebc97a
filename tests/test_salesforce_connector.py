"""The Salesforce connector end to end: simple-salesforce over real HTTP against the stand-in, every fault switch."""

from __future__ import annotations

import math
from collections import Counter
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from config.crm import CrmConfig, load_crm_config
from connectors.crm.base import PULLED
from connectors.crm.salesforce import SalesforceClient
from connectors.crm.salesforce_records import read_page, streams
from connectors.crm.salesforce_session import checked_url
from connectors.http import Backoff, PermanentError
from domain.crm import ContactKind, CrmObject, CrmWrite, Outcome
from sandbox.salesforce import SalesforceFaults, new_credentials
from sandbox.stack import start_sandbox
from sandbox.world import WorldSpec

SPEC = WorldSpec(people=200, activities=400)
FAST = Backoff(base=0.01, cap=0.05, max_attempts=4)
MQL_AT = datetime(2026, 10, 30, 9, 15, tzinfo=timezone.utc)


def configured(box, **changes) -> CrmConfig:
    """The shipped config/crm.yaml pointed at the stand-in, with `push` / `connection` settings changed."""
    config = load_crm_config(env=box.env)
    updates = {}
    for part in ("push", "connection"):
        if changes.get(part):
            updates[part] = getattr(config, part).model_copy(update=changes[part])
    return config.model_copy(update=updates)


def client_for(box, secrets: dict | None = None, **kwargs) -> SalesforceClient:
    creds = box.credentials["salesforce"]
    config = configured(box, push=kwargs.pop("push", None), connection=kwargs.pop("connection", None))
    secrets = secrets if secrets is not None else {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
    return SalesforceClient(config, secrets, backoff=kwargs.pop("backoff", FAST), **kwargs)


def lead(n: int, prefix: str, **values) -> CrmWrite:
    """A create of the kind the sync sends: details, Handoff's fields, and its key."""
    details = {"email": f"{prefix}{n}@{prefix}.example", "first_name": "Ada", "last_name": f"Lead{n}",
               "company": f"{prefix.title()} Co", "country": "GB", "score": 40 + n % 50, "fit_grade": "B",
               "stage": "mql", "mql_at": MQL_AT}
    return CrmWrite(n, CrmObject.LEAD, None, f"{prefix}-{n}", {**details, **values})


def org_records(client: SalesforceClient, soql: str, deleted: bool = False) -> list[dict]:
    return client.call("check", lambda sf: sf.query_all(soql, include_deleted=deleted))["records"]


def arm(box, switch: str, **more) -> SalesforceFaults:
    """Make the next call trip `switch` once (the count of a switch starts when it is turned on)."""
    faults = box.faults["salesforce"]
    faults.update(**{f"{switch}_every": 1000}, **more)
    faults._counts[switch] = 999
    return faults


@pytest.fixture(scope="module")
def shared():
    """One stand-in for tests that only touch records of their own."""
    box = start_sandbox(SPEC, tools=(), crm=True)
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def fresh(sandbox_factory):
    return lambda: sandbox_factory(SPEC, tools=(), crm=True, faults={"salesforce": SalesforceFaults()})


# ---------------------------------------------------------------- signing in (and where a token may go)

@pytest.mark.slow
def test_signs_in_with_client_credentials_jwt_bearer_or_a_token_given(shared, tmp_path):
    creds = shared.credentials["salesforce"]
    granted = client_for(shared)
    granted.authenticate()
    assert granted.find_people(keys=["nobody-1"]) == [] and granted.calls["token"] == 1

    key = tmp_path / "handoff.key"
    key.write_text(creds["private_key_pem"])
    signed = client_for(shared, {"client_id": creds["client_id"], "username": creds["username"],
                                 "private_key_file": str(key)})
    signed.authenticate()  # aud is the login URL
    assert signed.find_people(keys=["nobody-1"]) == [] and signed.calls["token"] == 1

    token = requests.post(shared.url("salesforce") + "/services/oauth2/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": creds["client_id"],
        "client_secret": creds["client_secret"]}).json()["access_token"]
    given = client_for(shared, {"access_token": token, "instance_url": shared.url("salesforce")})
    assert given.find_people(keys=["nobody-1"]) == [] and "token" not in given.calls


@pytest.mark.slow
def test_a_refused_secret_is_permanent_and_never_shown(shared, tmp_path):
    creds = shared.credentials["salesforce"]
    secret = "Wrong-Secret-4f9a2c71"
    with pytest.raises(PermanentError) as refused:
        client_for(shared, {"client_id": creds["client_id"], "client_secret": secret}).authenticate()
    assert "invalid_client" in str(refused.value) and secret not in str(refused.value)
    stranger = tmp_path / "other.key"
    stranger.write_text(new_credentials()["private_key_pem"])
    with pytest.raises(PermanentError) as refused:
        client_for(shared, {"client_id": creds["client_id"], "username": creds["username"],
                            "private_key_file": str(stranger)}).authenticate()
    assert "invalid_grant" in str(refused.value) and "PRIVATE KEY" not in str(refused.value)


@pytest.mark.slow
def test_plain_http_is_for_this_machine_only(shared):
    creds = shared.credentials["salesforce"]
    away = client_for(shared, connection={"login_url": "http://login.example.com"})
    with pytest.raises(PermanentError) as refused:
        away.authenticate()
    assert "HANDOFF_SALESFORCE_LOGIN_URL" in str(refused.value) and "in clear" in str(refused.value)
    assert away.calls == {}  # nothing was sent
    token = client_for(shared, {"access_token": "00D!secret-token", "instance_url": "http://10.20.30.40:8080"})
    with pytest.raises(PermanentError) as refused:
        token.authenticate()
    assert "HANDOFF_SALESFORCE_INSTANCE_URL" in str(refused.value) and "secret-token" not in str(refused.value)
    for url in ("http://127.0.0.1:8000", "http://127.8.9.10", "http://localhost:1", "http://[::1]:8443",
                "https://acme.my.salesforce.com"):
        assert checked_url(url, "x") == url
    assert client_for(shared, {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}) \
        .find_people(keys=["nobody"]) == []  # the stand-in itself is on 127.0.0.1, over http


@pytest.mark.slow
def test_an_expired_session_is_renewed_once_and_the_call_repeated(fresh):
    box = fresh()
    client = client_for(box)
    client.authenticate()
    box.faults["salesforce"].update(expire_token_every=2)
    for n in range(4):
        assert client.find_people(keys=[f"nobody-{n}"]) == []
    fired = box.faults["salesforce"].fired("expire_token")
    assert fired >= 2 and client.calls["token"] == 1 + fired
    token = requests.post(box.url("salesforce") + "/services/oauth2/token", timeout=10, data={
        "grant_type": "client_credentials", **{k: box.credentials["salesforce"][k] for k in ("client_id", "client_secret")}
    }).json()["access_token"]
    given = client_for(box, {"access_token": token, "instance_url": box.url("salesforce")})
    box.faults["salesforce"].update(expire_token_every=1)
    with pytest.raises(PermanentError) as refused:
        given.find_people(keys=["nobody"])
    assert "cannot be renewed" in str(refused.value) and token not in str(refused.value)


# ---------------------------------------------------------------- pull

@pytest.mark.slow
def test_a_pull_reads_every_kind_first_pages_in_composite_calls_then_query_more(fresh):
    box = fresh()
    client = client_for(box, page_size=200)
    first = client.pull({})
    assert set(first.newest) == set(PULLED) and first.refused == []
    assert client.calls["composite"] == 2  # Salesforce's composite takes five queries: seven kinds, two calls
    assert len(first.users) == 12 and first.people and first.activities and first.opportunities and first.accounts

    created = client.write([lead(n, "pull") for n in range(450)])
    assert {r.outcome for r in created} == {Outcome.CREATED}
    calls_before = dict(client.calls)
    since = {**first.newest, "leads": first.newest["leads"] + timedelta(seconds=1)}
    changes = client.pull(since)
    ours = [p for p in changes.people if (p.handoff_key or "").startswith("pull-")]
    assert len(ours) == 450 and {p.object for p in ours} == {CrmObject.LEAD}
    assert all(p.modified_at >= since["leads"] for p in changes.people if p.object is CrmObject.LEAD)
    assert changes.newest["leads"] == max(p.modified_at for p in changes.people if p.object is CrmObject.LEAD)
    used = {k: client.calls.get(k, 0) - calls_before.get(k, 0) for k in client.calls}
    leads = sum(1 for p in changes.people if p.object is CrmObject.LEAD)
    assert used["composite"] == 2 and used.get("query_more", 0) == math.ceil(leads / 200) - 1 + sum(
        max(0, math.ceil(n / 200) - 1) for n in (len(changes.users), len(changes.accounts), len(changes.opportunities)))

    quiet = {kind: moment + timedelta(seconds=1) for kind, moment in changes.newest.items()}
    before = sum(client.calls.values())
    nothing = client.pull({**since, **quiet})
    assert sum(client.calls.values()) - before == 2  # a pull with nothing new
    assert not (nothing.people or nothing.activities or nothing.opportunities or nothing.accounts)


@pytest.mark.slow
def test_a_pull_after_a_month_brings_what_reps_and_the_admin_did(fresh):
    box = fresh()
    client = client_for(box)
    start = client.pull({})
    requests.post(box.url("salesforce") + "/_sandbox/salesforce/rates", json={"convert": 0.5}, timeout=10)
    countries = ("US", "GB", "DE", "NL", "FR", "CA", "BR")
    web_leads = [{"attributes": {"type": "Lead"}, "LastName": f"Web{i}", "Company": f"Web Co {i}",
                  "Country": countries[i % 7], "Product_Line__c": "Scoring"} for i in range(42)]
    client.call("web-to-lead", lambda sf: sf.restful("composite/sobjects", method="POST",
                                                     json={"records": web_leads}))  # the assignment rule routes these
    requests.post(box.url("salesforce") + "/_sandbox/clock", json={"advance_hours": 30 * 24}, timeout=10)
    month = client.pull(start.newest)
    leads = [p for p in month.people if p.object is CrmObject.LEAD]
    merged = [p for p in leads if p.deleted and p.master_id]
    deleted = [p for p in leads if p.deleted and not p.master_id]
    assert len(merged) == 1 and len(deleted) == 1
    assert any(p.crm_id == merged[0].master_id and not p.deleted for p in leads)  # the record it went into
    reps = {u.crm_id for u in start.users if u.active}
    worked = [p for p in leads if p.status == "Working - Contacted" and p.modified_by in reps]
    converted = [p for p in leads if p.converted]
    assert worked and converted and all(p.contact_id and p.opportunity_id for p in converted)
    assert any(p.status == "Nurturing" and p.recycle_reason for p in leads)
    kinds = {a.kind for a in month.activities}
    assert {ContactKind.CALL, ContactKind.EMAIL, ContactKind.MEETING} <= kinds
    assert all(a.owner_id in reps and a.occurred_at <= a.modified_at + timedelta(days=3) for a in month.activities)
    assert any(a.who_id == converted[0].contact_id for a in month.activities)  # activities follow a conversion
    assert any(o.closed for o in month.opportunities) and month.accounts
    assert month.refused == [] and client.calls["composite"] == 4

    # a converted lead takes no write; its contact does
    key = converted[0].handoff_key or "web-0"
    results = client.write([CrmWrite(1, CrmObject.LEAD, converted[0].crm_id, key, {"score": 80}),
                            CrmWrite(1, CrmObject.CONTACT, converted[0].contact_id, key, {"score": 80})])
    assert [(r.outcome, r.error_code) for r in results] == [(Outcome.FAILED, "CANNOT_UPDATE_CONVERTED_LEAD"),
                                                           (Outcome.WRITTEN, None)]
    held = client.read_handoff_values(CrmObject.CONTACT, [converted[0].contact_id])[converted[0].contact_id]
    assert held["score"] == 80 and held["owner_id"].startswith("005")


def test_a_record_that_cannot_be_read_is_refused_and_the_page_goes_on():
    config = load_crm_config(env={"HANDOFF_SALESFORCE_ENABLED": "true"})
    leads = {s.kind: s for s in streams(config)}["leads"]
    good = {"Id": "00Q5e000000001AEAQ", "Email": "a@b.example", "SystemModstamp": "2026-11-20T10:00:00.000+0000",
            "IsDeleted": False, "Handoff_Id__c": "handoff-1", "Status": "Working - Contacted"}
    page = [good, {**good, "Id": None}, {**good, "SystemModstamp": "yesterday"}, {**good, "IsConverted": "yes"},
            {**good, "Email": "a\x00b@c.example"}, ["not", "a", "record"],
            {**good, "Id": "00Q5e000000002AEAQ", "SystemModstamp": "2026-11-20T11:00:00+01:00"}]
    taken, refused, newest = read_page(leads, page)
    assert [p.crm_id for p in taken] == ["00Q5e000000001AEAQ", "00Q5e000000002AEAQ"]
    assert [reason for _, reason, _ in refused] == [
        "Id is missing", "SystemModstamp is not a date-time: 'yesterday'", "IsConverted is str, not true or false",
        "Email contains a NUL character", "not a record but list"]
    assert [raw for _, _, raw in refused] == page[1:6] and {kind for kind, _, _ in refused} == {"leads"}
    assert newest == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)  # the refused ones' stamps count too


# ---------------------------------------------------------------- people

@pytest.mark.slow
def test_find_people_by_key_by_email_in_another_case_and_by_id_leaving_deleted_out(shared):
    client = client_for(shared)
    made = client.write([lead(n, "find") for n in range(4)])
    ids = [r.crm_id for r in made]
    client.call("delete", lambda sf: sf.Lead.delete(ids[3]))
    by_key = client.find_people(keys=["FIND-0", "find-3"])
    assert [(p.crm_id, p.handoff_key, p.email) for p in by_key] == [(ids[0], "find-0", "find0@find.example")]
    assert [p.crm_id for p in client.find_people(emails=["FIND1@Find.Example", "find3@find.example"])] == [ids[1]]
    assert [p.crm_id for p in client.find_people(ids=[ids[2], ids[2][:15], "not-an-id"])] == [ids[2]]
    contacts = org_records(client, "SELECT Id, Email FROM Contact WHERE Email != null ORDER BY Id LIMIT 1")
    [contact] = client.find_people(emails=[contacts[0]["Email"].upper()])
    assert (contact.object, contact.crm_id) == (CrmObject.CONTACT, contacts[0]["Id"])


@pytest.mark.slow
def test_an_injected_email_cannot_change_the_query(shared):
    client = client_for(shared)
    attack = "x' OR Name != '"
    assert client.find_people(emails=[attack], keys=[attack, "a\\' OR '1'='1", "%"]) == []
    [soql] = client.in_lists("SELECT Id FROM Lead WHERE", [("Email", [attack])])
    assert soql == "SELECT Id FROM Lead WHERE (Email IN ('x\\' OR Name != \\''))"
    many = [f"someone.{n}@a-rather-long-domain-name.example" for n in range(2000)]
    queries = client.in_lists("SELECT Id FROM Lead WHERE", [("Email", many), ("Id", ["00Q5e000000001AEAQ"])])
    assert len(queries) > 1 and all(len(q) <= 8000 for q in queries)
    assert sum(q.count("@a-rather") for q in queries) == 2000
    assert client.find_people(emails=many[:500]) == []


# ---------------------------------------------------------------- write

@pytest.mark.slow
def test_writes_only_handoffs_fields_never_a_blank_and_never_runs_the_assignment_rule(shared):
    client = client_for(shared)
    [created] = client.write([lead(1, "own", title="CTO", moment="Downloaded 'State of RevOps 2026'")])
    assert created.outcome is Outcome.CREATED and created.crm_id.startswith("00Q")
    integration = org_records(client, "SELECT Id FROM User WHERE Username LIKE 'handoff.integration%'")[0]["Id"]
    fields = ("OwnerId, Status, Email, Title, Country, Handoff_Id__c, Handoff_Score__c, Handoff_Fit_Grade__c, "
              "Handoff_Stage__c, Handoff_MQL_Date__c, Handoff_Last_Interesting_Moment__c")
    [record] = org_records(client, f"SELECT {fields} FROM Lead WHERE Id = '{created.crm_id}'")
    assert record["OwnerId"] == integration  # GB would go to its rep under the assignment rule
    assert (record["Handoff_Id__c"], record["Handoff_Score__c"], record["Handoff_MQL_Date__c"], record["Title"]) == \
        ("own-1", 41.0, "2026-10-30T09:15:00.000+0000", "CTO")

    jordan = org_records(client, "SELECT Id FROM User WHERE Username LIKE 'jordan.blake%'")[0]["Id"]
    client.call("reassign", lambda sf: sf.Lead.update(created.crm_id, {"OwnerId": jordan, "Status": "Working - Contacted"},
                                                       headers={"Sforce-Auto-Assign": "FALSE"}))
    update = CrmWrite(1, CrmObject.LEAD, created.crm_id, "own-1", {
        "score": 77, "stage": "sql", "moment": "  ", "fit_grade": None, "email": "taken@over.example",
        "title": "Intern", "country": "US"})
    [written] = client.write([update])
    assert (written.outcome, written.crm_id) == (Outcome.WRITTEN, created.crm_id)
    [after] = org_records(client, f"SELECT {fields} FROM Lead WHERE Id = '{created.crm_id}'")
    assert (after["Handoff_Score__c"], after["Handoff_Stage__c"]) == (77.0, "sql")
    assert after["Handoff_Last_Interesting_Moment__c"] == "Downloaded 'State of RevOps 2026'"  # no blank written
    assert after["Handoff_Fit_Grade__c"] == "B"
    assert (after["OwnerId"], after["Status"], after["Email"], after["Title"], after["Country"]) == \
        (jordan, "Working - Contacted", "own1@own.example", "CTO", "GB")  # sales' fields left alone
    assert client.read_handoff_values(CrmObject.LEAD, [created.crm_id, created.crm_id[:15]]) == {
        created.crm_id: {"score": 77, "fit_grade": "B", "stage": "sql", "mql_at": MQL_AT.isoformat(),
                         "moment": "Downloaded 'State of RevOps 2026'", "owner_id": jordan},
        created.crm_id[:15]: {"score": 77, "fit_grade": "B", "stage": "sql", "mql_at": MQL_AT.isoformat(),
                              "moment": "Downloaded 'State of RevOps 2026'", "owner_id": jordan}}


@pytest.mark.slow
def test_a_field_the_org_lacks_fails_each_record_without_raising(shared):
    client = client_for(shared)
    [made] = client.write([lead(1, "lacks")])
    config = client.config.model_copy(update={"fields": {**client.config.fields, "moment": "Handoff_Colour__c"}})
    odd = SalesforceClient(config, client._secrets, backoff=FAST)
    results = odd.write([CrmWrite(1, CrmObject.LEAD, made.crm_id, "lacks-1", {"score": 5, "moment": "Visited"}),
                         CrmWrite(2, CrmObject.LEAD, made.crm_id, "lacks-1", {"score": 6})])
    assert (results[0].outcome, results[0].error_code) == (Outcome.FAILED, "INVALID_FIELD")
    assert "Handoff_Colour__c" in results[0].message and results[1].outcome is Outcome.WRITTEN


@pytest.mark.slow
def test_a_duplicate_is_linked_to_the_record_the_org_names(shared):
    client = client_for(shared)
    existing = org_records(client, "SELECT Id, Email FROM Lead WHERE Email != null AND IsConverted = false "
                                   "ORDER BY Id LIMIT 1")[0]
    results = client.write([lead(1, "dup", email=existing["Email"].upper()), lead(2, "dup")])
    assert (results[0].outcome, results[0].crm_id, results[0].error_code) == \
        (Outcome.DUPLICATE, existing["Id"], "DUPLICATES_DETECTED")
    assert results[1].outcome is Outcome.CREATED
    assert org_records(client, "SELECT Id FROM Lead WHERE Handoff_Id__c = 'dup-1'") == []


@pytest.mark.slow
def test_one_records_failure_inside_a_successful_call_is_that_records_alone(fresh):
    box = fresh()
    client = client_for(box)
    box.faults["salesforce"].update(unable_to_lock_row_every=3, validation_error_every=4)
    results = client.write([lead(n, "fault") for n in range(8)] + [lead(9, "fault", fit_grade="AB")])
    codes = [(r.outcome, r.error_code) for r in results]
    assert codes[:8] == [(Outcome.CREATED, None), (Outcome.CREATED, None), (Outcome.TRANSIENT, "UNABLE_TO_LOCK_ROW"),
                         (Outcome.CREATED, None), (Outcome.FAILED, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
                         (Outcome.TRANSIENT, "UNABLE_TO_LOCK_ROW"), (Outcome.CREATED, None), (Outcome.CREATED, None)]
    assert codes[8] in ((Outcome.FAILED, "STRING_TOO_LONG"), (Outcome.TRANSIENT, "UNABLE_TO_LOCK_ROW"))
    assert "Handoff_Fit_Grade__c" in results[8].message or results[8].error_code == "UNABLE_TO_LOCK_ROW"
    assert box.faults["salesforce"].fired("unable_to_lock_row") >= 2
    assert box.faults["salesforce"].fired("validation_error") >= 1
    assert client.calls["collections"] == 1


@pytest.mark.slow
def test_server_errors_are_retried_and_a_call_that_keeps_failing_is_transient_for_its_records(fresh):
    box = fresh()
    client = client_for(box)
    made = client.write([lead(n, "flaky") for n in range(3)])
    box.faults["salesforce"].update(server_error_every=2)
    updates = [CrmWrite(r.lead_id, CrmObject.LEAD, r.crm_id, f"flaky-{r.lead_id}", {"score": 90}) for r in made]
    assert {r.outcome for r in client.write(updates)} == {Outcome.WRITTEN}
    assert client.pull({})  # queries retried as well
    assert box.faults["salesforce"].fired("server_error") >= 2
    box.faults["salesforce"].update(server_error_every=1)
    down = client.write(updates + [lead(7, "flaky")])
    assert [(r.outcome, r.error_code) for r in down] == [(Outcome.TRANSIENT, "CALL_FAILED")] * 3 + \
        [(Outcome.TRANSIENT, "ANSWER_LOST")]
    assert "gave up after 4 attempts" in down[0].message


@pytest.mark.slow
def test_slow_answers_pass_and_a_timeout_is_retried_without_a_second_record(fresh):
    box = fresh()
    client = client_for(box, connection={"timeout_seconds": 0.5})
    box.faults["salesforce"].update(slow_ms=150)
    began = time.monotonic()
    assert client.find_people(keys=["nobody"]) == []
    assert time.monotonic() - began >= 0.15 * 2  # the token and the query, each slow, each within the timeout
    box.faults["salesforce"].update(slow_ms=0)
    faults = arm(box, "timeout", timeout_hold_seconds=1.0)
    [created] = client.write([lead(1, "late")])
    assert faults.fired("timeout") == 1 and created.outcome is Outcome.CREATED
    time.sleep(1.2)  # the held create runs now, as an org's does: an upsert by key, so it finds the record
    assert len(org_records(client, "SELECT Id FROM Lead WHERE Handoff_Id__c = 'late-1'", deleted=True)) == 1
    arm(box, "timeout", timeout_hold_seconds=1.0)
    [updated] = client.write([CrmWrite(1, CrmObject.LEAD, created.crm_id, "late-1", {"score": 12})])
    assert updated.outcome is Outcome.WRITTEN and faults.fired("timeout") == 2


@pytest.mark.slow
def test_a_create_whose_answer_never_arrived_is_found_by_its_key_not_sent_again(fresh):
    box = fresh()
    client = client_for(box)
    client.authenticate()
    faults = arm(box, "drop_after_commit")
    results = client.write([lead(n, "drop") for n in range(3)])
    assert faults.fired("drop_after_commit") == 1
    assert [r.outcome for r in results] == [Outcome.CREATED] * 3
    assert all(r.message == "the answer was lost; found by its key" for r in results)
    assert client.calls["collections"] == 1  # looked up, not sent again
    keys = org_records(client, "SELECT Handoff_Id__c FROM Lead WHERE Handoff_Id__c LIKE 'drop-%'", deleted=True)
    assert sorted(r["Handoff_Id__c"] for r in keys) == ["drop-0", "drop-1", "drop-2"]
    assert {r.crm_id for r in results} == {r["Id"] for r in org_records(
        client, "SELECT Id FROM Lead WHERE Handoff_Id__c LIKE 'drop-%'")}


@pytest.mark.slow
def test_a_spent_daily_allowance_stops_the_run_with_a_permanent_error(fresh):
    box = fresh()
    client = client_for(box)
    client.find_people(keys=["nobody"])
    box.faults["salesforce"].update(daily_api_limit=client.usage.used)
    with pytest.raises(PermanentError) as spent:
        client.write([lead(1, "spent")])
    assert "daily API allowance is spent" in str(spent.value)
    with pytest.raises(PermanentError):
        client.pull({})
    assert box.faults["salesforce"].fired("daily_api_limit") == 2
    assert client.usage.used == client.usage.allowed and client.usage.remaining_share == 0.0


@pytest.mark.slow
def test_usage_is_read_from_every_answer(shared):
    client = client_for(shared)
    assert client.usage is None
    limits = client.call("limits", lambda sf: sf.limits())["DailyApiRequests"]
    assert (client.usage.allowed, client.usage.used) == (limits["Max"], limits["Max"] - limits["Remaining"])
    client.find_people(keys=["nobody"])
    assert client.usage.used == limits["Max"] - limits["Remaining"] + 1


# ---------------------------------------------------------------- Bulk API 2.0 and the call budget

@pytest.mark.slow
def test_above_the_threshold_writes_go_as_bulk_jobs_with_each_row_mapped_back(fresh):
    box = fresh()
    client = client_for(box, push={"bulk_above": 20}, bulk_poll_seconds=0.2)
    box.faults["salesforce"].update(validation_error_every=100)
    writes = [lead(n, "bulk", fit_grade="AB" if n % 50 == 7 else "B") for n in range(260)]
    results = client.write(writes)
    outcomes = [(r.outcome, r.error_code) for r in results]
    assert all(outcomes[n] == (Outcome.FAILED, "STRING_TOO_LONG") for n in range(7, 260, 50))
    assert outcomes.count((Outcome.FAILED, "FIELD_CUSTOM_VALIDATION_EXCEPTION")) == 2
    assert box.faults["salesforce"].fired("validation_error") == 2
    assert outcomes.count((Outcome.CREATED, None)) == 260 - 6 - 2
    assert client.calls["bulk"] <= 10 and "collections" not in client.calls
    created = {r.lead_id: r.crm_id for r in results if r.outcome is Outcome.CREATED}
    org = {r["Handoff_Id__c"]: r["Id"] for r in org_records(client, "SELECT Id, Handoff_Id__c FROM Lead "
                                                                    "WHERE Handoff_Id__c LIKE 'bulk-%'")}
    assert {f"bulk-{n}": i for n, i in created.items()} == org
    owners = org_records(client, "SELECT OwnerId FROM Lead WHERE Handoff_Id__c LIKE 'bulk-%'")
    assert len({o["OwnerId"] for o in owners}) == 1  # no assignment rule ran on the job

    box.faults["salesforce"].update(validation_error_every=0)
    before = client.calls["bulk"]
    updates = [CrmWrite(n, CrmObject.LEAD, i, f"bulk-{n}", {"score": 99, "stage": "sql" if n != 3 else "x" * 30})
               for n, i in created.items()] + [CrmWrite(999, CrmObject.LEAD, "00Q5e00000zzzzzEAA", "bulk-999",
                                                        {"score": 1})]
    updated = client.write(updates)
    assert [r.outcome for r in updated[:-1]] == [Outcome.FAILED if u.lead_id == 3 else Outcome.WRITTEN
                                                 for u in updates[:-1]]
    assert updated[-1].outcome is Outcome.FAILED and updated[-1].error_code in ("MALFORMED_ID",
                                                                                  "INVALID_CROSS_REFERENCE_KEY")
    assert client.calls["bulk"] - before <= 10
    assert {r["Handoff_Score__c"] for r in org_records(client, "SELECT Handoff_Score__c FROM Lead WHERE "
                                                                 "Handoff_Id__c LIKE 'bulk-%' AND Id != "
                                                                 f"'{created[3]}'")} == {99.0}


@pytest.mark.slow
def test_a_bulk_push_rides_out_server_errors_without_a_second_record(fresh):
    box = fresh()
    client = client_for(box, push={"bulk_above": 20}, bulk_poll_seconds=0.2)
    client.authenticate()
    # every 4th call: a job's create, upload and abort are three calls, so every 3rd would fail each retry alike
    box.faults["salesforce"].update(server_error_every=4)
    results = client.write([lead(n, "rough") for n in range(210)])
    assert box.faults["salesforce"].fired("server_error") >= 1
    assert {r.outcome for r in results} == {Outcome.CREATED}
    box.faults["salesforce"].update(server_error_every=0)
    keys = [r["Handoff_Id__c"] for r in org_records(client, "SELECT Handoff_Id__c FROM Lead WHERE Handoff_Id__c "
                                                            "LIKE 'rough-%'", deleted=True)]
    assert sorted(keys) == sorted(f"rough-{n}" for n in range(210))


@pytest.mark.slow
def test_a_lead_handoff_creates_is_assigned_by_the_orgs_rule_unless_handoff_routes_it(fresh):
    box = fresh()
    by_rule, by_handoff = client_for(box, push={"new_leads_owner": "crm_rule"}), client_for(box)
    [ruled] = by_rule.write([lead(1, "ruled")])  # GB: the rule gives it to Oliver
    [routed] = by_handoff.write([lead(2, "routed")])
    oliver = org_records(by_rule, "SELECT Id FROM User WHERE Username LIKE 'oliver.hughes%'")[0]["Id"]
    integration = org_records(by_rule, "SELECT Id FROM User WHERE Username LIKE 'handoff.integration%'")[0]["Id"]
    owners = {r["Id"]: r["OwnerId"] for r in org_records(by_rule, "SELECT Id, OwnerId FROM Lead WHERE Id IN "
                                                                  f"('{ruled.crm_id}', '{routed.crm_id}')")}
    assert (owners[ruled.crm_id], owners[routed.crm_id]) == (oliver, integration)
    bulk = client_for(box, push={"bulk_above": 20, "new_leads_owner": "crm_rule"}, bulk_poll_seconds=0.2)
    created = bulk.write([lead(n, "bulkruled") for n in range(230)])
    owners = Counter(r["OwnerId"] for r in org_records(bulk, "SELECT OwnerId FROM Lead WHERE Id IN ('"
                                                             + "', '".join(r.crm_id for r in created[:50]) + "')"))
    assert owners == Counter({oliver: 50})  # the job named the org's active rule


@pytest.mark.slow
def test_calls_stay_within_the_targets(fresh):
    box = fresh()
    client = client_for(box, bulk_poll_seconds=0.2)
    mark = client.pull({}).newest
    composite = [lead(n, "few") for n in range(450)]
    before = sum(client.calls.values())
    assert {r.outcome for r in client.write(composite)} == {Outcome.CREATED}
    assert sum(client.calls.values()) - before <= math.ceil(450 / 200) + 5

    before = sum(client.calls.values())
    assert {r.outcome for r in client.write([lead(n, "many") for n in range(4500)])} == {Outcome.CREATED}
    bulk = sum(client.calls.values()) - before
    assert bulk <= 10

    since = {**mark, "leads": mark["leads"] + timedelta(seconds=1)}
    before = sum(client.calls.values())
    pulled = client.pull(since)
    ours = [p for p in pulled.people if (p.handoff_key or "").startswith(("many-", "few-"))]
    assert len(ours) == 4950
    assert sum(client.calls.values()) - before <= math.ceil(4950 / 2000) + 10
