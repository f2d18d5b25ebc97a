"""The behaviour score, rule by rule: points from the marketers' spreadsheet, assets, caps, repeats, negative
points, decay and the floor, all in exact integer hundredths of a point."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import count

import pytest

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import ActivityType, asset_key
from domain.explain import LedgerEntry, explain_score, reason_text
from domain.rules import MICROS, DecayPolicy, decayed, points_text, to_centipoints
from domain.scoring import ScoredActivity, behaviour_score, capped, contributions

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
HEADER = "action,stage,readiness_pct,cap,repeat"


def sheet(tmp_path, *rows: str, threshold="100", decay="half_life_days: 30\n  floor: 0") -> object:
    """A rulebook from spreadsheet rows (CSV text after the header) and the YAML settings that matter here."""
    (tmp_path / "scoring.csv").write_text("\n".join((HEADER, *rows)) + "\n")
    (tmp_path / "scoring.yaml").write_text(f"readiness_threshold: {threshold}\ndecay:\n  {decay}\n")
    return load_rulebook(tmp_path)


_ids = count(1)


def act(kind: str, when: datetime = NOW, asset: str | None = None, source="marketo", external_id=None) -> ScoredActivity:
    n = next(_ids)
    return ScoredActivity(activity_id=n, source=source, external_id=external_id or f"e{n:06d}",
                          type=ActivityType(kind), asset=asset, occurred_at=when)


def earned(activities, rulebook) -> list[int]:
    """Centipoints each activity earned, in history order (repeat rules and caps applied, before decay)."""
    return [c.points for c in contributions(activities, rulebook)]


def score_at(activities, rulebook, now=NOW) -> int:
    return behaviour_score(contributions(activities, rulebook), rulebook.decay, now).score


@pytest.fixture
def shipped():
    return load_rulebook(CONFIG_DIR)


# ------------------------------------------------------------------------------------------ points from the sheet

def test_a_whitepaper_worth_30_percent_of_a_threshold_of_100_gives_30_points(tmp_path):
    rulebook = sheet(tmp_path, "whitepaper_download,consideration,30,,every")
    assert rulebook.rule_for("whitepaper_download", None).points == 3000
    assert score_at([act("whitepaper_download")], rulebook) == 3000


def test_the_same_white_paper_with_a_threshold_of_200_gives_60_points(tmp_path):
    rulebook = sheet(tmp_path, "whitepaper_download,consideration,30,,every", threshold="200")
    assert rulebook.readiness_threshold == 20000
    assert score_at([act("whitepaper_download")], rulebook) == 6000


def test_the_shipped_rulebook_scores_a_white_paper_at_30_points(shipped):
    assert shipped.readiness_threshold == 10000
    assert earned([act("whitepaper_download", asset="Some Other Guide")], shipped) == [3000]


def test_fractional_percentages_round_to_the_hundredth_of_a_point(tmp_path):
    rulebook = sheet(tmp_path, "email_open,awareness,33.333,,every", "page_view,awareness,12.5,,every", threshold="150")
    assert rulebook.rule_for("email_open", None).points == 5000  # 33.333% of 150 = 49.9995 -> 50.00
    assert rulebook.rule_for("page_view", None).points == 1875  # 12.5% of 150 = 18.75


def test_activity_types_the_sheet_does_not_name_earn_nothing(tmp_path):
    rulebook = sheet(tmp_path, "whitepaper_download,consideration,30,,every")
    assert contributions([act("email_open"), act("page_view", asset="/pricing")], rulebook) == []
    assert score_at([act("email_open")], rulebook) == 0


# ------------------------------------------------------------------------------------------ assets

def test_an_asset_rule_wins_over_the_bare_activity_type(shipped):
    revops = act("whitepaper_download", asset="State of RevOps 2026")
    assert shipped.rule_for("whitepaper_download", "State of RevOps 2026").action == "whitepaper_download:State of RevOps 2026"
    assert earned([revops], shipped) == [3500]
    assert earned([act("whitepaper_download", asset="Another Paper")], shipped) == [3000]
    assert earned([act("whitepaper_download")], shipped) == [3000]


def test_an_asset_matches_its_rule_whatever_its_case_and_spacing(shipped):
    for spelled in ("state of revops 2026", "STATE OF REVOPS 2026", "  State of  RevOps\t2026 "):
        assert shipped.rule_for("whitepaper_download", spelled).asset == "State of RevOps 2026", spelled
    assert earned([act("whitepaper_download", asset="State of RevOps 2025")], shipped) == [3000]  # another asset
    assert asset_key("  Straße\tGuide ") == asset_key("STRASSE GUIDE") == "strasse guide"
    assert asset_key("   ") is None and asset_key(None) is None


def test_an_asset_rule_and_the_bare_rule_keep_their_own_repeats_and_caps(shipped):
    # The RevOps report counts the first time only (35, cap 35); other papers count every time up to 60.
    history = [act("whitepaper_download", NOW - 5 * DAY + i * timedelta(hours=1), asset=a)
               for i, a in enumerate(["State of RevOps 2026", "Guide A", "State of RevOps 2026", "Guide B", "Guide C"])]
    assert earned(history, shipped) == [3500, 3000, 3000]


def test_an_asset_only_rule_scores_that_asset_and_nothing_else(tmp_path):
    rulebook = sheet(tmp_path, "page_view:/pricing,decision,15,,every")
    assert earned([act("page_view", asset="/pricing")], rulebook) == [1500]
    assert earned([act("page_view", asset="/blog"), act("page_view")], rulebook) == []


def test_a_rulebook_copied_with_other_rules_scores_with_those_rules_only(shipped):
    fewer = replace(shipped, rules=tuple(r for r in shipped.rules if r.type is not ActivityType.WHITEPAPER_DOWNLOAD))
    assert fewer.rule_for("whitepaper_download", "State of RevOps 2026") is None
    assert earned([act("whitepaper_download")], fewer) == []
    assert earned([act("whitepaper_download")], shipped) == [3000]  # the original is untouched


# ------------------------------------------------------------------------------------------ caps

def test_a_cap_bounds_the_total_one_action_earns_per_lead(tmp_path):
    rulebook = sheet(tmp_path, "whitepaper_download,consideration,30,60,every")
    papers = [act("whitepaper_download", NOW - i * timedelta(hours=1)) for i in range(4)]
    assert earned(papers, rulebook) == [3000, 3000]  # the third and fourth earn nothing
    assert score_at(papers, rulebook) == 6000


def test_the_occurrence_that_reaches_the_cap_earns_only_the_rest(tmp_path):
    rulebook = sheet(tmp_path, "webinar_attended,consideration,25,60,every")
    webinars = [act("webinar_attended", NOW - i * DAY) for i in range(4)]
    assert earned(webinars, rulebook) == [2500, 2500, 1000]


def test_a_cap_below_the_points_of_one_action_caps_the_first_one_too(tmp_path):
    rulebook = sheet(tmp_path, "whitepaper_download,consideration,30,10,every")
    assert earned([act("whitepaper_download"), act("whitepaper_download")], rulebook) == [1000]


def test_negative_actions_are_capped_by_their_size(tmp_path):
    rulebook = sheet(tmp_path, "email_bounce,awareness,-20,50,every")
    bounces = [act("email_bounce", NOW - i * timedelta(hours=1)) for i in range(5)]
    assert earned(bounces, rulebook) == [-2000, -2000, -1000]


def test_without_a_cap_every_counted_occurrence_earns_full_points(tmp_path):
    rulebook = sheet(tmp_path, "form_fill,consideration,10,,every")
    assert earned([act("form_fill", NOW - i * timedelta(minutes=5)) for i in range(12)], rulebook) == [1000] * 12


@pytest.mark.parametrize("points, cap, nth, expected", [
    (3000, None, 9, 3000),
    (3000, 6000, 1, 3000), (3000, 6000, 2, 3000), (3000, 6000, 3, 0),
    (2500, 6000, 3, 1000), (2500, 6000, 4, 0),
    (-2000, 5000, 1, -2000), (-2000, 5000, 3, -1000), (-2000, 5000, 4, 0),
    (3000, 1000, 1, 1000), (3000, 1000, 2, 0),
])
def test_capped_is_what_the_nth_counted_occurrence_still_earns(points, cap, nth, expected):
    assert capped(points, cap, nth) == expected


# ------------------------------------------------------------------------------------------ repeats

def test_a_first_time_only_action_counts_once_and_the_earliest_one_counts(shipped):
    late, early = act("demo_request", NOW - DAY), act("demo_request", NOW - 10 * DAY)
    [only] = contributions([late, early], shipped)
    assert (only.activity_id, only.points) == (early.activity_id, 10000)


def test_an_every_time_action_counts_every_time(tmp_path):
    rulebook = sheet(tmp_path, "form_fill,consideration,10,,every time")
    assert earned([act("form_fill", NOW - i * timedelta(minutes=1)) for i in range(3)], rulebook) == [1000] * 3


def test_at_most_n_per_day_counts_the_first_n_of_each_day(tmp_path):
    rulebook = sheet(tmp_path, "email_click,awareness,3,,2/day")
    day1 = [act("email_click", datetime(2026, 10, 1, h, tzinfo=timezone.utc)) for h in (8, 9, 10, 11)]
    day2 = [act("email_click", datetime(2026, 10, 2, 8, tzinfo=timezone.utc))]
    counted = {c.activity_id for c in contributions(day1 + day2, rulebook)}
    assert counted == {day1[0].activity_id, day1[1].activity_id, day2[0].activity_id}


def test_days_are_utc_days_whatever_the_offset_of_the_timestamps(tmp_path):
    rulebook = sheet(tmp_path, "email_open,awareness,1,,1/day")
    cet = timezone(timedelta(hours=2))
    # 01:30 at +02:00 on 3 October is 23:30 UTC on 2 October: the same UTC day as the 10:00 UTC open.
    same_day = [act("email_open", datetime(2026, 10, 2, 10, tzinfo=timezone.utc)),
                act("email_open", datetime(2026, 10, 3, 1, 30, tzinfo=cet))]
    assert earned(same_day, rulebook) == [100]
    # One second before and at midnight UTC are two days.
    around_midnight = [act("email_open", datetime(2026, 10, 4, 23, 59, 59, tzinfo=timezone.utc)),
                       act("email_open", datetime(2026, 10, 5, 0, 0, 0, tzinfo=timezone.utc))]
    assert earned(around_midnight, rulebook) == [100, 100]


def test_a_daily_limit_and_a_cap_work_together(tmp_path):
    rulebook = sheet(tmp_path, "page_view,awareness,1,10,3/day")
    views = [act("page_view", NOW - d * DAY + m * timedelta(minutes=1)) for d in range(1, 5) for m in range(5)]
    assert sum(earned(views, rulebook)) == 1000  # 3 a day for 4 days is 12, capped at 10
    assert len(earned(views, rulebook)) == 10


def test_ties_in_the_same_second_are_broken_by_source_and_external_id(shipped):
    when = NOW - DAY
    second = act("demo_request", when, source="marketo", external_id="b")
    first = act("demo_request", when, source="marketo", external_id="a")
    other_tool = act("demo_request", when, source="hubspot", external_id="z")
    [only] = contributions([second, first, other_tool], shipped)
    assert only.activity_id == other_tool.activity_id  # "hubspot" sorts before "marketo"


def test_the_order_activities_are_given_in_does_not_matter(shipped):
    history = [act(k, NOW - i * timedelta(hours=7), asset=a) for i, (k, a) in enumerate(
        [("email_open", "Nurture 1"), ("email_open", "Nurture 2"), ("page_view", "/pricing"), ("page_view", "/pricing"),
         ("whitepaper_download", "State of RevOps 2026"), ("whitepaper_download", None), ("unsubscribe", None),
         ("email_click", None), ("email_click", None), ("email_click", None)])]
    assert contributions(history, shipped) == contributions(list(reversed(history)), shipped)


# ------------------------------------------------------------------------------------------ negative points

def test_unsubscribing_lowers_the_score(shipped):
    engaged = [act("webinar_attended", NOW), act("whitepaper_download", NOW), act("form_fill", NOW)]
    assert score_at(engaged, shipped) == 6500
    assert score_at(engaged + [act("unsubscribe", NOW)], shipped) == 1500


def test_a_negative_total_is_lifted_to_the_floor_of_zero_and_the_lift_is_explained(shipped):
    history = [act("whitepaper_download", NOW), act("unsubscribe", NOW), act("email_bounce", NOW)]
    result = behaviour_score(contributions(history, shipped), shipped.decay, NOW)
    assert result.raw_total == -4000
    assert result.score == 0
    assert result.floor_adjustment == 4000
    assert sum(line.value for line in result.lines) + result.floor_adjustment == result.score


def test_a_configured_floor_is_the_least_score(tmp_path):
    rulebook = sheet(tmp_path, "unsubscribe,awareness,-50,,first", decay="floor: 5")
    assert rulebook.decay.floor == 500
    assert score_at([], rulebook) == 500
    assert score_at([act("unsubscribe")], rulebook) == 500


# ------------------------------------------------------------------------------------------ decay

def test_with_a_30_day_half_life_points_halve_every_30_days(shipped):
    paper = [act("whitepaper_download", NOW - 30 * DAY)]
    assert score_at(paper, shipped) == 1500
    assert score_at([act("whitepaper_download", NOW - 60 * DAY)], shipped) == 750
    assert score_at([act("whitepaper_download", NOW - 15 * DAY)], shipped) == 2121  # 30 x 0.7071 = 21.21


def test_half_life_factors_are_exact_millionths():
    policy = DecayPolicy(half_life_days=Decimal(30))
    assert policy.factor_micros(0) == MICROS
    assert policy.factor_micros(30) == 500_000
    assert policy.factor_micros(60) == 250_000
    assert policy.factor_micros(15) == 707_107
    assert policy.factor_micros(-3) == MICROS  # an activity after `now` has not aged


def test_age_counts_whole_utc_days_since_the_activity(shipped):
    almost_a_day = [act("whitepaper_download", NOW - DAY + timedelta(seconds=1))]
    a_day = [act("whitepaper_download", NOW - DAY)]
    assert score_at(almost_a_day, shipped) == 3000
    assert score_at(a_day, shipped) == decayed(3000, shipped.decay.factor_micros(1)) == 2931


def test_step_decay_keeps_a_share_after_each_step_and_nothing_after_the_last(tmp_path):
    rulebook = sheet(tmp_path, "whitepaper_download,consideration,30,,every",
                     decay="steps: [{after_days: 30, keep_pct: 50}, {after_days: 90, keep_pct: 0}]")
    at = {age: score_at([act("whitepaper_download", NOW - age * DAY)], rulebook) for age in (0, 29, 30, 89, 90, 400)}
    assert at == {0: 3000, 29: 3000, 30: 1500, 89: 1500, 90: 0, 400: 0}
    assert rulebook.decay.horizon_days == 90


def test_without_decay_points_keep_their_value(tmp_path):
    rulebook = sheet(tmp_path, "whitepaper_download,consideration,30,,every", decay="floor: 0")
    assert score_at([act("whitepaper_download", NOW - 5000 * DAY)], rulebook) == 3000


def test_negative_points_decay_too(shipped):
    old_unsubscribe = act("unsubscribe", NOW - 30 * DAY)
    assert score_at([act("webinar_attended", NOW), old_unsubscribe], shipped) == 0  # 25 - 25
    assert behaviour_score(contributions([old_unsubscribe], shipped), shipped.decay, NOW).raw_total == -2500


def test_points_older_than_ten_years_keep_the_ten_year_share():
    policy = DecayPolicy(half_life_days=Decimal(100000))
    assert policy.factor_micros(3650) == policy.factor_micros(3651) == policy.factor_micros(20000)


@pytest.mark.parametrize("points, factor, expected", [
    (1, 500_000, 1), (-1, 500_000, -1), (3, 500_000, 2), (-3, 500_000, -2), (1, 499_999, 0), (-1, 499_999, 0),
    (3000, 707_107, 2121), (-5000, 250_000, -1250), (10**15 + 1, 500_000, 5 * 10**14 + 1), (0, 123_456, 0),
])
def test_decay_rounds_half_away_from_zero_in_integer_arithmetic(points, factor, expected):
    assert decayed(points, factor) == expected
    assert isinstance(decayed(points, factor), int)


def test_every_contribution_and_line_is_an_integer_number_of_centipoints(shipped):
    history = [act(k, NOW - i * timedelta(hours=13)) for i, k in enumerate(
        ["email_open", "email_click", "page_view", "webinar_attended", "whitepaper_download", "unsubscribe"] * 3)]
    result = behaviour_score(contributions(history, shipped), shipped.decay, NOW)
    assert all(type(line.value) is int and type(line.contribution.points) is int for line in result.lines)
    assert type(result.score) is int
    assert result.score == max(0, sum(line.value for line in result.lines))


# ------------------------------------------------------------------------------------------ explanations

def _entry(points, when, kind="whitepaper_download", asset=None) -> LedgerEntry:
    n = next(_ids)
    return LedgerEntry(activity_id=n, action=kind, type=kind, asset=asset, campaign=None, source="marketo",
                       occurred_at=when, points=points, occurred_epoch=int(when.timestamp()))


def test_an_explanation_lists_every_contribution_at_its_decayed_value_and_adds_up_to_the_score(shipped):
    entries = [_entry(3000, NOW - 30 * DAY), _entry(10000, NOW - DAY, "demo_request"), _entry(-5000, NOW, "unsubscribe")]
    explanation = explain_score(entries, shipped.decay, NOW)
    assert [line.value for line in explanation.lines] == [1500, decayed(10000, shipped.decay.factor_micros(1)), -5000]
    assert explanation.total == explanation.score
    assert [line.entry.type for line in explanation.top(2)] == ["demo_request", "whitepaper_download"]
    assert reason_text(explanation.top(1)[0]) == f"demo_request on {(NOW - DAY):%Y-%m-%d}: +97.72"
    assert reason_text(explanation.lines[-1]) == f"unsubscribe on {NOW:%Y-%m-%d}: -50"
    assert explanation.lines[0].as_dict()["earned"] == "30" and explanation.lines[0].as_dict()["points"] == "15"


def test_an_explanation_of_a_negative_history_shows_the_floor_lift(shipped):
    explanation = explain_score([_entry(-5000, NOW, "unsubscribe")], shipped.decay, NOW)
    assert (explanation.score, explanation.floor_adjustment, explanation.total) == (0, 5000, 0)


@pytest.mark.parametrize("centipoints, text", [(3000, "30"), (1250, "12.5"), (-725, "-7.25"), (1, "0.01"), (0, "0"),
                                               (-5000, "-50"), (123456, "1234.56")])
def test_points_read_as_people_write_them(centipoints, text):
    assert points_text(centipoints) == text


@pytest.mark.parametrize("points, centipoints", [("30", 3000), (Decimal("12.345"), 1235), ("-12.345", -1235),
                                                 (0.1, 10), (7, 700)])
def test_points_become_centipoints_rounding_half_away_from_zero(points, centipoints):
    assert to_centipoints(points) == centipoints
