"""SLA measures over timers, per rep and per team: time to first contact (median and 90th percentile, in business
and in calendar hours), the share contacted within the window, breaches, reassignments and recycled leads."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable

from domain.business_hours import SlaClock
from domain.sla import SlaTimer, TimerState, working_calendar
from domain.teams import SalesTeams

_HOUR = 3600
_LAPSED = frozenset({TimerState.BREACHED, TimerState.REASSIGNED, TimerState.RECYCLED, TimerState.CONTACTED_LATE})


@dataclass(frozen=True)
class SlaMeasures:
    """One rep's, one team's or everyone's figures. `decided`: timers whose outcome is known at `now` (contacted,
    or past due); the share in time is of those, so a timer still running in time counts for nobody yet."""

    who: str
    handed_over: int
    contacted: int
    contacted_in_time: int
    decided: int
    breaches: int
    reassignments: int
    recycled: int
    running: int
    median_business_hours: float | None
    p90_business_hours: float | None
    median_calendar_hours: float | None
    p90_calendar_hours: float | None

    @property
    def share_in_time(self) -> float | None:
        return self.contacted_in_time / self.decided if self.decided else None


@dataclass(frozen=True)
class SlaReport:
    overall: SlaMeasures
    by_rep: dict[str, SlaMeasures]
    by_team: dict[str, SlaMeasures]


def sla_report(timers: Iterable[SlaTimer], teams: SalesTeams, now: datetime) -> SlaReport:
    """The measures of every timer (each one owner's turn with a lead), grouped by rep and by team; a lead
    handed to a queue counts under its team only."""
    timers = list(timers)
    calendar = owner_calendars(teams)
    by_rep: dict[str, list[SlaTimer]] = {}
    by_team: dict[str, list[SlaTimer]] = {}
    for timer in timers:
        if timer.owner.rep:
            by_rep.setdefault(timer.owner.rep, []).append(timer)
        by_team.setdefault(timer.team or "(no team)", []).append(timer)
    return SlaReport(measures("everyone", timers, calendar, now),
                     {rep: measures(rep, group, calendar, now) for rep, group in sorted(by_rep.items())},
                     {team: measures(team, group, calendar, now) for team, group in sorted(by_team.items())})


def measures(who: str, timers: list[SlaTimer], calendar_of: Callable[[SlaTimer], SlaClock],
             now: datetime) -> SlaMeasures:
    contacted = [t for t in timers if t.first_contact_at is not None]
    in_time = [t for t in contacted if t.first_contact_at <= t.due_at]
    breached = [t for t in timers if t.state in _LAPSED or (t.running and now >= t.due_at)]
    business = [calendar_of(t).business_time_between(t.opened_at, t.first_contact_at).total_seconds() / _HOUR
                for t in contacted]
    calendar = [(t.first_contact_at - t.opened_at).total_seconds() / _HOUR for t in contacted]
    return SlaMeasures(
        who=who, handed_over=len(timers), contacted=len(contacted), contacted_in_time=len(in_time),
        decided=len(contacted) + len([t for t in breached if t.first_contact_at is None]), breaches=len(breached),
        reassignments=sum(t.state is TimerState.REASSIGNED for t in timers),
        recycled=sum(t.state is TimerState.RECYCLED for t in timers), running=sum(t.running for t in timers),
        median_business_hours=_median(business), p90_business_hours=percentile(business, 90),
        median_calendar_hours=_median(calendar), p90_calendar_hours=percentile(calendar, 90))


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least p% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def owner_calendars(teams: SalesTeams) -> Callable[[SlaTimer], SlaClock]:
    """Business hours are the owner's working calendar whatever clock the policy counted on."""
    return lambda timer: working_calendar(teams, timer.owner.rep, timer.team)
