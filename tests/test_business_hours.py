"""The SLA business-hours clock: it pauses over weekends, holidays, a team's own days off and outside working hours,
counts in the team's timezone across daylight-saving changes, and calendar-hours mode is plain addition. The
properties (Hypothesis, derandomized) hold for timezones with odd daylight-saving rules and random working weeks."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.business_hours import (
    CALENDAR_HOURS, UTC, DaysOff, WorkingCalendar, WorkingPeriod, WorkingWeek, business_time_between, due_at,
    is_working, next_working_moment,
)

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
OFFICE_HOURS = WorkingWeek.office_hours("09:00-17:00")
BERLIN_TEAM = WorkingCalendar("Europe/Berlin", OFFICE_HOURS)
NEW_YORK_TEAM = WorkingCalendar("America/New_York", OFFICE_HOURS)
HOURS = timedelta(hours=1)


def local(zone: ZoneInfo, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=zone)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ pausing

def test_sla_clock_pauses_over_the_weekend():
    friday_four_pm = local(BERLIN, 2026, 6, 5, 16)
    assert due_at(BERLIN_TEAM, friday_four_pm, 2) == local(BERLIN, 2026, 6, 8, 10)  # 1 h Friday, 1 h Monday
    assert business_time_between(BERLIN_TEAM, friday_four_pm, local(BERLIN, 2026, 6, 8, 10)) == 2 * HOURS


def test_sla_clock_pauses_on_a_public_holiday():
    berlin_holidays = WorkingCalendar("Europe/Berlin", OFFICE_HOURS,
                                      DaysOff(holidays=(holidays.country_holidays("DE", subdiv="BE"),)))
    # Good Friday 2026-04-03 and Easter Monday 2026-04-06 are public holidays in Berlin
    maundy_thursday = local(BERLIN, 2026, 4, 2, 16)
    assert due_at(berlin_holidays, maundy_thursday, 2) == local(BERLIN, 2026, 4, 7, 10)
    assert due_at(BERLIN_TEAM, maundy_thursday, 2) == local(BERLIN, 2026, 4, 3, 10)


def test_sla_clock_pauses_on_the_teams_own_day_off():
    away_day = WorkingCalendar("Europe/Berlin", OFFICE_HOURS, DaysOff(dates=frozenset({date(2026, 7, 15)})))
    assert due_at(away_day, local(BERLIN, 2026, 7, 14, 16), 2) == local(BERLIN, 2026, 7, 16, 10)
    assert not is_working(away_day, local(BERLIN, 2026, 7, 15, 11))


def test_days_off_may_be_any_container_of_dates():
    plain_set = WorkingCalendar("Europe/Berlin", OFFICE_HOURS, {date(2026, 7, 15)})
    assert due_at(plain_set, local(BERLIN, 2026, 7, 14, 16), 2) == local(BERLIN, 2026, 7, 16, 10)


def test_sla_clock_pauses_outside_working_hours():
    tuesday = (2026, 6, 9)
    assert due_at(BERLIN_TEAM, local(BERLIN, *tuesday, 6), 1) == local(BERLIN, *tuesday, 10)
    assert due_at(BERLIN_TEAM, local(BERLIN, *tuesday, 20), 1) == local(BERLIN, 2026, 6, 10, 10)
    assert business_time_between(BERLIN_TEAM, local(BERLIN, *tuesday, 6), local(BERLIN, *tuesday, 20)) == 8 * HOURS


def test_sla_clock_pauses_over_a_lunch_break_on_a_split_day():
    split = WorkingCalendar("Europe/Berlin", WorkingWeek.office_hours("09:00-12:00", "13:00-17:00"))
    assert due_at(split, local(BERLIN, 2026, 6, 9, 11, 30), 1) == local(BERLIN, 2026, 6, 9, 13, 30)
    assert business_time_between(split, local(BERLIN, 2026, 6, 9), local(BERLIN, 2026, 6, 10)) == 7 * HOURS
    assert not is_working(split, local(BERLIN, 2026, 6, 9, 12, 30))


def test_time_that_runs_out_at_closing_is_due_at_closing_not_at_the_next_opening():
    assert due_at(BERLIN_TEAM, local(BERLIN, 2026, 6, 9, 16), 1) == local(BERLIN, 2026, 6, 9, 17)


def test_zero_hours_is_the_start_itself_even_outside_working_hours():
    saturday_noon = local(BERLIN, 2026, 6, 6, 12)
    assert due_at(BERLIN_TEAM, saturday_noon, 0) == saturday_noon
    assert next_working_moment(BERLIN_TEAM, saturday_noon) == local(BERLIN, 2026, 6, 8, 9)
    assert next_working_moment(BERLIN_TEAM, local(BERLIN, 2026, 6, 8, 11)) == local(BERLIN, 2026, 6, 8, 11)


def test_working_time_runs_from_opening_up_to_closing():
    assert is_working(BERLIN_TEAM, local(BERLIN, 2026, 6, 8, 9))
    assert is_working(BERLIN_TEAM, local(BERLIN, 2026, 6, 8, 16, 59, 59))
    assert not is_working(BERLIN_TEAM, local(BERLIN, 2026, 6, 8, 17))
    assert not is_working(BERLIN_TEAM, local(BERLIN, 2026, 6, 8, 8, 59))
    assert not is_working(BERLIN_TEAM, local(BERLIN, 2026, 6, 6, 11))


# ------------------------------------------------------------------------------------------ timezones

def test_sla_clock_counts_in_the_teams_own_timezone():
    # 17:55 on Friday in New York is 23:55 in Berlin: nothing left of the Berlin team's Friday either
    handed_over = local(NEW_YORK, 2026, 6, 5, 17, 55)
    assert due_at(BERLIN_TEAM, handed_over, 4) == local(BERLIN, 2026, 6, 8, 13) == utc(2026, 6, 8, 11)
    assert due_at(NEW_YORK_TEAM, handed_over, 4) == local(NEW_YORK, 2026, 6, 8, 13) == utc(2026, 6, 8, 17)


def test_a_lead_handed_over_at_17_55_on_a_friday_is_due_when_24_business_hours_have_run():
    handed_over = local(BERLIN, 2026, 6, 5, 17, 55)
    # Friday: after 17:00, nothing counts. Saturday, Sunday: closed. Monday 8 h (16 to go), Tuesday 8 h (8 to go),
    # Wednesday 8 h: the 24th hour ends at Wednesday's closing, 17:00 in Berlin (summer time, UTC+2).
    due = due_at(BERLIN_TEAM, handed_over, 24)
    assert due == utc(2026, 6, 10, 15, 0)
    assert due.tzinfo is UTC
    assert business_time_between(BERLIN_TEAM, handed_over, due) == 24 * HOURS


def test_any_aware_time_goes_in_and_utc_comes_out():
    assert due_at(BERLIN_TEAM, utc(2026, 6, 8, 7), 1).tzinfo is UTC
    assert next_working_moment(BERLIN_TEAM, local(NEW_YORK, 2026, 6, 6)).tzinfo is UTC


# ------------------------------------------------------------------------------------------ daylight saving

@pytest.mark.parametrize("zone, day", [
    ("Europe/Berlin", date(2026, 3, 29)), ("Europe/Berlin", date(2026, 10, 25)),
    ("America/New_York", date(2026, 3, 8)), ("America/New_York", date(2026, 11, 1)),
], ids=["europe-spring", "europe-autumn", "us-spring", "us-autumn"])
def test_a_working_day_is_eight_business_hours_on_the_day_the_clocks_change(zone, day):
    every_day = WorkingCalendar(zone, WorkingWeek.office_hours("09:00-17:00", weekdays=range(7)))
    tz = ZoneInfo(zone)
    midnight, next_midnight = datetime.combine(day, datetime.min.time(), tz), \
        datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    assert business_time_between(every_day, midnight, next_midnight) == 8 * HOURS
    nine = datetime.combine(day, datetime.min.time(), tz).replace(hour=9)
    assert due_at(every_day, nine, 8) == nine.replace(hour=17)


@pytest.mark.parametrize("team, friday_four_pm, monday_due", [
    # Europe springs forward on Sunday 29 March 2026: 16:00 is 15:00 UTC on Friday and 14:00 UTC on Monday
    (BERLIN_TEAM, utc(2026, 3, 27, 15), utc(2026, 3, 30, 14)),
    # and falls back on Sunday 25 October 2026: 16:00 is 14:00 UTC on Friday and 15:00 UTC on Monday
    (BERLIN_TEAM, utc(2026, 10, 23, 14), utc(2026, 10, 26, 15)),
    # the US springs forward on Sunday 8 March 2026: 21:00 UTC on Friday, 20:00 UTC on Monday
    (NEW_YORK_TEAM, utc(2026, 3, 6, 21), utc(2026, 3, 9, 20)),
    # and falls back on Sunday 1 November 2026: 20:00 UTC on Friday, 21:00 UTC on Monday
    (NEW_YORK_TEAM, utc(2026, 10, 30, 20), utc(2026, 11, 2, 21)),
], ids=["europe-spring", "europe-autumn", "us-spring", "us-autumn"])
def test_sla_clock_keeps_local_working_hours_across_a_daylight_saving_weekend(team, friday_four_pm, monday_due):
    # 1 h on Friday from 16:00 to 17:00, then 7 h on Monday from 09:00: due at 16:00 local on Monday
    assert due_at(team, friday_four_pm, 8) == monday_due
    assert business_time_between(team, friday_four_pm, monday_due) == 8 * HOURS


def test_wall_times_the_clocks_skip_or_repeat_are_read_deliberately():
    sunday_nights = WorkingCalendar("Europe/Berlin", WorkingWeek.of({6: ["01:00-04:00"]}))
    # spring: 02:00-03:00 never happens, so 01:00 CET to 04:00 CEST is two hours of work
    assert business_time_between(sunday_nights, utc(2026, 3, 28), utc(2026, 3, 30)) == 2 * HOURS
    # autumn: 02:00-03:00 happens twice, so 01:00 CEST to 04:00 CET is four
    assert business_time_between(sunday_nights, utc(2026, 10, 24), utc(2026, 10, 26)) == 4 * HOURS
    # a skipped start is the moment the clocks jump to (03:00 CEST); a repeated one is its first occurrence (CEST)
    late = WorkingCalendar("Europe/Berlin", WorkingWeek.of({6: ["02:30-05:00"]}))
    assert next_working_moment(late, local(BERLIN, 2026, 3, 29)) == utc(2026, 3, 29, 1)
    assert next_working_moment(late, local(BERLIN, 2026, 10, 25)) == utc(2026, 10, 25, 0, 30)
    # a period wholly inside the skipped hour has no working time that night
    skipped = WorkingCalendar("Europe/Berlin", WorkingWeek.of({6: ["02:15-02:45"]}))
    assert business_time_between(skipped, utc(2026, 3, 28), utc(2026, 3, 30)) == timedelta(0)
    assert business_time_between(skipped, utc(2026, 4, 4), utc(2026, 4, 6)) == timedelta(minutes=30)


# ------------------------------------------------------------------------------------------ calendar hours

def test_calendar_hours_are_plain_addition():
    handed_over = local(NEW_YORK, 2026, 6, 5, 17, 55)
    assert due_at(CALENDAR_HOURS, handed_over, 24) == utc(2026, 6, 6, 21, 55) == handed_over + 24 * HOURS
    # across a daylight-saving change too: 24 elapsed hours, whatever the wall clock shows (adding to a local
    # datetime would move its wall clock instead, and give 23)
    saturday = local(BERLIN, 2026, 3, 28, 12)
    assert due_at(CALENDAR_HOURS, saturday, 24) == saturday.astimezone(UTC) + 24 * HOURS \
        == local(BERLIN, 2026, 3, 29, 13)
    assert business_time_between(CALENDAR_HOURS, saturday, local(BERLIN, 2026, 3, 29, 12)) == 23 * HOURS
    assert is_working(CALENDAR_HOURS, local(BERLIN, 2026, 12, 25, 3))
    assert next_working_moment(CALENDAR_HOURS, saturday) == saturday


# ------------------------------------------------------------------------------------------ scale and mistakes

def test_long_windows_are_counted_a_week_at_a_time():
    monday = local(BERLIN, 2026, 1, 5, 9)
    # 2,000 hours at 40 a week is 50 weeks: the 50th week's Friday closing, 18 December 2026 (CET, UTC+1)
    due = due_at(BERLIN_TEAM, monday, 2000)
    assert due == utc(2026, 12, 18, 16)
    assert business_time_between(BERLIN_TEAM, monday, due) == 2000 * HOURS
    assert business_time_between(BERLIN_TEAM, due, monday) == -2000 * HOURS


def test_hours_may_be_a_fraction_or_a_timedelta():
    assert due_at(BERLIN_TEAM, local(BERLIN, 2026, 6, 8, 9), 1.5) == local(BERLIN, 2026, 6, 8, 10, 30)
    assert due_at(BERLIN_TEAM, local(BERLIN, 2026, 6, 8, 9), timedelta(minutes=90)) == local(BERLIN, 2026, 6, 8, 10, 30)


def test_a_calendar_with_no_working_day_left_is_refused_rather_than_counted_forever():
    class EveryDay:
        def __contains__(self, day: object) -> bool:
            return True

    never = WorkingCalendar("Europe/Berlin", OFFICE_HOURS, EveryDay())
    with pytest.raises(ValueError, match="no working time"):
        due_at(never, local(BERLIN, 2026, 6, 8, 9), 1)
    with pytest.raises(ValueError, match="no working time"):
        next_working_moment(never, local(BERLIN, 2026, 6, 8, 9))


@pytest.mark.parametrize("make, message", [
    (lambda: WorkingWeek.of({}), "at least one working period"),
    (lambda: WorkingWeek.office_hours("09:00-13:00", "12:00-17:00"), "overlap"),
    (lambda: WorkingPeriod.parse("17:00-09:00"), "runs forward within one day"),
    (lambda: WorkingPeriod.parse("9am-5pm"), "HH:MM-HH:MM"),
    (lambda: WorkingPeriod.parse("09:00-24:30"), "not a time of day"),
    (lambda: WorkingCalendar("Europe/Berlinn", OFFICE_HOURS), "unknown timezone 'Europe/Berlinn'"),
    (lambda: due_at(BERLIN_TEAM, datetime(2026, 6, 8, 9), 1), "aware datetimes"),
    (lambda: due_at(BERLIN_TEAM, utc(2026, 6, 8, 9), -1), "must not be negative"),
    (lambda: due_at(BERLIN_TEAM, utc(2026, 6, 8, 9), float("nan")), "finite"),
])
def test_a_calendar_mistake_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_period_may_run_to_midnight_and_a_week_reads_as_people_write_it():
    late = WorkingPeriod.parse("18:00-24:00")
    assert (late.start, late.end, str(late)) == (18 * 60, 24 * 60, "18:00-24:00")
    week = WorkingWeek.of({0: ["09:00-12:00", "13:00-17:00"], 1: ["09:00-12:00", "13:00-17:00"], 4: ["09:00-15:00"]})
    assert str(week) == "Mon-Tue 09:00-12:00 13:00-17:00, Fri 09:00-15:00"


# ------------------------------------------------------------------------------------------ properties

SCALE = int(os.environ.get("HANDOFF_PROPERTY_SCALE", "1"))  # e.g. 20 for a deeper search; the suite uses 1
PROPERTIES = settings(derandomize=True, database=None, deadline=None, max_examples=200 * SCALE,
                      suppress_health_check=[HealthCheck.too_slow])

# Zones whose clocks change in both hemispheres, at midnight (Santiago), by half an hour (Lord Howe), or never.
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago", "Australia/Lord_Howe",
         "Europe/London", "Asia/Kolkata")
# Days around the 2026 changes of those zones, so windows often cross one.
CHANGES = (date(2026, 3, 29), date(2026, 10, 25), date(2026, 3, 8), date(2026, 11, 1), date(2026, 4, 5),
           date(2026, 10, 4), date(2026, 9, 6))


@st.composite
def working_weeks(draw) -> WorkingWeek:
    days = {}
    for day in range(7):
        cuts = sorted(draw(st.lists(st.integers(0, 96), max_size=4, unique=True)))  # quarter hours
        periods = [WorkingPeriod(a * 15, b * 15) for a, b in zip(cuts[::2], cuts[1::2])]
        if periods:
            days[day] = periods
    if not days:
        days[draw(st.integers(0, 6))] = [WorkingPeriod(9 * 60, 17 * 60)]
    return WorkingWeek.of(days)


@st.composite
def calendars(draw) -> WorkingCalendar:
    days_off = draw(st.frozensets(st.dates(date(2026, 1, 1), date(2027, 6, 30)), max_size=40))
    return WorkingCalendar(draw(st.sampled_from(ZONES)), draw(working_weeks()), DaysOff(dates=days_off))


moments = st.one_of(
    st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1)).map(lambda t: t.replace(tzinfo=UTC)),
    st.builds(lambda day, seconds: datetime.combine(day, datetime.min.time(), UTC) + timedelta(seconds=seconds),
              st.sampled_from(CHANGES), st.integers(-4 * 86_400, 4 * 86_400)),
)
spans = st.one_of(st.integers(0, 300 * 60).map(lambda m: timedelta(minutes=m)),
                  st.integers(0, 50 * 3600).map(lambda s: timedelta(seconds=s)), st.just(timedelta(0)))


@PROPERTIES
@given(calendars(), moments, moments, spans, spans)
def test_a_later_start_or_more_hours_is_never_due_earlier(calendar, start, other, hours, more):
    early, late = sorted((start, other))
    assert due_at(calendar, early, hours) <= due_at(calendar, late, hours)
    assert due_at(calendar, start, hours) <= due_at(calendar, start, hours + more)


@PROPERTIES
@given(calendars(), moments, spans, spans)
def test_adding_hours_in_two_steps_is_adding_them_at_once(calendar, start, first, second):
    assert due_at(calendar, due_at(calendar, start, first), second) == due_at(calendar, start, first + second)


@PROPERTIES
@given(calendars(), moments, spans)
def test_the_business_time_from_a_start_to_its_due_time_is_the_hours_given(calendar, start, hours):
    assert business_time_between(calendar, start, due_at(calendar, start, hours)) == hours


@PROPERTIES
@given(calendars(), moments, moments, moments)
def test_business_time_adds_up_over_consecutive_spans(calendar, a, b, c):
    a, b, c = sorted((a, b, c))
    assert business_time_between(calendar, a, c) == \
        business_time_between(calendar, a, b) + business_time_between(calendar, b, c)


@PROPERTIES
@given(calendars(), moments)
def test_the_next_working_moment_is_working_time_with_none_before_it(calendar, start):
    moment = next_working_moment(calendar, start)
    assert moment >= start and is_working(calendar, moment)
    assert business_time_between(calendar, start, moment) == timedelta(0)
