"""The sync's rules, CRM-neutral: what Handoff writes and when it differs, the last interesting moment in a rep's
words, and what a CRM change asks of the lifecycle; and the store's side of a write (in flight, taken, failed,
dead-lettered) and the push lease, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from config.crm import load_crm_config
from domain.crm import (
    CrmObject, CrmOpportunity, CrmPerson, CrmWrite, Outcome, WriteResult, changed_values, comparable,
    desired_values, details_for_create, interesting_moment, opportunity_move, person_move,
)
from domain.lifecycle import Stage
from store import crm as store
from store.tables import CrmRecord, HandoffQueue, Lead

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
MAPPING = load_crm_config().stage_mapping()


def person(**changes) -> CrmPerson:
    values = dict(object=CrmObject.LEAD, crm_id="00Q5e000000001AAA", email="ada@acme.example", handoff_key=None,
                  owner_id="0055e000000001AAA", status="Open - Not Contacted", converted=False, contact_id=None,
                  opportunity_id=None, account_id=None, recycle_reason=None, deleted=False, master_id=None,
                  modified_by="0055e000000001AAA", modified_at=NOW)
    values.update(changes)
    return CrmPerson(**values)


def test_handoff_writes_whole_points_and_leaves_out_what_it_does_not_know():
    values = desired_values(score_centipoints=6150, fit_grade="A", stage="mql", qualified_at=None, moment=None,
                            moment_at=None)
    assert values == {"score": 62, "fit_grade": "A", "stage": "mql"}  # no mql_at, no moment: never a blank


def test_only_what_differs_from_what_the_crm_last_took_is_written():
    at = NOW + timedelta(microseconds=123456)
    desired = desired_values(score_centipoints=4000, fit_grade="B", stage="mql", qualified_at=at, moment="m",
                             moment_at=at)
    pushed = comparable(desired)
    assert changed_values(desired, pushed) == {}
    assert pushed["mql_at"] == "2026-11-02T12:00:00.123000+00:00"  # the CRM keeps milliseconds
    assert changed_values({**desired, "score": 41}, pushed) == {"score": 41}


def test_a_new_record_gets_a_placeholder_only_for_a_required_field_handoff_does_not_know():
    values = details_for_create({"email": "ada@acme.example", "company": "Acme", "last_name": None},
                                {"last_name": "[not provided]", "company": "[not provided]"})
    assert values == {"email": "ada@acme.example", "company": "Acme", "last_name": "[not provided]"}


def test_the_last_interesting_moment_reads_as_a_rep_would_say_it():
    assert interesting_moment("whitepaper_download", "State of RevOps 2026", "Q4 nurture") == \
        "Downloaded 'State of RevOps 2026' (campaign Q4 nurture)"
    assert interesting_moment("demo_request", None, None) == "Requested a demo"
    assert len(interesting_moment("page_view", "/p?" + "x" * 400, None)) == 255


def test_a_status_a_rep_sets_moves_the_stage_and_an_unchanged_one_does_not():
    contacted = person(status="Working - Contacted")
    assert person_move(contacted, person(), MAPPING, "Jordan Blake").target is Stage.SQL
    assert person_move(contacted, contacted, MAPPING, None) is None  # Handoff's own write changed no status
    assert person_move(person(), None, MAPPING, None) is None  # open: stays where it is


def test_nurture_recycles_with_the_reps_reason_and_a_closed_lead_is_disqualified():
    move = person_move(person(status="Nurturing", recycle_reason="budget next year"), person(), MAPPING, "Priya Nair")
    assert move.target is Stage.RECYCLED and "budget next year" in move.reason and "Priya Nair" in move.reason
    assert person_move(person(status="Closed - Not Converted"), person(), MAPPING, None).target is Stage.DISQUALIFIED


def test_a_conversion_moves_to_opportunity_when_an_opportunity_came_with_it():
    converted = person(converted=True, status="Closed - Converted", contact_id="0035e000000001AAA",
                       opportunity_id="0065e000000001AAA")
    assert person_move(converted, person(), MAPPING, None).target is Stage.OPPORTUNITY
    assert person_move(person(converted=True, contact_id="0035e000000001AAA"), person(), MAPPING, None).target \
        is Stage.SQL
    assert person_move(converted, converted, MAPPING, None) is None


def test_an_opportunity_won_makes_a_customer_and_a_lost_one_recycles():
    def opportunity(stage: str, closed=False, won=False) -> CrmOpportunity:
        return CrmOpportunity("0065e000000001AAA", None, stage, closed, won, 5000.0, None, None, False, NOW)

    assert opportunity_move(opportunity("Closed Won", True, True), opportunity("Negotiation/Review"), MAPPING).target \
        is Stage.CUSTOMER
    assert opportunity_move(opportunity("Closed Lost", True), None, MAPPING).target is Stage.RECYCLED
    assert opportunity_move(opportunity("Qualification"), None, MAPPING).target is Stage.OPPORTUNITY
    assert opportunity_move(opportunity("Qualification"), opportunity("Qualification"), MAPPING) is None


# ---------------------------------------------------------------- the store's side of a write

def lead(engine, email: str) -> int:
    with engine.begin() as conn:
        return conn.execute(Lead.__table__.insert().values(email=email, created_at=NOW, updated_at=NOW)
                            .returning(Lead.__table__.c.id)).scalar_one()


def record(engine, lead_id: int) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(CrmRecord.__table__).where(CrmRecord.__table__.c.lead_id == lead_id)).mappings().one()
    return dict(row)


def test_a_write_is_noted_in_flight_then_recorded_as_taken_with_the_new_records_id(engine):
    lead_id = lead(engine, "ada@acme.example")
    write = CrmWrite(lead_id, CrmObject.LEAD, None, store.key_of(lead_id), {"score": 40})
    payloads = {lead_id: {"object": "Lead", "key": write.key, "crm_id": None, "values": {"score": 40}}}
    with engine.begin() as conn:
        store.mark_sending(conn, [write], payloads, NOW)
        assert store.in_flight(conn) == [(lead_id, payloads[lead_id])]
        store.record_results(conn, [WriteResult(lead_id, Outcome.CREATED, "00Q5e000000009AAA")], payloads, NOW, 5)
        assert store.in_flight(conn) == []
    row = record(engine, lead_id)
    assert (row["crm_id"], json.loads(row["pushed"]), row["sending"]) == ("00Q5e000000009AAA", {"score": 40}, None)
    payloads[lead_id]["values"] = {"stage": "sql"}
    with engine.begin() as conn:  # a later write of one field keeps what was taken of the others
        store.record_results(conn, [WriteResult(lead_id, Outcome.WRITTEN, "00Q5e000000009AAA")], payloads, NOW, 5)
    assert json.loads(record(engine, lead_id)["pushed"]) == {"score": 40, "stage": "sql"}


def test_a_transient_failure_counts_an_attempt_and_dead_letters_at_the_last_and_a_person_requeues(engine):
    lead_id = lead(engine, "bob@acme.example")
    payloads = {lead_id: {"object": "Lead", "key": store.key_of(lead_id), "crm_id": None, "values": {}}}
    locked = WriteResult(lead_id, Outcome.TRANSIENT, error_code="UNABLE_TO_LOCK_ROW", message="locked")
    with engine.begin() as conn:
        store.mark_sending(conn, [CrmWrite(lead_id, CrmObject.LEAD, None, "k", {})], payloads, NOW)
        for _ in range(2):
            store.record_results(conn, [locked], payloads, NOW, 3)
    assert (record(engine, lead_id)["attempts"], record(engine, lead_id)["dead_at"]) == (2, None)
    with engine.begin() as conn:
        store.record_results(conn, [locked], payloads, NOW, 3)
        assert [d["error_code"] for d in store.dead_letters(conn)] == ["UNABLE_TO_LOCK_ROW"]
        assert store.requeue(conn) == 1
        assert store.dead_letters(conn) == []


def test_a_failure_that_will_not_pass_is_dead_lettered_at_once(engine):
    lead_id = lead(engine, "cy@acme.example")
    payloads = {lead_id: {"object": "Lead", "key": "k", "crm_id": None, "values": {}}}
    with engine.begin() as conn:
        store.mark_sending(conn, [CrmWrite(lead_id, CrmObject.LEAD, None, "k", {})], payloads, NOW)
        store.record_results(conn, [WriteResult(lead_id, Outcome.FAILED, error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                                message="Score must be positive")], payloads, NOW, 5)
        [dead] = store.dead_letters(conn)
    assert (dead["email"], dead["error"]) == ("cy@acme.example", "Score must be positive")


def test_a_taken_write_closes_the_leads_open_crm_sync_queue_rows(engine):
    lead_id = lead(engine, "dee@acme.example")
    with engine.begin() as conn:
        conn.execute(Lead.metadata.tables["lead_event"].insert().values(
            event_id="e1", lead_id=lead_id, kind="mql", crossing=1, occurred_at=NOW, payload="{}"))
        conn.execute(HandoffQueue.__table__.insert(), [
            {"lead_event_id": 1, "lead_id": lead_id, "queue": queue, "created_at": NOW} for queue in ("crm_sync", "routing")])
        payloads = {lead_id: {"object": "Lead", "key": "k", "crm_id": None, "values": {}}}
        store.mark_sending(conn, [CrmWrite(lead_id, CrmObject.LEAD, None, "k", {})], payloads, NOW)
        store.record_results(conn, [WriteResult(lead_id, Outcome.CREATED, "00Q5e000000007AAA")], payloads, NOW, 5)
        open_queues = conn.execute(select(HandoffQueue.__table__.c.queue).where(
            HandoffQueue.__table__.c.done_at.is_(None))).scalars().all()
    assert open_queues == ["routing"]


def test_one_run_at_a_time_holds_the_push_until_it_releases_it_or_it_expires(engine):
    with engine.begin() as conn:
        assert store.take_lease(conn, "crm-push", "run-a", NOW, NOW + timedelta(minutes=15))
        assert not store.take_lease(conn, "crm-push", "run-b", NOW, NOW + timedelta(minutes=15))
        assert store.take_lease(conn, "crm-push", "run-a", NOW, NOW + timedelta(minutes=30))  # its holder renews
        assert store.take_lease(conn, "crm-push", "run-b", NOW + timedelta(minutes=31), NOW + timedelta(minutes=45))
        store.release_lease(conn, "crm-push", "run-b")
        assert store.take_lease(conn, "crm-push", "run-c", NOW, NOW + timedelta(minutes=15))
