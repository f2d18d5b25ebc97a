"""The SLA on a handed-over lead, with frozen time: which policy applies, when it is due on the owner's working
calendar, what counts as first contact, the timer's steps (reminded, breached and escalated, reassigned, recycled)
in order and once each (a Hypothesis property over any pattern of scans), the measures per rep and team, and the SLA
file's validation with file and line."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.sla import SlaConfigError, describe_sla, load_sla
from config.teams import load_teams
from domain.crm_directory import CrmDirectory, DirectoryUser
from domain.routing import RoutingState, route
from domain.routing_decision import Owner
from domain.routing_rules import FallbackTo, LeadToRoute, RoundRobinIn, RoutingRules
from domain.sla import (
    ClockKind, ContactRules, LoggedActivity, PolicyWhen, SlaPolicies, SlaPolicy, SlaSubject, StatusChange, StepKind,
    TimerState, apply_step, next_step, open_timer,
)
from domain.sla_measures import percentile, sla_report

DATA = Path(__file__).parent / "data" / "routing"
TEAMS = load_teams(DATA / "teams.yaml")  # dach works 09:00-18:00 Berlin, Monday to Friday, no public holidays
SLA = load_sla()
STANDARD, FAST = SLA.policy("standard"), SLA.policy("fit A hand-raiser")
CONTACT = SLA.contacted
BERLIN = ZoneInfo("Europe/Berlin")
ANNA = Owner(rep="anna@example.com", crm_user_id="005000", name="Anna")
CARLA = Owner(rep="carla@example.com", crm_user_id="005002", name="Carla")


def berlin(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


TUESDAY_10 = berlin(6, 9, 10)


def handed_to(owner: Owner = ANNA, at: datetime = TUESDAY_10, policy: SlaPolicy = STANDARD, team: str | None = "dach",
              after=None):
    return open_timer(7, owner, team=team, policy=policy, teams=TEAMS, opened_at=at, after=after)


def scan(timer, now, **facts):
    """Every step due at `now`, applied in turn, as a flow does on one scan: the steps and the timer after."""
    steps = []
    while (step := next_step(timer, now, CONTACT, **facts)) is not None:
        steps.append(step)
        timer = apply_step(timer, step, now)
    return steps, timer


def kinds(steps) -> list[StepKind]:
    return [step.kind for step in steps]


# ------------------------------------------------------------------------------------------ policies

def test_the_shipped_policies_are_24_business_hours_with_a_4_hour_reminder_and_grace_and_2_reassignments():
    assert (STANDARD.respond_within, STANDARD.clock, STANDARD.remind_before, STANDARD.grace,
            STANDARD.max_reassignments) == (24, ClockKind.BUSINESS_HOURS, 4, 4, 2)
    assert (FAST.respond_within, FAST.remind_before, FAST.grace) == (4, 1, 2)
    assert STANDARD.when.is_default and SLA.policies[-1] is STANDARD


def test_a_fit_a_hand_raiser_gets_the_fast_policy_and_everyone_else_the_standard_one():
    assert SLA.policy_for(SlaSubject(fit_grade="A", hand_raise="demo_request")) is FAST
    assert SLA.policy_for(SlaSubject(fit_grade="A")) is STANDARD
    assert SLA.policy_for(SlaSubject(fit_grade="B", hand_raise="trial_signup")) is STANDARD
    assert SLA.policy_for(SlaSubject()) is STANDARD


def test_policies_may_be_chosen_by_product_line_or_source_and_the_first_that_fits_wins():
    sla_line = SlaPolicy("sla line", Decimal(8), when=PolicyWhen(product_lines=frozenset({"sla"})))
    webinar = SlaPolicy("webinar", Decimal(48), when=PolicyWhen(sources=frozenset({"Webinar"})))
    policies = SlaPolicies((sla_line, webinar, STANDARD))
    assert policies.policy_for(SlaSubject(product_line="sla", source="Webinar")) is sla_line
    assert policies.policy_for(SlaSubject(product_line="scoring", source="webinar")) is webinar
    assert policies.policy_for(SlaSubject(product_line="scoring", source="Paid Search")) is STANDARD


# ------------------------------------------------------------------------------------------ due times

def test_a_lead_handed_over_at_1755_on_a_friday_is_due_when_24_business_hours_have_run():
    # Friday 17:55-18:00 is 5 minutes; Monday and Tuesday 9 hours each (18:05); 5:55 more on Wednesday.
    timer = handed_to(at=berlin(6, 5, 17, 55))
    assert timer.due_at == berlin(6, 10, 14, 55)
    assert timer.remind_at == berlin(6, 10, 10, 55)  # 4 business hours before
    assert timer.reassign_at == berlin(6, 11, 9, 55)  # 4 business hours of grace: 3:05 on Wednesday, 0:55 Thursday


def test_the_fast_policy_from_a_friday_evening_is_due_on_monday_morning():
    timer = handed_to(at=berlin(6, 5, 17, 55), policy=FAST)
    assert (timer.due_at, timer.remind_at) == (berlin(6, 8, 12, 55), berlin(6, 8, 11, 55))


def test_a_calendar_hours_policy_counts_every_hour():
    around_the_clock = SlaPolicy("calendar", Decimal(24), ClockKind.CALENDAR_HOURS)
    timer = handed_to(at=berlin(6, 5, 17, 55), policy=around_the_clock)
    assert (timer.due_at, timer.reassign_at) == (berlin(6, 6, 17, 55), berlin(6, 6, 21, 55))


def test_the_clock_is_the_reps_own_calendar():
    # Carla works Monday to Wednesday: from Wednesday 17:00, one hour that day and three on Monday.
    timer = handed_to(CARLA, at=berlin(6, 10, 17), policy=FAST)
    assert timer.due_at == berlin(6, 15, 12)


def test_a_lead_in_a_queue_runs_on_its_teams_calendar_or_on_every_hour_without_a_team():
    queue = Owner(queue="NA Inbound")
    assert handed_to(queue, at=datetime(2026, 6, 5, 16, tzinfo=ZoneInfo("America/New_York")), policy=FAST,
                     team="north-america").due_at == datetime(2026, 6, 8, 12, tzinfo=ZoneInfo("America/New_York"))
    assert handed_to(queue, policy=FAST, team=None).due_at == TUESDAY_10 + timedelta(hours=4)


def test_a_policy_without_a_reminder_has_none():
    quiet = SlaPolicy("quiet", Decimal(24), remind_before=None)
    assert handed_to(policy=quiet).remind_at is None
    assert scan(handed_to(policy=quiet), berlin(6, 11, 15))[0] == []


def test_a_breach_escalates_to_the_reps_manager_in_the_teams_file_else_to_their_crm_users_manager():
    assert handed_to().manager == "mara@example.com"
    assert handed_to(Owner(queue="Lead Triage")).manager is None
    crm = CrmDirectory((DirectoryUser("005100", "newbie@example.com", manager_id="005200"),
                        DirectoryUser("005200", "Boss@Example.com")))
    newbie = Owner(rep="newbie@example.com", crm_user_id="005100")  # not in teams.yaml yet
    assert open_timer(7, newbie, team="dach", policy=STANDARD, teams=TEAMS, opened_at=TUESDAY_10,
                      directory=crm).manager == "boss@example.com"


# ------------------------------------------------------------------------------------------ contact

def test_a_call_before_the_due_time_closes_the_timer_as_met():
    timer = handed_to()
    call = LoggedActivity(berlin(6, 9, 15), "Call", by="005000")
    step = next_step(timer, berlin(6, 9, 16), CONTACT, activities=[call])
    assert (step.kind, step.from_state, step.to_state, step.contact_at) == (
        StepKind.MET, TimerState.OPEN, TimerState.MET, call.at)
    closed = apply_step(timer, step, berlin(6, 9, 16))
    assert (closed.state, closed.first_contact_at, closed.running) == (TimerState.MET, call.at, False)
    assert next_step(closed, berlin(6, 20, 9), CONTACT) is None


def test_a_logged_task_that_is_no_call_email_or_meeting_does_not_count():
    todo = LoggedActivity(berlin(6, 9, 15), "task")
    assert next_step(handed_to(), berlin(6, 9, 16), CONTACT, activities=[todo]) is None


def test_a_meeting_counts():
    meeting = LoggedActivity(berlin(6, 10, 9), "meeting")
    assert next_step(handed_to(), berlin(6, 10, 12), CONTACT, activities=[meeting]).kind is StepKind.MET


def test_a_status_past_open_counts_when_configured_and_not_otherwise():
    working = StatusChange(berlin(6, 9, 11), "Working - Contacted")
    assert next_step(handed_to(), berlin(6, 9, 12), CONTACT, status_changes=[working]).kind is StepKind.MET
    calls_only = ContactRules(activities=frozenset({"call"}))
    assert next_step(handed_to(), berlin(6, 9, 12), calls_only, status_changes=[working]) is None


def test_only_the_owners_own_activities_count_when_configured():
    colleague = LoggedActivity(berlin(6, 9, 11), "call", by="005004")
    own = ContactRules(only_by_the_owner=True)
    assert next_step(handed_to(), berlin(6, 9, 12), own, activities=[colleague]) is None
    assert next_step(handed_to(), berlin(6, 9, 12), CONTACT, activities=[colleague]).kind is StepKind.MET


def test_contact_before_the_handoff_or_not_yet_seen_at_now_does_not_count():
    yesterday = LoggedActivity(berlin(6, 8, 15), "call")
    later = LoggedActivity(berlin(6, 9, 15), "call")
    assert next_step(handed_to(), berlin(6, 9, 12), CONTACT, activities=[yesterday, later]) is None


def test_a_contact_after_the_breach_closes_the_timer_as_contacted_late_and_nobody_takes_the_lead_away():
    breached = apply_step(handed_to(), next_step(handed_to(), berlin(6, 11, 16), CONTACT), berlin(6, 11, 16))
    late_call = LoggedActivity(berlin(6, 11, 17), "email")
    step = next_step(breached, berlin(6, 12, 12), CONTACT, activities=[late_call])
    assert (step.kind, step.from_state, step.to_state) == (StepKind.CONTACTED_LATE, TimerState.BREACHED,
                                                           TimerState.CONTACTED_LATE)
    assert "after the due time" in step.reason


# ------------------------------------------------------------------------------------------ the timer's steps

def test_reminder_then_breach_escalated_to_the_manager_then_reassignment_then_recycling_after_two():
    timer = handed_to()  # Tuesday 10:00: due Thursday 16:00, reminder Thursday 12:00, grace until Friday 11:00
    assert (timer.due_at, timer.remind_at, timer.reassign_at) == (berlin(6, 11, 16), berlin(6, 11, 12),
                                                                  berlin(6, 12, 11))
    assert next_step(timer, berlin(6, 11, 11, 59), CONTACT) is None

    remind = next_step(timer, berlin(6, 11, 12), CONTACT)
    assert (remind.kind, remind.notify, remind.events) == (StepKind.REMIND, ("anna@example.com",),
                                                           ("handoff.sla.reminded",))
    timer = apply_step(timer, remind, berlin(6, 11, 12))
    assert next_step(timer, berlin(6, 11, 15, 59), CONTACT) is None

    breach = next_step(timer, berlin(6, 11, 16), CONTACT)
    assert (breach.kind, breach.escalate_to, breach.notify) == (StepKind.BREACH, "mara@example.com",
                                                                ("anna@example.com", "mara@example.com"))
    assert breach.events == ("handoff.sla.breached", "handoff.sla.escalated")
    timer = apply_step(timer, breach, berlin(6, 11, 16))
    assert next_step(timer, berlin(6, 12, 10, 59), CONTACT) is None

    reassign = next_step(timer, berlin(6, 12, 11), CONTACT)
    assert (reassign.kind, reassign.exclude_reps) == (StepKind.REASSIGN, ("anna@example.com",))
    assert reassign.reason.endswith("reassignment 1 of at most 2")
    timer = apply_step(timer, reassign, berlin(6, 12, 11))
    assert timer.state is TimerState.REASSIGNED

    owners = ["anna@example.com"]
    dach_anytime = RoutingRules((RoundRobinIn("dach", "dach", only_during_working_hours=False), FallbackTo("triage")))
    crm = CrmDirectory(tuple(DirectoryUser(f"005{n:03d}", r.email) for n, r in enumerate(TEAMS.reps)))
    for turn in (1, 2):
        decision, _ = route(LeadToRoute(7, "kim@northwind.example"), rules=dach_anytime, teams=TEAMS, directory=crm,
                            state=RoutingState(), now=timer.closed_at, excluded_reps=reassign.exclude_reps)
        owners.append(decision.owner.rep)
        timer = open_timer(7, decision.owner, team=decision.team, policy=STANDARD, teams=TEAMS,
                           opened_at=timer.closed_at, after=timer)
        assert (timer.reassignments, timer.lapsed) == (turn, tuple(owners[:-1]))
        steps, timer = scan(timer, timer.reassign_at)
        assert kinds(steps) == [StepKind.BREACH, StepKind.REASSIGN if turn == 1 else StepKind.RECYCLE]
        reassign = steps[-1]
    # Ben was on holiday until 12 June, so Carla came first; each had their turn once.
    assert owners == ["anna@example.com", "carla@example.com", "ben@example.com"]
    assert timer.state is TimerState.RECYCLED
    assert timer.reason == ("not contacted within the SLA after 2 reassignments (let lapse by anna@example.com, "
                            "carla@example.com, ben@example.com): back to marketing nurture")


def test_with_no_reassignments_allowed_the_lead_is_recycled_after_the_grace_period():
    never = SlaPolicy("never", Decimal(24), max_reassignments=0)
    steps, timer = scan(handed_to(policy=never), berlin(6, 12, 11))
    assert kinds(steps) == [StepKind.BREACH, StepKind.RECYCLE] and timer.state is TimerState.RECYCLED


def test_overdue_steps_come_out_in_order_when_the_flow_did_not_run_for_a_day():
    timer = handed_to()
    assert kinds(scan(timer, berlin(6, 11, 13))[0]) == [StepKind.REMIND]
    assert kinds(scan(timer, berlin(6, 11, 17))[0]) == [StepKind.BREACH]  # a reminder after due says nothing
    steps, reassigned = scan(timer, berlin(6, 12, 15))
    assert kinds(steps) == [StepKind.BREACH, StepKind.REASSIGN]
    assert [step.due for step in steps] == [timer.due_at, timer.reassign_at]
    assert steps[0].notify == ("anna@example.com", "mara@example.com")  # the escalation is not skipped
    assert reassigned.breached_at == berlin(6, 12, 15)


def test_a_step_applies_only_to_a_timer_still_in_the_state_it_expects():
    timer = handed_to()
    remind = next_step(timer, berlin(6, 11, 12), CONTACT)
    reminded = apply_step(timer, remind, berlin(6, 11, 12))
    with pytest.raises(ValueError, match="expects a timer open, this one is reminded"):
        apply_step(reminded, remind, berlin(6, 11, 12))


SCALE = int(os.environ.get("HANDOFF_PROPERTY_SCALE", "1"))  # e.g. 20 for a deeper search; the suite uses 1
PROPERTIES = settings(derandomize=True, database=None, deadline=None, max_examples=100 * SCALE,
                      suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(st.lists(st.integers(0, 7 * 24 * 60), min_size=1, max_size=30), st.sampled_from([STANDARD, FAST]),
       st.integers(0, 7 * 24 * 60))
def test_however_often_the_flow_scans_each_step_comes_once_in_order_and_never_early(scans, policy, opened):
    timer = handed_to(at=TUESDAY_10 + timedelta(minutes=opened), policy=policy)
    seen = []
    for minutes in sorted(scans):
        now = timer.opened_at + timedelta(minutes=minutes)
        while (step := next_step(timer, now, CONTACT)) is not None:
            assert step.due <= now and step.from_state is timer.state
            seen.append(step)
            timer = apply_step(timer, step, now)
    kinds = [s.kind for s in seen]
    assert kinds in ([], [StepKind.REMIND], [StepKind.REMIND, StepKind.BREACH], [StepKind.BREACH],
                     [StepKind.REMIND, StepKind.BREACH, StepKind.REASSIGN], [StepKind.BREACH, StepKind.REASSIGN])
    assert [s.due for s in seen] == sorted(s.due for s in seen)
    last = timer.opened_at + timedelta(minutes=max(scans))
    assert (StepKind.BREACH in kinds) == (last >= timer.due_at)
    assert (StepKind.REASSIGN in kinds) == (last >= timer.reassign_at)


# ------------------------------------------------------------------------------------------ measures

def test_measures_per_rep_and_team_count_time_to_first_contact_breaches_and_reassignments():
    def contacted(owner, opened, contact):
        timer = handed_to(owner, at=opened)
        step = next_step(timer, contact, CONTACT, activities=[LoggedActivity(contact, "call")])
        return apply_step(timer, step, contact)

    quick = contacted(ANNA, TUESDAY_10, berlin(6, 9, 12))  # 2 business hours, 2 calendar hours
    overnight = contacted(ANNA, berlin(6, 9, 17), berlin(6, 10, 10))  # 17:00-18:00 and 09:00-10:00: 2 and 17
    # Carla (Monday to Wednesday) was handed one on 1 June: due Wednesday 16:00, reassigned the next Monday.
    carla_steps, carla = scan(handed_to(CARLA, at=berlin(6, 1, 10)), berlin(6, 12, 12))
    running = handed_to(Owner(rep="ben@example.com"), at=berlin(6, 12, 9))
    report = sla_report([quick, overnight, carla, running], TEAMS, now=berlin(6, 12, 12))

    anna = report.by_rep["anna@example.com"]
    assert (anna.handed_over, anna.contacted, anna.contacted_in_time, anna.breaches, anna.share_in_time) == \
        (2, 2, 2, 0, 1.0)
    assert (anna.median_business_hours, anna.p90_business_hours) == (2.0, 2.0)
    assert (anna.median_calendar_hours, anna.p90_calendar_hours) == (9.5, 17.0)
    assert kinds(carla_steps) == [StepKind.BREACH, StepKind.REASSIGN]
    assert (report.by_rep["carla@example.com"].breaches, report.by_rep["carla@example.com"].reassignments) == (1, 1)
    dach = report.by_team["dach"]
    assert (dach.handed_over, dach.decided, dach.running, dach.breaches, dach.reassignments) == (4, 3, 1, 1, 1)
    assert dach.share_in_time == pytest.approx(2 / 3)
    assert report.overall.handed_over == 4


def test_the_90th_percentile_is_the_nearest_rank():
    assert percentile([float(n) for n in range(1, 11)], 90) == 9.0
    assert percentile([5.0], 90) == 5.0 and percentile([], 90) is None


# ------------------------------------------------------------------------------------------ sla.yaml

def test_every_mistake_in_the_sla_file_is_named_with_its_line(tmp_path):
    path = tmp_path / "sla.yaml"
    path.write_text(
        "defaults:\n"                                        # 1
        "  clock: weekly\n"                                  # 2
        "  grace: -1\n"                                      # 3
        "policies:\n"                                        # 4
        "  - name: fast\n"                                   # 5
        "    when: {fit_grades: [E], hand_raises: [demo]}\n"  # 6
        "    respond_within: 4\n"                            # 7
        "  - name: fast\n"                                   # 8
        "    respond_within: 0\n"                            # 9
        "    remind_before: 1\n"                             # 10
        "    max_reassignment: 3\n"                          # 11
        "  - name: late\n"                                   # 12
        "    respond_within: 8\n"                            # 13
        "contacted:\n"                                       # 14
        "  activities: [call]\n"                             # 15
        "  statuses: [Working]\n"                            # 16
        "  statuses: [Qualified]\n")                         # 17
    with pytest.raises(SlaConfigError) as error:
        load_sla(path)
    assert [p.removeprefix(f"{path}:") for p in error.value.problems] == [
        "2: defaults clock must be one of business_hours, calendar_hours, not 'weekly'",
        "3: defaults grace must be a number of hours zero or more (at most a year), not -1",
        "6: policy 'fast' fit_grades: 'E' is not one of the fit grades A-D (A, B, C, D)",
        "6: policy 'fast' hand_raises: 'demo' is not one of activity kinds (newsletter_signup, email_open, "
        "email_click, email_bounce, unsubscribe, page_view, form_fill, whitepaper_download, webinar_registration, "
        "webinar_attended, demo_request, trial_signup, contact_sales)",
        "7: policy 'fast': a reminder 4 hours before a 4-hour window would come at handoff; make it shorter, or 0 "
        "for none",
        "8: policy name 'fast' is already used on line 5",
        "9: policy 'fast' respond_within must be a number of hours above zero (at most a year), not 0",
        "11: unknown key 'max_reassignment' in policy 'fast' (did you mean 'max_reassignments'?)",
        "12: policy 'late' is never used: the policy on line 8 is for every lead",
        "17: 'statuses' is given twice in contacted (first on line 16); say it once",
    ]


def test_the_last_policy_must_be_for_every_lead():
    with pytest.raises(SlaConfigError, match=r"sla.yaml:1: the last policy must be for every lead"):
        load_sla(Path("sla.yaml"), "policies:\n  - name: a\n    respond_within: 8\n    when: {fit_grades: [A]}\n")


def test_a_policy_may_only_name_product_lines_that_are_sold():
    text = ("policies:\n  - name: a\n    respond_within: 8\n    when: {product_lines: [hardware]}\n"
            "  - name: b\n    respond_within: 24\n")
    with pytest.raises(SlaConfigError, match="4: policy 'a': unknown product line 'hardware' \\(known: sla\\)"):
        load_sla(Path("sla.yaml"), text, product_lines=["SLA"])
    assert load_sla(Path("sla.yaml"), text).policy("a").when.product_lines == {"hardware"}


def test_describe_sla_renders_the_policies_as_markdown():
    text = describe_sla(SLA)
    assert "| standard | every lead | 24 h | business hours | 4 h before | 4 h | 2 |" in text
    assert "| fit A hand-raiser | fit A and hand-raise contact_sales or demo_request or trial_signup | 4 h |" in text
    assert text.rstrip().endswith("or status Closed - Converted, Closed - Not Converted, Nurturing, "
                                  "Working - Contacted.")
