"""The score-and-qualify flow: turn new activities into scores, fit grades and lifecycle stages; fire MQL
triggers once; re-decay everyone on schedule; rescore everyone when the rulebook changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote
from pydantic import BaseModel

from config.settings import get_settings
from flows.chunks import in_chunk_order
from tasks.outbox import Delivery, EventPump, publish_lead_events
from tasks.reporting import publish_score_summary
from tasks.scoring import (
    ChunkOutcome,
    all_leads,
    load_rules,
    rebuild_all_ledgers,
    record_bookmarks,
    register_version,
    score_leads,
    scoring_bookmarks,
    take_dirty,
)
from tasks.store import check_database

Mode = Literal["incremental", "decay", "rescore"]


class ScoreSummary(BaseModel):
    now: datetime
    run_id: str | None
    mode: Mode
    reason: str | None
    version_id: int
    rulebook_digest: str
    outcome: ChunkOutcome
    events: Delivery
    markdown: str = ""


# The lists of lead ids handed to the chunk tasks are wrapped in quote(): Prefect would otherwise walk every
# element of every list looking for futures to wait on, which costs seconds per 100,000 leads and finds none.


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


_WHO = {"incremental": "those with new activities, changed fields or merges since the last run",
        "decay": "every lead, their points decayed anew", "rescore": "every lead"}


class _Progress:
    """Adds chunk outcomes up and logs the run's progress for whoever watches it: after about every twentieth
    of the chunks, and after the last."""

    def __init__(self, log, outcome: ChunkOutcome, leads: int, chunks: int) -> None:
        self.log, self.outcome, self.leads, self.chunks, self.done = log, outcome, leads, chunks, 0
        self.every = max(1, -(-chunks // 20))

    def add(self, chunk: ChunkOutcome) -> None:
        outcome = self.outcome
        outcome.add(chunk)
        self.done += 1
        if self.done % self.every == 0 or self.done == self.chunks:
            changes = sum(outcome.stage_changes.values())
            self.log.info("scored %s of %s leads (chunk %d of %d); scores changed: %s, stage changes: %s, new MQLs: %s",
                          f"{outcome.leads:,}", f"{self.leads:,}", self.done, self.chunks, f"{outcome.score_changed:,}",
                          f"{changes:,}", f"{len(outcome.new_mqls):,}")


def run_scoring(now: datetime | None, *, force_rescore: bool, reason: str | None) -> ScoreSummary:
    now = now or datetime.now(timezone.utc)
    run_id = flow_run.get_id()
    settings = get_settings()
    check_database()
    rulebook = load_rules()
    bookmarks = scoring_bookmarks()
    version_id = register_version(rulebook, now, reason)
    decayed_at = bookmarks[1] if bookmarks else None
    if force_rescore or bookmarks is None or bookmarks[0] != version_id:
        mode: Mode = "rescore"
        if not force_rescore:
            reason = "first scoring run" if bookmarks is None else f"rulebook changed: version {bookmarks[0]} -> {version_id}"
    elif decayed_at is None or now - decayed_at >= timedelta(hours=settings.decay_every_hours):
        mode = "decay"
    else:
        mode = "incremental"

    log = get_run_logger()
    outcome = ChunkOutcome()
    # The leads marked for scoring when the run starts (new activities, changed fields, merges); a lead marked
    # again meanwhile keeps its new mark for the next run.
    marked = dict(take_dirty(10**9))
    if mode == "incremental":
        leads = sorted(marked)  # only those, each with its ledger rebuilt
    else:
        # Every lead. A rescore rebuilds every ledger first, in one set-wise statement; a decay pass rebuilds
        # only the ledgers of the marked leads and re-decays everyone's points.
        if mode == "rescore":
            log.info("rescore (%s), rulebook version %s: rebuilding every lead's ledger from the activity log",
                     reason, version_id)
            outcome.ledger_rows = rebuild_all_ledgers(version_id, quote(list(marked.items())))
            log.info("ledger rebuilt: %s contributions", f"{outcome.ledger_rows:,}")
            marked = {}  # cleared with the rebuild
        leads = all_leads()
    # The chunks hold disjoint leads, so up to HANDOFF_SCORE_WORKERS of them run side by side, each in its own
    # transaction on its own connection; outcomes are added in chunk order all the same.
    workers = settings.resolved_score_workers()
    chunks = _chunks(leads, settings.score_chunk_size)
    if chunks:
        log.info("%s: %s leads to score (%s), in %d chunk%s of up to %s, %d at a time", mode, f"{len(leads):,}",
                 _WHO[mode], len(chunks), "" if len(chunks) == 1 else "s", f"{settings.score_chunk_size:,}", workers)
    else:
        log.info("%s: no lead to score (%s)", mode, _WHO[mode])
    progress = _Progress(log, outcome, len(leads), len(chunks))

    def submitted(chunk: list[int]):
        marks = [(lead_id, marked[lead_id]) for lead_id in chunk if lead_id in marked]
        return score_leads.submit(rulebook, version_id, quote(chunk), now, run_id,
                                  quote([lead_id for lead_id, _ in marks]), quote(marks),
                                  label=f"{chunk[0]}-{chunk[-1]}")

    so_far = None
    if chunks:
        # The events the chunks write go out while the next chunks are scored (tasks.outbox.EventPump)
        with EventPump(now) as pump:
            for result in in_chunk_order(map(submitted, chunks), workers):
                progress.add(result)
        so_far = pump.delivery
    if mode != "incremental":
        decayed_at = now
    record_bookmarks(version_id, now, decayed_at)
    events = publish_lead_events(now, so_far)
    events.log_to(log)
    summary = ScoreSummary(now=now, run_id=run_id, mode=mode, reason=reason, version_id=version_id,
                           rulebook_digest=rulebook.digest, outcome=outcome, events=events)
    summary.markdown = publish_score_summary(summary.model_dump(mode="json"))
    return summary


@flow(name="score-and-qualify", description="Score leads touched by new activities; re-decay everyone daily.")
def score_and_qualify(now: datetime | None = None) -> ScoreSummary:
    """Incremental: only leads with new activities or changed fields. Once every HANDOFF_DECAY_EVERY_HOURS it
    re-decays every lead, and after a rulebook change it rescores every lead with the new version."""
    return run_scoring(now, force_rescore=False, reason=None)


@flow(name="rescore", description="Recompute every lead from the activity log, e.g. after a rulebook change.")
def rescore(reason: str, now: datetime | None = None) -> ScoreSummary:
    """`reason` is recorded with the run and the rulebook version (say what changed and who asked)."""
    if not reason or not reason.strip():
        raise ValueError("a rescore needs a reason")
    return run_scoring(now, force_rescore=True, reason=reason.strip())
