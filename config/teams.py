"""Loading the sales teams file (teams.yaml) into domain.teams.SalesTeams, every problem named by file, line and
what is wrong, and describing the loaded teams as markdown tables for `handoff teams check`."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import holidays as public_holidays
import yaml

from config.loading import ConfigError, LineDict, _LineLoader, read_yaml
from config.settings import CONFIG_DIR
from domain.activity import normalize_email
from domain.business_hours import WEEKDAYS, DaysOff, WorkingCalendar, WorkingPeriod, WorkingWeek, zone_of
from domain.teams import (
    Absence, DaysAway, Fallback, Manager, Rep, RoundRobin, SalesTeams, Team, parse_ical_absences,
)

TEAMS_FILE = CONFIG_DIR / "teams.yaml"

TOP_KEYS = ("regions", "teams", "reps", "managers", "fallback")
TEAM_KEYS = ("name", "product_lines", "territories", "timezone", "working_hours", "holidays", "days_off",
             "round_robin", "fallback")
REP_KEYS = ("email", "name", "teams", "weight", "daily_capacity", "timezone", "working_hours", "holidays",
            "out_of_office", "ooo_calendar", "manager")
MANAGER_KEYS = ("email", "name", "manager")
ROUND_ROBIN_KEYS = ("weighted", "respect_capacity", "skip_out_of_office")
RANGE_KEYS = ("from", "to", "reason")
FALLBACK_KEYS = ("queue", "rep")

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DAY_NAMES = {**{name: i for i, name in enumerate(WEEKDAYS)},
              **{full: i for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                                                   "sunday"))}}
_CLOSED = ("closed", "off", "none")
_LONGEST_RANGE_DAYS = 366  # a day-off range longer than a year is a typo in a year, not a sabbatical
_FEED_SCHEMES = ("http://", "https://", "webcal://", "webcals://")


class TeamsConfigError(ConfigError):
    """The teams file is invalid: one line per problem, each naming the file, the line and the problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# ------------------------------------------------------------------------------------------ YAML with lines

class LineList(list):
    """A list from YAML that knows its line and the line of each item."""

    def __init__(self, items: Iterable[Any], line: int | None, item_lines: list[int]) -> None:
        super().__init__(items)
        self.line = line
        self.item_lines = item_lines


class _TeamsLoader(_LineLoader):
    """Notes the line of every mapping, key and list item, and each key given twice in one mapping."""


def _construct_mapping(loader: _TeamsLoader, node: yaml.MappingNode) -> LineDict:
    key_lines: dict[Any, int] = {}
    duplicates: list[tuple[Any, int, int]] = []
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            if key in key_lines:
                duplicates.append((key, line, key_lines[key]))
            else:
                key_lines[key] = line
        except TypeError:
            continue  # an unhashable key: the SafeLoader refuses it below
    mapping = LineDict(yaml.SafeLoader.construct_mapping(loader, node, deep=True), line=node.start_mark.line + 1)
    mapping.key_lines = key_lines
    mapping.duplicates = duplicates
    return mapping


def _construct_sequence(loader: _TeamsLoader, node: yaml.SequenceNode) -> LineList:
    return LineList(loader.construct_sequence(node, deep=True), node.start_mark.line + 1,
                    [child.start_mark.line + 1 for child in node.value])


def _construct_timestamp(loader: _TeamsLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:  # 2026-13-24 looks like a date and is none: keep the text, so the check names its line
        return loader.construct_scalar(node)


_TeamsLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_TeamsLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_TeamsLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line(node: Any, key: Any = None) -> int | None:
    """The line of a key of a mapping (of the mapping itself when the key is absent or not given)."""
    if key is not None:
        found = getattr(node, "key_lines", {}).get(key)
        if found:
            return found
    return getattr(node, "line", None)


def _item_line(items: Any, index: int, default: int | None) -> int | None:
    lines = getattr(items, "item_lines", None)
    return lines[index] if lines and index < len(lines) else default


# ------------------------------------------------------------------------------------------ public holidays

@dataclass(frozen=True)
class PublicHolidays:
    """The public holidays of a country (and region) from the `holidays` package; equal by what they name."""

    country: str
    region: str | None = None
    _calendar: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Raises NotImplementedError for a country or region the package does not know.
        object.__setattr__(self, "_calendar", public_holidays.country_holidays(self.country, subdiv=self.region))

    def __contains__(self, day: object) -> bool:
        return day in self._calendar

    def __str__(self) -> str:
        return f"{self.country}-{self.region}" if self.region else self.country


# ------------------------------------------------------------------------------------------ the loader

class _Load:
    """One reading of a teams file: collects every problem with its line instead of stopping at the first."""

    def __init__(self, path: Path, base: Path | None) -> None:
        self.path, self.base = path, base
        self.problems: list[tuple[int, str]] = []
        self.declared_teams: set[str] = set()  # every team named, even one refused, so reps in it are not refused too
        self.declared_people: set[str] = set()  # likewise for reps and managers named as someone's manager
        self.rep_lines: dict[str, int | None] = {}
        self.manager_lines: dict[str, int | None] = {}  # where each person's manager is named
        self.fallback_reps: list[tuple[str, int | None, str]] = []

    def problem(self, line: int | None, message: str) -> None:
        self.problems.append((line or 0, message))

    def raise_problems(self) -> None:
        if self.problems:
            ordered = sorted(set(self.problems), key=lambda p: p[0])
            raise TeamsConfigError([f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}"
                                    for line, message in ordered])

    # ---------------------------------------------------------------------------------- shapes

    def known_keys(self, node: dict, keys: tuple[str, ...], what: str) -> None:
        for key, line, first in getattr(node, "duplicates", []):
            self.problem(line, f"{key!r} is given twice in {what} (first on line {first}); the file must say it once")
        for key in node:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(keys)})"
                self.problem(_line(node, key), f"unknown key {key!r} in {what}{hint}")

    def mapping(self, value: Any, line: int | None, what: str) -> dict | None:
        if isinstance(value, dict):
            return value
        self.problem(line, f"{what} must be a mapping, not {_shown(value)}")
        return None

    def items(self, node: dict, key: str, what: str) -> list[tuple[Any, int | None]]:
        """A list setting's items with their lines; one value alone counts as a list of one."""
        value = node.get(key)
        line = _line(node, key)
        if value is None:
            return []
        if not isinstance(value, list):
            return [(value, line)]
        return [(item, _item_line(value, i, line)) for i, item in enumerate(value)]

    def text(self, value: Any, line: int | None, what: str) -> str | None:
        if isinstance(value, bool):
            self.problem(line, f"{what}: {value!r} was read as a yes/no value; put it in quotes (e.g. 'NO' for Norway)")
            return None
        if value is None or isinstance(value, (dict, list)) or not str(value).strip():
            self.problem(line, f"{what} must be text, not {_shown(value)}")
            return None
        return str(value).strip()

    def flag(self, node: dict, key: str, what: str, default: bool) -> bool:
        value = node.get(key, default)
        if not isinstance(value, bool):
            self.problem(_line(node, key), f"{what}.{key} must be true or false, not {_shown(value)}")
            return default
        return value

    def email(self, value: Any, line: int | None, what: str) -> str | None:
        email = normalize_email(value) if isinstance(value, str) else None
        if email is None:
            self.problem(line, f"{what} must be an e-mail address, not {_shown(value)}")
        return email

    def zone(self, value: Any, line: int | None, what: str) -> str | None:
        name = self.text(value, line, what)
        if name is None:
            return None
        try:
            zone_of(name)
        except ValueError as exc:
            self.problem(line, f"{what}: {exc}")
            return None
        return name

    # ---------------------------------------------------------------------------------- calendars

    def working_week(self, value: Any, line: int | None, what: str) -> WorkingWeek | None:
        node = self.mapping(value, line, what)
        if node is None:
            return None
        for key, dup_line, first in getattr(node, "duplicates", []):
            self.problem(dup_line, f"{key!r} is given twice in {what} (first on line {first})")
        days: dict[int, list[WorkingPeriod]] = {}
        named_on: dict[int, int | None] = {}
        ok = True
        for spec, periods in node.items():
            spec_line = _line(node, spec)
            weekdays = self.weekdays(spec, spec_line, what)
            if weekdays is None:
                ok = False
                continue
            parsed = self.periods(periods, spec_line, f"{what} {spec}")
            if parsed is None:
                ok = False
                continue
            for day in weekdays:
                if day in named_on:
                    self.problem(spec_line, f"{what}: {WEEKDAYS[day]} is given twice (also on line {named_on[day]})")
                    ok = False
                named_on[day] = spec_line
                days[day] = parsed
        if not ok:
            return None
        try:
            return WorkingWeek.of(days)
        except ValueError as exc:
            bad_day = next((d for d in range(7) if str(exc).startswith(WEEKDAYS[d] + ":")), None)
            self.problem(named_on.get(bad_day) if bad_day is not None else _line(node), f"{what}: {exc}")
            return None

    def weekdays(self, spec: Any, line: int | None, what: str) -> list[int] | None:
        text = str(spec).strip().lower()
        first, dash, last = text.partition("-")
        if first in _DAY_NAMES and (not dash or last in _DAY_NAMES):
            start, end = _DAY_NAMES[first], _DAY_NAMES[last] if dash else _DAY_NAMES[first]
            if end >= start:
                return list(range(start, end + 1))
        self.problem(line, f"{what}: {spec!r} is not a weekday or a run of them (mon, mon-fri, sat-sun)")
        return None

    def periods(self, value: Any, line: int | None, what: str) -> list[WorkingPeriod] | None:
        if value is None or value == [] or isinstance(value, str) and value.strip().lower() in _CLOSED:
            return []
        items = value if isinstance(value, list) else [value]
        periods = []
        for index, item in enumerate(items):
            item_line = _item_line(value, index, line) if isinstance(value, list) else line
            if isinstance(item, int) and not isinstance(item, bool):
                # YAML reads an unquoted 09:00 as a number of minutes (base 60)
                self.problem(item_line, f"{what}: put the hours in quotes, as '09:00-17:00'")
                return None
            try:
                periods.append(WorkingPeriod.parse(item))
            except ValueError as exc:
                self.problem(item_line, f"{what}: {exc}")
                return None
        return sorted(periods)

    def holidays(self, node: dict, what: str) -> tuple[PublicHolidays, ...]:
        found = []
        for item, line in self.items(node, "holidays", f"{what} holidays"):
            if isinstance(item, dict):
                self.known_keys(item, ("country", "region"), f"{what} holidays")
                country = self.text(item.get("country"), _line(item, "country"), f"{what} holidays country")
                region = item.get("region")
                region = None if region is None else self.text(region, _line(item, "region"), f"{what} holidays region")
                line = _line(item)
            else:
                text = self.text(item, line, f"{what} holidays")
                country, _, region = (text or "").partition("-")
                region = region or None
            if not country:
                continue
            try:
                found.append(PublicHolidays(country.upper(), region.upper() if region else None))
            except NotImplementedError:
                place = f"{country}-{region}" if region else country
                self.problem(line, f"{what}: no public holidays known for {place!r}: "
                                   f"{'unknown region of ' + country if region else 'unknown country'} "
                                   f"(the holidays package's codes, e.g. DE, DE-BE, US-NY)")
        return tuple(found)

    def absences(self, node: dict, key: str, what: str) -> list[DaysAway]:
        """Dates and {from, to, reason} ranges, inclusive."""
        found = []
        for item, line in self.items(node, key, f"{what} {key}"):
            reason = ""
            if isinstance(item, dict):
                self.known_keys(item, RANGE_KEYS, f"{what} {key}")
                line = _line(item)
                if "from" not in item or "to" not in item:
                    self.problem(line, f"{what} {key}: a range is {{from: DATE, to: DATE}} (both included)")
                    continue
                first = self.date(item["from"], _line(item, "from"), f"{what} {key}")
                last = self.date(item["to"], _line(item, "to"), f"{what} {key}")
                reason = str(item.get("reason") or "")
            else:
                first = last = self.date(item, line, f"{what} {key}")
            if first is None or last is None:
                continue
            if last < first:
                self.problem(line, f"{what} {key}: the range ends ({last}) before it starts ({first})")
            elif (last - first).days >= _LONGEST_RANGE_DAYS:
                self.problem(line, f"{what} {key}: a range of {(last - first).days + 1} days is longer than a year")
            else:
                found.append(DaysAway(first, last, reason))
        return found

    def date(self, value: Any, line: int | None, what: str) -> date | None:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.problem(line, f"{what}: {_shown(value)} is not a date (YYYY-MM-DD)")
        return None

    def fallback(self, value: Any, line: int | None, what: str) -> Fallback | None:
        node = self.mapping(value, line, what)
        if node is None:
            return None
        self.known_keys(node, FALLBACK_KEYS, what)
        given = [key for key in FALLBACK_KEYS if node.get(key) is not None]
        if len(given) != 1:
            self.problem(_line(node), f"{what} is a CRM queue or a rep: {{queue: NAME}} or {{rep: E-MAIL}}")
            return None
        if given == ["queue"]:
            queue = self.text(node["queue"], _line(node, "queue"), f"{what} queue")
            return Fallback(queue=queue) if queue else None
        email = self.email(node["rep"], _line(node, "rep"), f"{what} rep")
        if email:
            self.fallback_reps.append((email, _line(node, "rep"), what))
        return Fallback(rep=email) if email else None


def load_teams(path: Path = TEAMS_FILE, text: str | None = None) -> SalesTeams:
    """The sales teams of `path`, validated. With `text`, that is the file, and `path` names it in errors (a relative
    ooo_calendar is then read beside `path`). Raises TeamsConfigError listing every problem found."""
    load = _Load(path, path.parent)
    document = read_yaml(path, _TeamsLoader, text)
    if not isinstance(document, dict):
        raise TeamsConfigError([f"{path}: expected a mapping with teams, reps and a fallback"])
    load.known_keys(document, TOP_KEYS, "the teams file")
    regions = _regions(load, document)
    teams = _teams(load, document, regions)
    managers = _managers(load, document)
    reps = _reps(load, document, teams)
    fallback = load.fallback(document.get("fallback"), _line(document, "fallback") or _line(document), "fallback") \
        if "fallback" in document else None
    if "fallback" not in document:
        load.problem(None, "a fallback is required: {queue: NAME} or {rep: E-MAIL}, for leads nobody can take")
    _check_people(load, reps, managers)
    load.raise_problems()
    try:
        return SalesTeams(teams=tuple(teams.values()), reps=tuple(reps.values()), fallback=fallback,
                          managers=tuple(managers.values()), regions=regions, source=str(path))
    except ValueError as exc:  # the checks above should have said it with a line
        raise TeamsConfigError([f"{path}: {exc}"]) from None


def _regions(load: _Load, document: dict) -> dict[str, tuple[str, ...]]:
    node = document.get("regions")
    if node is None:
        return {}
    node = load.mapping(node, _line(document, "regions"), "regions")
    if node is None:
        return {}
    for key, line, first in getattr(node, "duplicates", []):
        load.problem(line, f"region {key!r} is given twice (first on line {first})")
    regions = {}
    for name, codes in node.items():
        line = _line(node, name)
        if not isinstance(name, str) or _COUNTRY.match(name):
            load.problem(line, f"region name {name!r} must be a word, not a country code")
            continue
        countries = []
        for code, code_line in load.items(node, name, f"region {name}"):
            country = _country(load, code, code_line, f"region {name}")
            if country:
                countries.append(country)
        regions[name] = tuple(dict.fromkeys(countries))
    return regions


def _country(load: _Load, value: Any, line: int | None, what: str) -> str | None:
    text = load.text(value, line, what)
    if text is None:
        return None
    if not _COUNTRY.match(text.upper()):
        load.problem(line, f"{what}: {text!r} is not a two-letter country code")
        return None
    return text.upper()


def _teams(load: _Load, document: dict, regions: dict[str, tuple[str, ...]]) -> dict[str, Team]:
    items = load.items(document, "teams", "teams")
    if not items:
        load.problem(_line(document, "teams") or _line(document), "at least one team is required under teams:")
    teams: dict[str, Team] = {}
    lines: dict[str, int | None] = {}
    for entry, line in items:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip() not in lines:
            lines[entry["name"].strip()] = _line(entry, "name")
        node = load.mapping(entry, line, "a team")
        if node is None:
            continue
        problems_before = len(load.problems)
        line = _line(node)
        name = load.text(node.get("name"), _line(node, "name"), "a team's name")
        what = f"team {name!r}" if name else "a team"
        load.known_keys(node, TEAM_KEYS, what)
        if name in load.declared_teams:
            load.problem(_line(node, "name"), f"team name {name!r} is already used on line {lines.get(name)}")
            name = None
        product_lines = frozenset(p.lower() for item, item_line in load.items(node, "product_lines", what)
                                  if (p := load.text(item, item_line, f"{what} product line")))
        territories = set()
        for item, item_line in load.items(node, "territories", what):
            if isinstance(item, str) and item.strip() in regions:
                territories.update(regions[item.strip()])
            elif isinstance(item, str) and not _COUNTRY.match(item.strip().upper()):
                known = ", ".join(regions) or "none defined under regions:"
                load.problem(item_line, f"{what}: unknown territory {item!r} (a country code such as DE, or a region: "
                                        f"{known})")
            elif (country := _country(load, item, item_line, f"{what} territory")) is not None:
                territories.add(country)
        load.declared_teams.add(name)
        if "timezone" not in node:
            load.problem(line, f"{what} needs a timezone (e.g. Europe/Berlin)")
        if "working_hours" not in node:
            load.problem(line, f"{what} needs working_hours (e.g. mon-fri: '09:00-17:00')")
        zone = load.zone(node["timezone"], _line(node, "timezone"), f"{what} timezone") if "timezone" in node else None
        week = load.working_week(node["working_hours"], _line(node, "working_hours"), f"{what} working_hours") \
            if "working_hours" in node else None
        holidays = load.holidays(node, what)
        own = load.absences(node, "days_off", what)
        rr_node = load.mapping(node.get("round_robin") or {}, _line(node, "round_robin"), f"{what} round_robin") or {}
        load.known_keys(rr_node, ROUND_ROBIN_KEYS, f"{what} round_robin")
        round_robin = RoundRobin(**{key: load.flag(rr_node, key, f"{what} round_robin", True)
                                    for key in ROUND_ROBIN_KEYS})
        fallback = load.fallback(node["fallback"], _line(node, "fallback"), f"{what} fallback") \
            if node.get("fallback") is not None else None
        if name is None or zone is None or week is None or len(load.problems) > problems_before:
            continue
        dates = frozenset(date.fromordinal(n) for absence in own
                          for n in range(absence.first_day.toordinal(), absence.last_day.toordinal() + 1))
        teams[name] = Team(
            name=name, calendar=WorkingCalendar(zone, week, DaysOff(dates, holidays)),
            product_lines=product_lines, territories=frozenset(territories), round_robin=round_robin,
            fallback=fallback, holidays=tuple(str(h) for h in holidays), own_days_off=tuple(own), line=line)
    return teams


def _managers(load: _Load, document: dict) -> dict[str, Manager]:
    managers: dict[str, Manager] = {}
    for entry, line in load.items(document, "managers", "managers"):
        node = load.mapping(entry, line, "a manager")
        if node is None:
            continue
        load.known_keys(node, MANAGER_KEYS, "a manager")
        email = load.email(node.get("email"), _line(node, "email") or _line(node), "a manager's email")
        boss = load.email(node["manager"], _line(node, "manager"), f"manager {email}'s manager") \
            if node.get("manager") is not None else None
        if email is None:
            continue
        load.declared_people.add(email)
        if boss:
            load.manager_lines.setdefault(email, _line(node, "manager"))
        if email in managers:
            load.problem(_line(node, "email"), f"manager {email} is already declared on line {managers[email].line}")
            continue
        managers[email] = Manager(email=email, name=str(node.get("name") or ""), manager=boss,
                                  line=_line(node, "email"))
    return managers


def _reps(load: _Load, document: dict, teams: dict[str, Team]) -> dict[str, Rep]:
    items = load.items(document, "reps", "reps")
    if not items:
        load.problem(_line(document, "reps") or _line(document), "at least one rep is required under reps:")
    reps: dict[str, Rep] = {}
    for entry, line in items:
        node = load.mapping(entry, line, "a rep")
        if node is None:
            continue
        problems_before = len(load.problems)
        line = _line(node)
        email = load.email(node.get("email"), _line(node, "email") or line, "a rep's email")
        what = f"rep {email}" if email else "a rep"
        load.known_keys(node, REP_KEYS, what)
        if email in load.rep_lines:  # e-mails are compared trimmed and lower-cased, as the CRM matches them
            load.problem(_line(node, "email"), f"rep {email} is already listed on line {load.rep_lines[email]}")
            email = None
        elif email:
            load.rep_lines[email] = _line(node, "email")
            load.declared_people.add(email)
        member_of = []
        for item, item_line in load.items(node, "teams", what):
            team = load.text(item, item_line, f"{what} team")
            if team is None:
                continue
            if team not in teams:
                if team not in load.declared_teams:  # a team with its own problem is reported there, not again here
                    load.problem(item_line, f"{what} is in unknown team {team!r} (teams: {', '.join(teams) or 'none'})")
                continue
            member_of.append(team)
        if "teams" not in node:
            load.problem(line, f"{what} needs teams: the team(s) they sell for, home team first")
        weight = _positive(load, node, "weight", what, whole=False, default=1)
        capacity_value = node.get("daily_capacity")
        capacity = None if capacity_value is None or capacity_value == "unlimited" else \
            _positive(load, node, "daily_capacity", what, whole=True, default=None, also="or 'unlimited'")
        zone = load.zone(node["timezone"], _line(node, "timezone"), f"{what} timezone") if "timezone" in node else None
        week = load.working_week(node["working_hours"], _line(node, "working_hours"), f"{what} working_hours") \
            if "working_hours" in node else None
        holidays = load.holidays(node, what)
        own_zone = zone or (teams[member_of[0]].timezone if member_of else "UTC")
        absences: list[Absence] = list(load.absences(node, "out_of_office", what))
        feed_url = None
        if node.get("ooo_calendar") is not None:
            feed = load.text(node["ooo_calendar"], _line(node, "ooo_calendar"), f"{what} ooo_calendar")
            if feed and feed.lower().startswith(_FEED_SCHEMES):
                feed_url = feed  # fetched later by a task: config reads only its own files
            elif feed:
                absences.extend(_feed_file(load, feed, _line(node, "ooo_calendar"), what, own_zone))
        manager = load.email(node["manager"], _line(node, "manager"), f"{what} manager") \
            if node.get("manager") is not None else None
        if email and manager:
            load.manager_lines[email] = _line(node, "manager")
        if email is None or not member_of or len(load.problems) > problems_before:
            continue
        try:
            reps[email] = Rep(
                email=email, teams=tuple(dict.fromkeys(member_of)), name=str(node.get("name") or ""), weight=weight,
                daily_capacity=capacity, timezone=zone, working_hours=week,
                holidays=tuple(str(h) for h in holidays), holiday_calendars=holidays,
                out_of_office=tuple(sorted(set(absences), key=_absence_order)), ooo_calendar_url=feed_url,
                manager=manager, line=_line(node, "email"))
        except ValueError as exc:
            load.problem(line, str(exc))
    return reps


def _absence_order(absence: Absence) -> tuple:
    return (absence.first_day.isoformat() if isinstance(absence, DaysAway) else absence.start.date().isoformat(),
            str(absence))


def _positive(load: _Load, node: dict, key: str, what: str, whole: bool, default: Any, also: str = "") -> Any:
    if key not in node:
        return default
    value, line = node[key], _line(node, key)
    kind = "a whole number" if whole else "a number"
    ok = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not value > 0 or value != value or value == float("inf"):
        load.problem(line, f"{what} {key} must be {kind} above zero{' ' + also if also else ''}, not {_shown(value)}")
        return None
    return value if whole else float(value)


def _feed_file(load: _Load, feed: str, line: int | None, what: str, zone: str) -> list[Absence]:
    path = Path(feed).expanduser()
    path = path if path.is_absolute() or load.base is None else load.base / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        load.problem(line, f"{what} ooo_calendar: cannot read {path}: {exc.strerror}")
        return []
    except UnicodeDecodeError:
        load.problem(line, f"{what} ooo_calendar: {path} is not UTF-8 text")
        return []
    if "BEGIN:VCALENDAR" not in text.upper():
        load.problem(line, f"{what} ooo_calendar: {path} is not an iCalendar file (no BEGIN:VCALENDAR)")
        return []
    return parse_ical_absences(text, zone)


def _check_people(load: _Load, reps: dict[str, Rep], managers: dict[str, Manager]) -> None:
    """Managers that exist, no rep also declared a manager, no one managing themselves, no cycles, fallback reps that
    exist."""
    for email, manager in managers.items():
        if email in load.rep_lines:
            load.problem(manager.line, f"{email} is a rep (line {load.rep_lines[email]}); list them once, as a rep")
    people: dict[str, tuple[str | None, int | None]] = {
        **{e: (m.manager, m.line) for e, m in managers.items()}, **{e: (r.manager, r.line) for e, r in reps.items()}}
    for email, (boss, _) in people.items():
        line = load.manager_lines.get(email)
        if boss is None:
            continue
        if boss == email:
            load.problem(line, f"{email} is their own manager")
        elif boss not in people and boss not in load.declared_people:
            load.problem(line, f"{email}'s manager {boss} is neither a rep nor a declared manager "
                               f"(add them under managers:)")
    reported: set[frozenset[str]] = set()
    for start in people:
        path, current = [], start
        while current in people and current not in path:
            path.append(current)
            current = people[current][0]
        if current in path:
            cycle = path[path.index(current):]
            if len(cycle) > 1 and frozenset(cycle) not in reported:  # one managing themselves is said above
                reported.add(frozenset(cycle))
                load.problem(people[cycle[0]][1], "manager cycle: " + " -> ".join(cycle + [cycle[0]]))
    for email, line, what in load.fallback_reps:
        if email not in load.rep_lines:
            load.problem(line, f"{what} rep {email} is not a rep (a fallback rep is one listed under reps:)")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


# ------------------------------------------------------------------------------------------ describing

def describe_teams(teams: SalesTeams, at: datetime | None = None) -> str:
    """The loaded teams as markdown: teams, reps (out of office at `at`, when given), managers, regions, fallback."""
    out = [f"# Sales teams{f' ({teams.source})' if teams.source else ''}", "",
           _table(("team", "product lines", "territories", "timezone", "working hours", "public holidays",
                   "own days off", "round robin", "reps", "fallback"),
                  [(t.name, ", ".join(sorted(t.product_lines)) or "all",
                    ", ".join(sorted(t.territories)) or "everywhere",
                    t.timezone, str(t.working_hours), ", ".join(t.holidays) or "none",
                    "; ".join(str(d) for d in t.own_days_off) or "none", _round_robin(t.round_robin),
                    str(len(teams.reps_in(t))), str(teams.fallback_for(t)))
                   for t in teams.teams])]
    rep_header = ("rep", "name", "teams", "weight", "leads/day", "calendar", "manager", "out of office")
    rep_rows = []
    for rep in teams.reps:
        calendar = teams.calendar_of(rep)
        own = calendar is not teams.team(rep.home_team).calendar
        row = [rep.email, rep.name, ", ".join(rep.teams), f"{rep.weight:g}",
               "unlimited" if rep.daily_capacity is None else str(rep.daily_capacity),
               f"own: {calendar.timezone}, {calendar.working_hours}" + (f", {', '.join(rep.holidays)}" if rep.holidays
                                                                        else "") if own else "team's",
               rep.manager or "", "; ".join(str(a) for a in rep.out_of_office) or "none"]
        if rep.ooo_calendar_url:
            row[-1] += f" (+ feed from {urlsplit(rep.ooo_calendar_url).hostname})"  # its path may be its secret
        if at is not None:
            row.append("yes" if teams.is_out_of_office(rep, at) else "no")
        rep_rows.append(row)
    if at is not None:
        rep_header += (f"away at {at:%Y-%m-%d %H:%M %Z}",)
    out += ["", "## Reps", "", _table(rep_header, rep_rows)]
    if teams.managers:
        out += ["", "## Managers", "", _table(("manager", "name", "reports to"),
                                              [(m.email, m.name, m.manager or "") for m in teams.managers])]
    if teams.regions:
        out += ["", "## Regions", "", _table(("region", "countries"),
                                             [(name, ", ".join(codes)) for name, codes in teams.regions.items()])]
    out += ["", f"Fallback when nobody can take a lead: {teams.fallback}."]
    return "\n".join(out) + "\n"


def _round_robin(rr: RoundRobin) -> str:
    return ", ".join(["weighted" if rr.weighted else "evenly"] + (["within capacity"] if rr.respect_capacity else [])
                     + (["skips absent reps"] if rr.skip_out_of_office else []))


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(tuple(header))]
    for row in rows:
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|") or " "
