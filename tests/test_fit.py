"""Fit: how closely a lead matches the ideal customer profile, as points per field, a grade A-D, and the
disqualifiers that keep some profiles away from sales."""

from __future__ import annotations

import pytest

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.fit import assess_fit, grade_for
from domain.rules import Disqualifier, FitModel, FitRule

SHIPPED = load_rulebook(CONFIG_DIR).fit

IDEAL = {"industry": "Software", "company_size": 300, "title": "VP Marketing", "country": "US",
         "lead_source_channel": "Referral"}


def fit(fields, email="ada@acme.example", model=SHIPPED):
    return assess_fit(fields, email, model)


def test_a_vp_at_a_mid_sized_us_software_company_from_a_referral_is_grade_a():
    result = fit(IDEAL)
    assert result.points == 9500  # 25 + 25 + 25 + 10 + 10
    assert result.grade == "A"
    assert result.disqualified is None and result.capped_by is None


def test_each_field_that_matches_is_a_line_and_the_lines_add_up_to_the_fit_points():
    result = fit(IDEAL)
    assert {line.field: line.points for line in result.lines} == {
        "industry": 2500, "company_size": 2500, "title": 2500, "country": 1000, "lead_source_channel": 1000}
    assert sum(line.points for line in result.lines) == result.points


def test_a_lead_we_know_nothing_about_is_grade_d_with_no_lines():
    result = fit({})
    assert (result.points, result.grade, result.lines) == (0, "D", ())


@pytest.mark.parametrize("points, grade", [(7000, "A"), (6999, "B"), (4500, "B"), (4499, "C"), (2000, "C"),
                                           (1999, "D"), (-3000, "D")])
def test_grades_start_at_their_configured_least_points(points, grade):
    assert grade_for(points, SHIPPED) == grade


def test_exact_values_match_whatever_their_case_and_surrounding_spaces():
    assert fit({"industry": "  software "}).points == 2500
    assert fit({"country": "us"}).points == 1000
    assert fit({"industry": "Softwares"}).points == 0


@pytest.mark.parametrize("size, points", [(200, 2500), (5000, 2500), (199, 1000), (50, 1000), (49, 0), (11, 0),
                                          (10, -1500), (1, -1500), (5001, 0), ("300", 2500), ("1,000", 0)])
def test_company_size_ranges_include_both_ends(size, points):
    assert fit({"company_size": size}).points == points


@pytest.mark.parametrize("size", ["lots", "inf", "nan", "1e400", ""])
def test_a_size_that_is_not_a_number_scores_nothing_and_breaks_nothing(size):
    assert fit({"company_size": size}).points == 0


@pytest.mark.parametrize("title, points", [
    ("VP Marketing", 2500), ("Vice President, Revenue", 2500), ("Head of Growth", 2500), ("CMO", 2500),
    ("Marketing Manager", 1500), ("Director of Operations", 2500),  # the first group that matches wins
    ("MVP Engineer", 0), ("Directorate assistant", 0),  # whole words only
    ("Student", -3000), ("Marketing intern", -3000), (None, 0),
])
def test_title_keywords_match_whole_words_and_the_first_matching_group_wins(title, points):
    assert fit({"title": title}).points == points


def test_keywords_with_punctuation_match_titles_written_with_it_or_without():
    model = FitModel(rules=(FitRule("title", keywords=((("C-level", "Co-Founder"), 3000),)),))
    assert fit({"title": "C-Level Executive"}, model=model).points == 3000
    assert fit({"title": "co founder & CEO"}, model=model).points == 3000
    assert fit({"title": "Co-Founder"}, model=model).points == 3000
    assert fit({"title": "Founder"}, model=model).points == 0


def test_negative_fit_points_lower_the_grade():
    student = dict(IDEAL, title="Student", industry="Education")
    result = fit(student)
    assert result.points == 500  # title 25 -> -30, industry 25 -> -10: 95 - 55 - 35
    assert result.grade == "D"


def test_a_competitor_e_mail_domain_disqualifies_the_lead():
    result = fit(IDEAL, email="spy@RivalRevOps.example")
    assert result.disqualified == "works for a competitor"
    assert result.grade == "A"  # the grade is kept for the record; the stage says Disqualified


def test_a_look_alike_domain_is_not_the_competitor_domain():
    assert fit(IDEAL, email="spy@notrivalrevops.example").disqualified is None
    assert fit(IDEAL, email="spy@rivalrevops.example.net").disqualified is None


def test_a_subdomain_of_a_competitor_domain_is_the_competitor():
    assert fit(IDEAL, email="spy@eu.sales.RivalRevOps.example").disqualified == "works for a competitor"
    assert fit(IDEAL, email="ada@mail.gmail.com").capped_by == "personal e-mail address"


def test_a_free_mail_address_caps_the_grade_at_c():
    result = fit(IDEAL, email="ada@gmail.com")
    assert (result.points, result.grade) == (9500, "C")
    assert result.capped_by == "personal e-mail address"
    assert result.disqualified is None


def test_a_free_mail_cap_never_raises_a_grade():
    result = fit({}, email="ada@hotmail.com")
    assert (result.grade, result.capped_by) == ("D", None)


def test_without_an_e_mail_no_domain_rule_applies():
    assert fit(IDEAL, email=None).grade == "A"
    assert fit(IDEAL, email="not-an-address").grade == "A"


def test_a_disqualifier_can_match_a_field_value():
    model = FitModel(rules=SHIPPED.rules, grade_thresholds=SHIPPED.grade_thresholds, disqualifiers=(
        Disqualifier(reason="sells to us, not from us", effect="disqualify", field="industry", values=("Competitor",)),
        Disqualifier(reason="outside our markets", effect="max_grade", field="country", values=("AQ",), max_grade="D"),
    ))
    assert fit(dict(IDEAL, industry="competitor"), model=model).disqualified == "sells to us, not from us"
    capped = fit(dict(IDEAL, country="AQ"), model=model)
    assert (capped.grade, capped.capped_by) == ("D", "outside our markets")


def test_the_strictest_of_several_grade_caps_wins():
    model = FitModel(rules=SHIPPED.rules, grade_thresholds=SHIPPED.grade_thresholds, disqualifiers=(
        Disqualifier(reason="free mail", effect="max_grade", email_domains=("gmail.com",), max_grade="C"),
        Disqualifier(reason="unknown company", effect="max_grade", field="company", values=("n/a",), max_grade="D"),
        Disqualifier(reason="free mail, again", effect="max_grade", email_domains=("gmail.com",), max_grade="B"),
    ))
    result = fit(dict(IDEAL, company="N/A"), email="x@gmail.com", model=model)
    assert result.grade == "D"


def test_a_profile_seen_before_is_graded_by_the_model_in_hand_not_by_an_earlier_one():
    # Answers are remembered per model: the same profile and domain under a changed rulebook grade afresh.
    lenient = FitModel(rules=(FitRule("industry", values=(("Software", 8000),)),),
                       grade_thresholds=SHIPPED.grade_thresholds)
    strict = FitModel(rules=(FitRule("industry", values=(("Software", 1000),)),),
                      grade_thresholds=SHIPPED.grade_thresholds,
                      disqualifiers=(Disqualifier(reason="works for a competitor", effect="disqualify",
                                                  email_domains=("acme.example",)),))
    for _ in range(2):
        assert (fit({"industry": "Software"}, model=lenient).grade, fit({"industry": "Software"}, model=lenient).disqualified) == ("A", None)
        assert fit({"industry": "Software"}, model=strict).grade == "D"
        assert fit({"industry": "Software"}, model=strict).disqualified == "works for a competitor"


def test_a_field_value_that_cannot_be_remembered_is_still_assessed():
    assert fit({"industry": ["Software"], "country": "US"}).points == 1000
