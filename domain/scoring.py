"""The behaviour score: which activities earn points under the rulebook, how repeats and caps limit them,
and how the points decay by `now`. The store computes the same set-wise in SQL (store/scoring.py); this is
the reference the property tests hold it to, and the code that explains one lead."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Iterator

from domain.activity import ActivityType, asset_key
from domain.rules import DecayPolicy, RepeatKind, Rulebook, ScoringRule, decayed

DAY_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class ScoredActivity:
    """The facts scoring needs about one activity; (occurred_epoch, source, external_id) orders a lead's history.
    The epoch and the asset's key are worked out once, here, not again by every rulebook that reads them."""

    activity_id: int
    source: str
    external_id: str
    type: ActivityType
    asset: str | None
    occurred_at: datetime
    occurred_epoch: int = field(init=False)
    asset_key: str | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_epoch", epoch_seconds(self.occurred_at))
        object.__setattr__(self, "asset_key", asset_key(self.asset))


class History(tuple):
    """One lead's activities in history order (time in whole seconds, then source and external id), sorted once
    for every rulebook that scores them."""


def history_of(activities: Iterable[ScoredActivity]) -> History:
    if isinstance(activities, History):
        return activities
    return History(sorted(activities, key=lambda a: (a.occurred_epoch, a.source, a.external_id)))


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds since the epoch, rounded down: the clock scoring counts days with."""
    return math.floor(moment.timestamp())


@dataclass(frozen=True, slots=True)
class Contribution:
    """Points one activity earned under one rule (centipoints, after repeat and cap, before decay)."""

    activity_id: int
    rule: ScoringRule
    points: int
    occurred_epoch: int


def contributions(activities: Iterable[ScoredActivity], rulebook: Rulebook) -> list[Contribution]:
    """Every activity that earns points, in history order. Rules apply per lead: pass one lead's activities."""
    history = history_of(activities)
    earned_count: dict[int, int] = {}  # occurrences of a rule that passed the repeat rule, by id(rule)
    per_day: dict[tuple[int, int], int] = {}
    result: list[Contribution] = []
    for activity in history:
        rule = rulebook.rule_for_key(activity.type, activity.asset_key)
        if rule is None:
            continue
        key = id(rule)
        counted = earned_count.get(key, 0)
        if rule.repeat.kind is RepeatKind.FIRST and counted:
            continue
        epoch = activity.occurred_epoch
        if rule.repeat.kind is RepeatKind.DAILY:
            day_key = (key, epoch // DAY_SECONDS)
            if per_day.get(day_key, 0) >= rule.repeat.per_day:
                continue
            per_day[day_key] = per_day.get(day_key, 0) + 1
        nth = earned_count[key] = counted + 1
        points = capped(rule.points, rule.cap, nth)
        if points:
            result.append(Contribution(activity.activity_id, rule, points, epoch))
    return result


def capped(points: int, cap: int | None, nth: int) -> int:
    """What the nth counted occurrence of a rule still earns under its cap (the size of the points is capped,
    for negative rules too)."""
    if cap is None:
        return points
    size = max(0, min(abs(points), cap - (nth - 1) * abs(points)))
    return size if points >= 0 else -size


def age_days(occurred_epoch: int, now_epoch: int) -> int:
    return max(0, (now_epoch - occurred_epoch) // DAY_SECONDS)


@dataclass(frozen=True)
class ScoreLine:
    """One line of an explanation: what a contribution is worth at `now`."""

    contribution: Contribution
    age_days: int
    value: int


@dataclass(frozen=True)
class BehaviourScore:
    score: int
    lines: tuple[ScoreLine, ...]
    floor_adjustment: int  # added so the lines plus this equal the score when the floor lifted it

    @property
    def raw_total(self) -> int:
        return sum(line.value for line in self.lines)


def behaviour_score(contribs: Iterable[Contribution], decay: DecayPolicy, now: datetime) -> BehaviourScore:
    """The score at `now`: each contribution decayed by its age in whole days, summed, never below the floor."""
    lines = tuple(ScoreLine(c, age, value) for c, age, value in _aged(contribs, decay, now))
    total = sum(line.value for line in lines)
    score = max(total, decay.floor)
    return BehaviourScore(score=score, lines=lines, floor_adjustment=score - total)


def behaviour_total(contribs: Iterable[Contribution], decay: DecayPolicy, now: datetime) -> int:
    """behaviour_score's score alone, without the lines an explanation reads."""
    return max(sum(value for _, _, value in _aged(contribs, decay, now)), decay.floor)


def _aged(contribs: Iterable[Contribution], decay: DecayPolicy,
          now: datetime) -> Iterator[tuple[Contribution, int, int]]:
    """Each contribution with its age in whole days at `now` and what it is worth at that age."""
    now_epoch = epoch_seconds(now)
    for c in contribs:
        age = age_days(c.occurred_epoch, now_epoch)
        yield c, age, decayed(c.points, decay.factor_micros(age))
