"""A lead's mark for scoring is cleared only with the activities its scoring read: an activity stored while a
scoring chunk is at work on its lead leaves the lead marked for the next run, even when the batch that stored it
belongs to an ingest run that had marked the lead already (same run, same time: the mark itself is unchanged)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from sqlalchemy import select

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import build_activity
from store import scoring as store
from store.ingest import write_batch
from store.tables import LeadEvent
from tasks.scoring import score_chunk

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def write(engine, ext, kind):
    record = build_activity(source="events", external_id=ext, type_name=kind, occurred_at="2026-11-02T09:00:00Z",
                            raw={"id": ext}, email="pat@acme.example")
    write_batch(engine, source="events", activities=[record], people=[], rejections=[], checkpoint=None, now=NOW)


def newsletter_reader(engine):
    """A lead who signed up for the newsletter, marked for scoring: (rulebook, version id, lead id, its mark)."""
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    write(engine, "a1", "newsletter_signup")
    with engine.connect() as conn:
        taken = store.dirty_leads(conn, 10)
    [(lead_id, _)] = taken
    return rulebook, version_id, lead_id, taken


def while_paused_after(monkeypatch, name: str, call, *, meanwhile) -> None:
    """Run `call` in a thread until the store function `name` has returned once, then `meanwhile` in another
    thread (its own calls of `name` do not pause); let `call` go on a second later, and wait for both (any error
    of either fails the test)."""
    done, resume = threading.Event(), threading.Event()
    original = getattr(store, name)

    def paused(*args, **kwargs):
        result = original(*args, **kwargs)
        if not done.is_set():  # the first call only: `meanwhile` may call it too
            done.set()
            resume.wait(30)
        return result

    monkeypatch.setattr(store, name, paused)
    errors: list[BaseException] = []

    def run(work):
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    first = threading.Thread(target=run, args=(call,))
    first.start()
    assert done.wait(30)
    second = threading.Thread(target=run, args=(meanwhile,))
    second.start()
    time.sleep(1.0)
    resume.set()
    first.join(30)
    second.join(30)
    monkeypatch.setattr(store, name, original)
    assert errors == []


def test_an_activity_stored_while_its_lead_is_scored_keeps_the_lead_marked(engine, monkeypatch):
    rulebook, version_id, lead_id, taken = newsletter_reader(engine)

    # The chunk pauses once it has read the lead's activities (its ledger rebuilt, its total summed), while a
    # later batch of the same ingest run stores a demo request for the lead.
    while_paused_after(monkeypatch, "behaviour_totals", lambda: score_chunk(
        engine, rulebook, version_id, [lead_id], now=NOW, run_id="r", rebuild=[lead_id], dirty=taken),
        meanwhile=lambda: write(engine, "a2", "demo_request"))
    with engine.connect() as conn:
        assert [lead for lead, _ in store.dirty_leads(conn, 10)] == [lead_id]
        again = store.dirty_leads(conn, 10)
    score_chunk(engine, rulebook, version_id, [lead_id], now=NOW, run_id="r2", rebuild=[lead_id], dirty=again)
    with engine.connect() as conn:
        assert store.dirty_leads(conn, 10) == []
        lines = store.ledger_lines(conn, [lead_id])[lead_id]
        assert [line["type"] for line in lines] == ["newsletter_signup", "demo_request"]
        assert store.lead_state_row(conn, lead_id)["score"] == sum(line["points"] for line in lines)


def test_an_activity_stored_while_a_rescore_rebuilds_the_ledger_keeps_its_lead_marked(engine, handoff_env, monkeypatch):
    # A rescore rebuilds every ledger in one statement, ahead of its chunks: the marks it took before are
    # cleared with that statement, so a batch of the same ingest run that lands meanwhile marks its lead anew.
    from tasks.scoring import rebuild_all_ledgers

    handoff_env()
    rulebook, version_id, lead_id, taken = newsletter_reader(engine)

    while_paused_after(monkeypatch, "rebuild_ledger", lambda: rebuild_all_ledgers.fn(version_id, taken),
                       meanwhile=lambda: write(engine, "a2", "demo_request"))

    # The rescore's chunk scores the lead with the ledger as rebuilt and clears no mark of its own ...
    score_chunk(engine, rulebook, version_id, [lead_id], now=NOW, run_id="r", rebuild=[], dirty=[])
    with engine.connect() as conn:
        again = store.dirty_leads(conn, 10)
    assert [lead for lead, _ in again] == [lead_id]  # ... and the demo request waits for the next run
    score_chunk(engine, rulebook, version_id, [lead_id], now=NOW, run_id="r2", rebuild=[lead_id], dirty=again)
    with engine.connect() as conn:
        assert [line["type"] for line in store.ledger_lines(conn, [lead_id])[lead_id]] == ["newsletter_signup", "demo_request"]


def test_a_decay_pass_that_reads_a_lead_while_new_activities_score_it_keeps_no_stale_score(engine, monkeypatch):
    # A decay pass holds no mark for a lead nobody marked, so an incremental chunk may score the same lead at
    # the same time. Whichever saves second must have read what the first saved: the pass that read the
    # newsletter-only total must not write it back over the white paper the other chunk just scored.
    rulebook, version_id, lead_id, taken = newsletter_reader(engine)
    score_chunk(engine, rulebook, version_id, [lead_id], now=NOW, run_id="r1", rebuild=[lead_id], dirty=taken)

    def new_white_paper_scored():
        write(engine, "a2", "whitepaper_download")
        with engine.connect() as conn:
            marks = store.dirty_leads(conn, 10)
        score_chunk(engine, rulebook, version_id, [lead_id], now=NOW, run_id="r3", rebuild=[lead_id], dirty=marks)

    while_paused_after(monkeypatch, "behaviour_totals", lambda: score_chunk(
        engine, rulebook, version_id, [lead_id], now=NOW, run_id="r2-decay"), meanwhile=new_white_paper_scored)
    with engine.connect() as conn:
        lines = store.ledger_lines(conn, [lead_id])[lead_id]
        assert [line["type"] for line in lines] == ["newsletter_signup", "whitepaper_download"]
        assert store.lead_state_row(conn, lead_id)["score"] == sum(line["points"] for line in lines)
        assert store.dirty_leads(conn, 10) == []


def test_two_chunks_that_score_a_new_lead_at_once_record_its_first_stages_and_its_handoff_once(engine, monkeypatch):
    # A lead never scored has no state row for a chunk to lock. A rescore's chunk, which holds no mark, reads
    # "no state" while the incremental chunk that holds the lead's mark scores it as an MQL and commits. Saving
    # its own first state, the rescore's chunk finds the lead's state already there: it reads the lead again
    # and goes on from what the other saved, instead of recording the lead's first stages twice or failing on
    # a second first crossing.
    from tests.test_score_merges import good_fit

    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    demo = build_activity(source="events", external_id="d1", type_name="demo_request",
                          occurred_at="2026-11-02T09:00:00Z", raw={"id": "d1"}, email="pat@acme.example")
    write_batch(engine, source="events", activities=[demo], people=[good_fit("Pat", email="pat@acme.example",
                                                                              source="events")],
                rejections=[], checkpoint=None, now=NOW)
    with engine.connect() as conn:
        [(lead_id, _)] = marks = store.dirty_leads(conn, 10)

    while_paused_after(monkeypatch, "load_states", lambda: score_chunk(
        engine, rulebook, version_id, [lead_id], now=NOW, run_id="rescore"), meanwhile=lambda: score_chunk(
        engine, rulebook, version_id, [lead_id], now=NOW, run_id="incremental", rebuild=[lead_id], dirty=marks))
    with engine.connect() as conn:
        history = [(row["from_stage"], row["to_stage"]) for row in store.stage_history(conn, lead_id)]
        events = conn.execute(select(LeadEvent.__table__.c.crossing).where(LeadEvent.__table__.c.lead_id == lead_id)).all()
        state = store.lead_state_row(conn, lead_id)
    assert history == [(None, "lead"), ("lead", "mql")]
    assert [crossing for (crossing,) in events] == [1]
    assert (state["stage"], state["crossings"]) == ("mql", 1)
