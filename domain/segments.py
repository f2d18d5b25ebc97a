"""A segment of scored leads as people ask for one (stages, fit grades, the cold flag, a least score), checked
before any query: what the CLI's `handoff leads` and the lead-segment flow both take."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable

from domain.lifecycle import Stage
from domain.rules import CENTS, GRADES, points_text, to_centipoints


class SegmentRefused(ValueError):
    """Filters that cannot be applied; `problems` pairs each filter with what is wrong, in the order given."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in problems))


@dataclass(frozen=True)
class Segment:
    stages: frozenset[str] = frozenset()
    grades: frozenset[str] = frozenset()
    cold: bool = False
    min_score: int | None = None  # centipoints

    @property
    def described(self) -> str:
        """`in stage mql or sql, of fit A, flagged cold, scoring at least 50`; `scored` when nothing filters."""
        parts = [f"in stage {' or '.join(sorted(self.stages))}" if self.stages else "",
                 f"of fit {' or '.join(sorted(self.grades))}" if self.grades else "",
                 "flagged cold" if self.cold else "",
                 f"scoring at least {points_text(self.min_score)}" if self.min_score is not None else ""]
        return ", ".join(filter(None, parts)) or "scored"

    @property
    def key(self) -> str:
        """A name made of the filters, in the letters, digits and dashes an artifact key allows:
        `mql-sql-fit-a-cold-min-12-5`; `all` when nothing filters."""
        parts = [*sorted(self.stages), *(["fit", *sorted(g.lower() for g in self.grades)] if self.grades else []),
                 *(["cold"] if self.cold else [])]
        if self.min_score is not None:
            text = points_text(self.min_score)
            parts += ["min", "minus-" + text[1:] if text.startswith("-") else text]
        return "-".join(parts).replace(".", "-") or "all"


def segment_of(stages: Iterable[str] = (), grades: Iterable[str] = (), cold: bool = False,
               min_score: str | float | int | Decimal | None = None) -> Segment:
    """The segment these filters ask for (stage and grade case ignored; the score in points, at most two
    decimals), or SegmentRefused naming every filter that cannot be applied and what it allows."""
    problems = []
    asked_stages = {str(value).strip().lower() for value in stages}
    unknown = sorted(asked_stages - {s.value for s in Stage})
    if unknown:
        problems.append(("stage", f"one of {', '.join(s.value for s in Stage)}; not {unknown[0]!r}"))
    asked_grades = {str(value).strip().upper() for value in grades}
    unknown = sorted(asked_grades - set(GRADES))
    if unknown:
        problems.append(("fit", f"one of {', '.join(GRADES)}; not {unknown[0]!r}"))
    least = None
    if min_score is not None:
        try:
            points = Decimal(str(min_score).strip())
        except InvalidOperation:
            points = None
        if points is None or not points.is_finite() or (points * CENTS) % 1:
            problems.append(("min-score", f"a number of points with at most two decimals, not {str(min_score)!r}"))
        else:
            least = to_centipoints(points)
    if problems:
        raise SegmentRefused(problems)
    return Segment(frozenset(asked_stages), frozenset(asked_grades), cold, least)
