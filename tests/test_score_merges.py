"""When two leads turn out to be one person, the merged-away lead's activities score for the lead that remains,
and the merged-away lead keeps no current state: it leaves the funnel instead of staying, say, an MQL."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import PersonRecord, build_activity
from store import scoring as store
from store.ingest import write_batch
from store.tables import HandoffQueue, Lead, LeadState
from tasks.scoring import score_chunk

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def activity(ext, kind, *, email=None, contact=None, source="events"):
    return build_activity(source=source, external_id=ext, type_name=kind, occurred_at="2026-11-02T09:00:00Z",
                          raw={"id": ext}, email=email, source_contact_id=contact)


def write(engine, source, *records, people=()):
    write_batch(engine, source=source, activities=list(records), people=list(people), rejections=[], checkpoint=None,
                now=NOW)


def score_dirty(engine, rulebook, version_id):
    with engine.connect() as conn:
        dirty = store.dirty_leads(conn, 1000)
    leads = [lead_id for lead_id, _ in dirty]
    return score_chunk(engine, rulebook, version_id, leads, now=NOW, run_id="r", rebuild=leads, dirty=dirty)


def states(engine) -> dict[int, tuple[str, int]]:
    t = LeadState.__table__
    with engine.connect() as conn:
        return {row.lead_id: (row.stage, row.score) for row in conn.execute(select(t.c.lead_id, t.c.stage, t.c.score))}


def test_a_merged_away_lead_leaves_the_funnel_and_its_points_count_for_the_lead_that_remains(engine):
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    # A badge scanner knows the person only by its own contact id; the newsletter knows the e-mail.
    write(engine, "scanner", activity("s1", "demo_request", contact="badge-7", source="scanner"),
          activity("s2", "whitepaper_download", contact="badge-7", source="scanner"))
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="pat@acme.example", source="newsletter"))
    score_dirty(engine, rulebook, version_id)
    with engine.connect() as conn:
        leads = dict(conn.execute(select(Lead.__table__.c.email, Lead.__table__.c.id)).all())
    anonymous, known = leads[None], leads["pat@acme.example"]
    before = states(engine)
    assert before[anonymous][1] > before[known][1] > 0

    # Then the scanner sends the e-mail with its contact id: the scanner's lead is merged into the known one.
    write(engine, "scanner", activity("s3", "email_open", email="pat@acme.example", contact="badge-7", source="scanner"))
    outcome = score_dirty(engine, rulebook, version_id)

    after = states(engine)
    assert anonymous not in after
    assert outcome.merged_away == 1
    with engine.connect() as conn:
        totals = store.behaviour_totals(conn, version_id, NOW, [anonymous, known])
        merged_into = conn.execute(select(Lead.__table__.c.merged_into_id).where(Lead.__table__.c.id == anonymous)).scalar_one()
    assert merged_into == known
    assert anonymous not in totals
    assert after[known][1] == totals[known] > before[anonymous][1]
    assert score_dirty(engine, rulebook, version_id).merged_away == 0  # nothing left to do


def test_a_rescore_drops_a_state_left_behind_by_a_merge(engine, monkeypatch):
    import tasks.scoring

    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    write(engine, "scanner", activity("s1", "whitepaper_download", contact="badge-9", source="scanner"))
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="sam@acme.example", source="newsletter"))
    score_dirty(engine, rulebook, version_id)
    with engine.begin() as conn:  # a merge whose leads were never scored again (as before merges were handled)
        leads = dict(conn.execute(select(Lead.__table__.c.email, Lead.__table__.c.id)).all())
        conn.execute(Lead.__table__.update().where(Lead.__table__.c.id == leads[None])
                     .values(merged_into_id=leads["sam@acme.example"]))
        store.clear_dirty(conn, store.dirty_leads(conn, 1000))
    assert leads[None] in states(engine)

    monkeypatch.setattr(tasks.scoring, "get_engine", lambda _url: engine)
    assert tasks.scoring.retire_merged_leads.fn(NOW) == (1, 0)
    assert set(states(engine)) == {leads["sam@acme.example"]}


def queue_rows(engine) -> list[tuple]:
    t = HandoffQueue.__table__
    with engine.connect() as conn:
        return conn.execute(select(t.c.lead_id, t.c.queue, t.c.done_at, t.c.outcome, t.c.detail)
                            .order_by(t.c.lead_id, t.c.queue)).all()


def test_the_open_queue_rows_of_a_lead_merged_away_are_closed_and_the_lead_that_remains_queues_its_own(engine):
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    # The scanner's lead asks for a demo and fits well: an MQL, queued for routing and CRM sync.
    badge = PersonRecord(source="scanner", source_contact_id="badge-3", email=None, first_name="Ana", company="Acme",
                         title="VP of Sales", industry="Software", company_size=250, country="US")
    write(engine, "scanner", activity("s1", "demo_request", contact="badge-3", source="scanner"), people=[badge])
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="ana@acme.example", source="newsletter"))
    first = score_dirty(engine, rulebook, version_id)
    with engine.connect() as conn:
        leads = dict(conn.execute(select(Lead.__table__.c.email, Lead.__table__.c.id)).all())
    anonymous, known = leads[None], leads["ana@acme.example"]
    assert [m.lead_id for m in first.new_mqls] == [anonymous]
    assert queue_rows(engine) == [(anonymous, "crm_sync", None, None, None), (anonymous, "routing", None, None, None)]

    # The scanner learns her e-mail: its lead is merged into the known one, which now holds the demo request.
    write(engine, "scanner", activity("s2", "email_open", email="ana@acme.example", contact="badge-3", source="scanner"))
    outcome = score_dirty(engine, rulebook, version_id)

    assert outcome.merged_away == 1 and outcome.queue_closed == 2
    rows = queue_rows(engine)
    closed = [row for row in rows if row.lead_id == anonymous]
    assert [(row.queue, row.outcome, row.detail) for row in closed] == [
        ("crm_sync", "merged", f"merged into lead {known}"), ("routing", "merged", f"merged into lead {known}")]
    assert all(row.done_at is not None for row in closed)
    # The lead that remains took the badge's details with the demo request, crossed, and queued its own work.
    with engine.connect() as conn:
        details = conn.execute(select(Lead.__table__.c.first_name, Lead.__table__.c.title, Lead.__table__.c.company_size)
                               .where(Lead.__table__.c.id == known)).one()
    assert tuple(details) == ("Ana", "VP of Sales", 250)
    assert states(engine)[known][0] == "mql" and [m.lead_id for m in outcome.new_mqls] == [known]
    assert [(row.lead_id, row.queue) for row in rows if row.done_at is None] == [(known, "crm_sync"), (known, "routing")]
    assert score_dirty(engine, rulebook, version_id).queue_closed == 0
