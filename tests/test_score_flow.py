"""The score-and-qualify and rescore flows end to end: stand-ins -> ingest -> scores, stages, events."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from flows.ingest import ingest
from flows.score import rescore, score_and_qualify
from handoff.prefect_server import drain_prefect_clients
from sandbox.world import WorldSpec
from store.tables import HandoffQueue, LeadDirty, LeadEvent, LeadState, StageChange
from tasks.explain import explain_lead
from tests.flow_support import FAST, lead_emails, rulebook_copy

pytestmark = pytest.mark.slow

WORLD = WorldSpec(seed=17, people=300, activities=4000, weeks=6)


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__).where(*where)).scalar_one()


def ingested(box, handoff_env, **env):
    handoff_env(box.env, FAST, HANDOFF_FETCH_IN_SUBPROCESS="false", **env)
    ingest(now=box.world.now)


def scored_on_its_own_rulebook(sandbox_factory, handoff_env, rules: Path):
    """The stand-ins' world ingested and scored once with a copy of the shipped rulebook at `rules`, which the
    test may then edit: the stand-ins, and the first run's summary."""
    box = sandbox_factory(WORLD)
    rulebook_copy(rules)
    ingested(box, handoff_env, HANDOFF_RULEBOOK_DIR=str(rules))
    return box, score_and_qualify(now=box.world.now)


def lead_events(api_url: str, event_ids: set[str]) -> list[dict]:
    """The handoff.lead.* events the Prefect server stored, page by page (it writes events asynchronously,
    so wait until every expected event is there)."""
    drain_prefect_clients()
    body = {"filter": {"event": {"prefix": ["handoff.lead."]},
                       "occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}},
            "limit": 50}
    seen: list[dict] = []
    for _ in range(40):
        page = requests.post(f"{api_url}/events/filter", json=body, timeout=10).json()
        seen = list(page["events"])
        while page.get("next_page"):
            page = requests.get(page["next_page"], timeout=10).json()
            seen += page["events"]
        if {e["id"] for e in seen} >= event_ids:
            break
        time.sleep(0.25)
    return seen


def run_log(api_url: str, run_id: str) -> list[str]:
    """The messages a flow run logged, as the Prefect UI shows them, oldest first."""
    drain_prefect_clients()
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
    return [line["message"] for line in requests.post(f"{api_url}/logs/filter", json=body, timeout=10).json()]


def _lead_of(event: dict) -> int:
    return int(event["resource"]["prefect.resource.id"].rsplit(".", 1)[1])


def test_scoring_qualifies_leads_explains_every_score_exactly_and_a_second_run_finds_nothing_to_do(
    prefect_server, handoff_env, engine, sandbox_factory
):
    box = sandbox_factory(WORLD)
    ingested(box, handoff_env)
    first = score_and_qualify(now=box.world.now)

    assert first.mode == "rescore" and first.reason == "first scoring run"
    assert first.outcome.leads == len(lead_emails(engine)) == count(engine, LeadState)
    mqls = count(engine, LeadState, LeadState.__table__.c.stage == "mql")
    assert mqls == len(first.outcome.new_mqls) > 0
    # Each MQL queued once for routing and once for CRM sync, with one outbox event; each disqualification has
    # its event too; every event sent once.
    events = LeadEvent.__table__.c
    assert count(engine, LeadEvent, events.kind == "mql") == mqls
    disqualified = first.outcome.stage_changes["lead -> disqualified"]
    assert count(engine, LeadEvent, events.kind == "disqualified") == disqualified > 0
    sent = count(engine, LeadEvent)
    assert sent == mqls + disqualified == count(engine, LeadEvent, events.sends == 1, events.sent_at.isnot(None))
    assert first.events.sent == sent and first.events.confirmed == 0
    assert count(engine, HandoffQueue, HandoffQueue.__table__.c.queue == "routing") == mqls
    assert count(engine, HandoffQueue, HandoffQueue.__table__.c.queue == "crm_sync") == mqls

    for email in lead_emails(engine):
        explained = explain_lead(engine, email)
        assert explained["explained_total"] == explained["score"], email

    changes = count(engine, StageChange)
    outbox = {row.event_id for row in _rows(engine, LeadEvent)}
    stored = {e["id"]: e for e in lead_events(prefect_server.api_url, outbox) if e["id"] in outbox}
    assert set(stored) == outbox  # the server took them in
    out = [e for e in stored.values() if e["event"] == "handoff.lead.disqualified"]
    assert len(out) == disqualified and all(e["payload"]["from"] == "lead" and e["payload"]["to"] == "disqualified"
                                            and e["payload"]["reason"] for e in out)
    second = score_and_qualify(now=box.world.now)
    assert second.mode == "incremental" and second.outcome.leads == 0
    # The next run finds every event on the server, confirms it, and sends nothing again.
    assert (second.events.confirmed, second.events.sent, second.events.resent) == (sent, 0, 0)
    assert count(engine, LeadEvent, events.published_at.isnot(None), events.sends == 1) == sent
    assert "incremental: no lead to score (those with new activities, changed fields or merges since the last run)" \
        in run_log(prefect_server.api_url, second.run_id)
    assert count(engine, StageChange) == changes and count(engine, LeadEvent) == sent


@pytest.mark.parametrize("chunk, workers", [("5000", "1"), ("7", "3")])  # one chunk; chunks three at a time
def test_new_activities_rescore_only_the_leads_they_touch(prefect_server, handoff_env, engine, sandbox_factory, chunk,
                                                          workers):
    box = sandbox_factory(WorldSpec(seed=4, people=200, activities=2500, weeks=1, late_rate=0.4, late_by_hours=3))
    ingested(box, handoff_env, HANDOFF_SCORE_CHUNK_SIZE=chunk, HANDOFF_SCORE_WORKERS=workers)
    score_and_qualify(now=box.world.now)
    hidden = {e.person for e in box.world.events if e.available_ts > box.world.clock and not e.malformed}
    assert hidden

    box.world.advance(hours=4)
    ingest(now=box.world.now)
    later = score_and_qualify(now=box.world.now)

    assert later.mode == "incremental"
    assert later.outcome.leads == len(hidden)  # the people with late activities, and no one else, each once
    assert count(engine, LeadDirty) == 0
    assert score_and_qualify(now=box.world.now).outcome.leads == 0


def test_a_run_that_fails_after_emitting_is_retried_without_a_second_event_or_routing(
    prefect_server, handoff_env, engine, sandbox_factory, monkeypatch
):
    import store.outbox

    box = sandbox_factory(WORLD)
    ingested(box, handoff_env)
    real = store.outbox.mark_sent
    calls = {"n": 0}

    def crash_once(conn, ids, now):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("the database went away after the events were emitted")
        return real(conn, ids, now)

    monkeypatch.setattr(store.outbox, "mark_sent", crash_once)
    summary = score_and_qualify.with_options(retries=1, retry_delay_seconds=0)(now=box.world.now)

    assert calls["n"] == 2  # the first attempt failed after emitting; the retry finished
    rows = _rows(engine, LeadEvent)
    assert rows and summary.events.sent == len(rows)
    outbox = {row.event_id: (row.kind, row.lead_id) for row in rows}
    events = [e for e in lead_events(prefect_server.api_url, set(outbox)) if e["id"] in outbox]
    # once each, though emitted twice
    assert sorted((e["event"], _lead_of(e)) for e in events) == sorted((f"handoff.lead.{kind}", lead_id)
                                                                       for kind, lead_id in outbox.values())
    mql_leads = {lead_id for kind, lead_id in outbox.values() if kind == "mql"}
    routing = [row.lead_id for row in _rows(engine, HandoffQueue) if row.queue == "routing"]
    assert sorted(routing) == sorted(mql_leads)


def test_events_have_left_the_process_before_they_are_marked_sent(
    prefect_server, handoff_env, engine, sandbox_factory, monkeypatch
):
    """emit_event queues; a run that ended right after marking would take what was still queued with it."""
    from prefect.events.worker import EventsWorker

    import store.outbox

    box = sandbox_factory(WORLD)
    ingested(box, handoff_env)
    real = store.outbox.mark_sent
    queued_at_marking: list[int] = []

    def marking(conn, ids, now):
        queued_at_marking.append(EventsWorker.instance()._queue.unfinished_tasks)
        return real(conn, ids, now)

    monkeypatch.setattr(store.outbox, "mark_sent", marking)
    summary = score_and_qualify(now=box.world.now)
    assert summary.events.sent > 0
    assert queued_at_marking and set(queued_at_marking) == {0}


def test_a_run_sends_its_events_a_burst_at_a_time_each_held_by_prefect_before_the_next(
    prefect_server, handoff_env, engine, sandbox_factory, monkeypatch
):
    """A Prefect server on its in-memory broker drops events that arrive faster than it stores them (its queue
    holds 10,000): past HANDOFF_EVENT_BURST a run waits until the server holds what it sent before sending more."""
    import tasks.outbox

    box = sandbox_factory(WORLD)
    ingested(box, handoff_env, HANDOFF_EVENT_BURST="10")
    real, bursts = tasks.outbox._held_by_server, []

    def asked(client, events):
        bursts.append(len(events))
        return real(client, events)

    monkeypatch.setattr(tasks.outbox, "_held_by_server", asked)
    first = score_and_qualify(now=box.world.now)
    sent = count(engine, LeadEvent)
    # Every full burst held before the next was sent; the last, short one is asked about by the next run
    assert first.events.sent == sent > 20 and first.events.confirmed == 10 * (sent // 10)
    assert max(bursts) == 10
    assert count(engine, LeadEvent, LeadEvent.__table__.c.published_at.isnot(None)) == first.events.confirmed


def test_the_events_of_the_first_chunks_go_out_while_later_chunks_are_scored(
    prefect_server, handoff_env, engine, sandbox_factory, monkeypatch
):
    """The waits for the Prefect server to store each burst pass while the run is still scoring."""
    import store.outbox
    import tasks.scoring

    box = sandbox_factory(WORLD)
    ingested(box, handoff_env, HANDOFF_SCORE_CHUNK_SIZE="23", HANDOFF_EVENT_BURST="5")
    real_chunk, real_mark, scored_when_sent = tasks.scoring.score_chunk, store.outbox.mark_sent, []

    def slow_chunk(*args, **kwargs):  # a chunk that takes a while, as 5,000 leads do
        outcome = real_chunk(*args, **kwargs)
        time.sleep(0.3)
        return outcome

    def marking(conn, ids, now):
        scored_when_sent.append(conn.execute(select(func.count()).select_from(LeadState.__table__)).scalar_one())
        return real_mark(conn, ids, now)

    monkeypatch.setattr(tasks.scoring, "score_chunk", slow_chunk)
    monkeypatch.setattr(store.outbox, "mark_sent", marking)
    first = score_and_qualify(now=box.world.now)  # 14 chunks

    assert first.events.sent == count(engine, LeadEvent) and first.events.confirmed >= 5
    assert min(scored_when_sent) < first.outcome.leads  # sent before the last chunk was scored
    assert count(engine, LeadEvent, LeadEvent.__table__.c.sends != 1) == 0  # each event sent once


def test_a_run_waits_on_no_further_burst_once_the_server_stored_none_of_one(
    prefect_server, handoff_env, engine, sandbox_factory, monkeypatch
):
    import tasks.outbox
    import tasks.scoring

    box = sandbox_factory(WORLD)
    ingested(box, handoff_env, HANDOFF_EVENT_BURST="10")
    real, waits = tasks.outbox._once_held, []

    def waiting(engine_, events, now):
        waits.append(len(events))
        return real(engine_, events, now)

    def slow_chunk(*args, **kwargs):  # lingers once committed: the run's pump takes up the chunk's events
        outcome = real_chunk(*args, **kwargs)
        time.sleep(1.5)
        return outcome

    real_chunk = tasks.scoring.score_chunk
    monkeypatch.setattr(tasks.scoring, "score_chunk", slow_chunk)
    monkeypatch.setattr(tasks.outbox, "emit_event", lambda **event: None)  # every event lost on its way out
    monkeypatch.setattr(tasks.outbox, "STALL_SECONDS", 1.0)
    monkeypatch.setattr(tasks.outbox, "_once_held", waiting)
    first = score_and_qualify(now=box.world.now)
    assert first.events.sent == count(engine, LeadEvent) > 20 and first.events.confirmed == 0
    # The first burst waited on, in vain; the rest sent without waiting, by the pump or the run's last step
    assert waits == [10] and not first.events.server_storing


def test_an_event_prefect_never_received_is_sent_again_under_its_id_until_prefect_holds_it(
    prefect_server, handoff_env, engine, sandbox_factory, monkeypatch
):
    """Prefect's event queue drops what it cannot deliver with a log line: the outbox reads events back from the
    server before it takes them as delivered, and sends again what is missing a resend interval later."""
    import tasks.outbox

    box = sandbox_factory(WORLD)
    ingested(box, handoff_env, HANDOFF_EVENT_RESEND_AFTER_MINUTES="10")
    real, kept, dropped = tasks.outbox.emit_event, set(), set()

    def lossy(**event):  # every other event lost on its way out
        (kept if len(kept) <= len(dropped) else dropped).add(str(event["id"]))
        if str(event["id"]) in kept:
            real(**event)

    monkeypatch.setattr(tasks.outbox, "emit_event", lossy)
    monkeypatch.setattr(tasks.outbox, "PAGE", 4)  # the events held read back over several pages
    first = score_and_qualify(now=box.world.now)
    assert first.events.sent == count(engine, LeadEvent) == len(kept) + len(dropped) > 4 * tasks.outbox.PAGE
    monkeypatch.setattr(tasks.outbox, "emit_event", real)
    assert set(e["id"] for e in lead_events(prefect_server.api_url, kept)) >= kept

    # The events the server holds are confirmed; the others are not sent again before the resend interval.
    soon = score_and_qualify(now=box.world.now + timedelta(minutes=9))
    assert (soon.events.confirmed, soon.events.sent, soon.events.resent) == (len(kept), 0, 0)

    later = score_and_qualify(now=box.world.now + timedelta(minutes=10))
    assert (later.events.confirmed, later.events.resent) == (0, len(dropped))
    outbox = {row.event_id: row for row in _rows(engine, LeadEvent)}
    assert set(outbox) == kept | dropped
    assert {row.event_id for row in outbox.values() if row.sends == 2} == dropped
    stored = [e for e in lead_events(prefect_server.api_url, set(outbox)) if e["id"] in outbox]
    assert sorted(e["id"] for e in stored) == sorted(outbox)  # each once, under the id first written

    after = score_and_qualify(now=box.world.now + timedelta(minutes=30))
    assert (after.events.confirmed, after.events.resent, after.events.given_up) == (len(dropped), 0, 0)
    assert count(engine, LeadEvent, LeadEvent.__table__.c.published_at.is_(None)) == 0
    quiet = score_and_qualify(now=box.world.now + timedelta(minutes=35))
    assert "lead events: none to send or confirm" in run_log(prefect_server.api_url, quiet.run_id)


def _rows(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(table.__table__)).all()


def test_a_rulebook_change_rescores_everyone_predictably_and_rescoring_again_changes_nothing(
    prefect_server, handoff_env, engine, sandbox_factory, tmp_path
):
    rules = tmp_path / "rules"
    box, before = scored_on_its_own_rulebook(sandbox_factory, handoff_env, rules)

    csv = rules / "scoring.csv"
    csv.write_text(csv.read_text().replace("page_view:/pricing,decision,15,30,1/day", "page_view:/pricing,decision,40,80,1/day"))
    changed = score_and_qualify(now=box.world.now)
    assert changed.mode == "rescore" and changed.reason == f"rulebook changed: version {before.version_id} -> {changed.version_id}"
    assert changed.outcome.score_changed > 0
    assert changed.outcome.leads == before.outcome.leads

    again = rescore(reason="check that a rescore is idempotent", now=box.world.now)
    assert again.mode == "rescore" and again.outcome.score_changed == 0 and again.outcome.stage_changes == {}
    assert again.version_id == changed.version_id


def test_the_daily_decay_pass_lowers_scores_of_leads_nobody_touched(prefect_server, handoff_env, engine, sandbox_factory):
    box = sandbox_factory(WORLD)
    ingested(box, handoff_env)
    score_and_qualify(now=box.world.now)
    with engine.connect() as conn:
        before = dict(conn.execute(select(LeadState.__table__.c.lead_id, LeadState.__table__.c.score)).all())

    later = score_and_qualify(now=box.world.now + timedelta(days=10))

    assert later.mode == "decay" and later.outcome.leads == len(before)
    with engine.connect() as conn:
        after = dict(conn.execute(select(LeadState.__table__.c.lead_id, LeadState.__table__.c.score)).all())
    assert all(after[lead] <= before[lead] for lead in before)
    assert sum(after.values()) < sum(before.values())


def _states(engine) -> dict[int, tuple]:
    table = LeadState.__table__
    columns = [c for c in table.c if c.name != "scored_at"]
    with engine.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(select(*columns).order_by(table.c.lead_id))}


def test_chunks_scored_side_by_side_give_what_one_at_a_time_gives(prefect_server, handoff_env, engine, sandbox_factory):
    box = sandbox_factory(WORLD)
    ingested(box, handoff_env, HANDOFF_SCORE_CHUNK_SIZE="23", HANDOFF_SCORE_WORKERS="3")
    first = score_and_qualify(now=box.world.now)  # every lead, in 14 chunks, three at a time

    assert first.mode == "rescore" and first.outcome.leads == len(lead_emails(engine)) == count(engine, LeadState)
    # Whoever watches the run sees the rebuild, the plan, and the leads scored so far after every chunk
    leads, mqls = first.outcome.leads, len(first.outcome.new_mqls)
    progress = [m for m in run_log(prefect_server.api_url, first.run_id) if m.startswith(("ledger", "rescore", "scored"))]
    assert progress[:3] == [
        f"rescore (first scoring run), rulebook version {first.version_id}: rebuilding every lead's ledger from the activity log",
        f"ledger rebuilt: {first.outcome.ledger_rows:,} contributions",
        f"rescore: {leads} leads to score (every lead), in 14 chunks of up to 23, 3 at a time"]
    assert len(progress) == 3 + 14 and progress[3].startswith(f"scored 23 of {leads} leads (chunk 1 of 14); ")
    assert progress[-1] == (f"scored {leads} of {leads} leads (chunk 14 of 14); scores changed: {leads}, "
                            f"stage changes: {sum(first.outcome.stage_changes.values())}, new MQLs: {mqls}")
    mqls = count(engine, LeadState, LeadState.__table__.c.stage == "mql")
    assert mqls == len(first.outcome.new_mqls) == count(engine, LeadEvent, LeadEvent.__table__.c.kind == "mql") > 0
    assert count(engine, HandoffQueue) == 2 * mqls
    side_by_side = _states(engine)

    handoff_env(HANDOFF_SCORE_CHUNK_SIZE="5000", HANDOFF_SCORE_WORKERS="1")
    again = rescore(reason="the same leads in one chunk", now=box.world.now)

    assert again.outcome.leads == first.outcome.leads
    assert again.outcome.score_changed == 0 and again.outcome.stage_changes == {} and not again.outcome.new_mqls
    assert _states(engine) == side_by_side
