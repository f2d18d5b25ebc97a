"""The sales teams file: the shipped example loads, every mistake is refused with the file, the line and the problem
(all of them at once), out-of-office calendars are read from iCalendar, and the lookups routing and the SLA clock
need answer in each rep's own time."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.loading import ConfigError
from config.teams import TEAMS_FILE, TeamsConfigError, describe_teams, load_teams as load_file
from domain.business_hours import UTC, due_at
from domain.teams import DaysAway, Fallback, TimeAway, parse_ical_absences

DATA = Path(__file__).parent / "data" / "teams"
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
# A fuller organisation than the demo's config/teams.yaml (split days, part-timers, nested managers, fallbacks)
EXAMPLE = Path(__file__).parent / "data" / "teams" / "example.yaml"


def load_teams(path: Path = EXAMPLE, text: str | None = None):
    return load_file(path, text)
DEMO = "@handoff-demo.example"


def copy(tmp_path: Path) -> Path:
    target = tmp_path / "teams.yaml"
    shutil.copy(EXAMPLE, target)
    return target


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, f"{old!r} is not in the shipped teams.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, fragment: str) -> int:
    [line] = [n for n, text in enumerate(path.read_text().splitlines(), 1) if fragment in text]
    return line


def refusal(path: Path) -> list[str]:
    with pytest.raises(TeamsConfigError) as error:
        load_teams(path)
    assert str(error.value) == "\n".join(error.value.problems)
    return error.value.problems


# ------------------------------------------------------------------------------------------ the example organisation

def test_the_example_teams_file_loads():
    teams = load_teams()
    assert [t.name for t in teams.teams] == ["emea", "americas", "sla-desk"]
    assert len(teams.reps) == 8 and all(rep.email.endswith(DEMO) for rep in teams.reps)
    assert [m.email for m in teams.managers] == [f"elena.rossi{DEMO}", f"victor.okafor{DEMO}", f"zoe.tanaka{DEMO}"]
    assert teams.fallback == Fallback(queue="Lead Triage")
    emea = teams.team("emea")
    assert emea.timezone == "Europe/Berlin"
    assert str(emea.working_hours) == "Mon-Thu 09:00-12:30 13:30-17:30, Fri 09:00-15:00"
    assert emea.holidays == ("DE-BE",) and emea.product_lines == {"scoring", "routing"}
    assert {"DE", "NO", "GB", "NG"} <= emea.territories and "US" not in emea.territories
    anna = teams.rep(f"anna.schmidt{DEMO}")
    assert (anna.teams, anna.weight, anna.daily_capacity, anna.manager) == (("emea",), 2.0, 25, f"elena.rossi{DEMO}")
    assert teams.rep(f"noah.jones{DEMO}").daily_capacity is None  # unlimited
    assert teams.team("sla-desk").round_robin.weighted is False


def test_a_pasted_teams_file_loads_as_that_file_would():
    assert load_teams(Path("pasted teams.yaml"), EXAMPLE.read_text()) == load_teams()


# ------------------------------------------------------------------------------------------ lookups

def test_reps_are_found_by_email_whatever_its_case_and_spacing():
    teams = load_teams()
    assert teams.rep(f"  Jonas.Fischer{DEMO.upper()} ").name == "Jonas Fischer"
    assert teams.rep(f"nobody{DEMO}") is None
    assert [r.email for r in teams.reps_in("sla-desk")] == [f"ines.dubois{DEMO}", f"liam.garcia{DEMO}",
                                                            f"sam.okafor{DEMO}"]


def test_teams_are_found_by_product_line_and_country_through_the_regions():
    teams = load_teams()
    names = lambda found: [t.name for t in found]  # noqa: E731
    assert names(teams.teams_for("routing", "DE")) == ["emea"]
    assert names(teams.teams_for("Scoring", "br")) == ["americas"]
    assert names(teams.teams_for("sla", "IN")) == ["sla-desk"]  # no territory: everywhere
    assert names(teams.teams_for("routing", "IN")) == []  # nobody: the fallback's
    assert names(teams.teams_for(country="NO")) == ["emea", "sla-desk"]
    assert names(teams.teams_for("sla")) == ["sla-desk"]


def test_a_rep_works_on_their_home_teams_calendar_unless_they_have_their_own():
    teams = load_teams()
    assert teams.calendar_of(f"anna.schmidt{DEMO}") is teams.team("emea").calendar
    ines = teams.calendar_of(f"ines.dubois{DEMO}")  # part time from Paris, with French holidays
    assert ines.timezone == "Europe/Paris" and str(ines.working_hours) == "Mon-Wed 09:00-17:00"
    assert date(2026, 7, 14) in ines.days_off  # Bastille Day
    assert date(2026, 12, 24) in ines.days_off  # her home team's own day off still holds
    assert date(2026, 3, 8) not in ines.days_off and date(2026, 3, 8) in teams.team("emea").calendar.days_off
    sam = teams.calendar_of(f"sam.okafor{DEMO}")
    assert (sam.timezone, date(2026, 7, 3) in sam.days_off) == ("America/New_York", True)  # Independence Day observed
    # 17:55 on a Friday in Berlin: Sam in New York still has an hour of his day for a 1-hour window
    assert due_at(sam, datetime(2026, 6, 5, 17, 55, tzinfo=BERLIN), 1) == datetime(2026, 6, 5, 12, 55, tzinfo=NEW_YORK)


def test_out_of_office_days_are_whole_days_in_the_reps_own_timezone():
    teams = load_teams()
    jonas = f"jonas.fischer{DEMO}"  # away 3 to 14 August 2026, in Berlin
    assert not teams.is_out_of_office(jonas, datetime(2026, 8, 2, 23, 59, tzinfo=BERLIN))
    assert teams.is_out_of_office(jonas, datetime(2026, 8, 2, 22, 30, tzinfo=UTC))  # 00:30 on the 3rd in Berlin
    assert teams.is_out_of_office(jonas, datetime(2026, 8, 14, 23, 59, tzinfo=BERLIN))
    assert not teams.is_out_of_office(jonas, datetime(2026, 8, 14, 22, 0, tzinfo=UTC))
    noah = teams.rep(f"noah.jones{DEMO}")  # away on 3 July, in New York
    assert teams.is_out_of_office(noah, datetime(2026, 7, 4, 2, tzinfo=UTC))  # 22:00 on the 3rd in New York
    assert not teams.is_out_of_office(noah, datetime(2026, 7, 4, 5, tzinfo=UTC))


def test_escalation_runs_up_the_managers_and_the_fallback_is_the_teams_or_the_files():
    teams = load_teams()
    assert teams.escalation_chain(f"jonas.fischer{DEMO}") == (f"anna.schmidt{DEMO}", f"elena.rossi{DEMO}",
                                                              f"zoe.tanaka{DEMO}")
    assert teams.manager_of(f"zoe.tanaka{DEMO}") is None
    assert teams.fallback_for("americas") == Fallback(rep=f"maya.lopez{DEMO}")
    assert teams.fallback_for("emea") == Fallback(queue="Lead Triage")


def test_absences_read_later_from_a_feed_join_the_reps_own():
    teams = load_teams()
    grace = f"grace.chen{DEMO}"
    away = TimeAway(datetime(2026, 9, 1, 13, tzinfo=UTC), datetime(2026, 9, 1, 17, tzinfo=UTC), "Doctor")
    updated = teams.with_out_of_office(grace, [away])
    assert updated.is_out_of_office(grace, datetime(2026, 9, 1, 14, tzinfo=UTC))
    assert not teams.is_out_of_office(grace, datetime(2026, 9, 1, 14, tzinfo=UTC))
    assert updated.calendar_of(grace) is teams.calendar_of(grace)  # the team's calendar, and its worked-out days, kept


# ------------------------------------------------------------------------------------------ iCalendar

FEED_ABSENCES = [
    DaysAway(date(2026, 8, 3), date(2026, 8, 14), "Vacation"),  # all-day, shown free as Google exports it
    TimeAway(datetime(2026, 9, 10, 11, tzinfo=UTC), datetime(2026, 9, 10, 15, tzinfo=UTC), "Dentist"),  # TZID, OOF
    # weekly with COUNT=3 and the second excluded, under the Windows zone name Outlook writes, DURATION PT3H
    TimeAway(datetime(2026, 10, 2, 12, tzinfo=UTC), datetime(2026, 10, 2, 15, tzinfo=UTC), "OOO - school run"),
    TimeAway(datetime(2026, 10, 16, 12, tzinfo=UTC), datetime(2026, 10, 16, 15, tzinfo=UTC), "OOO - school run"),
    # a floating time, read in the rep's own zone; its summary folded over two lines
    TimeAway(datetime(2026, 11, 4, 8, tzinfo=UTC), datetime(2026, 11, 4, 17, tzinfo=UTC),
             "Out of office: customer visit in Hamburg"),
    DaysAway(date(2026, 12, 24), date(2026, 12, 24), "Urlaub"),  # all-day without an end: one day
]


def test_an_icalendar_feed_gives_the_absences_and_not_the_meetings():
    # Not absences: a busy meeting (even with an 'Out of office' alarm inside), a cancelled out-of-office, and a
    # timed 'Holiday party' shown as free.
    assert parse_ical_absences((DATA / "ooo.ics").read_text(), "Europe/Berlin") == FEED_ABSENCES


def test_an_icalendar_feed_reads_the_same_with_crlf_line_ends_and_floating_times_in_the_reps_zone():
    text = (DATA / "ooo.ics").read_text().replace("\n", "\r\n")
    assert parse_ical_absences(text, "Europe/Berlin") == FEED_ABSENCES
    in_new_york = parse_ical_absences(text, "America/New_York")
    assert TimeAway(datetime(2026, 11, 4, 14, tzinfo=UTC), datetime(2026, 11, 4, 23, tzinfo=UTC),
                    "Out of office: customer visit in Hamburg") in in_new_york


def test_an_endless_recurring_absence_is_read_up_to_the_horizon_and_a_broken_event_is_skipped():
    text = """BEGIN:VCALENDAR
BEGIN:VEVENT
SUMMARY:Out of office
DTSTART;VALUE=DATE:20260105
RRULE:FREQ=WEEKLY;BYDAY=MO
END:VEVENT
BEGIN:VEVENT
SUMMARY:OOO
DTSTART:not a time
END:VEVENT
END:VCALENDAR
"""
    mondays = parse_ical_absences(text, "UTC", horizon=date(2026, 1, 31))
    assert [a.first_day for a in mondays] == [date(2026, 1, 5), date(2026, 1, 12), date(2026, 1, 19), date(2026, 1, 26)]
    assert len(parse_ical_absences(text, "UTC")) == 53  # without a horizon: a year after the first occurrence


def test_a_reps_ooo_calendar_file_is_read_and_a_url_is_kept_for_a_task(tmp_path):
    path = copy(tmp_path)
    shutil.copy(DATA / "ooo.ics", tmp_path / "grace.ics")
    edit(path, "    # ooo_calendar: https://calendar.handoff-demo.example/grace.chen/ooo.ics",
         "    ooo_calendar: grace.ics")
    edit(path, "    daily_capacity: unlimited",
         "    daily_capacity: unlimited\n    ooo_calendar: https://calendar.handoff-demo.example/noah.ics")
    teams = load_teams(path)
    grace = teams.rep(f"grace.chen{DEMO}")  # her home team is in New York: the floating time is read there
    assert len(grace.out_of_office) == 6 and grace.ooo_calendar_url is None
    assert teams.is_out_of_office(grace, datetime(2026, 8, 10, 15, tzinfo=UTC))
    assert teams.is_out_of_office(grace, datetime(2026, 11, 4, 20, tzinfo=UTC))  # 15:00 in New York
    noah = teams.rep(f"noah.jones{DEMO}")
    assert noah.ooo_calendar_url == "https://calendar.handoff-demo.example/noah.ics"
    assert len(noah.out_of_office) == 2  # only the file's own ranges: nothing fetched


# ------------------------------------------------------------------------------------------ mistakes

MISTAKES = [
    # (what is wrong, shipped text, replacement, a fragment of the offending line, a fragment of the message)
    ("misspelt team key", "    timezone: Europe/London", "    timezon: Europe/London", "timezon:",
     "unknown key 'timezon' in team 'sla-desk' (did you mean 'timezone'?)"),
    ("misspelt rep key", "    daily_capacity: 25", "    daily_capcity: 25", "daily_capcity",
     f"unknown key 'daily_capcity' in rep anna.schmidt{DEMO} (did you mean 'daily_capacity'?)"),
    ("misspelt top-level key", "fallback: {queue: Lead Triage}", "fallback: {queue: Lead Triage}\nfallbacks: {}",
     "fallbacks:", "unknown key 'fallbacks' in the teams file"),
    ("key given twice", "    weight: 2\n    daily_capacity: 25", "    weight: 2\n    daily_capacity: 25\n    weight: 3",
     "weight: 3", f"'weight' is given twice in rep anna.schmidt{DEMO} (first on line"),
    ("team given twice", "  - name: sla-desk", "  - name: 'emea'", "name: 'emea'",
     "team name 'emea' is already used on line 22"),
    ("rep in an unknown team", "    teams: [americas]\n    weight: 2", "    teams: [amercas]\n    weight: 2",
     "[amercas]",
     f"rep maya.lopez{DEMO} is in unknown team 'amercas' (teams: emea, americas, sla-desk)"),
    ("weight zero", "    weight: 2\n    daily_capacity: 25", "    weight: 0\n    daily_capacity: 25", "weight: 0",
     f"rep anna.schmidt{DEMO} weight must be a number above zero, not 0"),
    ("weight negative", "weight: 1.5", "weight: -1.5", "weight: -1.5", "weight must be a number above zero, not -1.5"),
    ("weight not a number", "weight: 1.5", "weight: heavy", "weight: heavy", "not 'heavy'"),
    ("capacity zero", "daily_capacity: 30", "daily_capacity: 0", "daily_capacity: 0",
     "daily_capacity must be a whole number above zero or 'unlimited', not 0"),
    ("capacity a fraction", "daily_capacity: 30", "daily_capacity: 2.5", "daily_capacity: 2.5", "not 2.5"),
    ("capacity in words", "daily_capacity: unlimited", "daily_capacity: lots", "daily_capacity: lots", "not 'lots'"),
    ("hours running backwards", 'mon-fri: "09:00-17:00"', 'mon-fri: "17:00-09:00"', "17:00-09:00",
     "team 'americas' working_hours mon-fri: a working period runs forward within one day, not 17:00-09:00"),
    ("a time without quotes", 'fri: "09:00-15:00"', "fri: 13:00", "fri: 13:00",  # YAML reads 13:00 as 780
     "put the hours in quotes, as '09:00-17:00'"),
    ("a time, not a period", 'fri: "09:00-15:00"', 'fri: "09:00"', 'fri: "09:00"', "written HH:MM-HH:MM, not '09:00'"),
    ("overlapping periods", '["09:00-12:30", "13:30-17:30"]', '["09:00-12:30", "12:00-17:30"]', "12:00-17:30",
     "mon: working periods 09:00-12:30 and 12:00-17:30 overlap"),
    ("hours that are not times", '"08:00-16:00"', '"8am-4pm"', "8am-4pm", "written HH:MM-HH:MM, not '8am-4pm'"),
    ("unknown weekday", "mon-thu:", "mon-thr:", "mon-thr", "'mon-thr' is not a weekday or a run of them"),
    ("a weekday twice", 'fri: "09:00-15:00"', 'thu-fri: "09:00-15:00"', "thu-fri",
     "team 'emea' working_hours: thu is given twice (also on line 27)"),
    ("no working time at all", 'mon-fri: "08:00-16:00"', "mon-fri: closed", "mon-fri: closed",
     "team 'sla-desk' working_hours: a working week needs at least one working period"),
    ("unknown timezone", "timezone: Europe/Berlin", "timezone: Europe/Berlinn", "Europe/Berlinn",
     "team 'emea' timezone: unknown timezone 'Europe/Berlinn'"),
    ("unknown rep timezone", "timezone: Europe/Paris", "timezone: Paris", "timezone: Paris",
     f"rep ines.dubois{DEMO} timezone: unknown timezone 'Paris'"),
    ("unknown holiday country", "holidays: [DE-BE]", "holidays: [XX]", "holidays: [XX]",
     "team 'emea': no public holidays known for 'XX': unknown country"),
    ("unknown holiday region", "holidays: [DE-BE]", "holidays: [DE-XY]", "holidays: [DE-XY]",
     "no public holidays known for 'DE-XY': unknown region of DE"),
    ("unknown region in the long form", "region: ENG", "region: ZZZ", "region: ZZZ",
     "no public holidays known for 'GB-ZZZ'"),
    ("misspelt holiday key", "{country: GB, region: ENG}", "{country: GB, regoin: ENG}", "regoin",
     "unknown key 'regoin' in team 'sla-desk' holidays (did you mean 'region'?)"),
    ("day-off range upside down", "{from: 2026-12-28, to: 2026-12-31", "{from: 2026-12-31, to: 2026-12-28",
     "from: 2026-12-31", "days_off: the range ends (2026-12-28) before it starts (2026-12-31)"),
    ("not a date", "      - 2026-12-24", "      - 2026-13-24", "2026-13-24", "'2026-13-24' is not a date (YYYY-MM-DD)"),
    ("range without an end", "{from: 2026-08-03, to: 2026-08-14, reason: summer holiday}",
     "{from: 2026-08-03, reason: summer holiday}", "{from: 2026-08-03, reason",
     f"rep jonas.fischer{DEMO} out_of_office: a range is {{from: DATE, to: DATE}}"),
    ("rep listed twice in other letters", "\nmanagers:",
     f"  - email: Anna.Schmidt{DEMO}\n    teams: [emea]\n\nmanagers:",
     "Anna.Schmidt", f"rep anna.schmidt{DEMO} is already listed on line 58"),
    ("not an e-mail", f"  - email: liam.garcia{DEMO}", "  - email: liam.garcia", "email: liam.garcia",
     "a rep's email must be an e-mail address, not 'liam.garcia'"),
    ("unknown manager", f"    manager: maya.lopez{DEMO}", f"    manager: maya.lopes{DEMO}", "maya.lopes",
     f"noah.jones{DEMO}'s manager maya.lopes{DEMO} is neither a rep nor a declared manager"),
    ("own manager", f"    manager: maya.lopez{DEMO}", f"    manager: noah.jones{DEMO}", f"manager: noah.jones",
     f"noah.jones{DEMO} is their own manager"),
    ("a manager cycle", "    name: Zoe Tanaka", f"    name: Zoe Tanaka\n    manager: elena.rossi{DEMO}",
     f"- email: elena.rossi", f"manager cycle: elena.rossi{DEMO} -> zoe.tanaka{DEMO} -> elena.rossi{DEMO}"),
    ("a rep declared a manager too", "\nfallback:", f"  - email: ANNA.SCHMIDT{DEMO}\n\nfallback:", "ANNA.SCHMIDT",
     f"anna.schmidt{DEMO} is a rep (line 58); list them once, as a rep"),
    ("unknown territory", "territories: [AMERICAS]", "territories: [AMERICAS, LATAM]", "LATAM",
     "team 'americas': unknown territory 'LATAM' (a country code such as DE, or a region: DACH, EMEA, AMERICAS)"),
    ("Norway read as a no", 'DK, "NO", FI', "DK, NO, FI", "DK, NO, FI",
     "region EMEA: False was read as a yes/no value; put it in quotes"),
    ("a region named like a country", "  DACH: [DE, AT, CH]", "  DE: [DE, AT, CH]", "DE: [DE",
     "region name 'DE' must be a word, not a country code"),
    ("round robin not a flag", "round_robin: {weighted: false}", "round_robin: {weighted: sometimes}", "sometimes",
     "team 'sla-desk' round_robin.weighted must be true or false, not 'sometimes'"),
    ("misspelt round-robin setting", "round_robin: {weighted: true}", "round_robin: {weigted: true}", "weigted",
     "unknown key 'weigted' in team 'americas' round_robin (did you mean 'weighted'?)"),
    ("fallback both queue and rep", "fallback: {queue: Lead Triage}",
     f"fallback: {{queue: Lead Triage, rep: maya.lopez{DEMO}}}", "fallback: {queue: Lead Triage, rep",
     "fallback is a CRM queue or a rep: {queue: NAME} or {rep: E-MAIL}"),
    ("fallback rep unknown", "fallback: {queue: Lead Triage}", f"fallback: {{rep: nobody{DEMO}}}", "{rep: nobody",
     f"fallback rep nobody{DEMO} is not a rep"),
    ("team fallback rep unknown", f"fallback: {{rep: maya.lopez{DEMO}}}", f"fallback: {{rep: maya.lopes{DEMO}}}",
     "maya.lopes", f"team 'americas' fallback rep maya.lopes{DEMO} is not a rep"),
    ("unreadable ooo calendar", "    # ooo_calendar: https://calendar.handoff-demo.example/grace.chen/ooo.ics",
     "    ooo_calendar: missing.ics", "missing.ics", f"rep grace.chen{DEMO} ooo_calendar: cannot read"),
]


@pytest.mark.parametrize("problem, old, new, at, message", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_in_the_teams_file_is_refused_with_the_file_line_and_problem(tmp_path, problem, old, new, at,
                                                                              message):
    path = edit(copy(tmp_path), old, new)
    problems = refusal(path)
    expected = f"{path}:{line_of(path, at)}: "
    assert any(p.startswith(expected) and message in p for p in problems), "\n".join(problems)


def test_every_problem_is_reported_at_once_in_the_order_of_the_file(tmp_path):
    path = copy(tmp_path)
    edit(path, "timezone: Europe/Berlin", "timezone: Europe/Berlinn")
    edit(path, "weight: 1.5", "weight: 0")
    edit(path, "    name: Zoe Tanaka", f"    name: Zoe Tanaka\n    manager: elena.rossi{DEMO}")
    problems = refusal(path)
    assert [p.split(": ", 1)[0] for p in problems] == [
        f"{path}:{line_of(path, 'Europe/Berlinn')}", f"{path}:{line_of(path, 'weight: 0')}",
        f"{path}:{line_of(path, '- email: elena.rossi')}"]


def test_a_team_with_a_problem_does_not_also_refuse_its_reps(tmp_path):
    path = edit(copy(tmp_path), "timezone: Europe/Berlin", "timezone: Europe/Berlinn")
    assert len(refusal(path)) == 1


def test_a_file_that_is_not_yaml_or_not_a_mapping_is_refused(tmp_path):
    path = edit(copy(tmp_path), "    round_robin: {weighted: false}", "\tround_robin: {weighted: false}")
    with pytest.raises(ConfigError) as error:
        load_teams(path)
    assert str(error.value).startswith(f"{path}:{line_of(path, 'round_robin: {weighted: false')}: invalid YAML")
    path.write_text("- just a list\n")
    assert refusal(path) == [f"{path}: expected a mapping with teams, reps and a fallback"]


def test_an_empty_organisation_is_refused(tmp_path):
    path = tmp_path / "teams.yaml"
    path.write_text("teams: []\n")
    problems = refusal(path)
    assert any("a fallback is required" in p for p in problems)
    assert any("at least one team is required" in p for p in problems)
    assert any("at least one rep is required" in p for p in problems)


# ------------------------------------------------------------------------------------------ describing

def test_the_teams_are_described_as_markdown_tables():
    teams = load_teams()
    text = describe_teams(teams, at=datetime(2026, 8, 5, 10, tzinfo=UTC))
    assert text.startswith(f"# Sales teams ({EXAMPLE})\n")
    assert "| emea | routing, scoring | AE, AT, BE, CH, DE, DK, ES, FI, FR, GB, IE, IT, LU, NG, NL, NO, PL, SE, ZA | " \
           "Europe/Berlin | Mon-Thu 09:00-12:30 13:30-17:30, Fri 09:00-15:00 | DE-BE | " \
           "2026-12-24; 2026-12-28 to 2026-12-31 (company shutdown) | weighted, within capacity, skips absent reps | " \
           "3 | queue Lead Triage |" in text
    assert f"| jonas.fischer{DEMO} | Jonas Fischer | emea | 1 | 20 | team's | anna.schmidt{DEMO} | " \
           "2026-08-03 to 2026-08-14 (summer holiday) | yes |" in text
    assert f"| sam.okafor{DEMO} | Sam Okafor | sla-desk | 1 | 15 | " \
           "own: America/New_York, Mon-Fri 09:00-17:00, US |" in text
    assert "| zoe.tanaka" in text and "| AMERICAS | US, CA, MX, BR, AR, CL, CO |" in text
    assert text.endswith("Fallback when nobody can take a lead: queue Lead Triage.\n")
    assert "away at" not in describe_teams(teams)


def test_a_pipe_in_a_name_does_not_break_the_table(tmp_path):
    path = edit(copy(tmp_path), "    name: Anna Schmidt", "    name: Anna | Schmidt")
    assert f"| anna.schmidt{DEMO} | Anna \\| Schmidt |" in describe_teams(load_teams(path))


def test_a_timed_absence_covers_its_span_only():
    away = TimeAway(datetime(2026, 9, 1, 13, tzinfo=UTC), datetime(2026, 9, 1, 17, tzinfo=UTC))
    assert away.covers(datetime(2026, 9, 1, 13, tzinfo=UTC), BERLIN)
    assert not away.covers(datetime(2026, 9, 1, 17, tzinfo=UTC), BERLIN)
    assert not away.covers(datetime(2026, 9, 1, 13, tzinfo=UTC) - timedelta(seconds=1), BERLIN)


def test_the_shipped_teams_are_the_demo_orgs_active_crm_users():
    """config/teams.yaml names the Salesforce stand-in's reps and managers: routing gives leads only to reps with
    an active CRM user, so a name here that is not one would quietly never be given a lead (one leaver excepted)."""
    from sandbox.salesforce_seed import STAFF

    shipped = load_file(TEAMS_FILE)
    active = {f"{first}.{last}".lower().replace(" ", "") + DEMO for _, first, last, *_, on in STAFF if on}
    leavers = {f"{first}.{last}".lower().replace(" ", "") + DEMO for _, first, last, *_, on in STAFF if not on}
    people = {rep.email for rep in shipped.reps} | {m.email for m in shipped.managers}
    assert people - active == leavers & people == {f"chris.dalton{DEMO}"}
