"""What a rulebook change would do before it goes live: the rules that differ from the rulebook in force, and one
lead worked out from its activity log under either rulebook, exactly as a scoring pass would. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from domain.activity import asset_key
from domain.fit import assess_fit
from domain.lifecycle import LeadState, Qualification, decide, lead_facts
from domain.rules import DecayPolicy, Disqualifier, FitRule, Rulebook, ScoringRule, points_text
from domain.scoring import ScoredActivity, behaviour_total, contributions, history_of


def work_out(history: Iterable[ScoredActivity], profile: Mapping[str, Any], previous: LeadState | None,
             merged: list[tuple[int, LeadState]] | None, rulebook: Rulebook, now: datetime) -> Qualification:
    """What a pass at `now` with this rulebook makes of one lead: its score from its whole history (the ledger
    rebuilt, as a rescore does), its fit, and its stage moved on from the state it holds."""
    history = history_of(history)
    score = behaviour_total(contributions(history, rulebook), rulebook.decay, now)
    fit = assess_fit(profile, profile.get("email"), rulebook.fit)
    raisers = rulebook.qualification.hand_raisers
    # the latest hand-raise; of two at one moment, the type named last (as the store finds it)
    raised = max(((a.occurred_at, a.type.value) for a in history if a.type in raisers), default=None)
    return decide(previous, merged, lead_facts(score, fit, profile, raised, rulebook), rulebook, now)[0]


# ---------------------------------------------------------------------------------------------- what changed

def rulebook_changes(in_force: Rulebook, draft: Rulebook) -> list[str]:
    """Each difference between two rulebooks as one line a marketer reads: scoring rules by action, then the
    threshold, decay, fit and qualification. Empty when they score alike (the order of rows is no change)."""
    lines: list[str] = []
    if in_force.readiness_threshold != draft.readiness_threshold:
        lines.append(f"readiness threshold: {points_text(in_force.readiness_threshold)} -> "
                     f"{points_text(draft.readiness_threshold)} points")
    lines += _keyed(_rules_by_action(in_force.rules), _rules_by_action(draft.rules), _rule_text, _rule_change)
    if in_force.decay != draft.decay:
        lines.append(f"decay: {decay_text(in_force.decay)} -> {decay_text(draft.decay)}")
    old_fit, new_fit = in_force.fit, draft.fit
    lines += _keyed({r.field: r for r in old_fit.rules}, {r.field: r for r in new_fit.rules},
                    lambda r: f"fit {r.field}: {_fit_rule_text(r)}", _fit_rule_change)
    if old_fit.grade_thresholds != new_fit.grade_thresholds:
        lines.append(f"fit grades: {grades_text(old_fit.grade_thresholds)} -> {grades_text(new_fit.grade_thresholds)}")
    lines += _keyed({d.reason: d for d in old_fit.disqualifiers}, {d.reason: d for d in new_fit.disqualifiers},
                    lambda d: f"disqualifier '{d.reason}': {disqualifier_text(d)}", _disqualifier_change)
    old_q, new_q = in_force.qualification, draft.qualification
    for name, label, show in _QUALIFICATION:
        before, after = getattr(old_q, name), getattr(new_q, name)
        if before != after:
            lines.append(f"{label}: {show(before)} -> {show(after)}")
    return lines


def _keyed(old: dict, new: dict, describe, change) -> list[str]:
    """Added, removed and changed entries of two keyed collections, in key order."""
    lines = []
    for key in sorted(old.keys() | new.keys(), key=str):
        if key not in old:
            lines.append(f"{describe(new[key])} (added)")
        elif key not in new:
            lines.append(f"{describe(old[key])} (removed)")
        elif (line := change(old[key], new[key])) is not None:
            lines.append(line)
    return lines


def _rules_by_action(rules: Iterable[ScoringRule]) -> dict[str, ScoringRule]:
    # keyed as the rulebook matches them: "page_view:/Pricing " is the rule "page_view:/pricing" was
    return {f"{r.type.value}:{asset_key(r.asset)}" if r.asset else r.type.value: r for r in rules}


def _worth(rule: ScoringRule) -> str:
    return f"{rule.readiness_pct}% = {points_text(rule.points)} points"


def _limits(rule: ScoringRule) -> str:
    cap = f"cap {points_text(rule.cap)}" if rule.cap is not None else "no cap"
    return f"{cap}, {rule.repeat}"


def _rule_text(rule: ScoringRule) -> str:
    return f"{rule.action}: {rule.stage.value}, {_worth(rule)}, {_limits(rule)}"


def _rule_change(old: ScoringRule, new: ScoringRule) -> str | None:
    parts = []
    if (old.readiness_pct, old.points) != (new.readiness_pct, new.points):
        parts.append(f"{_worth(old)} -> {_worth(new)}")
    if old.stage != new.stage:
        parts.append(f"stage {old.stage.value} -> {new.stage.value}")
    if (old.cap, old.repeat) != (new.cap, new.repeat):
        parts.append(f"{_limits(old)} -> {_limits(new)}")
    return f"{new.action}: {'; '.join(parts)}" if parts else None


def decay_text(decay: DecayPolicy) -> str:
    if decay.half_life_days:
        how = f"half-life {decay.half_life_days} days"
    elif decay.steps:
        how = "steps " + ", ".join(f"keep {pct}% after {days} days" for days, pct in decay.steps)
    else:
        how = "none"
    return f"{how}, floor {points_text(decay.floor)}"


def _fit_entries(rule: FitRule) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """A fit rule's exact values, ranges and keywords, each by how it reads, with its points (ranges and keywords
    in the rule's order: the first that matches counts)."""
    def span(low: int | None, high: int | None) -> str:
        return f"{'' if low is None else low}..{'' if high is None else high}"

    return (dict(rule.values), {span(low, high): points for low, high, points in rule.ranges},
            {"/".join(words): points for words, points in rule.keywords})


def _fit_rule_text(rule: FitRule, entries: tuple[dict[str, int], ...] | None = None) -> str:
    parts = [f"{key} {points_text(points)}" for kind in entries or _fit_entries(rule) for key, points in kind.items()]
    return ", ".join(parts) or "no points"


def _fit_rule_change(old: FitRule, new: FitRule) -> str | None:
    """The entries whose points moved, were added (from none) or removed (to none). Ranges and keywords match in
    order, the first that matches counting: unless the draft keeps the order of the ones both have and adds new
    ones only after them (checked last), the whole rule is shown before and after, since where an entry stands
    changes what it scores."""
    old_entries, new_entries = _fit_entries(old), _fit_entries(new)
    if old_entries == new_entries and old.ranges == new.ranges and old.keywords == new.keywords:
        return None
    whole = f"fit {new.field}: {_fit_rule_text(old, old_entries)} -> {_fit_rule_text(new, new_entries)}"
    moved = []
    for ordered, (before, after) in enumerate(zip(old_entries, new_entries)):
        kept = [key for key in before if key in after]
        if ordered and list(after) != kept + [key for key in after if key not in before]:
            return whole
        keys = [*before, *(key for key in after if key not in before)] if ordered else \
            sorted(before.keys() | after.keys(), key=str)
        moved += [f"{key} {_maybe(before.get(key))} -> {_maybe(after.get(key))}"
                  for key in keys if before.get(key) != after.get(key)]
    return f"fit {new.field}: {', '.join(moved)}" if moved else whole  # else entries that read alike changed


def _maybe(points: int | None) -> str:
    return "none" if points is None else points_text(points)


def grades_text(thresholds: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{grade} from {points_text(points)}" for grade, points in thresholds)


def disqualifier_text(d: Disqualifier) -> str:
    matches = []
    if d.email_domains:
        matches.append("e-mail domains " + ", ".join(d.email_domains))
    if d.field:
        matches.append(f"{d.field} " + ", ".join(d.values))
    effect = "disqualify" if d.effect == "disqualify" else f"grade at most {d.max_grade}"
    return f"{' or '.join(matches)}: {effect}"


def _disqualifier_change(old: Disqualifier, new: Disqualifier) -> str | None:
    if disqualifier_text(old) == disqualifier_text(new):
        return None
    return f"disqualifier '{new.reason}': {disqualifier_text(old)} -> {disqualifier_text(new)}"


def _kinds(kinds) -> str:
    return ", ".join(sorted(kind.value for kind in kinds)) or "none"


_QUALIFICATION = (
    ("min_fit_grade", "MQL on score: minimum fit grade", str),
    ("hand_raisers", "hand-raisers", _kinds),
    ("hand_raise_min_fit_grade", "MQL on a hand-raise: minimum fit grade", str),
    ("rearm_below", "trigger re-arms below", lambda p: f"{points_text(p)} points"),
    ("cold_engaged_at", "cold: engaged at", lambda p: f"{points_text(p)} points"),
    ("cold_below", "cold: below", lambda p: f"{points_text(p)} points"),
    ("details_fields", "details that make a Subscriber a Lead", lambda names: ", ".join(names)),
)
