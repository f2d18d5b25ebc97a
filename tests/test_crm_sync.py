"""The two-way sync end to end: a scored world pushed to the Salesforce stand-in through the real connector over
HTTP, what the simulated reps do pulled back, every fault switch, a push killed half-way, and two runs at once:
nothing lost, nothing duplicated in the org or in Handoff, no field of the CRM's overwritten, no blank written."""

from __future__ import annotations

import threading
import time
from collections import Counter

from pathlib import Path

import pytest
import requests
from pydantic import SecretStr
from sqlalchemy import func, select

from config.crm import load_crm_config
from config.settings import CONFIG_DIR
from sandbox.salesforce import SalesforceFaults
from store import crm as crm_store
from store.engine import make_engine
from store.tables import CrmActivity, CrmRecord, LeadState, StageChange
from tasks import crm

pytestmark = pytest.mark.slow

from tests.crm_support import WORLD, Synced, point_at, scored_world, synced_world  # noqa: F401 - fixtures
from tests.flow_support import FAST


@pytest.fixture
def world(scored_world, tmp_path, sandbox_factory) -> Synced:
    synced = synced_world(scored_world, tmp_path, sandbox_factory)
    yield synced
    synced.engine.dispose()


def records(engine) -> dict[int, dict]:
    with engine.connect() as conn:
        return {row["lead_id"]: dict(row) for row in conn.execute(select(CrmRecord.__table__)).mappings()}


def handoff_leads_in_org(world: Synced) -> list[dict]:
    return world.org("SELECT Id, Email, Handoff_Id__c, Handoff_Score__c, Handoff_Stage__c, Handoff_Fit_Grade__c, "
                     "Handoff_MQL_Date__c, Handoff_Last_Interesting_Moment__c, OwnerId, Status FROM Lead "
                     "WHERE Handoff_Id__c != null")


def stages(engine) -> Counter:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(select(LeadState.__table__.c.stage, func.count()).group_by(
            LeadState.__table__.c.stage)).all()))


# ---------------------------------------------------------------- the first sync, and no change after it

def test_the_first_sync_creates_the_mqls_links_the_people_sales_knows_and_duplicates_nothing(world):
    leads_before = world.org("SELECT Id, Email, OwnerId, Status FROM Lead")
    pulled, pushed = world.sync()
    assert pulled.linked > 0 and pushed.created > 0 and not pushed.failed
    after = world.org("SELECT Id, Email, OwnerId, Status, Handoff_Id__c FROM Lead")
    assert len(after) == len(leads_before) + pushed.created  # a record made for each created, none twice
    emails = Counter((lead["Email"] or "").lower() for lead in after if lead["Handoff_Id__c"])
    assert max(emails.values()) == 1
    linked = records(world.engine)
    created = [r for r in linked.values() if r["crm_id"] and r["object"] == "Lead"]
    assert len({r["crm_id"] for r in created}) == len(created)
    # leads sales already had keep their owner and status: Handoff wrote only its own fields
    before = {lead["Id"]: lead for lead in leads_before}
    for lead in after:
        if lead["Id"] in before:
            assert (lead["OwnerId"], lead["Status"]) == (before[lead["Id"]]["OwnerId"], before[lead["Id"]]["Status"])
    with world.engine.connect() as conn:
        mqls = conn.execute(select(func.count()).select_from(LeadState.__table__).where(
            LeadState.__table__.c.stage.in_(["mql", "sql", "opportunity", "customer"]))).scalar_one()
    assert sum(1 for r in linked.values() if r["crm_id"] or r["contact_id"]) >= mqls


def test_the_crm_holds_score_fit_stage_and_moment_in_words_a_rep_reads(world):
    world.sync()
    with world.engine.connect() as conn:
        state = {row.lead_id: row for row in conn.execute(select(LeadState.__table__))}
    shown = handoff_leads_in_org(world)
    assert shown
    for lead in shown:
        lead_id = crm_store.lead_of_key(lead["Handoff_Id__c"])
        assert lead["Handoff_Stage__c"] == state[lead_id].stage
        assert lead["Handoff_Fit_Grade__c"] == state[lead_id].fit_grade
        assert abs(lead["Handoff_Score__c"] * 100 - state[lead_id].score) <= 50
    moments = [lead["Handoff_Last_Interesting_Moment__c"] for lead in shown if lead["Handoff_Last_Interesting_Moment__c"]]
    assert moments and all(m.split(" ")[0] in ("Opened", "Clicked", "Visited", "Downloaded", "Registered", "Attended",
                                               "Requested", "Started", "Asked", "Filled", "Signed", "E-mail",
                                               "Unsubscribed") for m in moments)


def test_ten_syncs_with_no_change_make_no_write_call_and_at_most_three_calls_each(world):
    world.sync()
    requests.delete(world.box.url("salesforce") + "/_sandbox/salesforce/calls", timeout=10)
    for _ in range(10):
        client = world.client()
        world.pull(client)
        pushed = world.push(client)
        assert (pushed.updated, pushed.created) == (0, 0)
        assert sum(client.calls.values()) <= 3, dict(client.calls)
    calls = world.calls()
    assert calls["writes"] == 0 and calls["records"].get("updated", 0) == 0


def test_a_quiet_org_is_read_from_when_the_last_pull_ran_not_again_from_handoffs_last_write(world):
    requests.post(world.box.url("salesforce") + "/_sandbox/salesforce/rates", timeout=10,
                  json={name: 0 for name in requests.get(world.box.url("salesforce") + "/_sandbox/salesforce/rates",
                                                         timeout=10).json()["rates"]})
    _, pushed = world.sync()
    assert pushed.created + pushed.updated > 0  # Handoff's writes: the newest changes in the org
    world.advance(0.25)  # beyond the pull's overlap
    again = world.pull()
    assert sum(again.pulled.values()) > 0  # Handoff's writes read once: a rep's edit may hide behind them
    with world.engine.connect() as conn:
        marks = crm_store.watermarks(conn)
    assert min(marks.values()) == world.now  # the org's clock when the queries ran, though nothing changed
    quiet = world.pull()
    assert sum(quiet.pulled.values()) == 0, quiet.pulled


def test_a_value_in_a_handoff_field_is_never_blanked_and_a_reps_field_is_never_written(world):
    world.sync()
    client = world.client()
    lead = handoff_leads_in_org(world)[0]
    # an admin puts a moment of their own on a record Handoff has no moment for, and a rep edits the status
    client.call("edit", lambda sf: sf.Lead.update(lead["Id"], {"Status": "Working - Contacted", "Title": "VP Sales",
                                                               "Handoff_Last_Interesting_Moment__c": "met at a fair"}))
    with world.engine.begin() as conn:  # Handoff's score for it changes, and it knows no moment
        conn.exec_driver_sql("UPDATE lead_state SET score = score + 1000, scored_at = '2100-01-01 00:00:00.000000' "
                             f"WHERE lead_id = {crm_store.lead_of_key(lead['Handoff_Id__c'])}")
        conn.exec_driver_sql("DELETE FROM score_ledger WHERE lead_id = "
                             f"{crm_store.lead_of_key(lead['Handoff_Id__c'])}")
    world.sync()
    [after] = world.org(f"SELECT Status, Title, Handoff_Score__c, Handoff_Last_Interesting_Moment__c FROM Lead "
                        f"WHERE Id = '{lead['Id']}'")
    assert (after["Status"], after["Title"]) == ("Working - Contacted", "VP Sales")
    assert after["Handoff_Score__c"] == lead["Handoff_Score__c"] + 10
    assert after["Handoff_Last_Interesting_Moment__c"] == "met at a fair"


# ---------------------------------------------------------------- what sales did, back in Handoff

def test_what_the_reps_do_comes_back_as_stages_first_contacts_conversions_and_recycles(world):
    world.sync()
    before = stages(world.engine)
    for hours in (30, 72, 24 * 20):
        world.advance(hours)
        world.sync()
    after = stages(world.engine)
    assert after["sql"] + after["opportunity"] + after["customer"] > before["sql"] + before["opportunity"] + \
        before["customer"]
    assert after["opportunity"] + after["customer"] > 0
    with world.engine.connect() as conn:
        contacts = conn.execute(select(func.count()).select_from(CrmActivity.__table__).where(
            CrmActivity.__table__.c.lead_id.is_not(None))).scalar_one()
        reasons = conn.execute(select(StageChange.__table__.c.reason).where(
            StageChange.__table__.c.to_stage == "recycled")).scalars().all()
        converted = conn.execute(select(func.count()).select_from(CrmRecord.__table__).where(
            CrmRecord.__table__.c.converted.is_(True), CrmRecord.__table__.c.object == "Contact")).scalar_one()
    assert contacts > 0 and converted > 0
    assert any("sales sent it back to nurture" in reason for reason in reasons)


def test_merged_records_are_followed_and_deleted_ones_released_never_orphaning_a_lead(world):
    world.sync()
    linked = [r for r in records(world.engine).values() if r["object"] == "Lead" and r["crm_id"]]
    gone = linked[0]
    world.client().call("delete", lambda sf: sf.Lead.delete(gone["crm_id"]))
    world.advance(30)  # the admin merges an accidental duplicate meanwhile
    pulled, _ = world.sync()
    assert pulled.released == 1 and pulled.merged >= 0
    after = records(world.engine)
    assert after[gone["lead_id"]]["crm_id"] is None and "deleted in the CRM" in after[gone["lead_id"]]["released_reason"]
    live = {lead["Id"] for lead in world.org("SELECT Id FROM Lead")} | {c["Id"] for c in world.org("SELECT Id FROM Contact")}
    assert all((r["contact_id"] or r["crm_id"]) in live for r in after.values() if r["crm_id"] or r["contact_id"])


# ---------------------------------------------------------------- faults

def test_an_expired_token_is_renewed_and_the_sync_goes_on(world):
    world.faults.update(expire_token_every=3)
    pulled, pushed = world.sync()
    assert world.faults.fired("expire_token") > 0 and pushed.created > 0 and not pushed.failed


def test_server_errors_and_slow_answers_are_waited_out(world):
    world.faults.update(server_error_every=4, slow_ms=20)
    pulled, pushed = world.sync()
    assert world.faults.fired("server_error") > 0 and pushed.created > 0 and not pushed.failed


def test_a_locked_row_is_written_by_the_next_run_and_the_rest_of_the_batch_lands(world):
    world.faults.update(unable_to_lock_row_every=7)
    _, first = world.sync()
    assert world.faults.fired("unable_to_lock_row") > 0 and first.failed.get("UNABLE_TO_LOCK_ROW")
    assert first.created + first.updated > 0
    world.faults.update(unable_to_lock_row_every=0)
    _, second = world.sync()
    assert second.created + second.updated == first.failed["UNABLE_TO_LOCK_ROW"] and not second.failed


def test_a_validation_error_is_dead_lettered_listed_and_written_again_when_a_person_asks(world):
    world.faults.update(validation_error_every=5)
    _, pushed = world.sync()
    refused = pushed.failed.get("FIELD_CUSTOM_VALIDATION_EXCEPTION", 0)
    assert world.faults.fired("validation_error") > 0 and refused and pushed.dead_lettered == refused
    with world.engine.connect() as conn:
        dead = crm_store.dead_letters(conn)
    assert len(dead) == refused and all(d["error_code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION" for d in dead)
    assert world.push().considered == 0  # dead letters wait for a person
    world.faults.update(validation_error_every=0)
    with world.engine.begin() as conn:
        assert crm_store.requeue(conn) == refused
    retried = world.push()
    assert retried.created + retried.updated == refused and not retried.failed


def test_a_create_the_org_committed_but_whose_answer_was_lost_is_found_by_its_key_not_made_twice(world):
    world.faults.update(drop_after_commit_every=2)
    _, pushed = world.sync()
    assert world.faults.fired("drop_after_commit") > 0
    world.faults.update(drop_after_commit_every=0)
    world.sync()
    keys = Counter(lead["Handoff_Id__c"] for lead in handoff_leads_in_org(world))
    assert keys and max(keys.values()) == 1
    assert all(r["crm_id"] or r["contact_id"] for r in records(world.engine).values() if r["pushed"])


def test_a_timeout_is_a_transient_failure_and_nothing_lands_twice(world):
    world.faults.update(timeout_every=3, timeout_hold_seconds=1.2)
    world.config = world.config.model_copy(update={"connection": world.config.connection.model_copy(
        update={"timeout_seconds": 0.5})})
    world.sync()
    assert world.faults.fired("timeout") > 0
    world.faults.update(timeout_every=0)
    world.config = world.config.model_copy(update={"connection": world.config.connection.model_copy(
        update={"timeout_seconds": 30})})
    world.sync()
    keys = Counter(lead["Handoff_Id__c"] for lead in handoff_leads_in_org(world))
    assert max(keys.values()) == 1
    _, last = world.sync()
    assert (last.created, last.updated, last.failed) == (0, 0, {})


def test_the_push_stops_when_the_daily_allowance_runs_low_and_says_so(world):
    client = world.client()
    world.pull(client)
    world.faults.update(daily_api_limit=world.calls()["total"] + 20)  # of which the pull used a few already
    world.config = world.config.model_copy(update={"push": world.config.push.model_copy(update={"budget_floor": 0.9})})
    pushed = world.push(client)
    assert client.usage.remaining_share < 0.9
    assert pushed.stopped_for_budget and pushed.left_unsent == pushed.considered and world.calls()["writes"] == 0


def test_a_spent_allowance_stops_the_sync_as_the_org_refuses_every_call(world):
    from connectors.http import PermanentError

    world.faults.update(daily_api_limit=1)
    with pytest.raises(PermanentError, match="allowance"):
        world.sync()
    assert world.faults.fired("daily_api_limit") > 0


def test_a_duplicate_made_by_a_person_between_the_lookup_and_the_create_is_linked_not_made_again(world):
    client = world.client()
    real_write = client.write
    made = []

    def a_rep_is_quicker(writes):
        creates = [w for w in writes if w.creates and w.values.get("email")]
        if creates and not made:  # a rep types the first new person in by hand just before Handoff's create lands
            first = creates[0].values
            made.append(client.call("create", lambda sf: sf.Lead.create(
                {"LastName": "Typed", "Company": "By hand", "Email": first["email"]}, headers={"Sforce-Auto-Assign": "FALSE"}))["id"])
        return real_write(writes)

    client.write = a_rep_is_quicker
    world.pull(client)
    pushed = world.push(client)
    assert made and pushed.linked >= 1
    assert any(r["crm_id"] == made[0] for r in records(world.engine).values())
    second = world.push()
    assert second.updated >= 1 and not second.failed  # Handoff's fields go onto the record the rep made
    [typed] = world.org(f"SELECT Handoff_Id__c, Handoff_Stage__c FROM Lead WHERE Id = '{made[0]}'")
    assert typed["Handoff_Stage__c"] and typed["Handoff_Id__c"]


# ---------------------------------------------------------------- a push cut short, and two at once

class Killed(BaseException):
    """The process running the push dies here (a BaseException: nothing of Handoff's catches it)."""


def test_a_push_killed_after_the_crm_took_part_of_a_batch_is_finished_by_the_next_run_sending_nothing_twice(
        world, monkeypatch):
    monkeypatch.setattr(crm, "COMPOSITE_SIZE", 20)  # this world's few dozen records, in several groups
    world.sync()
    with world.engine.begin() as conn:  # every lead's score moves: more than one composite call of changes
        conn.exec_driver_sql("UPDATE lead_state SET score = score + 700, scored_at = '2100-01-01 00:00:00.000000'")
    requests.delete(world.box.url("salesforce") + "/_sandbox/salesforce/calls", timeout=10)
    client = world.client()
    real_write, groups = client.write, []

    def dies_after_the_second_answer(writes):
        results = real_write(writes)
        groups.append(len(writes))
        if len(groups) == 2:
            raise Killed()
        return results

    client.write = dies_after_the_second_answer
    with pytest.raises(Killed):
        world.push(client)
    with world.engine.connect() as conn:
        assert len(crm_store.in_flight(conn)) == groups[1]  # the second group: taken by the CRM, not recorded
    with world.engine.begin() as conn:  # the lease of the dead run has run out by the next run
        conn.exec_driver_sql("DELETE FROM run_lease")
    finished = world.push()
    assert finished.reconciled == groups[1]
    assert world.calls()["records"]["updated"] == finished.updated + sum(groups)  # each change sent once
    assert finished.updated > 0 and not finished.failed


@pytest.mark.postgres
def test_two_syncs_started_at_once_create_each_lead_once(postgres_template, prefect_server, handoff_env,
                                                          sandbox_factory):
    from flows.ingest import ingest
    from flows.score import score_and_qualify
    from tests.conftest import _postgres_copy

    url, drop = _postgres_copy(postgres_template)
    try:
        marketing = sandbox_factory(WORLD)
        handoff_env(marketing.env, FAST, HANDOFF_FETCH_IN_SUBPROCESS="false", HANDOFF_DATABASE_URL=url)
        ingest(now=marketing.world.now)
        score_and_qualify(now=marketing.world.now)
        box = sandbox_factory(WORLD, tools=(), crm=True, faults={"salesforce": SalesforceFaults(slow_ms=30)})
        config = load_crm_config(env=box.env)
        world = Synced(box, make_engine(url), config.model_copy(update={"push": config.push.model_copy(
            update={"new_leads_owner": "crm_rule"})}))
        world.pull()
        leads_before = len(world.org("SELECT Id FROM Lead"))
        results, errors = [], []

        def run() -> None:
            try:
                results.append(world.push())
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(r.another_run_pushing for r in results) == [False, True]
        keys = Counter(lead["Handoff_Id__c"] for lead in handoff_leads_in_org(world))
        created = sum(r.created for r in results)
        assert created > 0 and len(world.org("SELECT Id FROM Lead")) == leads_before + created
        assert max(keys.values()) == 1
        world.engine.dispose()
    finally:
        drop()




# ---------------------------------------------------------------- the flow

def crm_events(api_url: str, run_id: str) -> list[dict]:
    """The handoff.crm.* events a run emitted, once the Prefect server holds them."""
    from handoff.prefect_server import drain_prefect_clients

    drain_prefect_clients()
    body = {"filter": {"event": {"prefix": ["handoff.crm."]},
                       "occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}}, "limit": 50}
    for _ in range(40):
        found = [e for e in requests.post(f"{api_url}/events/filter", json=body, timeout=10).json()["events"]
                 if e["payload"].get("run_id") == run_id]
        if found:
            return found
        time.sleep(0.25)
    return []


def test_the_crm_sync_flow_publishes_what_it_did_and_raises_an_event_for_failed_writes(world, prefect_server,
                                                                                       point_at):
    from flows.crm_sync import crm_sync

    crm_file = Path(world.engine.url.database).parent / "crm.yaml"
    crm_file.write_text((CONFIG_DIR / "crm.yaml").read_text().replace("new_leads_owner: handoff",
                                                                      "new_leads_owner: crm_rule"))
    point_at(world, HANDOFF_CRM_FILE=str(crm_file))
    world.faults.update(validation_error_every=4)
    summary = crm_sync(now=world.now)
    assert summary.push.dead_lettered > 0 and summary.push.created > 0
    assert "## Failed writes by error" in summary.markdown and "FIELD_CUSTOM_VALIDATION_EXCEPTION" in summary.markdown
    assert summary.calls and summary.api_allowed
    [event] = crm_events(prefect_server.api_url, summary.run_id)
    assert event["event"] == "handoff.crm.push-failed"
    assert event["payload"]["dead_lettered"] == summary.push.dead_lettered
    world.faults.update(validation_error_every=0)
    again = crm_sync(now=world.now)
    assert (again.push.created, again.push.updated, again.push.failed) == (0, 0, {})  # dead letters wait for a person


def test_credentials_the_org_refuses_fail_the_run_at_once_without_retries(world, prefect_server, point_at):
    from prefect import flow

    from connectors.http import PermanentError
    from tasks.crm_sync import connect_crm

    @flow
    def signs_in():
        return connect_crm(world.config)

    point_at(world)
    creds = world.config.connection.credentials
    refused = world.config.model_copy(update={"connection": world.config.connection.model_copy(update={
        "credentials": {**creds, "client_secret": SecretStr("not-the-secret")}})})
    world.config = refused
    requests.delete(world.box.url("salesforce") + "/_sandbox/salesforce/calls", timeout=10)
    with pytest.raises(PermanentError):
        signs_in()
    assert world.calls()["calls"]["token"] == 1  # refused once; a retry could not have fixed it
