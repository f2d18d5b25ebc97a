"""The sales organisation the CRM does not know: teams, what and where they sell, their calendars, the reps in them
with their weights, capacities, absences and managers, and whom a lead goes to when nobody can take it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Container, Iterable, Mapping
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from domain.business_hours import UTC, DaysOff, WorkingCalendar, WorkingWeek, zone_of


# ------------------------------------------------------------------------------------------ out of office

@dataclass(frozen=True, order=True)
class DaysAway:
    """Whole days out of office, from `first_day` to `last_day` inclusive, in the rep's own local dates."""

    first_day: date
    last_day: date
    reason: str = ""

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise ValueError(f"an absence ends ({self.last_day}) before it starts ({self.first_day})")

    def covers(self, at: datetime, zone: ZoneInfo) -> bool:
        return self.first_day <= at.astimezone(zone).date() <= self.last_day

    def __str__(self) -> str:
        days = str(self.first_day) if self.first_day == self.last_day else f"{self.first_day} to {self.last_day}"
        return f"{days} ({self.reason})" if self.reason else days


@dataclass(frozen=True, order=True)
class TimeAway:
    """Out of office from `start` up to `end` (aware UTC), e.g. a timed out-of-office event in a calendar feed."""

    start: datetime
    end: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"an absence ends ({self.end}) before it starts ({self.start})")

    def covers(self, at: datetime, zone: ZoneInfo) -> bool:
        return self.start <= at < self.end

    def __str__(self) -> str:
        span = f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"
        return f"{span} ({self.reason})" if self.reason else span


Absence = DaysAway | TimeAway


def absence_to_json(absence: Absence) -> dict[str, str]:
    if isinstance(absence, DaysAway):
        return {"first_day": absence.first_day.isoformat(), "last_day": absence.last_day.isoformat(),
                "reason": absence.reason}
    return {"start": absence.start.isoformat(), "end": absence.end.isoformat(), "reason": absence.reason}


def absence_from_json(data: dict[str, str]) -> Absence:
    if "first_day" in data:
        return DaysAway(date.fromisoformat(data["first_day"]), date.fromisoformat(data["last_day"]),
                        data.get("reason", ""))
    return TimeAway(datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]), data.get("reason", ""))


# ------------------------------------------------------------------------------------------ iCalendar feeds

# An event is an absence when Outlook marks it out of office, or when its summary or categories say so in words
# (all-day events count whatever their free/busy, as Google exports them 'free'; a timed one shown as free does not).
_ABSENCE_WORDS = re.compile(
    r"\b(out[ -]of[ -](the[ -])?office|ooo|oof|vacation|holidays?|annual leave|parental leave|on leave|sick|pto|"
    r"time off|day off|urlaub|abwesen(d|heit)|krank|cong[eé]s?)\b", re.IGNORECASE)
_OUT_OF_OFFICE_STATUS = "OOF"
_MAX_OCCURRENCES = 1000  # of one recurring absence, so an endless rule cannot run away
_OPEN_ENDED_YEARS = 1  # an endless recurring absence is read this far past its first occurrence unless told
# The names Outlook writes in TZID instead of IANA ones, for the zones of this project's teams.
_WINDOWS_ZONES = {
    "W. Europe Standard Time": "Europe/Berlin", "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris", "GMT Standard Time": "Europe/London",
    "Eastern Standard Time": "America/New_York", "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver", "Pacific Standard Time": "America/Los_Angeles",
    "UTC": "UTC", "Coordinated Universal Time": "UTC",
}
_DURATION = re.compile(r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def parse_ical_absences(text: str, zone: ZoneInfo | str = "UTC", horizon: date | None = None) -> list[Absence]:
    """The out-of-office spans in an iCalendar (RFC 5545) text, sorted.

    Only VEVENTs that mark an absence count (see _ABSENCE_WORDS above), never cancelled ones. An all-day event (DATE
    values) is whole days (DTEND is exclusive); a timed one is a span in UTC: its TZID is read as an IANA name (or one
    of the Windows names Outlook writes), and a floating time or an unknown TZID is read in `zone` (the rep's own).
    DURATION stands in for DTEND. Recurring absences (RRULE with EXDATE) are expanded up to their UNTIL or COUNT;
    endless ones up to `horizon`, or a year after their first occurrence without one. Unreadable events are skipped.
    """
    zone = zone_of(zone) if isinstance(zone, str) else zone
    absences: list[Absence] = []
    for event in _events(text):
        try:
            absences.extend(_absences_of(event, zone, horizon))
        except (ValueError, KeyError, OverflowError):
            continue  # a feed is someone else's file: one broken event must not hide the others
    return sorted(set(absences), key=lambda a: (_start_of(a), str(a)))


def _start_of(absence: Absence) -> datetime:
    if isinstance(absence, DaysAway):
        return datetime.combine(absence.first_day, time(), UTC)
    return absence.start


Property = tuple[dict[str, str], str]  # (parameters, raw value)


def _events(text: str) -> Iterable[dict[str, list[Property]]]:
    """The properties of each VEVENT (its nested components, such as VALARM, left out)."""
    lines: list[str] = []
    for raw in re.split(r"\r\n|\n|\r", text.lstrip("\ufeff")):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]  # an unfolded continuation
        elif raw.strip():
            lines.append(raw)
    cancelled_feed = False
    stack: list[str] = []
    event: dict[str, list[Property]] | None = None
    for line in lines:
        name, params, value = _content_line(line)
        if name == "BEGIN":
            stack.append(value.strip().upper())
            if stack[-1] == "VEVENT":
                event = {}
        elif name == "END":
            if stack and stack[-1] == "VEVENT" and event is not None and not cancelled_feed:
                yield event
                event = None
            if stack:
                stack.pop()
        elif name == "METHOD" and value.strip().upper() == "CANCEL":
            cancelled_feed = True
        elif event is not None and stack and stack[-1] == "VEVENT":
            event.setdefault(name, []).append((params, value))


def _content_line(line: str) -> tuple[str, dict[str, str], str]:
    """name;PARAM=value;...:value, with quoted parameter values that may hold ':' or ';'."""
    parts, current, quoted = [], "", False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char in ";:" and not quoted:
            parts.append(current)
            current = ""
            if char == ":":
                value = line[index + 1:]
                break
            continue
        current += char
    else:
        parts.append(current)
        value = ""
    name, *raw_params = parts
    params = {}
    for raw in raw_params:
        key, _, param = raw.partition("=")
        params[key.strip().upper()] = param.strip().strip('"')
    return name.strip().upper(), params, value


def _text_value(value: str) -> str:
    return re.sub(r"\\([nN,;\\])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value).strip()


def _first(event: dict[str, list[Property]], name: str) -> Property | None:
    values = event.get(name)
    return values[0] if values else None


def _is_absence(event: dict[str, list[Property]], all_day: bool) -> bool:
    if (_value(event, "STATUS") or "").upper() == "CANCELLED":
        return False
    for status in ("X-MICROSOFT-CDO-BUSYSTATUS", "X-MICROSOFT-CDO-INTENDEDSTATUS"):
        if (_value(event, status) or "").upper() == _OUT_OF_OFFICE_STATUS:
            return True
    words = " ".join(_text_value(v) for name in ("SUMMARY", "CATEGORIES") for _, v in event.get(name, []))
    shown_free = (_value(event, "TRANSP") or "OPAQUE").upper() == "TRANSPARENT"
    return bool(_ABSENCE_WORDS.search(words)) and (all_day or not shown_free)


def _value(event: dict[str, list[Property]], name: str) -> str | None:
    prop = _first(event, name)
    return prop[1].strip() if prop else None


def _moment(prop: Property, zone: ZoneInfo) -> date | datetime:
    """A DATE, or a DATE-TIME as an aware datetime in its own zone (UTC for 'Z', `zone` when floating)."""
    params, value = prop
    value = value.strip()
    if params.get("VALUE", "").upper() == "DATE" or re.fullmatch(r"\d{8}", value):
        return datetime.strptime(value[:8], "%Y%m%d").date()
    moment = datetime.strptime(value.rstrip("Zz"), "%Y%m%dT%H%M%S")
    if value[-1:] in "Zz":
        return moment.replace(tzinfo=UTC)
    return moment.replace(tzinfo=_event_zone(params.get("TZID"), zone))


def _event_zone(tzid: str | None, zone: ZoneInfo) -> ZoneInfo:
    if not tzid:
        return zone
    tzid = tzid.strip().lstrip("/")
    try:
        return zone_of(_WINDOWS_ZONES.get(tzid, tzid))
    except ValueError:
        return zone


def _duration(value: str) -> tuple[timedelta, timedelta]:
    """An RFC 5545 DURATION as (days and weeks, kept in wall time; hours, minutes and seconds, elapsed)."""
    match = _DURATION.match(value.strip().upper())
    if not match or not any(match.groups()[1:]):
        raise ValueError(f"not a duration: {value!r}")
    sign, weeks, days, hours, minutes, seconds = match.groups()
    nominal = timedelta(weeks=int(weeks or 0), days=int(days or 0))
    exact = timedelta(hours=int(hours or 0), minutes=int(minutes or 0), seconds=int(seconds or 0))
    return (-nominal, -exact) if sign == "-" else (nominal, exact)


def _absences_of(event: dict[str, list[Property]], zone: ZoneInfo, horizon: date | None) -> list[Absence]:
    start_prop = _first(event, "DTSTART")
    if start_prop is None:
        return []
    start = _moment(start_prop, zone)
    all_day = not isinstance(start, datetime)
    if not _is_absence(event, all_day):
        return []
    end_prop, duration = _first(event, "DTEND"), _value(event, "DURATION")
    nominal, exact = timedelta(0), timedelta(0)
    if end_prop is not None:
        end = _moment(end_prop, zone)
        if isinstance(end, datetime) and isinstance(start, datetime) and end.tzinfo is not start.tzinfo:
            exact = end.astimezone(UTC) - start.astimezone(UTC)
        else:
            nominal = _as_datetime(end) - _as_datetime(start)  # the same wall-clock length on every occurrence
    elif duration is not None:
        nominal, exact = _duration(duration)
    elif all_day:
        nominal = timedelta(days=1)  # RFC 5545: an all-day event without an end is one day; a timed one an instant
    reason = _text_value(_value(event, "SUMMARY") or "") or "out of office"
    absences: list[Absence] = []
    for begin in _occurrences(event, start, zone, horizon):
        if all_day:
            last = (begin + nominal + exact - timedelta(days=1)).date()
            absences.append(DaysAway(begin.date(), max(last, begin.date()), reason))
        else:
            finish = (begin + nominal).astimezone(UTC) + exact
            if finish > begin:
                absences.append(TimeAway(begin.astimezone(UTC), finish, reason))
    return absences


def _as_datetime(moment: date | datetime) -> datetime:
    return moment if isinstance(moment, datetime) else datetime.combine(moment, time())


def _occurrences(event: dict[str, list[Property]], start: date | datetime, zone: ZoneInfo,
                 horizon: date | None) -> list[datetime]:
    """The starts of an event: its DTSTART, or each of its RRULE's occurrences that no EXDATE removes."""
    first = _as_datetime(start)
    rule = _value(event, "RRULE")
    if not rule:
        return [first]
    fields = dict(part.partition("=")[::2] for part in rule.upper().split(";") if part)
    until_text = fields.pop("UNTIL", None)
    last = datetime.combine(horizon, time.max) if horizon else first.replace(tzinfo=None) + timedelta(
        days=366 * _OPEN_ENDED_YEARS)
    if until_text:
        # UNTIL bounds the occurrences here: dateutil refuses a date or a 'Z' time beside a local DTSTART.
        until = _moment(({}, until_text), first.tzinfo or zone)
        last = until.astimezone(first.tzinfo or zone).replace(tzinfo=None) if isinstance(until, datetime) \
            else datetime.combine(until, time.max)
    removed = set()
    for params, value in event.get("EXDATE", []):
        for part in value.split(","):
            removed.add(_as_datetime(_moment((params, part), zone)))
    rule_text = ";".join(f"{k}={v}" for k, v in fields.items())
    starts = []
    for begin in rrulestr(rule_text, dtstart=first):
        if begin.replace(tzinfo=None) > last or len(starts) >= _MAX_OCCURRENCES:
            break
        if begin not in removed:
            starts.append(begin)
    return starts


# ------------------------------------------------------------------------------------------ the organisation

@dataclass(frozen=True)
class RoundRobin:
    """How a team shares leads out: by weight or evenly, within each rep's daily capacity, skipping absent reps."""

    weighted: bool = True
    respect_capacity: bool = True
    skip_out_of_office: bool = True


@dataclass(frozen=True)
class Fallback:
    """Where a lead goes when nobody can take it: a CRM queue, or one rep."""

    queue: str | None = None
    rep: str | None = None

    def __post_init__(self) -> None:
        if (self.queue is None) == (self.rep is None):
            raise ValueError("a fallback is a CRM queue or a rep, one of the two")

    def __str__(self) -> str:
        return f"queue {self.queue}" if self.queue else f"rep {self.rep}"


@dataclass(frozen=True)
class Team:
    """A sales team: the product lines it sells (none: all), its territory as country codes (none: everywhere),
    its working calendar and how it shares leads out."""

    name: str
    calendar: WorkingCalendar
    product_lines: frozenset[str] = frozenset()
    territories: frozenset[str] = frozenset()
    round_robin: RoundRobin = RoundRobin()
    fallback: Fallback | None = None
    holidays: tuple[str, ...] = ()  # whose public holidays, for people: 'DE-BE', 'US'
    own_days_off: tuple[DaysAway, ...] = ()
    line: int | None = field(default=None, compare=False)

    @property
    def timezone(self) -> str:
        return self.calendar.timezone

    @property
    def working_hours(self) -> WorkingWeek:
        return self.calendar.working_hours

    def sells(self, product_line: str) -> bool:
        return not self.product_lines or product_line.strip().lower() in self.product_lines

    def covers(self, country: str) -> bool:
        return not self.territories or country.strip().upper() in self.territories


@dataclass(frozen=True)
class Rep:
    """A sales rep, known by the e-mail of their CRM user. `teams` comes first-is-home: the home team's calendar is
    theirs unless they have their own timezone, working hours or holidays."""

    email: str
    teams: tuple[str, ...]
    name: str = ""
    weight: float = 1.0
    daily_capacity: int | None = None  # leads a day; None: no limit
    timezone: str | None = None
    working_hours: WorkingWeek | None = None
    holidays: tuple[str, ...] = ()
    holiday_calendars: tuple[Container[date], ...] = field(default=(), compare=False, repr=False)
    out_of_office: tuple[Absence, ...] = ()
    ooo_calendar_url: str | None = None  # a feed for a task to fetch; absences read from a file are already above
    manager: str | None = None
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", self.email.strip().lower())
        if not self.teams:
            raise ValueError(f"rep {self.email} is in no team")
        if not self.weight > 0:
            raise ValueError(f"rep {self.email}: weight must be positive")
        if self.daily_capacity is not None and self.daily_capacity < 1:
            raise ValueError(f"rep {self.email}: daily capacity must be positive")

    @property
    def home_team(self) -> str:
        return self.teams[0]


@dataclass(frozen=True)
class Manager:
    """Someone reps escalate to who takes no leads themselves (a sales director, say)."""

    email: str
    name: str = ""
    manager: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SalesTeams:
    """The teams, reps and managers, with the lookups routing and the SLA clock need."""

    teams: tuple[Team, ...]
    reps: tuple[Rep, ...]
    fallback: Fallback
    managers: tuple[Manager, ...] = ()
    regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    source: str = field(default="", compare=False)
    _teams: dict[str, Team] = field(init=False, repr=False, compare=False)
    _reps: dict[str, Rep] = field(init=False, repr=False, compare=False)
    _managers: dict[str, Manager] = field(init=False, repr=False, compare=False)
    _calendars: dict[str, WorkingCalendar] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        teams = {team.name: team for team in self.teams}
        reps = {rep.email: rep for rep in self.reps}
        managers = {m.email.strip().lower(): m for m in self.managers}
        if len(teams) != len(self.teams) or len(reps) != len(self.reps) or len(managers) != len(self.managers):
            raise ValueError("team names, rep e-mails and manager e-mails must each be unique")
        for rep in self.reps:
            unknown = [t for t in rep.teams if t not in teams]
            if unknown:
                raise ValueError(f"rep {rep.email} is in unknown teams {unknown}")
        object.__setattr__(self, "_teams", teams)
        object.__setattr__(self, "_reps", reps)
        object.__setattr__(self, "_managers", managers)
        # One calendar object per rep, shared where nothing differs, so each keeps its worked-out days.
        object.__setattr__(self, "_calendars",
                           {rep.email: self._calendar(rep, teams[rep.home_team]) for rep in self.reps})

    @staticmethod
    def _calendar(rep: Rep, team: Team) -> WorkingCalendar:
        if rep.timezone is None and rep.working_hours is None and not rep.holidays:
            return team.calendar
        days_off = team.calendar.days_off
        if rep.holidays:  # the rep's public holidays instead of the team's; the team's own days off stay
            own = days_off.dates if isinstance(days_off, DaysOff) else frozenset()
            days_off = DaysOff(dates=own, holidays=rep.holiday_calendars)
        return WorkingCalendar(rep.timezone or team.timezone, rep.working_hours or team.working_hours, days_off)

    def with_absences(self, extra: Mapping[str, Iterable[Absence]]) -> SalesTeams:
        """The organisation with more absences for some reps (by e-mail): those read from their calendar feeds."""
        def more(rep: Rep) -> Rep:
            absences = set(rep.out_of_office) | set(extra.get(rep.email) or ())
            return replace(rep, out_of_office=tuple(sorted(absences, key=lambda a: (_start_of(a), str(a)))))

        return replace(self, reps=tuple(more(rep) if extra.get(rep.email) else rep for rep in self.reps))

    # ---------------------------------------------------------------------------------- lookups

    def rep(self, email: str) -> Rep | None:
        return self._reps.get(email.strip().lower())

    def team(self, name: str) -> Team:
        return self._teams[name]

    def reps_in(self, team: str | Team) -> tuple[Rep, ...]:
        name = team.name if isinstance(team, Team) else team
        return tuple(rep for rep in self.reps if name in rep.teams)

    def teams_for(self, product_line: str | None = None, country: str | None = None) -> tuple[Team, ...]:
        """The teams that sell `product_line` in `country` (either left out: any), in the order of the file."""
        return tuple(team for team in self.teams
                     if (product_line is None or team.sells(product_line))
                     and (country is None or team.covers(country)))

    def calendar_of(self, rep: str | Rep) -> WorkingCalendar:
        """The rep's working calendar: their own timezone, hours or holidays where they have them, else their home
        team's; the home team's own days off apply either way."""
        return self._calendars[self._email(rep)]

    def is_out_of_office(self, rep: str | Rep, at: datetime) -> bool:
        """Whether an absence of the rep covers `at` (whole days in the rep's own timezone)."""
        found = self._find(rep)
        zone = self.calendar_of(found).zone
        return any(absence.covers(at, zone) for absence in found.out_of_office)

    def manager_of(self, person: str | Rep) -> str | None:
        """The manager of a rep or of a declared manager (None at the top)."""
        key = person.email if isinstance(person, Rep) else person.strip().lower()
        person = self._reps.get(key) or self._managers.get(key)
        return person.manager if person else None

    def escalation_chain(self, rep: str | Rep) -> tuple[str, ...]:
        """The rep's manager, their manager, and so on up."""
        chain, current = [], self.manager_of(rep)
        while current and current not in chain:
            chain.append(current)
            current = self.manager_of(current)
        return tuple(chain)

    def fallback_for(self, team: str | Team) -> Fallback:
        found = team if isinstance(team, Team) else self.team(team)
        return found.fallback or self.fallback

    def with_out_of_office(self, rep: str | Rep, absences: Iterable[Absence]) -> SalesTeams:
        """These teams with `absences` added to a rep's (say, read from their calendar feed by a task)."""
        found = self._find(rep)
        merged = tuple(sorted(set(found.out_of_office) | set(absences), key=lambda a: (_start_of(a), str(a))))
        updated = replace(found, out_of_office=merged)
        return replace(self, reps=tuple(updated if r.email == found.email else r for r in self.reps))

    def _email(self, rep: str | Rep) -> str:
        return self._find(rep).email

    def _find(self, rep: str | Rep) -> Rep:
        email = rep.email if isinstance(rep, Rep) else rep.strip().lower()
        found = self._reps.get(email)
        if found is None:
            raise KeyError(f"no rep {email!r} in the sales teams")
        return found
