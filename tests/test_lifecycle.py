"""Lifecycle stages: Subscriber -> Lead -> MQL as marketing defines them, SQL and later as sales reports them,
recycling and disqualifying, the MQL trigger that fires once per crossing, and cold leads."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import permutations

import pytest

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import ActivityType
from domain.fit import FitAssessment
from domain.lifecycle import (
    FUNNEL,
    LeadFacts,
    LeadState,
    Stage,
    MERGE_RANK,
    StageChange,
    StageMoveRefused,
    absorb,
    advance,
    check_move,
    disqualify,
    move_by_person,
    qualify,
    recycle,
)

RULES = load_rulebook(CONFIG_DIR)  # threshold 100, MQL at fit B, hand-raise at fit C, re-arm below 70, cold 20 / 5
BAND = RULES.qualification.rearm_below
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def fit(grade="B", disqualified=None) -> FitAssessment:
    return FitAssessment(points={"A": 8000, "B": 5000, "C": 3000, "D": 0}[grade], grade=grade, lines=(),
                         disqualified=disqualified)


def facts(score=0, grade="B", details=True, hand_raise=None, disqualified=None) -> LeadFacts:
    return LeadFacts(score=score, fit=fit(grade, disqualified), has_details=details, last_hand_raise=hand_raise)


def demo(at: datetime):
    return (at, ActivityType.DEMO_REQUEST)


def lead(stage=Stage.LEAD, **kw) -> LeadState:
    return LeadState(stage=stage, stage_changed_at=NOW - 30 * DAY, **kw)


# ------------------------------------------------------------------------------------------ check_move

FORWARD = [(a, b) for a, b in permutations(FUNNEL, 2) if FUNNEL.index(a) < FUNNEL.index(b)]
BACKWARD = [(a, b) for a, b in permutations(FUNNEL, 2) if FUNNEL.index(a) > FUNNEL.index(b)]


@pytest.mark.parametrize("current, target", FORWARD)
def test_stages_move_forward_along_the_funnel(current, target):
    check_move(current, target)


@pytest.mark.parametrize("current, target", BACKWARD + [(s, s) for s in FUNNEL])
def test_stages_never_move_backwards_or_stand_still_as_a_move(current, target):
    with pytest.raises(StageMoveRefused):
        check_move(current, target)


@pytest.mark.parametrize("current", [Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY])
def test_a_lead_in_the_funnel_can_be_recycled(current):
    check_move(current, Stage.RECYCLED)


@pytest.mark.parametrize("current", [Stage.SUBSCRIBER, Stage.CUSTOMER, Stage.RECYCLED])
def test_subscribers_customers_and_recycled_leads_cannot_be_recycled(current):
    with pytest.raises(StageMoveRefused):
        check_move(current, Stage.RECYCLED)


@pytest.mark.parametrize("target", [Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER])
def test_a_recycled_lead_re_enters_the_funnel_at_mql_or_later(target):
    check_move(Stage.RECYCLED, target)


@pytest.mark.parametrize("target", [Stage.SUBSCRIBER, Stage.LEAD])
def test_a_recycled_lead_does_not_go_back_to_subscriber_or_lead(target):
    with pytest.raises(StageMoveRefused):
        check_move(Stage.RECYCLED, target)


@pytest.mark.parametrize("current", [Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.RECYCLED])
def test_any_lead_short_of_a_customer_can_be_disqualified(current):
    check_move(current, Stage.DISQUALIFIED)


def test_a_customer_is_not_disqualified():
    with pytest.raises(StageMoveRefused, match="customer is not disqualified"):
        check_move(Stage.CUSTOMER, Stage.DISQUALIFIED)


@pytest.mark.parametrize("target", [stage for stage in Stage if stage is not Stage.RECYCLED])
def test_a_disqualified_lead_leaves_its_stage_only_by_a_recycle(target):
    with pytest.raises(StageMoveRefused):
        check_move(Stage.DISQUALIFIED, target)
    check_move(Stage.DISQUALIFIED, Stage.RECYCLED)


@pytest.mark.parametrize("target", list(Stage))
def test_a_new_lead_may_start_anywhere(target):
    check_move(None, target)


# ------------------------------------------------------------------------------------------ first seen, details

def test_a_new_person_with_only_an_e_mail_is_a_subscriber():
    q = qualify(None, facts(details=False), RULES, NOW)
    assert q.state.stage is Stage.SUBSCRIBER
    assert [(c.from_stage, c.to_stage) for c in q.changes] == [(None, Stage.SUBSCRIBER)]
    assert q.state.stage_changed_at == NOW


def test_a_new_person_with_details_is_a_lead():
    q = qualify(None, facts(details=True), RULES, NOW)
    assert q.state.stage is Stage.LEAD
    assert [(c.from_stage, c.to_stage) for c in q.changes] == [(None, Stage.LEAD)]


def test_a_subscriber_who_gives_details_becomes_a_lead_with_the_reason_recorded():
    q = qualify(lead(Stage.SUBSCRIBER), facts(details=True), RULES, NOW)
    assert q.state.stage is Stage.LEAD
    [change] = q.changes
    assert (change.from_stage, change.to_stage, change.reason) == (Stage.SUBSCRIBER, Stage.LEAD,
                                                                   "gave details beyond an e-mail")
    assert q.state.stage_changed_at == NOW


def test_a_subscriber_without_details_stays_a_subscriber():
    q = qualify(lead(Stage.SUBSCRIBER), facts(score=3000, details=False), RULES, NOW)
    assert q.state.stage is Stage.SUBSCRIBER and q.changes == ()


# ------------------------------------------------------------------------------------------ MQL

def test_a_demo_request_from_a_good_fit_lead_makes_an_mql_at_once():
    q = qualify(lead(), facts(score=1500, grade="B", hand_raise=demo(NOW - HOUR)), RULES, NOW)
    assert q.state.stage is Stage.MQL
    [change] = q.changes
    assert change.reason.startswith("hand-raise: demo_request on ")
    [trigger] = q.triggers
    assert (trigger.kind, trigger.crossing) == ("mql", 1)
    assert q.state.qualified_at == NOW


@pytest.mark.parametrize("kind", [ActivityType.TRIAL_SIGNUP, ActivityType.CONTACT_SALES])
def test_a_free_trial_or_a_contact_sales_form_are_hand_raises_too(kind):
    q = qualify(lead(), facts(score=0, grade="C", hand_raise=(NOW - HOUR, kind)), RULES, NOW)
    assert q.state.stage is Stage.MQL


def test_a_hand_raise_from_a_poor_fit_lead_does_not_make_an_mql():
    q = qualify(lead(), facts(score=10000, grade="D", hand_raise=demo(NOW - HOUR)), RULES, NOW)
    assert q.state.stage is Stage.LEAD and q.triggers == ()


def test_a_brand_new_person_who_requests_a_demo_is_an_mql_in_the_same_run():
    q = qualify(None, facts(score=10000, grade="B", hand_raise=demo(NOW - HOUR)), RULES, NOW)
    assert [c.to_stage for c in q.changes] == [Stage.LEAD, Stage.MQL]
    assert len(q.triggers) == 1


def test_a_good_fit_lead_reaching_the_readiness_threshold_is_an_mql():
    q = qualify(lead(), facts(score=10000, grade="B"), RULES, NOW)
    assert q.state.stage is Stage.MQL
    assert q.changes[0].reason == "score 100 reached the readiness threshold 100 with fit B"


def test_one_hundredth_of_a_point_below_the_threshold_is_not_an_mql():
    q = qualify(lead(), facts(score=9999, grade="A"), RULES, NOW)
    assert q.state.stage is Stage.LEAD and q.triggers == ()


@pytest.mark.parametrize("grade", ["C", "D"])
def test_a_poor_fit_lead_never_becomes_an_mql_on_score_alone(grade):
    state = lead()
    for score in (10000, 25000, 1_000_000):
        q = qualify(state, facts(score=score, grade=grade), RULES, NOW)
        assert q.state.stage is Stage.LEAD and q.triggers == ()
        state = q.state


def test_a_free_mail_lead_capped_at_c_can_still_raise_its_hand():
    assert qualify(lead(), facts(score=20000, grade="C"), RULES, NOW).state.stage is Stage.LEAD
    assert qualify(lead(), facts(score=20000, grade="C", hand_raise=demo(NOW)), RULES, NOW).state.stage is Stage.MQL


# ------------------------------------------------------------------------------------------ never backwards

@pytest.mark.parametrize("stage", [Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER])
def test_a_falling_score_or_fit_never_moves_a_lead_back(stage):
    q = qualify(lead(stage, mql_armed=False, crossings=1), facts(score=0, grade="D", details=False), RULES, NOW)
    assert q.state.stage is stage and q.changes == ()


@pytest.mark.parametrize("stage", [Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER])
def test_marketing_never_moves_a_sales_owned_lead(stage):
    q = qualify(lead(stage), facts(score=50000, grade="A", hand_raise=demo(NOW)), RULES, NOW)
    assert q.state.stage is stage and q.changes == () and q.triggers == ()


def test_sales_moves_a_lead_forward_and_never_back():
    state = lead(Stage.MQL)
    for target in (Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER):
        q = advance(state, target, "CRM status", NOW)
        assert q.state.stage is target and q.changes[0].from_stage is state.stage
        state = q.state
    with pytest.raises(StageMoveRefused):
        advance(state, Stage.SQL, "CRM status", NOW)


@pytest.mark.parametrize("target", [Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL, Stage.RECYCLED, Stage.DISQUALIFIED])
def test_sales_cannot_make_marketing_moves(target):
    with pytest.raises(StageMoveRefused):
        advance(lead(Stage.SUBSCRIBER), target, "CRM status", NOW)


# ------------------------------------------------------------------------------------------ recycle, disqualify

def test_recycling_records_the_reason_and_needs_one():
    q = recycle(lead(Stage.SQL), "no budget this year", NOW, rearm_below=BAND)
    assert q.state.stage is Stage.RECYCLED and q.state.stage_changed_at == NOW
    assert q.changes[0].reason == "recycled: no budget this year"
    with pytest.raises(StageMoveRefused):
        recycle(lead(Stage.SQL), "  ", NOW, rearm_below=BAND)


def test_a_subscriber_cannot_be_recycled():
    with pytest.raises(StageMoveRefused):
        recycle(lead(Stage.SUBSCRIBER), "nobody answered", NOW, rearm_below=BAND)


@pytest.mark.parametrize("stage", [Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL, Stage.RECYCLED])
def test_a_competitor_is_disqualified_from_any_marketing_stage(stage):
    q = qualify(lead(stage), facts(score=20000, grade="A", hand_raise=demo(NOW), disqualified="works for a competitor"),
                RULES, NOW)
    assert q.state.stage is Stage.DISQUALIFIED
    assert q.changes[-1].reason == "disqualified: works for a competitor"
    assert q.triggers == ()


def test_a_new_competitor_is_disqualified_on_first_sight():
    q = qualify(None, facts(score=20000, disqualified="works for a competitor"), RULES, NOW)
    assert [c.to_stage for c in q.changes] == [Stage.LEAD, Stage.DISQUALIFIED]


@pytest.mark.parametrize("stage", [Stage.SUBSCRIBER, Stage.LEAD, Stage.RECYCLED])
def test_a_lead_the_fit_disqualified_returns_where_it_stood_once_the_fit_no_longer_does(stage):
    out = qualify(lead(stage), facts(score=500, disqualified="works for a competitor"), RULES, NOW).state
    assert out.stage is Stage.DISQUALIFIED and out.fit_disqualified_from is stage
    still = qualify(out, facts(score=500, disqualified="works for a competitor"), RULES, NOW + DAY)
    assert still.state == out and still.changes == ()

    back = qualify(out, facts(score=500), RULES, NOW + DAY)  # the domain is off the competitors' list now
    assert back.changes[0] == StageChange(Stage.DISQUALIFIED, stage, "reinstated: the fit no longer disqualifies it")
    assert back.state.stage is (Stage.LEAD if stage is Stage.SUBSCRIBER else stage)  # then the rules go on as ever
    assert back.state.fit_disqualified_from is None and back.triggers == ()


def test_a_lead_the_fit_disqualified_goes_on_to_mql_when_its_score_says_so_once_back():
    out = qualify(lead(Stage.LEAD), facts(score=15000, disqualified="works for a competitor"), RULES, NOW).state
    back = qualify(out, facts(score=15000), RULES, NOW + DAY)
    assert [c.to_stage for c in back.changes] == [Stage.LEAD, Stage.MQL] and [t.crossing for t in back.triggers] == [1]


def test_an_mql_the_fit_disqualified_is_handed_over_again_once_back():
    # Its routing was withdrawn when it left: coming back is a handoff of its own, a new crossing.
    mql = lead(Stage.MQL, crossings=1, mql_armed=False, qualified_at=NOW - DAY)
    out = qualify(mql, facts(score=15000, disqualified="works for a competitor"), RULES, NOW).state
    back = qualify(out, facts(score=15000), RULES, NOW + DAY)
    assert back.state.stage is Stage.MQL and back.state.crossings == 2 and back.state.qualified_at == NOW + DAY
    assert [(t.kind, t.crossing, t.reason) for t in back.triggers] == [
        ("mql", 2, "reinstated: the fit no longer disqualifies it")]
    assert qualify(back.state, facts(score=15000), RULES, NOW + 2 * DAY).triggers == ()  # and once only


def test_an_mql_the_fit_disqualified_comes_back_a_lead_when_its_fit_is_now_below_what_any_mql_needs():
    # Out as a competitor's employee; back once the domain is off the list, but the profile now grades D, below
    # the C a hand-raise needs and the B the score needs: sales is not handed a lead no rule would qualify.
    mql = lead(Stage.MQL, crossings=1, mql_armed=False, qualified_at=NOW - DAY)
    out = qualify(mql, facts(score=15000, grade="A", disqualified="works for a competitor"), RULES, NOW).state
    back = qualify(out, facts(score=15000, grade="D"), RULES, NOW + DAY)
    assert back.changes == (StageChange(Stage.DISQUALIFIED, Stage.LEAD, "reinstated: the fit no longer disqualifies "
                                        "it; back as a lead: fit D is below the C any MQL needs"),)
    assert back.triggers == () and back.state.stage is Stage.LEAD and back.state.mql_armed
    # With the fit an MQL needs again, it qualifies as any lead does: a crossing of its own
    again = qualify(back.state, facts(score=15000, grade="B"), RULES, NOW + 2 * DAY)
    assert [c.to_stage for c in again.changes] == [Stage.MQL] and [t.crossing for t in again.triggers] == [2]
    # at the fit a hand-raise needs, it returns as the MQL it was
    assert qualify(out, facts(score=15000, grade="C"), RULES, NOW + DAY).state.stage is Stage.MQL


def test_a_recycled_lead_needs_a_crossing_after_its_recycle_not_one_made_while_it_waited_for_sales():
    mql = qualify(lead(), facts(score=10000), RULES, NOW - 10 * DAY).state
    dipped = qualify(mql, facts(score=5000), RULES, NOW - 8 * DAY).state
    waiting = qualify(dipped, facts(score=12000), RULES, NOW - 6 * DAY).state  # up again while sales had it
    assert waiting.stage is Stage.MQL and waiting.mql_armed
    recycled = recycle(waiting, "not ready to buy", NOW - 5 * DAY, rearm_below=BAND).state
    assert not recycled.mql_armed
    assert qualify(recycled, facts(score=12000), RULES, NOW - 4 * DAY).state.stage is Stage.RECYCLED
    below = qualify(recycled, facts(score=5000), RULES, NOW - 3 * DAY).state
    assert below.mql_armed  # a new crossing after the recycle hands it over again
    again = qualify(below, facts(score=10000), RULES, NOW)
    assert again.state.stage is Stage.MQL and [t.crossing for t in again.triggers] == [2]


def test_a_lead_recycled_below_the_band_is_armed_at_once():
    mql = qualify(lead(), facts(score=10000), RULES, NOW - 10 * DAY).state
    recycled = recycle(replace(mql, score=5000), "nobody could reach them", NOW - 5 * DAY, rearm_below=BAND).state
    assert recycled.mql_armed  # as the next run would find it
    assert qualify(recycled, facts(score=10000), RULES, NOW).state.stage is Stage.MQL


def test_an_mql_the_rules_return_is_not_handed_over_again_by_its_score_once_recycled():
    mql = qualify(lead(), facts(score=10000), RULES, NOW - 10 * DAY).state
    out = qualify(mql, facts(score=5000, disqualified="works for a competitor"), RULES, NOW - 5 * DAY).state
    assert out.mql_armed  # its score fell below the band while it was out
    back = qualify(out, facts(score=10000), RULES, NOW - 3 * DAY)  # handed over again, its score above the band
    assert [t.crossing for t in back.triggers] == [2] and not back.state.mql_armed
    recycled = recycle(back.state, "not now", NOW - 2 * DAY, rearm_below=BAND).state
    # Only a new crossing (below the band, then up to the threshold) or a new hand-raise hands it over again
    assert qualify(recycled, facts(score=10000), RULES, NOW).state.stage is Stage.RECYCLED


def test_a_recycled_lead_that_asked_for_a_demo_while_wrongly_out_is_an_mql_once_back():
    mql = qualify(lead(), facts(score=10000), RULES, NOW - 10 * DAY).state
    recycled = recycle(mql, "sales rejected", NOW - 5 * DAY, rearm_below=BAND).state
    out = qualify(recycled, facts(score=3000, disqualified="works for a competitor"), RULES, NOW - 3 * DAY).state
    asked = demo(NOW - DAY)  # the competitors' list named its company by mistake meanwhile
    assert qualify(out, facts(score=3000, hand_raise=asked, disqualified="works for a competitor"), RULES, NOW).changes == ()

    back = qualify(out, facts(score=3000, hand_raise=asked), RULES, NOW + HOUR)  # the list is fixed
    assert [(c.from_stage, c.to_stage) for c in back.changes] == [(Stage.DISQUALIFIED, Stage.RECYCLED),
                                                                  (Stage.RECYCLED, Stage.MQL)]
    assert [t.crossing for t in back.triggers] == [2]
    assert qualify(back.state, facts(score=3000, hand_raise=asked), RULES, NOW + 2 * HOUR).changes == ()


def test_a_recycled_lead_the_rules_return_still_ignores_a_demo_from_before_its_recycle():
    mql = qualify(lead(), facts(score=3000, hand_raise=demo(NOW - 10 * DAY)), RULES, NOW - 9 * DAY).state
    recycled = recycle(mql, "nobody could reach them", NOW - 5 * DAY, rearm_below=BAND).state
    out = qualify(recycled, facts(score=3000, disqualified="works for a competitor"), RULES, NOW - 3 * DAY).state
    back = qualify(out, facts(score=3000, hand_raise=demo(NOW - 10 * DAY)), RULES, NOW)
    assert back.state.stage is Stage.RECYCLED and back.triggers == ()


def test_a_demo_made_while_wrongly_out_counts_once_the_fit_allows_it_even_after_the_return():
    mql = qualify(lead(), facts(score=10000), RULES, NOW - 10 * DAY).state
    recycled = recycle(mql, "sales rejected", NOW - 5 * DAY, rearm_below=BAND).state
    assert recycled.recycled_at == NOW - 5 * DAY
    out = qualify(recycled, facts(score=3000, disqualified="works for a competitor"), RULES, NOW - 3 * DAY).state
    asked = demo(NOW - DAY)
    # The list is fixed, but the lead's fit is too poor for a hand-raise to count (grade D): back to nurture ...
    back = qualify(out, facts(score=3000, grade="D", hand_raise=asked), RULES, NOW)
    assert back.state.stage is Stage.RECYCLED and back.triggers == ()
    assert back.state.recycled_at == NOW - 5 * DAY  # the person's recycle, not the rules' return
    # ... and once enrichment finds a better fit, the demo asked for while out hands the lead over.
    later = qualify(back.state, facts(score=3000, grade="C", hand_raise=asked), RULES, NOW + DAY)
    assert [(c.from_stage, c.to_stage) for c in later.changes] == [(Stage.RECYCLED, Stage.MQL)]
    assert [t.crossing for t in later.triggers] == [2]


def test_a_recycled_lead_keeps_counting_from_its_recycle_through_a_merge():
    recycled = recycle(lead(Stage.MQL, crossings=1, qualified_at=NOW - 9 * DAY), "no budget", NOW - 5 * DAY, rearm_below=BAND).state
    merged, _ = absorb(lead(Stage.LEAD), [(7, replace(recycled, stage_changed_at=NOW - 2 * DAY))])
    assert merged.state.stage is Stage.RECYCLED and merged.state.recycled_at == NOW - 5 * DAY
    assert qualify(merged.state, facts(hand_raise=demo(NOW - 4 * DAY)), RULES, NOW).state.stage is Stage.MQL


def test_a_lead_a_person_disqualified_stays_out_when_the_fit_is_clean():
    out = move_by_person(lead(Stage.LEAD), Stage.DISQUALIFIED, "spam sign-up", NOW, fit=fit(), rearm_below=BAND).state
    assert out.fit_disqualified_from is None
    assert qualify(out, facts(score=15000), RULES, NOW + DAY).state.stage is Stage.DISQUALIFIED


@pytest.mark.parametrize("stage", [Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER])
def test_a_disqualifier_does_not_overrule_sales(stage):
    q = qualify(lead(stage), facts(disqualified="works for a competitor"), RULES, NOW)
    assert q.state.stage is stage and q.changes == ()


def test_a_disqualified_lead_stays_disqualified_whatever_it_does_next():
    q = qualify(lead(Stage.DISQUALIFIED), facts(score=50000, grade="A", hand_raise=demo(NOW)), RULES, NOW)
    assert q.state.stage is Stage.DISQUALIFIED and q.changes == () and q.triggers == ()


# ------------------------------------------------------------------------------------------ the MQL trigger

def test_the_mql_trigger_fires_exactly_once_per_crossing_and_re_arms_only_below_the_band():
    state, at = lead(), NOW
    fired = []

    def run(score, hand_raise=None):
        nonlocal state, at
        at += DAY
        q = qualify(state, facts(score=score, grade="B", hand_raise=hand_raise), RULES, at)
        state = q.state
        fired.extend(t.crossing for t in q.triggers)
        return q

    run(10000)
    assert state.stage is Stage.MQL and fired == [1] and not state.mql_armed
    run(12000)
    assert fired == [1]  # still above: nothing new
    state = recycle(state, "sales rejected: timing", at, rearm_below=BAND).state
    run(11000)
    run(7000)  # back in nurture but not below the band: still not armed
    assert state.stage is Stage.RECYCLED and fired == [1] and not state.mql_armed
    run(6999)  # below 70: armed again, not yet ready
    assert state.mql_armed and state.stage is Stage.RECYCLED and fired == [1]
    run(10000)
    assert state.stage is Stage.MQL and fired == [1, 2] and state.crossings == 2


def test_qualifying_again_with_the_same_facts_changes_nothing():
    first = qualify(lead(), facts(score=10000), RULES, NOW)
    again = qualify(first.state, facts(score=10000), RULES, NOW)
    assert again.state == first.state and again.changes == () and again.triggers == ()


def test_an_mql_from_a_hand_raise_below_the_band_is_already_re_armed_and_stays_so():
    """A demo request can qualify a lead whose score is low (an old request, an unsubscribe): the trigger is
    re-armed at once, so a second run at the same moment finds nothing to change."""
    first = qualify(lead(), facts(score=5000, grade="C", hand_raise=demo(NOW - DAY)), RULES, NOW)
    assert first.state.stage is Stage.MQL and first.state.mql_armed
    again = qualify(first.state, facts(score=5000, grade="C", hand_raise=demo(NOW - DAY)), RULES, NOW)
    assert again.state == first.state and again.changes == () and again.triggers == ()


def test_a_hand_raise_older_than_the_last_recycle_does_not_re_qualify():
    mql = qualify(lead(), facts(score=3000, hand_raise=demo(NOW - DAY)), RULES, NOW).state
    recycled = recycle(mql, "nobody could reach them", NOW + 3 * DAY, rearm_below=BAND).state
    again = qualify(recycled, facts(score=3000, hand_raise=demo(NOW - DAY)), RULES, NOW + 4 * DAY)
    assert again.state.stage is Stage.RECYCLED and again.triggers == ()


def test_a_hand_raise_made_while_an_mql_but_before_the_recycle_does_not_re_qualify():
    mql = qualify(lead(), facts(score=10000), RULES, NOW).state
    recycled = recycle(mql, "sales rejected", NOW + 3 * DAY, rearm_below=BAND).state
    again = qualify(recycled, facts(score=3000, hand_raise=demo(NOW + DAY)), RULES, NOW + 4 * DAY)
    assert again.state.stage is Stage.RECYCLED and again.triggers == ()


def test_a_hand_raise_older_than_the_last_qualification_does_not_re_qualify():
    mql = qualify(lead(), facts(score=10000), RULES, NOW).state
    recycled = replace(recycle(mql, "sales rejected", NOW + DAY, rearm_below=BAND).state, stage_changed_at=None)
    again = qualify(recycled, facts(score=3000, hand_raise=demo(NOW - HOUR)), RULES, NOW + 2 * DAY)
    assert again.state.stage is Stage.RECYCLED and again.triggers == ()


def test_a_new_hand_raise_after_a_recycle_qualifies_again_as_a_new_crossing():
    mql = qualify(lead(), facts(score=3000, hand_raise=demo(NOW - DAY)), RULES, NOW).state
    recycled = recycle(mql, "nobody could reach them", NOW + 3 * DAY, rearm_below=BAND).state
    again = qualify(recycled, facts(score=3000, hand_raise=demo(NOW + 5 * DAY)), RULES, NOW + 6 * DAY)
    assert again.state.stage is Stage.MQL
    assert [t.crossing for t in again.triggers] == [2]
    assert [(c.from_stage, c.to_stage) for c in again.changes] == [(Stage.RECYCLED, Stage.MQL)]


# ------------------------------------------------------------------------------------------ cold leads

def test_a_lead_that_was_engaged_and_has_decayed_away_is_cold():
    warm = qualify(lead(), facts(score=2500, grade="C"), RULES, NOW).state
    assert warm.peak_score == 2500 and not warm.cold
    cold = qualify(warm, facts(score=499, grade="C"), RULES, NOW + 90 * DAY).state
    assert cold.cold and cold.stage is Stage.LEAD
    warm_again = qualify(cold, facts(score=600, grade="C"), RULES, NOW + 91 * DAY).state
    assert not warm_again.cold


def test_a_lead_that_never_engaged_is_not_cold():
    q = qualify(lead(), facts(score=0), RULES, NOW)
    assert not q.state.cold and q.state.peak_score == 0
    assert not qualify(lead(), facts(score=1999), RULES, NOW).state.cold


def test_the_score_and_fit_are_kept_on_the_state():
    q = qualify(lead(), facts(score=4321, grade="C"), RULES, NOW)
    assert (q.state.score, q.state.fit_grade, q.state.fit_points) == (4321, "C", 3000)


def test_qualifying_keeps_what_the_new_facts_do_not_decide():
    # A sales-owned lead with a history: the new score and fit change, its stage, crossings and times stay.
    before = LeadState(stage=Stage.SQL, score=9000, peak_score=12000, fit_points=5000, fit_grade="B", mql_armed=False,
                       crossings=2, cold=False, qualified_at=NOW - 9 * DAY, stage_changed_at=NOW - 3 * DAY,
                       fit_disqualified_from=Stage.LEAD, recycled_at=NOW - 20 * DAY)
    after = qualify(before, facts(score=8000, grade="A"), RULES, NOW).state
    assert after == replace(before, score=8000, fit_points=8000, fit_grade="A")
    # qualify builds the new state field by field: a field added to LeadState must be carried there too
    assert set(LeadState.__dataclass_fields__) == {
        "stage", "score", "peak_score", "fit_points", "fit_grade", "mql_armed", "crossings", "cold", "qualified_at",
        "stage_changed_at", "fit_disqualified_from", "recycled_at"}


# ------------------------------------------------------------------------------------------ merges

def test_a_merged_person_stands_where_the_furthest_of_its_records_stood():
    survivor = lead(Stage.SUBSCRIBER, crossings=0)
    handed_over = LeadState(stage=Stage.MQL, score=9000, peak_score=11000, mql_armed=False, crossings=1,
                            qualified_at=NOW - 2 * DAY, stage_changed_at=NOW - 2 * DAY)
    q, took_from = absorb(survivor, [(7, handed_over)])
    assert took_from == 7
    assert (q.state.stage, q.state.stage_changed_at, q.state.mql_armed) == (Stage.MQL, NOW - 2 * DAY, False)
    assert (q.state.crossings, q.state.peak_score, q.state.qualified_at) == (1, 11000, NOW - 2 * DAY)
    assert [(c.from_stage, c.to_stage, c.reason) for c in q.changes] == [
        (Stage.SUBSCRIBER, Stage.MQL, "merged with lead 7 (mql)")]


def test_after_a_merge_an_old_hand_raise_does_not_hand_the_person_over_again():
    # The merged-away record was handed over for its demo request; the demo request now belongs to the survivor.
    survivor = lead(Stage.LEAD)
    handed_over = lead(Stage.MQL, crossings=1, mql_armed=False, qualified_at=NOW - DAY)
    now_theirs = facts(score=3000, grade="A", hand_raise=demo(NOW - DAY - HOUR))
    assert qualify(survivor, now_theirs, RULES, NOW).triggers  # judged alone, the survivor would be handed over
    merged, _ = absorb(survivor, [(7, handed_over)])
    q = qualify(merged.state, now_theirs, RULES, NOW)
    assert q.state.stage is Stage.MQL and not q.triggers and not q.changes


@pytest.mark.parametrize("mine, theirs", [(a, b) for a, b in permutations(MERGE_RANK, 2)
                                          if MERGE_RANK.index(a) > MERGE_RANK.index(b)])
def test_the_lead_that_remains_keeps_its_stage_when_it_is_further_along(mine, theirs):
    q, took_from = absorb(lead(mine, crossings=1), [(7, lead(theirs, crossings=2))])
    assert q.state.stage is mine and took_from is None and not q.changes
    assert q.state.crossings == 3  # each record's crossings were the person's


def test_sales_stages_outrank_an_mql_and_an_mql_outranks_a_recycled_record():
    assert absorb(lead(Stage.MQL), [(7, lead(Stage.SQL))])[0].state.stage is Stage.SQL
    assert absorb(lead(Stage.RECYCLED), [(7, lead(Stage.MQL))])[0].state.stage is Stage.MQL
    assert absorb(lead(Stage.LEAD), [(7, lead(Stage.RECYCLED))])[0].state.stage is Stage.RECYCLED


def test_a_disqualified_record_does_not_disqualify_the_person_but_the_merged_facts_still_can():
    merged, _ = absorb(lead(Stage.DISQUALIFIED), [(7, lead(Stage.LEAD))])
    assert merged.state.stage is Stage.LEAD
    q = qualify(merged.state, facts(score=500, disqualified="competitor domain"), RULES, NOW)
    assert q.state.stage is Stage.DISQUALIFIED


def test_a_person_merged_from_records_the_fit_disqualified_can_return_where_the_furthest_stood():
    merged, _ = absorb(None, [(7, lead(Stage.DISQUALIFIED, fit_disqualified_from=Stage.MQL)),
                              (9, lead(Stage.DISQUALIFIED, fit_disqualified_from=Stage.LEAD))])
    assert merged.state.fit_disqualified_from is Stage.MQL


def test_of_equal_records_the_lead_that_remains_wins_then_the_first_merged():
    q, took_from = absorb(lead(Stage.MQL, qualified_at=NOW - DAY), [(7, lead(Stage.MQL, qualified_at=NOW - HOUR))])
    assert took_from is None and not q.changes and q.state.qualified_at == NOW - HOUR  # the latest qualification
    q, took_from = absorb(lead(Stage.LEAD), [(7, lead(Stage.MQL)), (9, lead(Stage.MQL))])
    assert took_from == 7 and q.changes[0].reason == "merged with lead 7 (mql), lead 9 (mql)"


def test_a_lead_with_no_state_of_its_own_takes_the_merged_record_s():
    record = lead(Stage.MQL, crossings=1, qualified_at=NOW - DAY)
    q, took_from = absorb(None, [(7, record)])
    assert q.state == record and took_from == 7
    assert [(c.from_stage, c.to_stage) for c in q.changes] == [(None, Stage.MQL)]


def test_absorbing_nothing_is_a_mistake():
    with pytest.raises(ValueError):
        absorb(lead(), [])


# ------------------------------------------------------------------------------------------ moves people ask for

def test_a_person_recycles_an_mql_with_the_reason_recorded():
    moved = move_by_person(lead(Stage.MQL, crossings=1), Stage.RECYCLED, "no budget this year", NOW, fit=fit(), rearm_below=BAND)
    assert moved.state.stage is Stage.RECYCLED and moved.state.stage_changed_at == NOW
    assert [(c.from_stage, c.to_stage, c.reason) for c in moved.changes] == [
        (Stage.MQL, Stage.RECYCLED, "recycled: no budget this year")]
    assert moved.triggers == () and moved.state.crossings == 1


def test_a_person_disqualifies_a_lead_and_it_stays_disqualified_when_scored_again():
    moved = move_by_person(lead(Stage.MQL), Stage.DISQUALIFIED, "spam sign-up", NOW, fit=fit(), rearm_below=BAND)
    assert moved.changes[0].reason == "disqualified: spam sign-up"
    again = qualify(moved.state, facts(score=25000, hand_raise=demo(NOW + HOUR)), RULES, NOW + DAY)
    assert again.state.stage is Stage.DISQUALIFIED and again.changes == () and again.triggers == ()


def test_a_sales_stage_a_person_reports_moves_forward_only():
    accepted = move_by_person(lead(Stage.MQL), Stage.SQL, "accepted on the intro call", NOW, fit=fit(), rearm_below=BAND)
    assert accepted.state.stage is Stage.SQL
    with pytest.raises(StageMoveRefused, match="only move forward"):
        move_by_person(lead(Stage.OPPORTUNITY), Stage.SQL, "typo", NOW, fit=fit(), rearm_below=BAND)


@pytest.mark.parametrize("target", [Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL])
def test_marketing_stages_are_reached_by_the_rules_not_by_a_person(target):
    with pytest.raises(StageMoveRefused, match="scoring rules alone"):
        move_by_person(lead(Stage.LEAD), target, "they look ready", NOW, fit=fit(), rearm_below=BAND)


@pytest.mark.parametrize("target", [Stage.RECYCLED, Stage.DISQUALIFIED, Stage.SQL])
def test_a_move_a_person_asks_for_needs_a_reason(target):
    with pytest.raises(StageMoveRefused, match="needs a reason"):
        move_by_person(lead(Stage.MQL), target, "  ", NOW, fit=fit(), rearm_below=BAND)


def test_a_lead_never_scored_has_no_stage_to_move_from():
    with pytest.raises(StageMoveRefused, match="not been scored"):
        move_by_person(None, Stage.RECYCLED, "no answer", NOW, fit=fit(), rearm_below=BAND)


def test_a_lead_disqualified_by_mistake_goes_back_to_nurture_by_a_person_s_recycle():
    out = disqualify(lead(Stage.MQL, crossings=1), "looked like spam", NOW).state
    back = move_by_person(out, Stage.RECYCLED, "a real buyer after all", NOW + HOUR, fit=fit(), rearm_below=BAND)
    assert back.state.stage is Stage.RECYCLED and back.state.crossings == 1 and back.triggers == ()
    assert [(c.from_stage, c.to_stage, c.reason) for c in back.changes] == [
        (Stage.DISQUALIFIED, Stage.RECYCLED, "recycled: a real buyer after all")]
    # ... and is handed over again only on a new hand-raise, as any recycled lead
    assert qualify(back.state, facts(score=500, hand_raise=demo(NOW)), RULES, NOW + DAY).state.stage is Stage.RECYCLED
    assert qualify(back.state, facts(score=500, hand_raise=demo(NOW + DAY)), RULES, NOW + DAY).state.stage is Stage.MQL


def test_a_lead_its_fit_still_disqualifies_is_not_taken_back():
    out = qualify(lead(Stage.LEAD), facts(disqualified="works for a competitor"), RULES, NOW).state
    with pytest.raises(StageMoveRefused, match=r"fit still disqualifies it \(works for a competitor\)"):
        move_by_person(out, Stage.RECYCLED, "they left the competitor", NOW, fit=fit(disqualified="works for a competitor"), rearm_below=BAND)


def test_a_person_cannot_disqualify_a_customer():
    with pytest.raises(StageMoveRefused, match="customer is not disqualified"):
        move_by_person(lead(Stage.CUSTOMER), Stage.DISQUALIFIED, "churned", NOW, fit=fit(), rearm_below=BAND)
