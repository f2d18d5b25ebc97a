"""Loading the SLA policies (sla.yaml), every problem named by file, line and what is wrong, and describing them as
markdown."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Iterable

from config.settings import CONFIG_DIR
from config.yaml_checks import ConfigProblems, FileProblems, key_line, line_of, read_document, table
from domain.activity import ActivityType
from domain.rules import GRADES
from domain.sla import ClockKind, ContactRules, PolicyWhen, SlaPolicies, SlaPolicy

SLA_FILE = CONFIG_DIR / "sla.yaml"

TOP_KEYS = ("defaults", "policies", "contacted")
SETTINGS = ("clock", "remind_before", "grace", "max_reassignments")
POLICY_KEYS = ("name", "when", "respond_within") + SETTINGS
WHEN_KEYS = ("fit_grades", "product_lines", "sources", "hand_raises")
CONTACTED_KEYS = ("activities", "statuses", "only_by_the_owner")
_BUILT_IN = SlaPolicy("built-in", Decimal(24))


class SlaConfigError(ConfigProblems):
    """sla.yaml is invalid."""


def load_sla(path: Path = SLA_FILE, text: str | None = None,
             product_lines: Iterable[str] | None = None) -> SlaPolicies:
    """The SLA policies of `path` (or of `text`, named `path`); `product_lines`, when given, are the ones a policy
    may name. Raises SlaConfigError listing every problem found."""
    problems = FileProblems(path, SlaConfigError)
    document = read_document(path, text)
    if not isinstance(document, dict):
        raise SlaConfigError([f"{path}: expected a mapping with policies"])
    problems.keys(document, TOP_KEYS, "the SLA file")
    defaults = _settings(problems, document.get("defaults") or {}, line_of(document, "defaults"), "defaults",
                         _BUILT_IN)
    known_lines = {p.strip().lower() for p in product_lines} if product_lines is not None else None
    policies = _policies(problems, document, defaults, known_lines)
    contacted = _contacted(problems, document)
    problems.raise_any()
    return SlaPolicies(policies, contacted, source=str(path))


def _settings(problems: FileProblems, node: object, line: int | None, what: str, base: SlaPolicy) -> SlaPolicy:
    """`base` with the clock, reminder, grace and reassignments `node` gives."""
    node = problems.mapping(node, line, what)
    if node is None:
        return base
    if what == "defaults":
        problems.keys(node, SETTINGS, what)
    remind = problems.hours(node, "remind_before", what, base.remind_before or Decimal(0), zero=True)
    return SlaPolicy(
        base.name, base.respond_within, clock=problems.choice(node, "clock", what, ClockKind, base.clock),
        remind_before=remind or None, grace=problems.hours(node, "grace", what, base.grace, zero=True),
        max_reassignments=problems.whole(node, "max_reassignments", what, base.max_reassignments))


def _policies(problems: FileProblems, document: dict, defaults: SlaPolicy,
              known_lines: set[str] | None) -> tuple[SlaPolicy, ...]:
    items = problems.items(document, "policies")
    if not items:
        problems.add(line_of(document, "policies") or line_of(document), "at least one policy is required")
        return (defaults,)
    policies: list[SlaPolicy] = []
    names: dict[str, int | None] = {}
    default_line: int | None = None
    for entry, line in items:
        node = problems.mapping(entry, line, "a policy")
        if node is None:
            continue
        line = line_of(node)
        name = problems.text(node.get("name"), line_of(node, "name") or line, "a policy's name") or ""
        what = f"policy {name!r}"
        problems.keys(node, POLICY_KEYS, what)
        if name in names:
            problems.add(line_of(node, "name"), f"policy name {name!r} is already used on line {names[name]}")
        names.setdefault(name, line_of(node, "name"))
        if default_line is not None:
            problems.add(line, f"{what} is never used: the policy on line {default_line} is for every lead")
        if "respond_within" not in node:
            problems.add(line, f"{what} needs respond_within: the hours to first contact")
        window = problems.hours(node, "respond_within", what, Decimal(24))
        settings = _settings(problems, node, line, what, defaults)
        when = _when(problems, node, what, known_lines)
        if settings.remind_before is not None and settings.remind_before >= window:
            problems.add(key_line(node, "remind_before") or key_line(node, "respond_within") or line,
                         f"{what}: a reminder {settings.remind_before} hours before a {window}-hour window would come "
                         f"at handoff; make it shorter, or 0 for none")
        policies.append(SlaPolicy(name, window, settings.clock, settings.remind_before, settings.grace,
                                  settings.max_reassignments, when or PolicyWhen(), line=line))
        if when is not None and when.is_default and default_line is None:
            default_line = line
    if default_line is None and policies:
        problems.add(line_of(document, "policies"), "the last policy must be for every lead (no when:), so every "
                                                    "lead has one")
    return tuple(policies)


def _when(problems: FileProblems, node: dict, what: str, known_lines: set[str] | None) -> PolicyWhen | None:
    """The leads a policy is for; None when its `when` has problems (then it is not taken for every lead)."""
    if node.get("when") is None:
        if "when" in node:
            problems.add(line_of(node, "when"), f"{what} when: is empty; leave it out for every lead")
            return None
        return PolicyWhen()
    when = problems.mapping(node["when"], line_of(node, "when"), f"{what} when")
    if when is None:
        return None
    before = len(problems.found)
    problems.keys(when, WHEN_KEYS, f"{what} when")
    grades = _values(problems, when, "fit_grades", what, {g.lower(): g for g in GRADES}, "the fit grades A-D")
    kinds = _values(problems, when, "hand_raises", what, {k.value: k.value for k in ActivityType}, "activity kinds")
    lines = problems.texts(when, "product_lines", f"{what} product line")
    if known_lines is not None:
        for item, item_line in problems.items(when, "product_lines"):
            if isinstance(item, str) and item.strip().lower() not in known_lines:
                known = ", ".join(sorted(known_lines))
                problems.add(item_line, f"{what}: unknown product line {item!r} (known: {known})")
    sources = problems.texts(when, "sources", f"{what} source")
    if len(problems.found) > before:
        return None
    result = PolicyWhen(frozenset(grades), frozenset(p.lower() for p in lines), frozenset(sources), frozenset(kinds))
    if result.is_default:
        problems.add(line_of(node, "when"), f"{what} when: names nothing; leave it out for every lead")
        return None
    return result


def _values(problems: FileProblems, node: dict, key: str, what: str, known: dict[str, str], words: str) -> list[str]:
    found = []
    for item, line in problems.items(node, key):
        text = problems.text(item, line, f"{what} {key}")
        if text is not None and text.lower() not in known:
            problems.add(line, f"{what} {key}: {text!r} is not one of {words} ({', '.join(known.values())})")
        elif text is not None:
            found.append(known[text.lower()])
    return found


def _contacted(problems: FileProblems, document: dict) -> ContactRules:
    node = document.get("contacted")
    if node is None:
        return ContactRules()
    node = problems.mapping(node, line_of(document, "contacted"), "contacted")
    if node is None:
        return ContactRules()
    problems.keys(node, CONTACTED_KEYS, "contacted")
    activities = problems.texts(node, "activities", "contacted activity")
    statuses = problems.texts(node, "statuses", "contacted status")
    if "activities" in node and not activities and not statuses:
        problems.add(line_of(node), "contacted: with no activities and no statuses nothing would ever count")
    return ContactRules(frozenset(a.lower() for a in activities) if "activities" in node else
                        ContactRules().activities, frozenset(statuses),
                        problems.flag(node, "only_by_the_owner", "contacted", False))


# ------------------------------------------------------------------------------------------ describing

def describe_sla(policies: SlaPolicies) -> str:
    """The policies as markdown: for which leads, the window, the clock, reminder, grace and reassignments."""
    rows = [(p.name, str(p.when), f"{p.respond_within:g} h", p.clock.value.replace("_", " "),
             f"{p.remind_before:g} h before" if p.remind_before else "none", f"{p.grace:g} h",
             p.max_reassignments) for p in policies.policies]
    contacted = policies.contacted
    return "\n".join([
        f"# SLA policies{f' ({policies.source})' if policies.source else ''}", "",
        table(("policy", "for", "first contact within", "clock", "reminder", "grace", "reassignments"), rows), "",
        "Contacted means: a logged " + (" or ".join(sorted(contacted.activities)) or "(no activity)")
        + (" (by the owner)" if contacted.only_by_the_owner else "")
        + (f", or status {', '.join(sorted(contacted.statuses))}" if contacted.statuses else "") + "."]) + "\n"
