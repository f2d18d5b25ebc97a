"""When two leads turn out to be one person, the merged-away lead's activities score for the lead that remains,
which stands where the furthest of the two stood and carries on its open handoff work; the merged-away lead
keeps no current state: it leaves the funnel instead of staying, say, an MQL. A person handed over to sales as
one record is never handed over again as the other."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import PersonRecord, build_activity
from store import scoring as store
from store.ingest import write_batch
from store.tables import Activity, HandoffQueue, Lead, LeadEvent, LeadState
from tasks.scoring import score_chunk

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def activity(ext, kind, *, email=None, contact=None, source="events"):
    return build_activity(source=source, external_id=ext, type_name=kind, occurred_at="2026-11-02T09:00:00Z",
                          raw={"id": ext}, email=email, source_contact_id=contact)


def write(engine, source, *records, people=()):
    write_batch(engine, source=source, activities=list(records), people=list(people), rejections=[], checkpoint=None,
                now=NOW)


def versioned(engine):
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        return rulebook, store.ensure_version(conn, rulebook, NOW)


def good_fit(first_name, *, contact=None, email=None, source="scanner") -> PersonRecord:
    """A VP of Sales at a 250-person software company in the US: a hand-raise makes her an MQL at once."""
    return PersonRecord(source=source, source_contact_id=contact, email=email, first_name=first_name, company="Acme",
                        title="VP of Sales", industry="Software", company_size=250, country="US")


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
    rulebook, version_id = versioned(engine)
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


def merge(engine, into: int, *away: int) -> None:
    """Merge leads as identity resolution does, as far as scoring sees it: activities move, the lead is marked."""
    lead_t, activity_t = Lead.__table__, Activity.__table__
    with engine.begin() as conn:
        for lead_id in away:
            conn.execute(activity_t.update().where(activity_t.c.lead_id == lead_id).values(lead_id=into))
            conn.execute(lead_t.update().where(lead_t.c.id == lead_id).values(merged_into_id=into))


def rescore(engine, rulebook, version_id):
    """What a rescore does, without Prefect: every ledger rebuilt, then every lead that remains in one chunk."""
    with engine.begin() as conn:
        store.rebuild_ledger(conn, version_id, None)
        store.clear_dirty(conn, store.dirty_leads(conn, 1000))
        leads = store.all_lead_ids(conn)
    return score_chunk(engine, rulebook, version_id, leads, now=NOW, run_id="r")


def emails(engine) -> dict[str | None, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Lead.__table__.c.email, Lead.__table__.c.id).order_by(Lead.__table__.c.id)).all())


def history(engine, lead_id) -> list[tuple]:
    with engine.connect() as conn:
        return [(c["from_stage"], c["to_stage"], c["reason"]) for c in store.stage_history(conn, lead_id)]


def test_a_rescore_absorbs_a_state_left_behind_by_a_merge(engine):
    rulebook, version_id = versioned(engine)
    write(engine, "scanner", activity("s1", "whitepaper_download", contact="badge-9", source="scanner"))
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="sam@acme.example", source="newsletter"))
    score_dirty(engine, rulebook, version_id)
    leads = emails(engine)
    merge(engine, leads["sam@acme.example"], leads[None])  # a merge whose leads were never scored again
    assert leads[None] in states(engine)

    outcome = rescore(engine, rulebook, version_id)
    assert (outcome.merged_away, outcome.queue_moved, outcome.queue_closed) == (1, 0, 0)
    assert set(states(engine)) == {leads["sam@acme.example"]}
    assert rescore(engine, rulebook, version_id).merged_away == 0


def test_merges_of_merges_are_followed_to_the_lead_that_remains(engine):
    rulebook, version_id = versioned(engine)
    badge = good_fit("Kim", contact="badge-5")
    write(engine, "scanner", activity("s1", "demo_request", contact="badge-5", source="scanner"), people=[badge])
    write(engine, "webinar", activity("w1", "webinar_attended", contact="kim-1", source="webinar"))
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="kim@acme.example", source="newsletter"))
    assert len(score_dirty(engine, rulebook, version_id).new_mqls) == 1
    with engine.connect() as conn:
        scanner_lead, webinar_lead, known = conn.execute(select(Lead.__table__.c.id).order_by(Lead.__table__.c.id)).scalars()
    # The scanner's lead went into the webinar's, which later went into the known one: neither scored between.
    merge(engine, webinar_lead, scanner_lead)
    merge(engine, known, webinar_lead)

    outcome = score_chunk(engine, rulebook, version_id, [scanner_lead, webinar_lead, known], now=NOW, run_id="r",
                          rebuild=[scanner_lead, webinar_lead, known])
    assert outcome.merged_away == 2 and outcome.queue_moved == 2 and not outcome.new_mqls
    assert states(engine) == {known: ("mql", states(engine)[known][1])}
    assert history(engine, known)[-1] == (
        "subscriber", "mql", f"merged with lead {scanner_lead} (mql), lead {webinar_lead} (subscriber)")
    assert {(row.lead_id, row.done_at) for row in queue_rows(engine)} == {(known, None)}


def queue_rows(engine) -> list[tuple]:
    t = HandoffQueue.__table__
    with engine.connect() as conn:
        return conn.execute(select(t.c.lead_id, t.c.queue, t.c.done_at, t.c.outcome, t.c.detail)
                            .order_by(t.c.lead_id, t.c.queue)).all()


def test_the_lead_that_remains_takes_over_the_handoff_of_a_merged_mql_and_is_not_handed_over_twice(engine):
    rulebook, version_id = versioned(engine)
    # The scanner's lead asks for a demo and fits well: an MQL, queued for routing and CRM sync.
    badge = good_fit("Ana", contact="badge-3")
    write(engine, "scanner", activity("s1", "demo_request", contact="badge-3", source="scanner"), people=[badge])
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="ana@acme.example", source="newsletter"))
    first = score_dirty(engine, rulebook, version_id)
    leads = emails(engine)
    anonymous, known = leads[None], leads["ana@acme.example"]
    assert [m.lead_id for m in first.new_mqls] == [anonymous]
    assert queue_rows(engine) == [(anonymous, "crm_sync", None, None, None), (anonymous, "routing", None, None, None)]

    # The scanner learns her e-mail: its lead is merged into the known one, which now holds the demo request.
    write(engine, "scanner", activity("s2", "email_open", email="ana@acme.example", contact="badge-3", source="scanner"))
    outcome = score_dirty(engine, rulebook, version_id)

    # She is the MQL she was, handed over once: no new crossing, event or queue row; the pending work moved.
    assert (outcome.merged_away, outcome.queue_moved, outcome.queue_closed) == (1, 2, 0)
    assert not outcome.new_mqls and outcome.stage_changes == {"subscriber -> mql": 1}
    assert states(engine)[known][0] == "mql" and anonymous not in states(engine)
    moved = f"moved from merged lead {anonymous}"
    assert queue_rows(engine) == [(known, "crm_sync", None, None, moved), (known, "routing", None, None, moved)]
    with engine.connect() as conn:
        assert conn.execute(select(LeadEvent.__table__.c.lead_id)).scalars().all() == [anonymous]
    assert history(engine, known) == [(None, "subscriber", "first seen with an e-mail only"),
                                      ("subscriber", "mql", f"merged with lead {anonymous} (mql)")]
    # The lead that remains took the badge's details with the demo request: judged on everything known.
    with engine.connect() as conn:
        details = conn.execute(select(Lead.__table__.c.first_name, Lead.__table__.c.title, Lead.__table__.c.company_size)
                               .where(Lead.__table__.c.id == known)).one()
    assert tuple(details) == ("Ana", "VP of Sales", 250)
    again = score_dirty(engine, rulebook, version_id)
    assert (again.merged_away, again.queue_moved, again.queue_closed, again.new_mqls) == (0, 0, 0, [])


def test_a_person_already_handed_over_is_not_handed_over_again_after_a_merge(engine):
    rulebook, version_id = versioned(engine)
    badge = good_fit("Lee", contact="badge-4")
    write(engine, "scanner", activity("s1", "demo_request", contact="badge-4", source="scanner"), people=[badge])
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="lee@acme.example", source="newsletter"))
    score_dirty(engine, rulebook, version_id)
    with engine.begin() as conn:  # routing and CRM sync did their work
        conn.execute(HandoffQueue.__table__.update().values(done_at=NOW))

    write(engine, "scanner", activity("s2", "email_open", email="lee@acme.example", contact="badge-4", source="scanner"))
    outcome = score_dirty(engine, rulebook, version_id)
    known = emails(engine)["lee@acme.example"]
    assert states(engine)[known][0] == "mql" and not outcome.new_mqls
    assert (outcome.queue_moved, outcome.queue_closed) == (0, 0)
    assert all(row.done_at is not None for row in queue_rows(engine))


def test_the_open_queue_rows_of_a_lead_merged_away_are_closed_when_the_lead_that_remains_stands_as_far(engine):
    rulebook, version_id = versioned(engine)
    # Both records asked for a demo and fit well: two MQLs, each queued. The e-mail's lead remains, with its own.
    badge = good_fit("Jo", contact="badge-6")
    known_person = good_fit("Jo", email="jo@acme.example", source="web")
    write(engine, "scanner", activity("s1", "demo_request", contact="badge-6", source="scanner"), people=[badge])
    write(engine, "web", activity("f1", "demo_request", email="jo@acme.example", source="web"), people=[known_person])
    assert len(score_dirty(engine, rulebook, version_id).new_mqls) == 2
    leads = emails(engine)
    anonymous, known = leads[None], leads["jo@acme.example"]

    write(engine, "scanner", activity("s2", "email_open", email="jo@acme.example", contact="badge-6", source="scanner"))
    outcome = score_dirty(engine, rulebook, version_id)

    assert (outcome.merged_away, outcome.queue_moved, outcome.queue_closed) == (1, 0, 2)
    assert not outcome.new_mqls and not outcome.stage_changes
    rows = queue_rows(engine)
    assert [(row.lead_id, row.queue, row.outcome, row.detail) for row in rows if row.done_at is not None] == [
        (anonymous, "crm_sync", "merged", f"merged into lead {known}"),
        (anonymous, "routing", "merged", f"merged into lead {known}")]
    assert [(row.lead_id, row.queue) for row in rows if row.done_at is None] == [(known, "crm_sync"), (known, "routing")]
    assert states(engine)[known][0] == "mql"
    with engine.connect() as conn:
        crossings = conn.execute(select(LeadState.__table__.c.crossings).where(LeadState.__table__.c.lead_id == known)).scalar_one()
    assert crossings == 2  # the person crossed twice, once as each record


def test_a_lead_merged_away_while_a_decay_pass_scores_it_keeps_no_state_behind(engine, monkeypatch):
    from tests.test_score_marks import while_paused_after

    rulebook, version_id = versioned(engine)
    write(engine, "scanner", activity("s1", "whitepaper_download", contact="badge-8", source="scanner"))
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="max@acme.example", source="newsletter"))
    score_dirty(engine, rulebook, version_id)
    leads = emails(engine)
    anonymous, known = leads[None], leads["max@acme.example"]

    def merge_and_score():  # an ingest batch merges the scanner's lead, and the next run scores the two
        write(engine, "scanner", activity("s2", "email_open", email="max@acme.example", contact="badge-8", source="scanner"))
        score_dirty(engine, rulebook, version_id)

    # A decay pass (no marks held) has read the scanner's lead as a lead of its own when the merge lands and the
    # lead that remains absorbs its state; then the pass goes on to save the state it worked out.
    while_paused_after(monkeypatch, "merged_states", lambda: score_chunk(
        engine, rulebook, version_id, [anonymous], now=NOW, run_id="decay"), meanwhile=merge_and_score)

    assert set(states(engine)) == {known}
    assert score_dirty(engine, rulebook, version_id).merged_away == 0


def test_a_merge_waits_for_a_pass_that_is_saving_the_merged_lead_s_state(engine, monkeypatch):
    from tests.test_score_marks import while_paused_after

    rulebook, version_id = versioned(engine)
    write(engine, "scanner", activity("s1", "whitepaper_download", contact="badge-4", source="scanner"),
          people=[good_fit("Val", contact="badge-4")])
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="val@acme.example", source="newsletter"))
    score_dirty(engine, rulebook, version_id)
    leads = emails(engine)
    anonymous, known = leads[None], leads["val@acme.example"]
    write(engine, "scanner", activity("s2", "demo_request", contact="badge-4", source="scanner"))

    def merge_then_score_the_lead_that_remains():  # in a chunk of its own, as a run with many leads would
        write(engine, "scanner", activity("s3", "email_open", email="val@acme.example", contact="badge-4", source="scanner"))
        with engine.connect() as conn:
            mark = [(lead_id, at) for lead_id, at in store.dirty_leads(conn, 10) if lead_id == known]
        score_chunk(engine, rulebook, version_id, [known], now=NOW, run_id="incremental", rebuild=[known], dirty=mark)

    # A decay pass hands the scanner's lead over on its demo request, and has made its last check that the lead
    # is still one of its own. The merge waits for the pass to commit; the lead that remains then takes over
    # that handover, instead of reading the lead as it was before the pass and handing the person over again.
    while_paused_after(monkeypatch, "merged_meanwhile", lambda: score_chunk(
        engine, rulebook, version_id, [anonymous], now=NOW, run_id="decay"),
        meanwhile=merge_then_score_the_lead_that_remains)

    assert states(engine) == {known: ("mql", states(engine)[known][1])}
    with engine.connect() as conn:
        crossings = conn.execute(select(LeadState.__table__.c.crossings)).scalars().all()
        events = conn.execute(select(LeadEvent.__table__.c.lead_id)).scalars().all()
    assert events == [anonymous] and crossings == [1]
    assert [(row.lead_id, row.queue) for row in queue_rows(engine) if row.done_at is None] == [
        (known, "crm_sync"), (known, "routing")]


def test_an_address_leads_to_the_lead_that_remains_through_merges_of_merges(engine):
    for n in (1, 2, 3):
        write(engine, "newsletter", activity(f"n{n}", "newsletter_signup", email=f"rob{n}@acme.example", source="newsletter"))
    leads = emails(engine)
    first, second, third = (leads[f"rob{n}@acme.example"] for n in (1, 2, 3))
    merge(engine, second, first)
    merge(engine, third, second)
    with engine.connect() as conn:
        assert [store.lead_by_email(conn, f"rob{n}@acme.example") for n in (1, 2, 3)] == [third, third, third]
        assert store.lead_by_email(conn, "nobody@acme.example") is None
