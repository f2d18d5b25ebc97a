"""Scoring tasks: score and qualify a chunk of leads set-wise, and report the run. The lead events they write go
out through tasks/outbox.py."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from functools import partial
from typing import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from config.rulebook import load_rulebook
from config.settings import get_settings
from domain.explain import Explanation, LedgerEntry, explain_score, reason_text
from domain.fit import assess_fit
from domain.lifecycle import Qualification, Stage, decide, lead_facts
from domain.rules import Rulebook, points_text
from store.engine import get_engine, read_in_snapshot
from store import scoring as store
from store import stages


class NewMql(BaseModel):
    lead_id: int
    email: str | None
    score: str
    fit_grade: str
    reason: str
    top_reasons: list[str]


class ChunkOutcome(BaseModel):
    """What scoring one chunk of leads did."""

    leads: int = 0
    score_changed: int = 0
    stage_changes: dict[str, int] = Field(default_factory=dict)
    new_mqls: list[NewMql] = Field(default_factory=list)
    cold: int = 0
    ledger_rows: int = 0
    merged_away: int = 0  # leads merged into another since they were last scored: their state absorbed, then dropped
    queue_moved: int = 0  # ... open routing and CRM-sync rows of the one whose stage the person took, moved over
    queue_closed: int = 0  # ... and the others' open rows closed as "merged"
    routing_withdrawn: int = 0  # open routing rows of leads the fit's disqualifiers took out of the funnel

    def add(self, other: "ChunkOutcome") -> None:
        self.leads += other.leads
        self.score_changed += other.score_changed
        self.cold += other.cold
        self.merged_away += other.merged_away
        self.queue_moved += other.queue_moved
        self.queue_closed += other.queue_closed
        self.routing_withdrawn += other.routing_withdrawn
        self.ledger_rows += other.ledger_rows
        for kind, n in other.stage_changes.items():
            self.stage_changes[kind] = self.stage_changes.get(kind, 0) + n
        self.new_mqls += other.new_mqls


def entries_of(lines: list[dict]) -> list[LedgerEntry]:
    return [LedgerEntry(activity_id=l["activity_id"], action=l["action"], type=l["type"], asset=l["asset"],
                        campaign=l["campaign"], source=l["source"], occurred_at=l["occurred_at"], points=l["points"],
                        occurred_epoch=l["occurred_epoch"]) for l in lines]


def explanations(conn, lead_ids: Sequence[int], rulebook: Rulebook, at: datetime) -> dict[int, Explanation]:
    return {lead_id: explain_score(entries_of(lines), rulebook.decay, at)
            for lead_id, lines in store.ledger_lines(conn, lead_ids).items()}


def score_chunk(
    engine,
    rulebook: Rulebook,
    version_id: int,
    lead_ids: Sequence[int],
    *,
    now: datetime,
    run_id: str | None,
    rebuild: Sequence[int] = (),
    dirty: Sequence[tuple[int, datetime]] = (),
) -> ChunkOutcome:
    """One transaction: the ledger of the leads in `rebuild`, then the scores, fit, stages and triggers of all
    `lead_ids`, and the `dirty` marks cleared. A crash before commit changes nothing; after it, a rerun finds
    nothing left to do. Worked out again, in a new transaction, when another run gave a lead first scored here
    its first state meanwhile (store.ScoredMeanwhile): the second time, that state is read and locked."""
    once = partial(_score_chunk_once, engine, rulebook, version_id, lead_ids, now=now, run_id=run_id, rebuild=rebuild,
                   dirty=dirty)
    for _ in range(SCORE_ATTEMPTS - 1):
        try:
            return once()
        except store.ScoredMeanwhile:
            continue
    return once()


# One other run can give a lead its first state under a chunk; a third attempt covers two runs beside this one
SCORE_ATTEMPTS = 3


def _score_chunk_once(engine, rulebook: Rulebook, version_id: int, lead_ids: Sequence[int], *, now: datetime,
                      run_id: str | None, rebuild: Sequence[int], dirty: Sequence[tuple[int, datetime]]) -> ChunkOutcome:
    outcome = ChunkOutcome()
    hand_raisers = {kind.value for kind in rulebook.qualification.hand_raisers}
    with engine.begin() as conn:
        store.lock_marks(conn, dirty)
        states = store.load_states(conn, lead_ids, lock=True)  # first: what follows is read after any other writer
        if rebuild:
            outcome.ledger_rows = store.rebuild_ledger(conn, version_id, rebuild)
        totals = store.behaviour_totals(conn, version_id, now, lead_ids)
        # A lead merged into another is no lead of its own any more (absent here): its activities now score for
        # the lead that remains, which is marked with it, and whose chunk absorbs its state.
        profiles = store.lead_profiles(conn, lead_ids)
        raises = store.last_hand_raises(conn, list(profiles), hand_raisers)
        absorbed = store.merged_states(conn, list(profiles))
        folds: dict[int, tuple[list[int], int | None]] = {}
        results: dict[int, Qualification] = {}
        for lead_id, profile in profiles.items():
            score = max(totals.get(lead_id, 0), rulebook.decay.floor)
            fit = assess_fit(profile, profile["email"], rulebook.fit)
            facts = lead_facts(score, fit, profile, raises.get(lead_id), rulebook)
            merged = absorbed.get(lead_id)
            results[lead_id], took_from = decide(states.get(lead_id), merged, facts, rulebook, now)
            if merged:
                folds[lead_id] = ([merged_id for merged_id, _ in merged], took_from)
        # A lead merged into another since it was read here (a pass that holds no mark for it does not hold the
        # merge off) keeps no state: the lead that remains has absorbed, or will absorb, the state it had.
        for lead_id in store.merged_meanwhile(conn, list(results)):
            del results[lead_id]
            folds.pop(lead_id, None)
        for lead_id, result in results.items():
            previous = states.get(lead_id)
            if previous is None or previous.score != result.state.score:
                outcome.score_changed += 1
            outcome.cold += result.state.cold
            for change in result.changes:
                kind = f"{change.from_stage.value if change.from_stage else 'new'} -> {change.to_stage.value}"
                outcome.stage_changes[kind] = outcome.stage_changes.get(kind, 0) + 1
        payloads = _trigger_payloads(conn, results, profiles, rulebook, now, outcome)
        store.save_qualifications(conn, results, version_id, now, run_id, payloads,
                                  first={lead_id for lead_id in results if lead_id not in states})
        outcome.merged_away, outcome.queue_moved, outcome.queue_closed = store.fold_merged(conn, folds, now)
        # An MQL disqualified since its handoff was queued no longer waits for a rep
        outcome.routing_withdrawn = stages.withdraw_routing(conn, [
            (lead_id, change.to_stage.value, change.reason) for lead_id, result in results.items()
            for change in result.changes if change.to_stage is Stage.DISQUALIFIED], now)
        if dirty:
            store.clear_dirty(conn, dirty)
    outcome.leads = len(results)
    return outcome


def _trigger_payloads(conn, results, profiles, rulebook, now, outcome) -> dict[int, dict]:
    fired = [lead_id for lead_id, q in results.items() if q.triggers]
    if not fired:
        return {}
    explained = explanations(conn, fired, rulebook, now)
    payloads = {}
    for lead_id in fired:
        q = results[lead_id]
        explanation = explained.get(lead_id)
        top = [reason_text(line) for line in explanation.top(3)] if explanation else []
        payloads[lead_id] = {"lead_id": lead_id, "score": points_text(q.state.score), "fit_grade": q.state.fit_grade,
                             "top_reasons": top}
        outcome.new_mqls.append(NewMql(lead_id=lead_id, email=profiles[lead_id]["email"], score=points_text(q.state.score),
                                       fit_grade=q.state.fit_grade, reason=q.triggers[-1].reason, top_reasons=top))
    return payloads


@task(cache_policy=NO_CACHE)
def load_rules() -> Rulebook:
    return load_rulebook(get_settings().rulebook_dir)


@task(cache_policy=NO_CACHE)
def register_version(rulebook: Rulebook, now: datetime, reason: str | None) -> int:
    with get_engine(get_settings().resolved_database_url()).begin() as conn:
        return store.ensure_version(conn, rulebook, now, reason)


@task(cache_policy=NO_CACHE)
def scoring_bookmarks() -> tuple[int, datetime | None] | None:
    with get_engine(get_settings().resolved_database_url()).connect() as conn:
        return store.scoring_state(conn)


@task(cache_policy=NO_CACHE)
def rebuild_all_ledgers(version_id: int, marks: list[tuple[int, datetime]]) -> int:
    """A new rulebook version: every lead's contributions recomputed in one set-wise statement. The marks taken
    before it are cleared in the same transaction, held first as a scoring chunk holds its own (lock_marks):
    an activity a batch stores while the statement runs either is in it or leaves its lead marked. Cleared
    later, by the chunks, a mark could go with an activity the statement never saw (a batch of the same
    ingest run, whose marking leaves an equal mark as it is)."""
    with get_engine(get_settings().resolved_database_url()).begin() as conn:
        store.lock_marks(conn, marks)
        rows = store.rebuild_ledger(conn, version_id, None)
        store.clear_dirty(conn, marks)
        return rows


@task(cache_policy=NO_CACHE)
def all_leads(snapshot: str | None = None) -> list[int]:
    """Every lead that stands for a person (not merged away), in id order; on `snapshot` when given."""
    with get_engine(get_settings().resolved_database_url()).connect() as conn:
        read_in_snapshot(conn, snapshot)
        return store.all_lead_ids(conn)


@task(cache_policy=NO_CACHE)
def score_leads_now(lead_ids: list[int], now: datetime, run_id: str | None) -> ChunkOutcome | None:
    """These leads' marks scored at once, with the rulebook in force; None when the configured rulebook is not
    in force yet: the scheduled run rescores everyone with it first, these leads' marks included."""
    engine = get_engine(get_settings().resolved_database_url())
    rulebook = load_rulebook(get_settings().rulebook_dir)
    with engine.begin() as conn:
        bookmarks = store.scoring_state(conn)
        version_id = store.ensure_version(conn, rulebook, now, None)
        marks = store.dirty_leads(conn, len(lead_ids) or 1, lead_ids)
    if bookmarks is None or bookmarks[0] != version_id:
        return None
    marked = [lead_id for lead_id, _ in marks]
    if not marked:
        return ChunkOutcome()
    return score_chunk(engine, rulebook, version_id, marked, now=now, run_id=run_id, rebuild=marked, dirty=marks)


@task(cache_policy=NO_CACHE)
def take_dirty(limit: int) -> list[tuple[int, datetime]]:
    with get_engine(get_settings().resolved_database_url()).connect() as conn:
        return store.dirty_leads(conn, limit)


@task(cache_policy=NO_CACHE, task_run_name="score-leads-{label}")
def score_leads(rulebook: Rulebook, version_id: int, lead_ids: list[int], now: datetime, run_id: str | None,
                rebuild: list[int], dirty: list[tuple[int, datetime]], label: str) -> ChunkOutcome:
    engine = get_engine(get_settings().resolved_database_url())
    return score_chunk(engine, rulebook, version_id, lead_ids, now=now, run_id=run_id, rebuild=rebuild, dirty=dirty)


@task(cache_policy=NO_CACHE)
def record_bookmarks(version_id: int, now: datetime, decayed_at: datetime | None) -> None:
    with get_engine(get_settings().resolved_database_url()).begin() as conn:
        store.set_scoring_state(conn, version_id, now, decayed_at)


def summarize_stage_changes(outcome: ChunkOutcome) -> list[tuple[str, int]]:
    return sorted(Counter(outcome.stage_changes).items(), key=lambda item: (-item[1], item[0]))
