"""Weighted round robin that stays provably fair: each rep's count of leads never strays a whole lead from their
weighted share, within one run or across many runs whose state is kept as JSON.

The state is each rep's *credit*: the leads they were entitled to (by weight, among the reps who could take a lead
at the time) minus the leads they received. Credits are exact fractions, so the arithmetic and the ties are the same
on every machine and after any number of JSON round trips.

One assignment:
1. every available rep's credit grows by their weight over the available reps' total weight (together: one lead);
2. the reps whose credit is now above zero may receive it (one who is a lead ahead never does);
3. of those, the rep whose credit would reach a whole lead soonest gets it: the smallest number of further leads,
   ceil((1 - credit) / share), by which they would be a lead behind; ties go to the larger credit, then the larger
   weight, then the e-mail in alphabetical order;
4. that rep's credit falls by one.

Why it is fair: with a fixed set of reps, rep i with share p_i may receive its k-th lead no earlier than the
floor((k-1)/p_i)-th assignment and must have it before the ceil(k/p_i)-th. The shares add up to one, so these windows
admit a schedule with one lead per assignment (a Pfair schedule, Baruah et al. 1996); steps 2 and 3 are
earliest-deadline-first over the windows, which on one server meets every deadline whenever any schedule does. Every
rep therefore has its k-th lead inside its window: after n assignments its count differs from n * p_i by less than
one. The plain "largest credit wins" rule (smooth weighted round robin) does not guarantee this: with eight or
nine reps of uneven weights it strays by more than 1.2 leads.

Reps who are skipped (out of office, at capacity) neither earn credit nor lose it. A rep who joins starts at zero (no
backlog to catch up); a rep who leaves takes no credit away: what they were owed or were ahead by is shared among
those who stay, by weight, so the credits still add up to zero.
"""

from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable, Mapping


@lru_cache(maxsize=1024)
def weight_of(value: float | int | str | Fraction) -> Fraction:
    """A weight as an exact fraction: 1.5 is 3/2, not the nearest binary float."""
    weight = value if isinstance(value, Fraction) else Fraction(str(value))
    if weight <= 0:
        raise ValueError(f"a round-robin weight must be above zero, not {value!r}")
    return weight


@dataclass(frozen=True)
class RoundRobinState:
    """A team's round robin between runs. `assignments` counts the leads shared out so far: the store can use it as
    the version a conditional update compares, so two overlapping runs never both move from the same state."""

    team: str
    credits: Mapping[str, Fraction] = field(default_factory=dict)
    assignments: int = 0

    def credit(self, rep: str) -> Fraction:
        return self.credits.get(rep, Fraction(0))

    def to_json(self) -> dict[str, Any]:
        return {"team": self.team, "assignments": self.assignments,
                "credits": {rep: str(credit) for rep, credit in sorted(self.credits.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundRobinState:
        try:
            credits = {str(rep): Fraction(str(credit)) for rep, credit in dict(data.get("credits") or {}).items()}
            return cls(str(data["team"]), credits, int(data.get("assignments", 0)))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"not a round-robin state: {exc}") from None

    def with_members(self, weights: Mapping[str, Fraction]) -> RoundRobinState:
        """The state for the team as it is now: newcomers at zero, leavers' credit shared by weight among the rest."""
        if self.credits.keys() == weights.keys():
            return self
        stay = {rep: credit for rep, credit in self.credits.items() if rep in weights}
        left_over = sum((credit for rep, credit in self.credits.items() if rep not in weights), Fraction(0))
        total = sum(weights.values(), Fraction(0))
        credits = {rep: stay.get(rep, Fraction(0)) + (left_over * weight / total if total else 0)
                   for rep, weight in weights.items()}
        return RoundRobinState(self.team, credits, self.assignments)


@dataclass(frozen=True)
class Pick:
    """One round-robin choice: the rep (None when nobody is available), the state after it, and how it was made."""

    rep: str | None
    state: RoundRobinState
    reason: str


def next_rep(state: RoundRobinState, weights: Mapping[str, float | int | str | Fraction],
             available: Iterable[str]) -> Pick:
    """The rep who gets the next lead among `available` (a subset of the team in `weights`), and the new state."""
    exact = {rep: weight_of(weight) for rep, weight in weights.items()}
    state = state.with_members(exact)
    present = sorted(rep for rep in set(available) if rep in exact)
    if not present:
        return Pick(None, state, "nobody in the team can take a lead")
    total = sum(exact[rep] for rep in present)
    credits = dict(state.credits)
    for rep in present:
        credits[rep] += exact[rep] / total
    # Only skips can leave no one above zero; then the soonest deadline still decides.
    eligible = [rep for rep in present if credits[rep] > 0] or present

    def deadline(rep: str) -> tuple:
        share = exact[rep] / total
        return math.ceil((1 - credits[rep]) / share), -credits[rep], -exact[rep], rep

    chosen = min(eligible, key=deadline)
    reason = (f"round robin: credit {_shown(credits[chosen])} of a lead at weight {_shown(exact[chosen])} "
              f"({_shown(exact[chosen] / total)} of the leads among {len(present)} available)")
    credits[chosen] -= 1
    return Pick(chosen, RoundRobinState(state.team, credits, state.assignments + 1), reason)


def _shown(value: Fraction) -> str:
    return f"{float(value):.3g}"
