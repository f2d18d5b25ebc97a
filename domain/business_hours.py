"""The SLA clock: a team's working calendar (timezone, working hours, days off) and business-time arithmetic on it.

Every moment going in is an aware datetime and every moment coming out is an aware UTC datetime; the working
hours are applied in the team's local wall time. Pure: the caller passes the moments, nothing reads a clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Container, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000
# Three years without a working minute is a calendar mistake, not a long holiday: stop instead of looping forever.
_IDLE_DAYS = 3 * 366
_PERIOD = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-\u2013]\s*(\d{1,2}):(\d{2})\s*$")


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True, order=True)
class WorkingPeriod:
    """One stretch of work in local wall time, as minutes after midnight: from `start` up to (not including) `end`;
    `end` may be 24:00 (1440)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= DAY_MINUTES:
            raise ValueError(f"a working period runs forward within one day, "
                             f"not {_clock(self.start)}-{_clock(self.end)}")

    @classmethod
    def parse(cls, text: str) -> WorkingPeriod:
        """'09:00-17:00' (an en dash works too; '24:00' ends at midnight)."""
        match = _PERIOD.match(str(text))
        if not match:
            raise ValueError(f"a working period is written HH:MM-HH:MM, not {text!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(f"{text!r} is not a time of day")
        return cls(h1 * 60 + m1, h2 * 60 + m2)

    @property
    def minutes(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True)
class WorkingWeek:
    """The working periods of each weekday, Monday first; a day with none is not worked."""

    days: tuple[tuple[WorkingPeriod, ...], ...]

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError("a working week has seven days")
        for name, periods in zip(WEEKDAYS, self.days):
            for before, after in zip(periods, periods[1:]):
                if after.start < before.end:
                    raise ValueError(f"{name}: working periods {before} and {after} overlap or are out of order")
        if not any(self.days):
            raise ValueError("a working week needs at least one working period")

    @classmethod
    def of(cls, hours: dict[int, Iterable[WorkingPeriod | str]]) -> WorkingWeek:
        """From {weekday (0 = Monday): periods}; days left out are not worked."""
        return cls(tuple(tuple(sorted(p if isinstance(p, WorkingPeriod) else WorkingPeriod.parse(p)
                                      for p in hours.get(day, ()))) for day in range(7)))

    @classmethod
    def office_hours(cls, *periods: WorkingPeriod | str, weekdays: Iterable[int] = range(5)) -> WorkingWeek:
        """The same periods on each of `weekdays` (Monday to Friday unless told)."""
        return cls.of({day: periods for day in weekdays})

    @property
    def weekly_minutes(self) -> int:
        return sum(p.minutes for periods in self.days for p in periods)

    def __str__(self) -> str:
        """Runs of days with the same hours: 'Mon-Fri 09:00-17:00, Sat 10:00-14:00'."""
        parts, day = [], 0
        while day < 7:
            last = day
            while last + 1 < 7 and self.days[last + 1] == self.days[day]:
                last += 1
            if self.days[day]:
                names = WEEKDAYS[day].title() + (f"-{WEEKDAYS[last].title()}" if last > day else "")
                parts.append(f"{names} {' '.join(str(p) for p in self.days[day])}")
            day = last + 1
        return ", ".join(parts)


@dataclass(frozen=True)
class DaysOff:
    """The dates a team does not work: its own days off, plus holiday calendars (anything that answers `date in`)."""

    dates: frozenset[date] = frozenset()
    holidays: tuple[Container[date], ...] = ()

    def __contains__(self, day: object) -> bool:
        return day in self.dates or any(day in calendar for calendar in self.holidays)


@dataclass(frozen=True)
class WorkingCalendar:
    """A team's working time: its IANA timezone, its working week in local wall time and the days it does not work.

    Wall times the clocks skip or repeat are read deliberately: a skipped time (spring forward) is the moment the
    clocks jump to, and a repeated time (fall back) is its first occurrence, so the reading never runs backwards.
    `days_off` must not change once the calendar is made: each day's working time is worked out once and kept.
    """

    timezone: str
    working_hours: WorkingWeek
    days_off: Container[date] = frozenset()
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _day_cache: dict[int, tuple[tuple[int, int], ...]] = field(default_factory=dict, init=False, repr=False,
                                                              compare=False)
    _week_cache: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", zone_of(self.timezone))

    # ---------------------------------------------------------------------------------- the four questions

    def due_at(self, start: datetime, hours: float | Decimal | timedelta) -> datetime:
        """The moment `hours` of working time after `start`. Zero hours is `start` itself, even outside working
        hours; time that runs out exactly at a period's end is due at that end, not when work resumes."""
        now, remaining = _micros(start), _duration(hours)
        if remaining == 0:
            return _moment(now)
        day = self._local_day(now) - 1
        first_whole_week = day + 2  # from here on every working period starts after `start`
        last_work = day
        while True:
            if day >= first_whole_week and _weekday(day) == 0:
                week = self._week(day)
                while remaining > week:
                    remaining -= week
                    last_work = day if week else last_work
                    day += 7
                    self._check_idle(day, last_work)
                    week = self._week(day)
            for begin, end in self._day(day):
                if end <= now:
                    continue
                last_work = day
                begin = max(begin, now)
                if remaining <= end - begin:
                    return _moment(begin + remaining)
                remaining -= end - begin
            day += 1
            self._check_idle(day, last_work)

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Working time from `start` to `end` (negative when `end` comes first)."""
        low, high = _micros(start), _micros(end)
        if high < low:
            return -self.business_time_between(end, start)
        total = 0
        day, last_day = self._local_day(low) - 1, self._local_day(high) + 1
        first_whole_week, end_day = day + 2, last_day - 1
        while day <= last_day:
            if day >= first_whole_week and _weekday(day) == 0 and day + 7 <= end_day:
                total += self._week(day)  # all seven days lie between the two moments
                day += 7
                continue
            for begin, finish in self._day(day):
                total += max(0, min(finish, high) - max(begin, low))
            day += 1
        return timedelta(microseconds=total)

    def is_working(self, at: datetime) -> bool:
        now = _micros(at)
        day = self._local_day(now)
        return any(begin <= now < end for d in (day - 1, day, day + 1) for begin, end in self._day(d))

    def next_working_moment(self, at: datetime) -> datetime:
        """`at` itself when it is working time, else the start of the next working period."""
        now = _micros(at)
        day = self._local_day(now) - 1
        last_work = day
        while True:
            for begin, end in self._day(day):
                if end > now:
                    return _moment(max(begin, now))
            day += 1
            self._check_idle(day, last_work)

    # ---------------------------------------------------------------------------------- days in UTC

    def _local_day(self, micros: int) -> int:
        return _moment(micros).astimezone(self.zone).toordinal()

    def _day(self, ordinal: int) -> tuple[tuple[int, int], ...]:
        """The working periods of one local date as UTC microsecond spans (none on a day off)."""
        spans = self._day_cache.get(ordinal)
        if spans is None:
            day = date.fromordinal(ordinal)
            spans = () if day in self.days_off else tuple(
                (begin, end) for begin, end in ((self._instant(day, p.start), self._instant(day, p.end))
                                                for p in self.working_hours.days[day.weekday()])
                if end > begin)  # a period wholly inside a skipped hour has no working time that day
            self._day_cache[ordinal] = spans
        return spans

    def _week(self, monday: int) -> int:
        total = self._week_cache.get(monday)
        if total is None:
            total = sum(end - begin for d in range(monday, monday + 7) for begin, end in self._day(d))
            self._week_cache[monday] = total
        return total

    def _instant(self, day: date, minute: int) -> int:
        """The UTC microsecond of a local wall time (skipped: the moment the clocks jump to; repeated: the first)."""
        wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
        first = wall.replace(tzinfo=self.zone).astimezone(UTC)
        if first.astimezone(self.zone).replace(tzinfo=None) == wall:
            return _micros(first)
        # In a gap fold=1 reads the time before the jump and fold=0 after it: the jump lies between, to the second.
        low = int(wall.replace(tzinfo=self.zone, fold=1).timestamp())
        high = int(first.timestamp())
        while low + 1 < high:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self.zone).replace(tzinfo=None) >= wall:
                high = middle
            else:
                low = middle
        return high * 1_000_000

    def _check_idle(self, day: int, last_work: int) -> None:
        if day - last_work > _IDLE_DAYS:
            raise ValueError(f"no working time in {self.timezone} for {_IDLE_DAYS} days after "
                             f"{date.fromordinal(last_work)}: are all days off?")


@dataclass(frozen=True)
class AroundTheClock:
    """Calendar hours (24/7), for SLA policies that count every hour: the same questions, plain arithmetic."""

    timezone: str = "UTC"

    def due_at(self, start: datetime, hours: float | Decimal | timedelta) -> datetime:
        return _moment(_micros(start) + _duration(hours))

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        return timedelta(microseconds=_micros(end) - _micros(start))

    def is_working(self, at: datetime) -> bool:
        _micros(at)
        return True

    def next_working_moment(self, at: datetime) -> datetime:
        return _moment(_micros(at))


CALENDAR_HOURS = AroundTheClock()
SlaClock = WorkingCalendar | AroundTheClock


def due_at(calendar: SlaClock, start: datetime, hours: float | Decimal | timedelta) -> datetime:
    """The SLA due time: `hours` of the calendar's working time after `start` (aware in, UTC out)."""
    return calendar.due_at(start, hours)


def business_time_between(calendar: SlaClock, start: datetime, end: datetime) -> timedelta:
    return calendar.business_time_between(start, end)


def is_working(calendar: SlaClock, at: datetime) -> bool:
    return calendar.is_working(at)


def next_working_moment(calendar: SlaClock, at: datetime) -> datetime:
    return calendar.next_working_moment(at)


def zone_of(name: str) -> ZoneInfo:
    """The IANA timezone `name`; ValueError when there is none by that name."""
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown timezone {name!r} (an IANA name such as Europe/Berlin)") from None


def _weekday(ordinal: int) -> int:
    return (ordinal + 6) % 7  # date.fromordinal(1) is a Monday


def _micros(moment: datetime) -> int:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"the SLA clock takes aware datetimes, not {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _duration(hours: float | Decimal | timedelta) -> int:
    if isinstance(hours, timedelta):
        micros = hours // _MICROSECOND
    elif isinstance(hours, (int, float, Decimal)) and not isinstance(hours, bool):
        if not math.isfinite(hours):
            raise ValueError(f"hours must be a finite number, not {hours!r}")
        micros = round(Decimal(str(hours)) * _HOUR_US) if isinstance(hours, float) else round(hours * _HOUR_US)
    else:
        raise ValueError(f"hours must be a number or a timedelta, not {hours!r}")
    if micros < 0:
        raise ValueError(f"hours must not be negative, not {hours!r}")
    return micros
