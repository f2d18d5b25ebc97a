"""A rulebook-impact chunk's work, free of Prefect: some leads worked out from their activity logs under a draft
and under the rulebook in force, and counted side by side, read only. The rulebook-impact task runs it, in a
process of its own when the run has more than one; a child that need not import Prefect starts in a fraction
of the time."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from pydantic import BaseModel, Field

from domain.impact import work_out
from domain.lifecycle import Qualification, Stage
from domain.rules import Rulebook
from domain.scoring import history_of
from store import scoring as store
from store.engine import get_engine, read_in_snapshot


class Comparison(BaseModel):
    """The draft and the rulebook in force (None before the first scoring run), with what differs."""

    model_config = {"arbitrary_types_allowed": True}

    rules_dir: str
    pasted: list[str] = Field(default_factory=list)  # the draft's files given as text instead, by name
    draft: Rulebook
    in_force_version: int | None = None
    in_force: Rulebook | None = None
    changes: list[str] = Field(default_factory=list)
    snapshot: str | None = None  # what every chunk reads: the database as the in-force version was read (PostgreSQL)

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


def worked_out(engine, rulebooks: Sequence[Rulebook], lead_ids: Sequence[int], now: datetime,
               snapshot: str | None = None) -> dict[int, tuple[str | None, list[Qualification]]]:
    """Each of these leads (its e-mail, and what a pass at `now` makes of it under each rulebook), read in one
    read-only transaction, on `snapshot` when given (store.engine.read_in_snapshot); leads merged away by then
    are left out, as a pass leaves them."""
    with engine.connect() as conn:
        read_in_snapshot(conn, snapshot)
        profiles = store.lead_profiles(conn, lead_ids)
        found = list(profiles)
        histories = store.activity_histories(conn, found)
        states = store.load_states(conn, found)
        merged = store.merged_states(conn, found)
    result = {}
    for lead_id, profile in profiles.items():
        history = history_of(histories.get(lead_id, ()))  # sorted once, for both rulebooks
        result[lead_id] = (profile["email"], [work_out(history, profile, states.get(lead_id), merged.get(lead_id),
                                                       rulebook, now) for rulebook in rulebooks])
    return result


def impact_of(engine, comparison: Comparison, lead_ids: Sequence[int], now: datetime, examples: int) -> ImpactOutcome:
    """These leads under the draft and under the rulebook in force, counted side by side."""
    draft, in_force = comparison.draft, comparison.in_force
    rulebooks = [draft] if in_force is None else [draft, in_force]
    outcome = ImpactOutcome(examples=examples, in_force=Side() if in_force else None)
    for lead_id, (email, (new, *old)) in worked_out(engine, rulebooks, lead_ids, now, comparison.snapshot).items():
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


def impact_in_process(url: str, comparison: Comparison, lead_ids: list[int], now: datetime,
                       examples: int) -> ImpactOutcome:
    """impact_of, in a process of its own: its own engine on the database at `url`."""
    return impact_of(get_engine(url), comparison, lead_ids, now, examples)
