"""The rulebook as values: scoring rules, decay, the ideal-customer fit model and the qualification policy.

Points are kept as integer hundredths ("centipoints") everywhere, in Python and in SQL, so that every
contribution, every decay and every sum is exact and both implementations agree to the last digit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any

from domain.activity import ActivityType, asset_key

CENTS = 100  # centipoints per point
DECAY_TABLE_DAYS = 3650  # ages are counted up to ten years; older points keep the ten-year share
MICROS = 1_000_000  # decay factors are integer millionths


def to_centipoints(points: Decimal | float | int | str) -> int:
    return int((Decimal(str(points)) * CENTS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def points_text(centipoints: int) -> str:
    """A centipoint amount as people read it: `30`, `12.5`, `-7.25`."""
    value = Decimal(centipoints) / CENTS
    text = f"{value:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class FunnelStage(StrEnum):
    AWARENESS = "awareness"
    CONSIDERATION = "consideration"
    DECISION = "decision"


class RepeatKind(StrEnum):
    EVERY = "every"  # every occurrence earns points (up to the cap)
    FIRST = "first"  # only the first occurrence per lead
    DAILY = "daily"  # at most `per_day` occurrences per lead per UTC day


@dataclass(frozen=True)
class Repeat:
    kind: RepeatKind = RepeatKind.EVERY
    per_day: int | None = None

    def __str__(self) -> str:
        return f"at most {self.per_day}/day" if self.kind is RepeatKind.DAILY else f"{self.kind.value} time"


@dataclass(frozen=True)
class ScoringRule:
    """One row of the marketers' spreadsheet: an activity type, or a type and asset (which wins), and what it
    is worth. `points` and `cap` are centipoints; `cap` bounds the total one action earns per lead."""

    action: str
    type: ActivityType
    asset: str | None
    stage: FunnelStage
    readiness_pct: Decimal
    points: int
    cap: int | None = None
    repeat: Repeat = Repeat()
    line: int | None = None


@dataclass(frozen=True)
class DecayPolicy:
    """Points age out: either halve every `half_life_days`, or keep `keep_pct` after `after_days` (steps). Ages
    count in whole UTC days (whole seconds first, then days), the same in Python and SQL. The total score never
    goes below `floor` (centipoints)."""

    half_life_days: Decimal | None = None
    steps: tuple[tuple[int, Decimal], ...] = ()
    floor: int = 0

    def factor_micros(self, age_days: int) -> int:
        """Share of its points a contribution keeps at this age, in millionths (exact, integer)."""
        if age_days <= 0:
            return MICROS
        age = min(age_days, DECAY_TABLE_DAYS)
        factor = self._factors.get(age)
        if factor is None:
            factor = self._factors[age] = self._compute(age)  # Decimal powers are slow: each age once
        return factor

    @cached_property
    def _factors(self) -> dict[int, int]:
        """The shares worked out so far, by age: kept on the policy, so a lookup hashes nothing but the age."""
        return {}

    def _compute(self, age_days: int) -> int:
        if self.half_life_days:
            factor = Decimal(0.5) ** (Decimal(age_days) / self.half_life_days)
            return int((factor * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        keep = Decimal(100)
        for after_days, keep_pct in self.steps:
            if age_days >= after_days:
                keep = keep_pct
        return int((keep * MICROS / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    @property
    def horizon_days(self) -> int | None:
        """Age after which nothing is left (step decay to zero), if any."""
        for after_days, keep_pct in self.steps:
            if keep_pct == 0:
                return after_days
        return None


def decayed(points: int, factor_micros: int) -> int:
    """points x factor, rounded half away from zero to whole centipoints: integer arithmetic only."""
    product = abs(points) * factor_micros
    value = (product + MICROS // 2) // MICROS
    return value if points >= 0 else -value


GRADES = ("A", "B", "C", "D")


def grade_at_least(grade: str, minimum: str) -> bool:
    return GRADES.index(grade) <= GRADES.index(minimum)


@dataclass(frozen=True)
class FitRule:
    """Points for one lead field. `values` maps exact values (case-insensitive); `ranges` are (min, max, points)
    inclusive, for numbers; `keywords` are (words, points) that match when any word is in the text."""

    field: str
    values: tuple[tuple[str, int], ...] = ()
    ranges: tuple[tuple[int | None, int | None, int], ...] = ()
    keywords: tuple[tuple[tuple[str, ...], int], ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class Disqualifier:
    """A profile that must not reach sales: `effect` is "disqualify" (the Disqualified stage) or a grade cap
    ("max_grade" with `max_grade`). Matches e-mail domains or a field's values."""

    reason: str
    effect: str
    email_domains: tuple[str, ...] = ()
    field: str | None = None
    values: tuple[str, ...] = ()
    max_grade: str | None = None
    line: int | None = None

    @cached_property
    def domain_set(self) -> frozenset[str]:
        return frozenset(d.lower() for d in self.email_domains)

    @cached_property
    def lowered_values(self) -> frozenset[str]:
        return frozenset(v.lower() for v in self.values)


@dataclass(frozen=True)
class FitModel:
    rules: tuple[FitRule, ...] = ()
    grade_thresholds: tuple[tuple[str, int], ...] = (("A", 6000), ("B", 4000), ("C", 2000))
    disqualifiers: tuple[Disqualifier, ...] = ()


@dataclass(frozen=True)
class QualificationPolicy:
    min_fit_grade: str = "B"
    hand_raisers: frozenset[ActivityType] = frozenset(
        {ActivityType.DEMO_REQUEST, ActivityType.TRIAL_SIGNUP, ActivityType.CONTACT_SALES}
    )
    hand_raise_min_fit_grade: str = "C"
    rearm_below: int = 7000  # centipoints: a trigger re-arms once the score falls below this
    cold_engaged_at: int = 2000  # a lead that once scored this much ...
    cold_below: int = 500  # ... and now scores below this is cold
    details_fields: tuple[str, ...] = ("first_name", "last_name", "company", "title")


@dataclass(frozen=True)
class Rulebook:
    readiness_threshold: int  # centipoints
    rules: tuple[ScoringRule, ...]
    decay: DecayPolicy = DecayPolicy()
    fit: FitModel = FitModel()
    qualification: QualificationPolicy = QualificationPolicy()
    # Not an init field: `dataclasses.replace` must build a fresh index, not share (and overwrite) this one.
    _index: dict[tuple[ActivityType, str | None], ScoringRule] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            self._index[(rule.type, asset_key(rule.asset))] = rule

    def rule_for(self, kind: ActivityType | str, asset: str | None) -> ScoringRule | None:
        """The asset's own rule wins over the bare type's; assets match by their key (case and spacing aside)."""
        return self.rule_for_key(ActivityType(kind), asset_key(asset))

    def rule_for_key(self, kind: ActivityType, key: str | None) -> ScoringRule | None:
        """rule_for, given the asset's key (domain.activity.asset_key) rather than the asset."""
        return (key is not None and self._index.get((kind, key))) or self._index.get((kind, None))

    @property
    def digest(self) -> str:
        """Identifies the rulebook's content: the same rules give the same digest, any change a new one."""
        canonical = _plain({k: v for k, v in asdict(self).items() if k != "_index"})
        canonical["rules"].sort(key=lambda rule: (rule["type"], rule["asset"] or ""))  # row order is no new version
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """Rulebook values as JSON-ready data, without source line numbers (moving a row is not a new version)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "line"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, Decimal):
        return str(value)
    return value
