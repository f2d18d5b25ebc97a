"""Fit: how closely a lead matches the ideal customer profile, as points per field and a grade A-D."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

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


# Leads share few distinct field values (industries, titles, sizes) and e-mail domains (one per company):
# answers are remembered per model, by the tuple of the values its rules read and by domain. A memo entry holds
# its model, so an id reused by a later model cannot answer for it; each memo stops growing at its bound.
_PROFILE_MEMO: dict[tuple[int, tuple], tuple[FitModel, tuple[tuple[FitLine, ...], int]]] = {}
_DOMAIN_MEMO: dict[tuple[int, str | None], tuple[FitModel, tuple[bool, ...]]] = {}
_MEMO_BOUND = 200_000


def _remembered(memo: dict, model: FitModel, key: Any, answer: Callable[[], Any]) -> Any:
    """The memo's answer for this model and key, worked out by `answer` the first time (and remembered while the
    memo is under its bound); a key that cannot be one (a list from a hand-built profile) is answered afresh."""
    entry = (id(model), key)
    try:
        hit = memo.get(entry)
    except TypeError:
        return answer()
    if hit is not None and hit[0] is model:
        return hit[1]
    result = answer()
    if len(memo) < _MEMO_BOUND:
        memo[entry] = (model, result)
    return result


def _profile_points(model: FitModel, values: tuple) -> tuple[tuple[FitLine, ...], int]:
    """The lines and total of a profile whose rules' fields hold `values` (in rule order)."""
    def answer():
        lines = tuple(FitLine(rule.field, value, points) for rule, value in zip(model.rules, values)
                      if (points := _match(rule, value)) is not None)
        return lines, sum(line.points for line in lines)

    return _remembered(_PROFILE_MEMO, model, values, answer)


def _domain_hits(model: FitModel, domain: str | None) -> tuple[bool, ...]:
    """For each disqualifier of the model, whether this e-mail domain is one of its domains."""
    return _remembered(_DOMAIN_MEMO, model, domain, lambda: tuple(
        domain is not None and _within(domain, rule.domain_set) for rule in model.disqualifiers))


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
    lines, total = _profile_points(model, tuple(fields.get(rule.field) for rule in model.rules))
    grade = grade_for(total, model)
    domain = email.rsplit("@", 1)[-1].lower() if email and "@" in email else None
    disqualified = capped_by = None
    for rule, domain_hit in zip(model.disqualifiers, _domain_hits(model, domain)):
        hit = domain_hit or (rule.field is not None and str(fields.get(rule.field) or "").lower() in rule.lowered_values)
        if not hit:
            continue
        if rule.effect == "disqualify":
            disqualified = disqualified or rule.reason
        elif rule.max_grade and GRADES.index(grade) < GRADES.index(rule.max_grade):
            grade, capped_by = rule.max_grade, rule.reason
    return FitAssessment(points=total, grade=grade, lines=lines, disqualified=disqualified, capped_by=capped_by)
