"""Fit: how closely a lead matches the ideal customer profile, as points per field and a grade A-D."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from domain.rules import GRADES, FitModel, FitRule

_WORD_GAPS = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class FitLine:
    field: str
    value: Any
    points: int  # centipoints


@dataclass(frozen=True)
class FitAssessment:
    points: int
    grade: str
    lines: tuple[FitLine, ...]
    disqualified: str | None = None  # the reason, when a disqualifier says this lead must not reach sales
    capped_by: str | None = None  # the reason, when a disqualifier capped the grade


_MEMO: dict[tuple[int, Any], tuple[FitRule, int | None]] = {}


def _rule_points(rule: FitRule, value: Any) -> int | None:
    """Points of the first matching entry; None when nothing matches (or the value is missing). Leads share
    few distinct values (industries, titles, sizes), so answers are remembered per rule and value."""
    key = (id(rule), value)
    hit = _MEMO.get(key)
    if hit is not None and hit[0] is rule:
        return hit[1]
    points = _match(rule, value)
    if len(_MEMO) < 200_000:
        _MEMO[key] = (rule, points)
    return points


def _match(rule: FitRule, value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    lowered = text.lower()
    for expected, points in rule.values:
        if expected.lower() == lowered:
            return points
    if rule.ranges:
        try:
            number = int(float(text))
        except (ValueError, OverflowError):  # not a number, or "inf"
            number = None
        if number is not None:
            for low, high, points in rule.ranges:
                if (low is None or number >= low) and (high is None or number <= high):
                    return points
    padded = _words(lowered)
    for words, points in rule.keywords:
        if any(_words(w.lower()) in padded for w in words):  # whole words: "VP" is not in "MVP"
            return points
    return None


def _words(text: str) -> str:
    """Text as its words between single spaces, padded: a keyword and a title split alike ("C-level")."""
    return f" {' '.join(_WORD_GAPS.sub(' ', text).split())} "


def grade_for(points: int, model: FitModel) -> str:
    for grade, least in model.grade_thresholds:
        if points >= least:
            return grade
    return "D"


def _within(domain: str, domains: frozenset[str]) -> bool:
    """The domain is one of `domains` or a subdomain of one (eu.rival.example is rival.example's)."""
    if domain in domains:
        return True
    dot = domain.find(".")
    while dot >= 0:
        if domain[dot + 1:] in domains:
            return True
        dot = domain.find(".", dot + 1)
    return False


def assess_fit(fields: Mapping[str, Any], email: str | None, model: FitModel) -> FitAssessment:
    lines = []
    for rule in model.rules:
        points = _rule_points(rule, fields.get(rule.field))
        if points is not None:
            lines.append(FitLine(rule.field, fields.get(rule.field), points))
    total = sum(line.points for line in lines)
    grade = grade_for(total, model)
    domain = email.rsplit("@", 1)[-1].lower() if email and "@" in email else None
    disqualified = capped_by = None
    for rule in model.disqualifiers:
        hit = (domain is not None and _within(domain, rule.domain_set)) or (
            rule.field is not None and str(fields.get(rule.field) or "").lower() in rule.lowered_values
        )
        if not hit:
            continue
        if rule.effect == "disqualify":
            disqualified = disqualified or rule.reason
        elif rule.max_grade and GRADES.index(grade) < GRADES.index(rule.max_grade):
            grade, capped_by = rule.max_grade, rule.reason
    return FitAssessment(points=total, grade=grade, lines=tuple(lines), disqualified=disqualified, capped_by=capped_by)
