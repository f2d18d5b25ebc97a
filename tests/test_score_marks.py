"""A lead's mark for scoring is cleared only with the activities its scoring read: an activity stored while a
scoring chunk is at work on its lead leaves the lead marked for the next run, even when the batch that stored it
belongs to an ingest run that had marked the lead already (same run, same time: the mark itself is unchanged)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import build_activity
from store import scoring as store
from store.ingest import write_batch
from store.tables import Lead
from tasks.scoring import score_chunk

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def write(engine, ext, kind):
    record = build_activity(source="events", external_id=ext, type_name=kind, occurred_at="2026-11-02T09:00:00Z",
                            raw={"id": ext}, email="pat@acme.example")
    write_batch(engine, source="events", activities=[record], people=[], rejections=[], checkpoint=None, now=NOW)


def test_an_activity_stored_while_its_lead_is_scored_keeps_the_lead_marked(engine, monkeypatch):
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    write(engine, "a1", "newsletter_signup")
    with engine.connect() as conn:
        taken = store.dirty_leads(conn, 10)
    [(lead_id, _)] = taken

    # The chunk pauses once it has read the lead's activities (its ledger rebuilt, its total summed) ...
    read, resume = threading.Event(), threading.Event()
    totals = store.behaviour_totals

    def paused_totals(*args, **kwargs):
        result = totals(*args, **kwargs)
        read.set()
        resume.wait(30)
        return result

    monkeypatch.setattr(store, "behaviour_totals", paused_totals)
    errors: list[BaseException] = []

    def run(call):
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    scoring = threading.Thread(target=run, args=(lambda: score_chunk(
        engine, rulebook, version_id, [lead_id], now=NOW, run_id="r", rebuild=[lead_id], dirty=taken),))
    scoring.start()
    assert read.wait(30)
    # ... while a later batch of the same ingest run stores a demo request for the lead.
    batch = threading.Thread(target=run, args=(lambda: write(engine, "a2", "demo_request"),))
    batch.start()
    time.sleep(1.0)
    resume.set()
    scoring.join(30)
    batch.join(30)
    assert errors == []

    monkeypatch.setattr(store, "behaviour_totals", totals)
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
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    write(engine, "a1", "newsletter_signup")
    with engine.connect() as conn:
        taken = store.dirty_leads(conn, 10)
    [(lead_id, _)] = taken

    built, resume = threading.Event(), threading.Event()
    rebuild = store.rebuild_ledger

    def paused_rebuild(*args, **kwargs):
        rows = rebuild(*args, **kwargs)
        built.set()
        resume.wait(30)
        return rows

    monkeypatch.setattr(store, "rebuild_ledger", paused_rebuild)
    errors: list[BaseException] = []

    def run(call):
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    rescoring = threading.Thread(target=run, args=(lambda: rebuild_all_ledgers.fn(version_id, taken),))
    rescoring.start()
    assert built.wait(30)
    batch = threading.Thread(target=run, args=(lambda: write(engine, "a2", "demo_request"),))
    batch.start()
    time.sleep(1.0)
    resume.set()
    rescoring.join(30)
    batch.join(30)
    assert errors == []
    monkeypatch.setattr(store, "rebuild_ledger", rebuild)

    # The rescore's chunk scores the lead with the ledger as rebuilt and clears no mark of its own ...
    score_chunk(engine, rulebook, version_id, [lead_id], now=NOW, run_id="r", rebuild=[], dirty=[])
    with engine.connect() as conn:
        again = store.dirty_leads(conn, 10)
    assert [lead for lead, _ in again] == [lead_id]  # ... and the demo request waits for the next run
    score_chunk(engine, rulebook, version_id, [lead_id], now=NOW, run_id="r2", rebuild=[lead_id], dirty=again)
    with engine.connect() as conn:
        assert [line["type"] for line in store.ledger_lines(conn, [lead_id])[lead_id]] == ["newsletter_signup", "demo_request"]
