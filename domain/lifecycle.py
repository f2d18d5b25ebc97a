"""Lifecycle stages and the marketing-owned moves between them: Subscriber -> Lead -> MQL, the MQL trigger that
fires once per crossing, cold leads, disqualification and recycling. Pure: the caller passes `now`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Mapping

from domain.activity import ActivityType
from domain.fit import FitAssessment
from domain.rules import GRADES, QualificationPolicy, Rulebook, grade_at_least, points_text


class Stage(StrEnum):
    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    RECYCLED = "recycled"
    DISQUALIFIED = "disqualified"


FUNNEL = (Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER)
QUALIFIABLE = (Stage.SUBSCRIBER, Stage.LEAD, Stage.RECYCLED)  # marketing may still make these an MQL
SALES_OWNED = (Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER)


class StageMoveRefused(ValueError):
    """A move the lifecycle does not allow (backwards, or out of a closed stage)."""


def check_move(current: Stage | None, target: Stage) -> None:
    """Stages only move forward along the funnel; recycle and disqualify are the only ways back or out.
    A recycled lead re-enters the funnel at MQL or later. A disqualified lead leaves its stage by a person's
    recycle (with the reason: the disqualification was a mistake), or, when the fit's disqualifiers took it out
    and no longer apply, by the rules' own reinstatement in qualify(); a customer is never disqualified."""
    if current is None:
        return
    if current is Stage.DISQUALIFIED:
        if target is Stage.RECYCLED:
            return
        raise StageMoveRefused(f"a disqualified lead comes back only by a recycle, with the reason (asked: {target})")
    if target is Stage.DISQUALIFIED:
        if current is Stage.CUSTOMER:
            raise StageMoveRefused("a customer is not disqualified: sales owns the account")
        return
    if target is Stage.RECYCLED:
        if current in (Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.LEAD):
            return
        raise StageMoveRefused(f"only a lead in the funnel can be recycled, not a {current}")
    if current is Stage.RECYCLED:
        if FUNNEL.index(target) >= FUNNEL.index(Stage.MQL):
            return
        raise StageMoveRefused(f"a recycled lead re-enters at MQL or later, not {target}")
    if FUNNEL.index(target) <= FUNNEL.index(current):
        raise StageMoveRefused(f"stages only move forward: {current} -> {target}")


@dataclass(frozen=True)
class LeadState:
    stage: Stage
    score: int = 0
    peak_score: int = 0
    fit_points: int = 0
    fit_grade: str = "D"
    mql_armed: bool = True
    crossings: int = 0
    cold: bool = False
    qualified_at: datetime | None = None
    stage_changed_at: datetime | None = None
    # The stage the fit's disqualifiers took a disqualified lead out of; None when a person disqualified it (or it
    # is not disqualified). The rules take back only what the rules took: when a rulebook change means the fit
    # no longer disqualifies the lead, it returns there.
    fit_disqualified_from: Stage | None = None
    # When a person last recycled the lead: a recycled lead counts hand-raises from then on. Kept through a
    # disqualification the rules make and undo, so a lead they return to Recycled keeps the demo requests it
    # made while wrongly out, whenever its fit comes to allow them. None: never recycled (or recycled before
    # this was kept and not found in its history: the time it entered Recycled stands in).
    recycled_at: datetime | None = None


@dataclass(frozen=True)
class LeadFacts:
    """What qualification looks at besides the state: the new score, the fit, details and the last hand-raise."""

    score: int
    fit: FitAssessment
    has_details: bool
    last_hand_raise: tuple[datetime, ActivityType] | None = None


@dataclass(frozen=True)
class StageChange:
    from_stage: Stage | None
    to_stage: Stage
    reason: str


@dataclass(frozen=True)
class Trigger:
    """The MQL trigger fired: once per crossing, numbered, so a retried run can tell it already fired."""

    kind: str
    crossing: int
    reason: str


@dataclass(frozen=True)
class Qualification:
    state: LeadState
    changes: tuple[StageChange, ...] = ()
    triggers: tuple[Trigger, ...] = ()


def _move(state: LeadState, target: Stage, reason: str, now: datetime, changes: list[StageChange]) -> LeadState:
    check_move(state.stage, target)
    changes.append(StageChange(state.stage, target, reason))
    return replace(state, stage=target, stage_changed_at=now)


def qualify(state: LeadState | None, facts: LeadFacts, rulebook: Rulebook, now: datetime) -> Qualification:
    """Apply the agreed definitions to one lead: the order below is the order a person would reason in."""
    policy = rulebook.qualification
    changes: list[StageChange] = []
    triggers: list[Trigger] = []
    if state is None:
        first = Stage.LEAD if facts.has_details else Stage.SUBSCRIBER
        why = "first seen with details beyond an e-mail" if facts.has_details else "first seen with an e-mail only"
        changes.append(StageChange(None, first, why))
        state = LeadState(stage=first, stage_changed_at=now)
    peak = max(state.peak_score, facts.score)
    # Every field named (dataclasses.replace would look the fields up again for each of 100,000 leads a pass)
    state = LeadState(
        stage=state.stage, score=facts.score, peak_score=peak, fit_points=facts.fit.points, fit_grade=facts.fit.grade,
        # once below the band, the next crossing counts again
        mql_armed=state.mql_armed or facts.score < policy.rearm_below,
        crossings=state.crossings,
        # engaged once, decayed since: back to nurture
        cold=peak >= policy.cold_engaged_at and facts.score < policy.cold_below,
        qualified_at=state.qualified_at, stage_changed_at=state.stage_changed_at,
        fit_disqualified_from=state.fit_disqualified_from, recycled_at=state.recycled_at,
    )

    if facts.fit.disqualified and state.stage not in (*SALES_OWNED, Stage.DISQUALIFIED):
        left = state.stage
        state = _move(state, Stage.DISQUALIFIED, f"disqualified: {facts.fit.disqualified}", now, changes)
        return Qualification(replace(state, fit_disqualified_from=left), tuple(changes))
    if state.stage is Stage.DISQUALIFIED:
        if state.fit_disqualified_from is None or facts.fit.disqualified:
            return Qualification(state, tuple(changes))
        # The rulebook no longer disqualifies what its fit rules disqualified: back where the lead stood. An MQL's
        # handoff was withdrawn when it left, so coming back is a handoff again, a crossing of its own; unless its
        # fit is now below what any MQL needs (the fit rules or the profile changed meanwhile): sales is never
        # handed a lead no rule would qualify, so it comes back a Lead, armed, to qualify as any lead does.
        back, armed = state.fit_disqualified_from, state.mql_armed
        reason = "reinstated: the fit no longer disqualifies it"
        least = least_mql_fit(policy)
        if back is Stage.MQL and not grade_at_least(facts.fit.grade, least):
            back, armed = Stage.LEAD, True
            reason += f"; back as a lead: fit {facts.fit.grade} is below the {least} any MQL needs"
        changes.append(StageChange(Stage.DISQUALIFIED, back, reason))
        state = replace(state, stage=back, stage_changed_at=now, fit_disqualified_from=None, mql_armed=armed)
        if back is Stage.MQL:
            state = _hand_over(state, reason, now, triggers, policy.rearm_below)

    if state.stage is Stage.SUBSCRIBER and facts.has_details:
        state = _move(state, Stage.LEAD, "gave details beyond an e-mail", now, changes)

    if state.stage in QUALIFIABLE:
        reason = _mql_reason(state, facts, rulebook)
        if reason:
            state = _move(state, Stage.MQL, reason, now, changes)
            state = _hand_over(state, reason, now, triggers, policy.rearm_below)
    return Qualification(state, tuple(changes), tuple(triggers))


def least_mql_fit(policy: QualificationPolicy) -> str:
    """The lowest fit grade any MQL has: the lower of the score's and the hand-raise's minimum."""
    return max(policy.min_fit_grade, policy.hand_raise_min_fit_grade, key=GRADES.index)


def _hand_over(state: LeadState, reason: str, now: datetime, triggers: list[Trigger], rearm_below: int) -> LeadState:
    """An MQL handed to sales: the next crossing, numbered, its trigger fired, the qualification's time kept.
    The trigger re-arms only once the score falls below the band after this handover: armed at once when the
    score already stands below it (a hand-raise can qualify such a lead), as the next run would find it
    (rescoring twice must change nothing); never armed by a fall that came before (a lead the rules return to
    MQL whose score dipped while it was out), or a recycle would see it bounce straight back on its score."""
    crossings = state.crossings + 1
    triggers.append(Trigger("mql", crossings, reason))
    return replace(state, mql_armed=state.score < rearm_below, crossings=crossings, qualified_at=now)


def hand_raises_count_after(state: LeadState) -> datetime | None:
    """The moment after which a hand-raise counts for this lead (None: any counts). Only a hand-raise after the
    last qualification, and while recycled after the recycle, counts: an old demo request must not bounce a
    recycled lead straight back to sales. The recycle is the person's, not the rules' return from a
    disqualification they made by mistake (see LeadState.recycled_at)."""
    recycled = (state.recycled_at or state.stage_changed_at) if state.stage is Stage.RECYCLED else None
    if recycled is None or (state.qualified_at is not None and state.qualified_at > recycled):
        return state.qualified_at
    return recycled


def _mql_reason(state: LeadState, facts: LeadFacts, rulebook: Rulebook) -> str | None:
    """Why this lead is an MQL now, or None."""
    policy = rulebook.qualification
    fit = facts.fit
    if facts.last_hand_raise is not None:
        raised_at, kind = facts.last_hand_raise
        after = hand_raises_count_after(state)
        fresh = after is None or raised_at > after
        if fresh and kind in policy.hand_raisers and grade_at_least(fit.grade, policy.hand_raise_min_fit_grade):
            return f"hand-raise: {kind.value} on {raised_at:%Y-%m-%d} with fit {fit.grade}"
    if state.mql_armed and facts.score >= rulebook.readiness_threshold and grade_at_least(fit.grade, policy.min_fit_grade):
        return (f"score {points_text(facts.score)} reached the readiness threshold "
                f"{points_text(rulebook.readiness_threshold)} with fit {fit.grade}")
    return None


# How far along a person a record shows, for merging two records of one person. Sales' stages and a current MQL
# outrank everything marketing holds; a recycled record outranks a plain Lead (the person was handed over once and
# came back with a reason, which must not be forgotten). Disqualified ranks lowest: it is marketing's judgment of
# the facts (the fit's disqualifiers), made again at once on the merged person's facts by qualify().
MERGE_RANK = (Stage.DISQUALIFIED, Stage.SUBSCRIBER, Stage.LEAD, Stage.RECYCLED, Stage.MQL, Stage.SQL,
              Stage.OPPORTUNITY, Stage.CUSTOMER)


def absorb(state: LeadState | None, merged: list[tuple[int, LeadState]]) -> tuple[Qualification, int | None]:
    """The state of a lead after other leads of the same person were merged into it (`merged`: their ids and
    last states). A merge is not a move: the person stands where the furthest of its records stood, with that
    record's trigger state and since that record's time, so a person handed over as one record is not handed
    over again as the other.
    Crossings add up (each record's were the person's), the latest qualification counts (an old hand-raise
    does not qualify again), and the peak is the highest. Score, fit and cold are left for qualify() to judge
    on the merged facts. The change, if the stage moved, names the records it came from. Also returns the id
    of the merged lead whose stage the person took (None when the lead that remains keeps its own): its open
    handoff work is the person's, where the others' is not."""
    if not merged:
        raise ValueError("absorb needs at least one merged lead")
    records = ([state] if state is not None else []) + [s for _, s in merged]
    # The furthest record wins; of equals, the lead that remains (listed first), then the earlier merged lead.
    winner = max(records, key=lambda s: MERGE_RANK.index(s.stage) * 2 + (s is state))
    took_from = next((lead_id for lead_id, s in merged if s is winner), None)
    qualified = [s.qualified_at for s in records if s.qualified_at is not None]
    person = replace(
        state if state is not None else winner,
        stage=winner.stage, stage_changed_at=winner.stage_changed_at, mql_armed=winner.mql_armed,
        peak_score=max(s.peak_score for s in records), crossings=sum(s.crossings for s in records),
        qualified_at=max(qualified) if qualified else None, fit_disqualified_from=winner.fit_disqualified_from,
        recycled_at=winner.recycled_at,
    )
    changes: tuple[StageChange, ...] = ()
    if state is None or state.stage is not winner.stage:
        names = ", ".join(f"lead {lead_id} ({s.stage.value})" for lead_id, s in sorted(merged, key=lambda m: m[0]))
        changes = (StageChange(state.stage if state else None, winner.stage, f"merged with {names}"),)
    return Qualification(person, changes), took_from


def recycle(state: LeadState, reason: str, now: datetime, *, rearm_below: int) -> Qualification:
    """Back to nurture, with the reason (sales rejected it, nobody reached it, it was disqualified by mistake):
    never silently lost. It is handed over again only on a hand-raise after the recycle or a crossing after it:
    the trigger is armed only if the score already stands below the band (`rearm_below`), as the next run
    would find it, never by a dip and climb that came while sales held the lead, or the next pass would hand
    back at once what sales just gave back."""
    if not reason.strip():
        raise StageMoveRefused("recycling needs a reason")
    changes: list[StageChange] = []
    state = _move(state, Stage.RECYCLED, f"recycled: {reason}", now, changes)
    state = replace(state, fit_disqualified_from=None, recycled_at=now, mql_armed=state.score < rearm_below)
    return Qualification(state, tuple(changes))


def disqualify(state: LeadState, reason: str, now: datetime) -> Qualification:
    """Out of the funnel, by a person's judgment (spam, a competitor, a duplicate nobody merged), with the reason;
    the fit's disqualifiers do the same on their own in qualify(). Scoring leaves it there; only a person's
    recycle takes it back."""
    if not reason.strip():
        raise StageMoveRefused("disqualifying needs a reason")
    changes: list[StageChange] = []
    state = _move(state, Stage.DISQUALIFIED, f"disqualified: {reason}", now, changes)
    return Qualification(replace(state, fit_disqualified_from=None), tuple(changes))


def stage_event_kind(change: StageChange) -> str | None:
    """The lead event a stage change emits besides the MQL handover (`handoff.lead.<kind>`): a lead recycled,
    disqualified, reinstated (back out of a disqualification, by the rules), or entering a sales stage. Marketing's
    ordinary progress (a new lead's first stage, subscriber to lead, a merge's move within it) emits none; reaching
    MQL is the handover's own event."""
    if change.to_stage in (Stage.RECYCLED, Stage.DISQUALIFIED, *SALES_OWNED):
        return change.to_stage.value
    if change.from_stage is Stage.DISQUALIFIED:
        return "reinstated"
    return None


# What a person may move a lead to; marketing's own stages (subscriber, lead, MQL) move by the rules alone.
PERSON_TARGETS = (Stage.RECYCLED, Stage.DISQUALIFIED, *SALES_OWNED)


def move_by_person(state: LeadState | None, target: Stage, reason: str, now: datetime, *,
                   fit: FitAssessment | None, rearm_below: int) -> Qualification:
    """A move someone asked for: recycle or disqualify with a reason, or a sales stage the CRM has not reported
    yet. Refused with the why when the lifecycle does not allow it. `fit` is the lead's fit under the rulebook
    in force (None: no details to judge): a disqualified lead is taken back to nurture only when the fit's
    disqualifiers no longer apply, since the next scoring run would disqualify it again at once. `rearm_below`
    is the rulebook's re-arm band (see recycle)."""
    if state is None:
        raise StageMoveRefused("the lead has not been scored yet: it has no stage to move from")
    if not reason.strip():
        raise StageMoveRefused(f"a move to {target} needs a reason")
    if target is Stage.RECYCLED:
        if state.stage is Stage.DISQUALIFIED and fit is not None and fit.disqualified:
            raise StageMoveRefused(f"its fit still disqualifies it ({fit.disqualified}): change the lead's details "
                                   "or the rulebook's disqualifiers first")
        return recycle(state, reason, now, rearm_below=rearm_below)
    if target is Stage.DISQUALIFIED:
        return disqualify(state, reason, now)
    if target in SALES_OWNED:
        return advance(state, target, reason, now)
    raise StageMoveRefused(f"{target} is reached by the scoring rules alone; a person moves a lead to "
                           f"{', '.join(PERSON_TARGETS)}")


def advance(state: LeadState, target: Stage, reason: str, now: datetime) -> Qualification:
    """A sales-owned move reported by the CRM (SQL, Opportunity, Customer): forward only."""
    if target not in SALES_OWNED:  # marketing's stages move by qualify; recycling needs recycle() and its reason
        raise StageMoveRefused(f"sales moves a lead to {', '.join(SALES_OWNED)}, not to {target}")
    changes: list[StageChange] = []
    state = _move(state, target, reason, now, changes)
    return Qualification(state, tuple(changes))


def lead_facts(score: int, fit: FitAssessment, profile: Mapping[str, Any],
               last_hand_raise: tuple[datetime, str] | None, rulebook: Rulebook) -> LeadFacts:
    """The facts qualify() reads, from a lead's score, fit, fields and latest hand-raise (time, type)."""
    return LeadFacts(
        score=score,
        fit=fit,
        has_details=any(profile.get(name) for name in rulebook.qualification.details_fields),
        last_hand_raise=(last_hand_raise[0], ActivityType(last_hand_raise[1])) if last_hand_raise else None,
    )


def decide(previous: LeadState | None, merged: list[tuple[int, LeadState]] | None, facts: LeadFacts,
           rulebook: Rulebook, now: datetime) -> tuple[Qualification, int | None]:
    """One lead's pass: the person first stands where the furthest of its records stood (when leads were merged
    into it since it was last scored), then qualifies on its facts. Also returns the merged lead whose stage the
    person took (see absorb), or None."""
    if not merged:
        return qualify(previous, facts, rulebook, now), None
    merge, took_from = absorb(previous, merged)
    result = qualify(merge.state, facts, rulebook, now)
    if merge.changes:
        result = Qualification(result.state, merge.changes + result.changes, result.triggers)
    return result, took_from
