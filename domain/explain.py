"""A lead's score explained point by point: every contribution at its decayed value, adding up to the score."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.fit import FitAssessment
from domain.rules import DecayPolicy, points_text
from domain.scoring import behaviour_score


@dataclass(frozen=True)
class LedgerEntry:
    """One stored contribution with the activity and rule behind it."""

    activity_id: int
    action: str
    type: str
    asset: str | None
    campaign: str | None
    source: str
    occurred_at: datetime
    points: int
    occurred_epoch: int


@dataclass(frozen=True)
class ExplainedLine:
    entry: LedgerEntry
    age_days: int
    value: int  # centipoints at the time of the explanation

    def as_dict(self) -> dict[str, Any]:
        e = self.entry
        return {"action": e.action, "type": e.type, "asset": e.asset, "campaign": e.campaign, "source": e.source,
                "occurred_at": e.occurred_at.isoformat(), "earned": points_text(e.points), "age_days": self.age_days,
                "points": points_text(self.value)}


@dataclass(frozen=True)
class Explanation:
    score: int
    at: datetime
    lines: tuple[ExplainedLine, ...]
    floor_adjustment: int

    @property
    def total(self) -> int:
        return sum(line.value for line in self.lines) + self.floor_adjustment

    def top(self, n: int = 3) -> list[ExplainedLine]:
        return sorted(self.lines, key=lambda line: (-line.value, line.entry.occurred_at))[:n]


def explain_score(entries: list[LedgerEntry], decay: DecayPolicy, at: datetime) -> Explanation:
    scored = behaviour_score(entries, decay, at)
    lines = tuple(ExplainedLine(line.contribution, line.age_days, line.value) for line in scored.lines)
    return Explanation(score=scored.score, at=at, lines=lines, floor_adjustment=scored.floor_adjustment)


def reason_text(line: ExplainedLine) -> str:
    e = line.entry
    what = f"{e.type} {e.asset!r}" if e.asset else e.type
    return f"{what} on {e.occurred_at:%Y-%m-%d}: +{points_text(line.value)}" if line.value >= 0 else \
        f"{what} on {e.occurred_at:%Y-%m-%d}: {points_text(line.value)}"


def fit_dict(fit: FitAssessment) -> dict[str, Any]:
    return {"points": points_text(fit.points), "grade": fit.grade, "disqualified": fit.disqualified,
            "capped_by": fit.capped_by,
            "lines": [{"field": line.field, "value": line.value, "points": points_text(line.points)} for line in fit.lines]}
