"""The service level agreement on a handed-over lead: which policy applies, what counts as contact, and the timer
that opens at handoff and moves, one step at a time, through reminded, breached (escalated to the rep's manager),
reassigned and finally recycled to nurture, unless a contact that counts closes it first.

Pure: `next_step` tells the one step due for a timer at `now`; the caller applies it (the store with a conditional
update from `step.from_state`, so it happens once) and asks again, which brings several overdue steps out in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Iterable

from domain.business_hours import CALENDAR_HOURS, SlaClock
from domain.crm_directory import CrmDirectory
from domain.routing_decision import Owner
from domain.teams import SalesTeams


# ------------------------------------------------------------------------------------------ policies

class ClockKind(StrEnum):
    BUSINESS_HOURS = "business_hours"  # the owner's working calendar: their team's hours, timezone and holidays
    CALENDAR_HOURS = "calendar_hours"  # every hour counts


@dataclass(frozen=True)
class SlaSubject:
    """What a policy is chosen by: the lead's fit grade, product line, lead source channel and the hand-raising
    activity (demo_request, trial_signup, ...) that made it sales-ready, if one did."""

    fit_grade: str | None = None
    product_line: str | None = None
    source: str | None = None
    hand_raise: str | None = None


@dataclass(frozen=True)
class PolicyWhen:
    """Which leads a policy is for: each criterion given must hold (any of its values); none given: every lead."""

    fit_grades: frozenset[str] = frozenset()
    product_lines: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    hand_raises: frozenset[str] = frozenset()

    @property
    def is_default(self) -> bool:
        return not (self.fit_grades or self.product_lines or self.sources or self.hand_raises)

    def matches(self, subject: SlaSubject) -> bool:
        return all(not wanted or (value or "").strip().casefold() in {w.casefold() for w in wanted}
                   for wanted, value in ((self.fit_grades, subject.fit_grade),
                                         (self.product_lines, subject.product_line),
                                         (self.sources, subject.source), (self.hand_raises, subject.hand_raise)))

    def __str__(self) -> str:
        parts = [f"{label} {' or '.join(sorted(values))}" for label, values in (
            ("fit", self.fit_grades), ("product line", self.product_lines), ("source", self.sources),
            ("hand-raise", self.hand_raises)) if values]
        return " and ".join(parts) or "every lead"


@dataclass(frozen=True)
class SlaPolicy:
    """How long the owner has to make first contact, counted on which clock; when they are reminded; the grace
    after a breach before the lead is reassigned; how many reassignments before it is recycled to nurture."""

    name: str
    respond_within: Decimal  # hours
    clock: ClockKind = ClockKind.BUSINESS_HOURS
    remind_before: Decimal | None = Decimal(4)  # hours before due; None: no reminder
    grace: Decimal = Decimal(4)  # hours after due, on the same clock
    max_reassignments: int = 2
    when: PolicyWhen = PolicyWhen()
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ContactRules:
    """What counts as first contact: a logged activity of these kinds (CRM task types or subtypes such as call and
    email, 'meeting' for an Event), or the lead's status moving to one of these (past the open one)."""

    activities: frozenset[str] = frozenset({"call", "email", "meeting"})
    statuses: frozenset[str] = frozenset()
    only_by_the_owner: bool = False  # a colleague's call counts too unless this says otherwise

    def counts_activity(self, kind: str, by: str | None, owner_crm_id: str | None) -> bool:
        return kind.strip().casefold() in {a.casefold() for a in self.activities} and \
            (not self.only_by_the_owner or (by is not None and by == owner_crm_id))

    def counts_status(self, status: str) -> bool:
        return status.strip().casefold() in {s.casefold() for s in self.statuses}


@dataclass(frozen=True)
class SlaPolicies:
    """The policies in order (first match wins; the last is for every lead) and what contact means."""

    policies: tuple[SlaPolicy, ...]
    contacted: ContactRules = ContactRules()
    source: str = field(default="", compare=False)

    def policy_for(self, subject: SlaSubject) -> SlaPolicy:
        for policy in self.policies:
            if policy.when.matches(subject):
                return policy
        return self.policies[-1]

    def policy(self, name: str) -> SlaPolicy:
        return next(p for p in self.policies if p.name == name)


def working_calendar(teams: SalesTeams, rep: str | None, team: str | None) -> SlaClock:
    """The owner's working time: a rep's own calendar, else their team's, else (nobody known) every hour."""
    if rep and teams.rep(rep):
        return teams.calendar_of(rep)
    if team and team in {t.name for t in teams.teams}:
        return teams.team(team).calendar
    return CALENDAR_HOURS


def sla_clock(policy: SlaPolicy, teams: SalesTeams, rep: str | None, team: str | None) -> SlaClock:
    return CALENDAR_HOURS if policy.clock is ClockKind.CALENDAR_HOURS else working_calendar(teams, rep, team)


# ------------------------------------------------------------------------------------------ timers

class TimerState(StrEnum):
    OPEN = "open"
    REMINDED = "reminded"
    BREACHED = "breached"  # and escalated to the owner's manager
    MET = "met"  # contacted by the due time
    CONTACTED_LATE = "contacted_late"  # contacted after the due time, before anyone took the lead away
    REASSIGNED = "reassigned"
    RECYCLED = "recycled"
    WITHDRAWN = "withdrawn"  # the lead left sales' hands some other way (a person recycled or disqualified it)


RUNNING = frozenset({TimerState.OPEN, TimerState.REMINDED, TimerState.BREACHED})


@dataclass(frozen=True)
class SlaTimer:
    """One owner's SLA on one lead, from handoff to its end. The moments are worked out when it opens, on the
    policy's clock, so stepping it needs no calendar. `lapsed` are the reps who let this lead lapse before."""

    lead_id: int | str
    owner: Owner
    team: str | None
    policy: str
    opened_at: datetime
    due_at: datetime
    remind_at: datetime | None
    reassign_at: datetime
    manager: str | None = None
    reassignments: int = 0  # reassignments of this lead before this timer opened
    max_reassignments: int = 2
    lapsed: tuple[str, ...] = ()
    state: TimerState = TimerState.OPEN
    reminded_at: datetime | None = None
    breached_at: datetime | None = None
    closed_at: datetime | None = None
    first_contact_at: datetime | None = None
    reason: str = ""

    @property
    def running(self) -> bool:
        return self.state in RUNNING


def open_timer(lead_id: int | str, owner: Owner, *, team: str | None, policy: SlaPolicy, teams: SalesTeams,
               opened_at: datetime, after: SlaTimer | None = None, directory: CrmDirectory | None = None) -> SlaTimer:
    """The timer that starts when `owner` is handed the lead; `after`: the timer of the rep who let it lapse, when
    this one follows a reassignment; `directory`: the CRM's users, for a manager teams.yaml does not name."""
    clock = sla_clock(policy, teams, owner.rep, team)
    due = clock.due_at(opened_at, policy.respond_within)
    remind = policy.remind_before
    remind_at = clock.due_at(opened_at, policy.respond_within - remind) \
        if remind and remind < policy.respond_within else None
    lapsed = after.lapsed + ((after.owner.rep,) if after.owner.rep else ()) if after else ()
    return SlaTimer(
        lead_id=lead_id, owner=owner, team=team, policy=policy.name, opened_at=opened_at, due_at=due,
        remind_at=remind_at, reassign_at=clock.due_at(due, policy.grace),
        manager=escalation_manager(owner, teams, directory),
        reassignments=after.reassignments + 1 if after else 0, max_reassignments=policy.max_reassignments,
        lapsed=tuple(dict.fromkeys(lapsed)))


def escalation_manager(owner: Owner, teams: SalesTeams, directory: CrmDirectory | None = None) -> str | None:
    """Whom a breach is escalated to: the rep's manager in teams.yaml, else their CRM user's active manager."""
    if owner.rep and teams.rep(owner.rep) and (manager := teams.manager_of(owner.rep)):
        return manager
    user = directory.user(owner.crm_user_id) if directory else None
    boss = directory.user(user.manager_id) if user else None
    return boss.email.strip().lower() if boss and boss.active and boss.email else None


# ------------------------------------------------------------------------------------------ contact facts

@dataclass(frozen=True)
class LoggedActivity:
    """A call, e-mail, meeting or task logged on the lead in the CRM (`by`: the CRM user who logged it)."""

    at: datetime
    kind: str
    by: str | None = None


@dataclass(frozen=True)
class StatusChange:
    at: datetime
    status: str


@dataclass(frozen=True)
class FirstContact:
    at: datetime
    what: str


def first_contact(timer: SlaTimer, rules: ContactRules, now: datetime, activities: Iterable[LoggedActivity] = (),
                  status_changes: Iterable[StatusChange] = ()) -> FirstContact | None:
    """The first contact that counts for this timer: after it opened and no later than `now`."""
    found = [FirstContact(a.at, f"a logged {a.kind}") for a in activities
             if timer.opened_at <= a.at <= now and rules.counts_activity(a.kind, a.by, timer.owner.crm_user_id)]
    found += [FirstContact(s.at, f"status '{s.status}'") for s in status_changes
              if timer.opened_at <= s.at <= now and rules.counts_status(s.status)]
    return min(found, key=lambda c: c.at, default=None)


# ------------------------------------------------------------------------------------------ steps

class StepKind(StrEnum):
    MET = "met"
    CONTACTED_LATE = "contacted_late"
    REMIND = "remind"
    BREACH = "breach"
    REASSIGN = "reassign"
    RECYCLE = "recycle"


_EVENTS = {StepKind.REMIND: ("handoff.sla.reminded",), StepKind.BREACH: ("handoff.sla.breached",),
           StepKind.REASSIGN: ("handoff.sla.reassigned",), StepKind.RECYCLE: ("handoff.sla.recycled",),
           StepKind.MET: ("handoff.sla.met",), StepKind.CONTACTED_LATE: ("handoff.sla.contacted_late",)}


@dataclass(frozen=True)
class SlaStep:
    """The one step due for a timer. The store applies it only if the timer is still in `from_state`.
    `notify`: who is told (none: nothing to send); `exclude_reps`: who the lead must never go back to."""

    kind: StepKind
    lead_id: int | str
    from_state: TimerState
    to_state: TimerState
    due: datetime
    reason: str
    notify: tuple[str, ...] = ()
    escalate_to: str | None = None
    exclude_reps: tuple[str, ...] = ()
    contact_at: datetime | None = None

    @property
    def events(self) -> tuple[str, ...]:
        """The Prefect events the step emits; a breach with a manager to tell is escalated too."""
        return _EVENTS[self.kind] + (("handoff.sla.escalated",) if self.escalate_to else ())


def next_step(timer: SlaTimer, now: datetime, rules: ContactRules, activities: Iterable[LoggedActivity] = (),
              status_changes: Iterable[StatusChange] = ()) -> SlaStep | None:
    """The one step due for `timer` at `now`, or None. A contact that counts closes the timer whatever else is
    overdue; otherwise the reminder, the breach and the reassignment (or recycling) come out one per call, in the
    order they fell due. A reminder whose due time has already passed is not sent: the breach says more."""
    if not timer.running:
        return None
    contact = first_contact(timer, rules, now, activities, status_changes)
    if contact:
        in_time = contact.at <= timer.due_at
        return _step(timer, StepKind.MET if in_time else StepKind.CONTACTED_LATE,
                     TimerState.MET if in_time else TimerState.CONTACTED_LATE, contact.at,
                     f"first contact: {contact.what} at {contact.at:%Y-%m-%d %H:%M %Z}"
                     + ("" if in_time else f", after the due time {timer.due_at:%Y-%m-%d %H:%M %Z}"),
                     contact_at=contact.at)
    if timer.state in (TimerState.OPEN, TimerState.REMINDED) and now >= timer.due_at:
        return _breach(timer)
    if timer.state is TimerState.OPEN and timer.remind_at is not None and now >= timer.remind_at:
        return _step(timer, StepKind.REMIND, TimerState.REMINDED, timer.remind_at,
                     f"not contacted yet: due {timer.due_at:%Y-%m-%d %H:%M %Z}", notify=_who(timer.owner.rep))
    if timer.state is TimerState.BREACHED and now >= timer.reassign_at:
        return _reassign_or_recycle(timer)
    return None


def _breach(timer: SlaTimer) -> SlaStep:
    escalate = f"; escalated to {timer.manager}" if timer.manager else "; no manager to escalate to"
    return _step(timer, StepKind.BREACH, TimerState.BREACHED, timer.due_at,
                 f"not contacted by the due time {timer.due_at:%Y-%m-%d %H:%M %Z}{escalate}",
                 notify=_who(timer.owner.rep, timer.manager), escalate_to=timer.manager)


def _reassign_or_recycle(timer: SlaTimer) -> SlaStep:
    lapsed = tuple(dict.fromkeys(timer.lapsed + _who(timer.owner.rep)))
    if timer.reassignments < timer.max_reassignments:
        return _step(timer, StepKind.REASSIGN, TimerState.REASSIGNED, timer.reassign_at,
                     f"still not contacted after the grace period: reassignment "
                     f"{timer.reassignments + 1} of at most {timer.max_reassignments}",
                     notify=_who(timer.owner.rep, timer.manager), exclude_reps=lapsed)
    who = ", ".join(lapsed) or str(timer.owner)
    return _step(timer, StepKind.RECYCLE, TimerState.RECYCLED, timer.reassign_at,
                 f"not contacted within the SLA after {timer.reassignments} reassignment"
                 f"{'' if timer.reassignments == 1 else 's'} (let lapse by {who}): back to marketing nurture",
                 notify=_who(timer.owner.rep, timer.manager), exclude_reps=lapsed)


def _step(timer: SlaTimer, kind: StepKind, to: TimerState, due: datetime, reason: str, **more) -> SlaStep:
    return SlaStep(kind, timer.lead_id, timer.state, to, due, reason, **more)


def _who(*people: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for p in people if p))


def apply_step(timer: SlaTimer, step: SlaStep, at: datetime) -> SlaTimer:
    """The timer after `step`, applied at `at` (what the store writes with its conditional update)."""
    if step.from_state is not timer.state:
        raise ValueError(f"step {step.kind} expects a timer {step.from_state}, this one is {timer.state}")
    if step.kind is StepKind.REMIND:
        return replace(timer, state=step.to_state, reminded_at=at)
    if step.kind is StepKind.BREACH:
        return replace(timer, state=step.to_state, breached_at=at)
    return replace(timer, state=step.to_state, closed_at=at, first_contact_at=step.contact_at, reason=step.reason)


# ------------------------------------------------------------------------------------------ kept as JSON

def timer_to_json(timer: SlaTimer) -> dict:
    """The timer as the store keeps it (times as ISO text)."""
    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {"lead_id": timer.lead_id, "owner": timer.owner.to_json(), "team": timer.team, "policy": timer.policy,
            "opened_at": when(timer.opened_at), "due_at": when(timer.due_at), "remind_at": when(timer.remind_at),
            "reassign_at": when(timer.reassign_at), "manager": timer.manager, "reassignments": timer.reassignments,
            "max_reassignments": timer.max_reassignments, "lapsed": list(timer.lapsed), "state": timer.state.value,
            "reminded_at": when(timer.reminded_at), "breached_at": when(timer.breached_at),
            "closed_at": when(timer.closed_at), "first_contact_at": when(timer.first_contact_at), "reason": timer.reason}


def timer_from_json(data: dict) -> SlaTimer:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    owner = data["owner"]
    return SlaTimer(
        lead_id=data["lead_id"],
        owner=Owner(queue=owner["queue"]) if owner.get("kind") == "queue" else
        Owner(rep=owner.get("email"), crm_user_id=owner.get("crm_user_id"), name=owner.get("name") or ""),
        team=data.get("team"), policy=data["policy"], opened_at=when(data["opened_at"]), due_at=when(data["due_at"]),
        remind_at=when(data.get("remind_at")), reassign_at=when(data["reassign_at"]), manager=data.get("manager"),
        reassignments=int(data.get("reassignments", 0)), max_reassignments=int(data.get("max_reassignments", 2)),
        lapsed=tuple(data.get("lapsed") or ()), state=TimerState(data["state"]), reminded_at=when(data.get("reminded_at")),
        breached_at=when(data.get("breached_at")), closed_at=when(data.get("closed_at")),
        first_contact_at=when(data.get("first_contact_at")), reason=data.get("reason") or "")


def withdrawn(timer: SlaTimer, reason: str, at: datetime) -> SlaTimer:
    """A running timer closed because its lead is no longer the owner's to contact; no step follows."""
    return replace(timer, state=TimerState.WITHDRAWN, closed_at=at, reason=reason)
