"""The funnel both teams agreed on, counted: the leads entering each stage per month (Lead, MQL, SQL, Opportunity,
Customer), the conversion from each stage to the next, the time from lead to customer, the time to first contact and
SLA compliance, set against the targets. docs/funnel.md states the counting rules; pure: moves, timers and `now`
are arguments."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Iterable, Mapping, Sequence

from domain.lifecycle import Stage
from domain.sla import SlaTimer
from domain.sla_measures import SlaMeasures, measures, owner_calendars
from domain.teams import SalesTeams

FUNNEL_STAGES = (Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER)
STEPS = tuple(zip(FUNNEL_STAGES, FUNNEL_STAGES[1:]))  # the conversions: each stage to the next
STAGE_NAMES = {Stage.LEAD: "leads", Stage.MQL: "MQLs", Stage.SQL: "SQLs", Stage.OPPORTUNITY: "opportunities",
               Stage.CUSTOMER: "customers"}  # as people say them
# Leaving the funnel ends a pass through it: a lead that comes back enters its stages again
_EXITS = frozenset({Stage.RECYCLED, Stage.DISQUALIFIED})
DIMENSIONS = ("source", "channel", "campaign")
UNKNOWN = "(none)"
WHOLE_PERIOD = "all"
_DAY = 86400


# ------------------------------------------------------------------------------------------ stage entries

@dataclass(frozen=True)
class Move:
    """A stage change as the funnel reads it: the person's (every record merged into one counts as that one), when,
    and the stage it went to."""

    person: int
    at: datetime
    to_stage: Stage


@dataclass(frozen=True)
class Entry:
    """A person entering a funnel stage; `skipped`: passed on the way to a later stage in one move."""

    person: int
    stage: Stage
    at: datetime
    skipped: bool = False


def stage_entries(moves: Iterable[Move]) -> list[Entry]:
    """Each person's entries into the funnel's stages, from their moves in the order they happened:
    - a move into a stage enters it and every funnel stage before it not yet entered on this pass (MQL straight to
      opportunity passes SQL too, at that moment);
    - Lead is entered once per person, ever: the first move into the funnel;
    - recycled or disqualified ends a pass, so a lead that comes back (at MQL or later) enters those stages again;
    - a move into a stage already entered on this pass (a merge bringing a record's stage) enters nothing."""
    entries: list[Entry] = []
    for person, moves_of in _by_person(moves).items():
        passed: set[Stage] = set()
        was_lead = False
        for move in moves_of:
            if move.to_stage in _EXITS:
                passed.clear()
                continue
            if move.to_stage not in FUNNEL_STAGES:
                continue  # a subscriber is not a lead yet
            for stage in FUNNEL_STAGES[:FUNNEL_STAGES.index(move.to_stage) + 1]:
                if stage in passed or (stage is Stage.LEAD and was_lead):
                    continue
                entries.append(Entry(person, stage, move.at, skipped=stage is not move.to_stage))
                passed.add(stage)
            was_lead = True
    return entries


def _by_person(moves: Iterable[Move]) -> dict[int, list[Move]]:
    grouped: dict[int, list[Move]] = {}
    for move in moves:
        grouped.setdefault(move.person, []).append(move)
    return {person: sorted(found, key=lambda m: m.at) for person, found in grouped.items()}  # stable: ties in order


# ------------------------------------------------------------------------------------------ the period

@dataclass(frozen=True)
class Period:
    """What a report covers: from `start` to `end` (instants, `end` excluded), in calendar months of `zone`."""

    start: datetime
    end: datetime
    zone: tzinfo

    def month_of(self, moment: datetime) -> str | None:
        """'2026-01': the month `moment` falls in, when it is within the period."""
        return _month(moment, self.zone) if self.start <= moment < self.end else None

    @property
    def months(self) -> list[str]:
        first = self.start.astimezone(self.zone)
        last = (self.end - timedelta(microseconds=1)).astimezone(self.zone)
        months, year, month = [], first.year, first.month
        while (year, month) <= (last.year, last.month):
            months.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return months

    def partial(self, month: str) -> bool:
        """Whether the period covers only part of `month` (it starts or ends inside it)."""
        begins, ends = _month_start(month, self.zone), _month_start(_next_month(month), self.zone)
        return self.start > begins or self.end < ends

    def label(self) -> str:
        """'1 Jan 2026 to 20 Mar 2026'."""
        first, last = self.start.astimezone(self.zone), (self.end - timedelta(microseconds=1)).astimezone(self.zone)
        return f"{first.day} {first:%b %Y} to {last.day} {last:%b %Y}"


class PeriodRefused(ValueError):
    """A --from/--to (or start/end) that names no period."""


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def reporting_period(start: str | None, end: str | None, now: datetime, zone: tzinfo, months: int,
                     earliest: datetime | None = None) -> Period:
    """The period from `start` to `end`, each a month ('2026-01': from its first day, to its last) or a day
    ('2026-01-15'); by default the `months` calendar months up to `now`, from the month of `earliest` (the first
    stage change recorded) if that is later: months before Handoff's records would only show zeros. It never runs
    past `now`: what has not happened is not counted."""
    begins = _bound(start, zone, "start") if start else _month_start(_months_back(_month(now, zone), months - 1), zone)
    if not start and earliest is not None and earliest < now:
        begins = max(begins, _month_start(_month(earliest, zone), zone))
    ends = _bound(end, zone, "end", upper=True) if end else now
    ends = min(ends, now)
    if begins >= ends:
        raise PeriodRefused(f"the period from {start or begins.date()} to {end or 'now'} is empty: the start must come "
                            "before the end, and before now")
    return Period(begins, ends, zone)


def _bound(text: str, zone: tzinfo, what: str, upper: bool = False) -> datetime:
    """The first instant of a month or day, or the first instant after it (`upper`)."""
    text = text.strip()
    if (month := _MONTH.match(text)) and 1 <= int(month.group(2)) <= 12:
        return _month_start(_next_month(text) if upper else text, zone)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PeriodRefused(f"the {what} {text!r} is neither a month (2026-01) nor a day (2026-01-15)") from None
    day += timedelta(days=1) if upper else timedelta()
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _month(moment: datetime, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.year:04d}-{local.month:02d}"


def _month_start(month: str, zone: tzinfo) -> datetime:
    year, number = map(int, month.split("-"))
    return datetime(year, number, 1, tzinfo=zone)


def _next_month(month: str) -> str:
    return _months_back(month, -1)


def _months_back(month: str, n: int) -> str:
    year, number = map(int, month.split("-"))
    index = year * 12 + number - 1 - n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# ------------------------------------------------------------------------------------------ targets

@dataclass(frozen=True)
class FunnelTargets:
    """What a month should bring, agreed by both teams; the conversions follow from the stage targets (100 MQLs of
    200 leads: 50%)."""

    per_month: Mapping[Stage, int]
    first_contact_hours: float = 24  # the 90th percentile of time to first contact, in business hours
    contacted_in_time: float = 1.0  # the share of handed-over leads contacted within the SLA
    lead_to_customer_days: float = 60  # the average time from lead to customer

    def conversion(self, stage: Stage) -> float | None:
        """The conversion from `stage` to the next that the stage targets imply."""
        after = FUNNEL_STAGES[FUNNEL_STAGES.index(stage) + 1]
        return self.per_month[after] / self.per_month[stage] if self.per_month[stage] else None


# The worked example of DOMAIN.md: to close 10 deals a month, 30 opportunities, 50 SQLs, 100 MQLs, 200 leads;
# each MQL contacted within 24 hours; lead to customer in about two months.
WORKED_EXAMPLE = FunnelTargets({Stage.LEAD: 200, Stage.MQL: 100, Stage.SQL: 50, Stage.OPPORTUNITY: 30,
                                Stage.CUSTOMER: 10})


# ------------------------------------------------------------------------------------------ counting

@dataclass(frozen=True)
class Attribution:
    """Where a person came from: the marketing tool of their first touch (their earliest activity), their lead
    source channel, and the first campaign they touched."""

    source: str | None = None
    channel: str | None = None
    campaign: str | None = None

    def of(self, dimension: str) -> str:
        return getattr(self, dimension) or UNKNOWN


@dataclass(frozen=True)
class FunnelRow:
    """One month's funnel (or the whole period's, month 'all'), of every lead or of one group (a source, channel or
    campaign). `converted[stage]`: of the leads that entered `stage` here, how many went on to the next stage by the
    report's time."""

    month: str
    group: str | None
    entered: Mapping[Stage, int]
    skipped: Mapping[Stage, int]  # of the entries, those passed by a skip
    converted: Mapping[Stage, int]
    days_to_customer: tuple[float, ...]  # each new customer's days from becoming a lead
    sla: SlaMeasures | None  # the SLA measures of the leads handed over here
    partial: bool = False

    def conversion(self, stage: Stage) -> float | None:
        return self.converted[stage] / self.entered[stage] if self.entered[stage] else None

    @property
    def average_days_to_customer(self) -> float | None:
        return statistics.fmean(self.days_to_customer) if self.days_to_customer else None

    @property
    def median_days_to_customer(self) -> float | None:
        return statistics.median(self.days_to_customer) if self.days_to_customer else None


@dataclass(frozen=True)
class FunnelReport:
    period: Period
    now: datetime
    targets: FunnelTargets
    months: tuple[FunnelRow, ...]  # every lead, month by month
    whole: FunnelRow  # every lead over the period
    by: str | None = None
    groups: tuple[FunnelRow, ...] = ()  # month by month, then over the period, per group of `by`
    skipped_stages: int = 0  # entries that were a stage passed by a skip, over the period


def funnel_report(moves: Iterable[Move], attribution: Mapping[int, Attribution],
                  handed_over: Sequence[tuple[int, SlaTimer]], teams: SalesTeams, period: Period, now: datetime,
                  targets: FunnelTargets = WORKED_EXAMPLE, by: str | None = None) -> FunnelReport:
    """The funnel of `period` as at `now`: stage entries counted in the month they happened (the period view);
    conversions of the leads that entered a stage in the month, to the next stage whenever they reached it before
    entering that stage again (the cohort view); days to customer of the month's new customers; the SLA measures of
    the timers opened in the month. `handed_over`: (person, timer) of each SLA timer opened in the period. Moves
    after `now` are not known yet."""
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}, not {by!r}")
    counted = _Counter(stage_entries(m for m in moves if m.at <= now), handed_over, teams, period, now)
    everyone = lambda person: None  # noqa: E731
    monthly, whole = counted.by(everyone, whole=False), counted.by(everyone, whole=True)
    groups: list[FunnelRow] = []
    if by is not None:
        group_of = lambda person: attribution.get(person, Attribution()).of(by)  # noqa: E731
        for buckets in (counted.by(group_of, whole=False), counted.by(group_of, whole=True)):
            groups += [counted.row(buckets, bucket, group) for bucket, group in sorted(buckets.keys())]
    return FunnelReport(period, now, targets, tuple(counted.row(monthly, m, None) for m in period.months),
                        counted.row(whole, WHOLE_PERIOD, None), by, tuple(groups),
                        sum(e.skipped for _, e in counted.entries))


_Dated = tuple[str, Entry]  # an entry with its month


@dataclass
class _Buckets:
    """Entries and timers by (bucket, group): a bucket is a month, or the whole period."""

    entries: dict[tuple[str, str | None], list[_Dated]] = field(default_factory=dict)
    timers: dict[tuple[str, str | None], list[SlaTimer]] = field(default_factory=dict)

    def keys(self) -> set[tuple[str, str | None]]:
        return set(self.entries) | set(self.timers)


class _Counter:
    """A report's stage entries and timers in the period, each with its month (worked out once), and each person's
    passes through each stage, the period's or not."""

    def __init__(self, entries: list[Entry], handed_over: Sequence[tuple[int, SlaTimer]], teams: SalesTeams,
                 period: Period, now: datetime) -> None:
        self.calendar_of, self.period, self.now = owner_calendars(teams), period, now
        self.entries = [(month, e) for e in entries if (month := period.month_of(e.at))]
        self.timers = [(month, person, t) for person, t in handed_over if (month := period.month_of(t.opened_at))]
        self.passes: dict[tuple[int, Stage], list[datetime]] = {}  # each person's entries of each stage, in order
        for e in entries:
            self.passes.setdefault((e.person, e.stage), []).append(e.at)
        self.lead_at = {person: times[0] for (person, stage), times in self.passes.items() if stage is Stage.LEAD}

    def by(self, group_of, whole: bool) -> _Buckets:
        buckets = _Buckets()
        for month, e in self.entries:
            buckets.entries.setdefault((WHOLE_PERIOD if whole else month, group_of(e.person)), []).append((month, e))
        for month, person, timer in self.timers:
            buckets.timers.setdefault((WHOLE_PERIOD if whole else month, group_of(person)), []).append(timer)
        return buckets

    def row(self, buckets: _Buckets, bucket: str, group: str | None) -> FunnelRow:
        here = buckets.entries.get((bucket, group), [])
        # A lead counts once per stage and month: the period's figures are the sum of its months'
        passes = {s: self._passes(here, s) for s in FUNNEL_STAGES}
        entered = {s: len(passes[s]) for s in FUNNEL_STAGES}
        skipped = {s: len({(e.person, month) for month, e in here if e.stage is s and e.skipped}) for s in FUNNEL_STAGES}
        converted = {s: self._converted(passes[s], s) for s in FUNNEL_STAGES}
        days = tuple((e.at - self.lead_at[e.person]).total_seconds() / _DAY for _, e in here
                     if e.stage is Stage.CUSTOMER)
        timers = buckets.timers.get((bucket, group), [])
        sla = measures(group or "everyone", timers, self.calendar_of, self.now) if timers else None
        partial = bucket != WHOLE_PERIOD and self.period.partial(bucket)
        return FunnelRow(bucket, group, entered, skipped, converted, days, sla, partial)

    @staticmethod
    def _passes(here: list[_Dated], stage: Stage) -> dict[tuple[int, str], tuple[datetime, datetime]]:
        """(person, month) -> the first and last time the person entered `stage` in that month."""
        found: dict[tuple[int, str], tuple[datetime, datetime]] = {}
        for month, e in here:
            if e.stage is stage:
                key = (e.person, month)
                found[key] = (found[key][0] if key in found else e.at, e.at)
        return found

    def _converted(self, passes: dict[tuple[int, str], tuple[datetime, datetime]], stage: Stage) -> int:
        """Of the leads that entered `stage` in a month, those that reached the next stage from then until they
        entered `stage` again after that month (a lead recycled and back starts a new pass: its progress is that
        pass's)."""
        if stage is Stage.CUSTOMER:
            return 0
        after = FUNNEL_STAGES[FUNNEL_STAGES.index(stage) + 1]
        count = 0
        for (person, _), (since, last) in passes.items():
            until = next((at for at in self.passes[(person, stage)] if at > last), None)
            count += any(since <= at and (until is None or at < until) for at in self.passes.get((person, after), ()))
        return count


# ------------------------------------------------------------------------------------------ against the targets

@dataclass(frozen=True)
class Judged:
    """One measure of a month set against its target: `met` None when there is nothing to judge yet (no lead
    there, or a month still under way that has not reached it)."""

    measure: str
    actual: float | None
    target: float
    met: bool | None
    kind: str  # count, share, days or hours: how to show it


def against_targets(row: FunnelRow, targets: FunnelTargets) -> list[Judged]:
    """The month's stages, conversions, time to customer, time to first contact and SLA compliance, each beside its
    target. A month under way is judged on the counts it has already reached only: the rest may still change."""
    judged: list[Judged] = []
    for stage in FUNNEL_STAGES:
        n, target = row.entered[stage], targets.per_month[stage]
        judged.append(Judged(STAGE_NAMES[stage], n, target, True if n >= target else (None if row.partial else False),
                             "count"))
    for stage, after in STEPS:
        share, target = row.conversion(stage), targets.conversion(stage)
        if target is None:
            continue
        met = None if share is None or row.partial else share >= target
        judged.append(Judged(f"{STAGE_NAMES[stage]} → {STAGE_NAMES[after]}", share, target, met, "share"))
    days = row.average_days_to_customer
    judged.append(Judged("lead → customer, average", days, targets.lead_to_customer_days,
                         None if days is None else days <= targets.lead_to_customer_days, "days"))
    p90 = row.sla.p90_business_hours if row.sla else None
    judged.append(Judged("time to first contact, 90th percentile", p90, targets.first_contact_hours,
                         None if p90 is None else p90 <= targets.first_contact_hours, "hours"))
    share = row.sla.share_in_time if row.sla else None
    judged.append(Judged("contacted within the SLA", share, targets.contacted_in_time,
                         None if share is None else share >= targets.contacted_in_time, "share"))
    return judged
