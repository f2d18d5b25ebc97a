"""The rulebook-impact tasks: a draft rulebook beside the one in force, every lead worked out under both from its
activity log, chunk by chunk, read only."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from config.rulebook import load_rulebook
from config.settings import get_settings
from domain.impact import rulebook_changes, work_out
from domain.lifecycle import Qualification, Stage
from domain.rules import Rulebook
from store import scoring as store
from store.engine import get_engine


class Comparison(BaseModel):
    """The draft and the rulebook in force (None before the first scoring run), with what differs."""

    model_config = {"arbitrary_types_allowed": True}

    rules_dir: str
    pasted: list[str] = Field(default_factory=list)  # the draft's files given as text instead, by name
    draft: Rulebook
    in_force_version: int | None = None
    in_force: Rulebook | None = None
    changes: list[str] = Field(default_factory=list)

    @property
    def source(self) -> str:
        """Where the draft comes from, as the run summary and the logs say it."""
        if len(self.pasted) == 2:
            return "pasted in the run's parameters"
        where = f"in `{self.rules_dir}`"
        return f"{where}, with its {self.pasted[0]} pasted in the run's parameters" if self.pasted else where

    @property
    def same(self) -> bool:
        return self.in_force is not None and self.in_force.digest == self.draft.digest


@task(cache_policy=NO_CACHE)
def compare_rulebooks(rules_dir: str | None, pasted: dict[str, str | None] | None = None) -> Comparison:
    """Load the draft (a rulebook directory, default: the configured one; `pasted`: either file's text instead,
    by file name; blank is none) and the version the last scoring run used. A draft that does not load fails
    here, naming the file, the line and the problem."""
    settings = get_settings()
    directory = Path(rules_dir) if rules_dir else settings.rulebook_dir
    # a field left blank in the UI pastes nothing: that file comes from the directory
    pasted = {name: text for name, text in (pasted or {}).items() if text is not None and text.strip()}
    draft = load_rulebook(directory, pasted)
    with get_engine(settings.resolved_database_url()).connect() as conn:
        bookmarks = store.scoring_state(conn)
        in_force = store.version_rulebook(conn, bookmarks[0]) if bookmarks else None
    return Comparison(rules_dir=str(directory), pasted=sorted(pasted), draft=draft,
                      in_force_version=bookmarks[0] if bookmarks else None, in_force=in_force,
                      changes=rulebook_changes(in_force, draft) if in_force else [])


class LeadImpact(BaseModel):
    """One lead under both rulebooks (the in-force fields are None before the first scoring run)."""

    lead_id: int
    email: str | None
    score_in_force: int | None  # centipoints
    score_draft: int
    fit_in_force: str | None
    fit_draft: str
    stage_in_force: str | None
    stage_draft: str
    why: str  # the reason of the draft's last stage change; empty when the stage stays



class Side(BaseModel):
    """What a pass at the same moment makes of every lead under one rulebook."""

    stages: dict[str, int] = Field(default_factory=dict)  # where the leads stand after it
    stage_changes: dict[str, int] = Field(default_factory=dict)  # "lead -> mql": how many
    handovers: int = 0  # MQL triggers fired: leads handed to sales
    at_threshold: int = 0  # scores at or above the readiness threshold
    grades: dict[str, int] = Field(default_factory=dict)
    cold: int = 0

    def count(self, result: Qualification, threshold: int) -> None:
        state = result.state
        _bump(self.stages, state.stage.value)
        _bump(self.grades, state.fit_grade)
        for change in result.changes:
            _bump(self.stage_changes, f"{change.from_stage.value if change.from_stage else 'new'} -> {change.to_stage.value}")
        self.handovers += len(result.triggers)
        self.at_threshold += state.score >= threshold
        self.cold += state.cold

    def add(self, other: "Side") -> None:
        for mine, theirs in ((self.stages, other.stages), (self.stage_changes, other.stage_changes),
                             (self.grades, other.grades)):
            for key, n in theirs.items():
                _bump(mine, key, n)
        self.handovers += other.handovers
        self.at_threshold += other.at_threshold
        self.cold += other.cold


def _bump(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


# The examples an impact keeps, each list ordered by what matters most for it, and cut to the `examples` asked for
_EXAMPLES = {
    "handed_over_only_with_draft": lambda e: (-e.score_draft, e.lead_id),
    "handed_over_only_in_force": lambda e: (-(e.score_in_force or 0), e.lead_id),
    "disqualified_only_with_draft": lambda e: (-e.score_draft, e.lead_id),
    "largest_score_changes": lambda e: (-abs(e.score_draft - (e.score_in_force or 0)), e.lead_id),
}


class ImpactOutcome(BaseModel):
    """Every lead worked out under the rulebook in force and under the draft, at one moment, side by side."""

    examples: int = 10
    leads: int = 0
    in_force: Side | None = None
    draft: Side = Field(default_factory=Side)
    score_up: int = 0
    score_down: int = 0
    fit_grade_changed: int = 0
    stage_differs: int = 0  # leads the two passes leave in different stages
    counts: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(_EXAMPLES, 0))
    handed_over_only_with_draft: list[LeadImpact] = Field(default_factory=list)
    handed_over_only_in_force: list[LeadImpact] = Field(default_factory=list)
    disqualified_only_with_draft: list[LeadImpact] = Field(default_factory=list)
    largest_score_changes: list[LeadImpact] = Field(default_factory=list)

    def add(self, other: "ImpactOutcome") -> None:
        self.leads += other.leads
        if other.in_force is not None:
            if self.in_force is None:
                self.in_force = Side()
            self.in_force.add(other.in_force)
        self.draft.add(other.draft)
        self.score_up += other.score_up
        self.score_down += other.score_down
        self.fit_grade_changed += other.fit_grade_changed
        self.stage_differs += other.stage_differs
        for name, order in _EXAMPLES.items():
            self.counts[name] += other.counts[name]
            setattr(self, name, sorted(getattr(self, name) + getattr(other, name), key=order)[:self.examples])

    def note(self, name: str, lead: LeadImpact) -> None:
        self.counts[name] += 1
        kept = getattr(self, name)
        kept.append(lead)
        if len(kept) > 2 * self.examples:  # trimmed now and then, not per lead
            setattr(self, name, sorted(kept, key=_EXAMPLES[name])[:self.examples])

    def trim(self) -> None:
        for name, order in _EXAMPLES.items():
            setattr(self, name, sorted(getattr(self, name), key=order)[:self.examples])


def worked_out(engine, rulebooks: Sequence[Rulebook], lead_ids: Sequence[int],
               now: datetime) -> dict[int, tuple[str | None, list[Qualification]]]:
    """Each of these leads (its e-mail, and what a pass at `now` makes of it under each rulebook), read in one
    read-only transaction; leads merged away since are left out, as a pass leaves them."""
    with engine.connect() as conn:
        profiles = store.lead_profiles(conn, lead_ids)
        found = list(profiles)
        histories = store.activity_histories(conn, found)
        states = store.load_states(conn, found)
        merged = store.merged_states(conn, found)
    return {lead_id: (profile["email"],
                      [work_out(histories.get(lead_id, ()), profile, states.get(lead_id), merged.get(lead_id), rulebook,
                                now) for rulebook in rulebooks])
            for lead_id, profile in profiles.items()}


def impact_of(engine, comparison: Comparison, lead_ids: Sequence[int], now: datetime, examples: int) -> ImpactOutcome:
    """These leads under the draft and under the rulebook in force, counted side by side."""
    draft, in_force = comparison.draft, comparison.in_force
    rulebooks = [draft] if in_force is None else [draft, in_force]
    outcome = ImpactOutcome(examples=examples, in_force=Side() if in_force else None)
    for lead_id, (email, (new, *old)) in worked_out(engine, rulebooks, lead_ids, now).items():
        outcome.draft.count(new, draft.readiness_threshold)
        if old:
            outcome.in_force.count(old[0], in_force.readiness_threshold)
        _compare(outcome, lead_id, email, old[0] if old else None, new)
        outcome.leads += 1
    outcome.trim()
    return outcome


def _compare(outcome: ImpactOutcome, lead_id: int, email: str | None, old: Qualification | None,
             new: Qualification) -> None:
    a, b = (old.state if old else None), new.state
    lead = LeadImpact(
        lead_id=lead_id, email=email, score_in_force=a.score if a else None, score_draft=b.score,
        fit_in_force=a.fit_grade if a else None, fit_draft=b.fit_grade, stage_in_force=a.stage.value if a else None,
        stage_draft=b.stage.value, why=new.changes[-1].reason if new.changes else "")
    if new.triggers and not (old and old.triggers):
        outcome.note("handed_over_only_with_draft", lead)
    if old is None:
        return
    if old.triggers and not new.triggers:
        outcome.note("handed_over_only_in_force", lead)
    if b.stage is Stage.DISQUALIFIED and a.stage is not Stage.DISQUALIFIED:
        outcome.note("disqualified_only_with_draft", lead)
    if b.score != a.score:
        outcome.score_up += b.score > a.score
        outcome.score_down += b.score < a.score
        outcome.note("largest_score_changes", lead)
    outcome.fit_grade_changed += a.fit_grade != b.fit_grade
    outcome.stage_differs += a.stage is not b.stage


# The processes the chunks of this run are worked out in, when it has more than one (see worker_processes)
_PROCESSES: ContextVar[ProcessPoolExecutor | None] = ContextVar("impact_processes", default=None)


@contextmanager
def worker_processes(workers: int) -> Iterator[None]:
    """For its duration, with more than one worker, each chunk's leads are worked out in one of that many
    processes of their own: the work is pure Python, and threads in one interpreter would share one core. The
    chunks stay task runs of the flow (in threads that wait on their process); a process that dies fails its
    chunk's task run."""
    if workers <= 1:
        yield
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as processes:
        token = _PROCESSES.set(processes)
        try:
            yield
        finally:
            _PROCESSES.reset(token)


def _impact_in_process(url: str, comparison: Comparison, lead_ids: list[int], now: datetime,
                       examples: int) -> ImpactOutcome:
    return impact_of(get_engine(url), comparison, lead_ids, now, examples)


@task(cache_policy=NO_CACHE, task_run_name="impact-of-leads-{label}")
def impact_of_leads(comparison: Comparison, lead_ids: list[int], now: datetime, examples: int,
                    label: str) -> ImpactOutcome:
    url = get_settings().resolved_database_url()
    processes = _PROCESSES.get()
    if processes is None:
        return impact_of(get_engine(url), comparison, lead_ids, now, examples)
    return processes.submit(_impact_in_process, url, comparison, list(lead_ids), now, examples).result()

