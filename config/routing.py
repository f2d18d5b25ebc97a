"""Loading the routing rules (routing.yaml) against the sales teams, every problem named by file, line and what is
wrong, and describing them as markdown for `handoff routing check`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from config.settings import CONFIG_DIR
from config.yaml_checks import ConfigProblems, FileProblems, line_of, read_document, table
from domain.activity import normalize_email
from domain.crm_directory import FREE_MAIL_DOMAINS
from domain.routing_rules import (
    RULE_KINDS, AccountOwner, Assign, ByProductLine, ByTerritory, FallbackTo, KeepOwner, LeadRecords, Owners,
    ProductLine, RoundRobinIn, RoutingRule, RoutingRules,
)
from domain.teams import Fallback, SalesTeams

ROUTING_FILE = CONFIG_DIR / "routing.yaml"

TOP_KEYS = ("lead_records", "free_mail_domains", "more_free_mail_domains", "product_lines", "rules")
PRODUCT_LINE_KEYS = ("keywords", "team", "rep")
RULE_KEYS = {
    "keep_owner": ("owners", "ignore"),
    "account_owner": ("only_during_working_hours", "respect_capacity"),
    "product_line": ("assign", "only_during_working_hours"),
    "territory": ("teams", "assign", "only_during_working_hours"),
    "round_robin": ("team", "only_during_working_hours"),
    "fallback": ("queue", "rep"),
}
_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$")


class RoutingConfigError(ConfigProblems):
    """routing.yaml is invalid."""


def load_routing(teams: SalesTeams, path: Path = ROUTING_FILE, text: str | None = None) -> RoutingRules:
    """The routing rules of `path` (or of `text`, named `path`), checked against `teams`. Raises RoutingConfigError
    listing every problem found."""
    problems = FileProblems(path, RoutingConfigError)
    document = read_document(path, text)
    if not isinstance(document, dict):
        raise RoutingConfigError([f"{path}: expected a mapping with product_lines and rules"])
    problems.keys(document, TOP_KEYS, "the routing file")
    lead_records = problems.choice(document, "lead_records", "the routing file", LeadRecords, LeadRecords.PER_PERSON)
    free_mail = _free_mail(problems, document)
    product_lines = _product_lines(problems, document, teams)
    rules = _rules(problems, document, teams)
    problems.raise_any()
    return RoutingRules(rules=rules, product_lines=product_lines, lead_records=lead_records,
                        free_mail_domains=free_mail, source=str(path))


def _free_mail(problems: FileProblems, document: dict) -> frozenset[str]:
    domains = set(FREE_MAIL_DOMAINS)
    if "free_mail_domains" in document:
        domains = set()
    for key in ("free_mail_domains", "more_free_mail_domains"):
        for item, line in problems.items(document, key):
            text = problems.text(item, line, key)
            if text is None:
                continue
            domain = text.lower().lstrip("@").strip(".")
            if not _DOMAIN.match(domain):
                problems.add(line, f"{key}: {text!r} is not an e-mail domain (such as gmail.com)")
            domains.add(domain)
    return frozenset(domains)


def _product_lines(problems: FileProblems, document: dict, teams: SalesTeams) -> tuple[ProductLine, ...]:
    node = document.get("product_lines")
    if node is None:
        return ()
    node = problems.mapping(node, line_of(document, "product_lines"), "product_lines")
    if node is None:
        return ()
    problems.repeated_keys(node, "product_lines")
    found = []
    for name, spec in node.items():
        line = line_of(node, name)
        what = f"product line {name!r}"
        spec = {} if spec is None else problems.mapping(spec, line, what)
        if spec is None or problems.text(name, line, "a product line's name") is None:
            continue
        problems.keys(spec, PRODUCT_LINE_KEYS, what)
        keywords = problems.texts(spec, "keywords", f"{what} keyword")
        team = _team(problems, spec, "team", what, teams)
        rep = _rep(problems, spec, "rep", what, teams)
        if team and rep:
            problems.add(line, f"{what} is sold by a team or by a rep, not both")
        key = str(name).strip().lower()
        if not team and not rep and not teams.teams_for(key):
            sellers = sorted({p for t in teams.teams for p in t.product_lines})
            problems.add(line, f"{what}: no team in {teams.source or 'teams.yaml'} sells it (their product lines: "
                               f"{', '.join(sellers) or 'none'}); add it to a team's product_lines or name team: here")
        found.append(ProductLine(key, keywords, team, rep, line=line))
    return tuple(found)


def _rules(problems: FileProblems, document: dict, teams: SalesTeams) -> tuple[RoutingRule, ...]:
    items = problems.items(document, "rules")
    if not items:
        problems.add(line_of(document, "rules") or line_of(document), "at least one rule is required under rules:")
    rules: list[RoutingRule] = []
    names: dict[str, int | None] = {}
    fallback_line: int | None = None
    for entry, line in items:
        node = problems.mapping(entry, line, "a rule")
        if node is None:
            continue
        line = line_of(node)
        name = problems.text(node.get("name"), line_of(node, "name") or line, "a rule's name")
        if name in names:
            problems.add(line_of(node, "name"), f"rule name {name!r} is already used on line {names[name]}")
        elif name:
            names[name] = line_of(node, "name")
        kind = node.get("kind")
        if kind not in RULE_KINDS:
            problems.add(line_of(node, "kind") or line, f"unknown rule kind {kind!r} in rule {name!r} "
                                                        f"(known: {', '.join(RULE_KINDS)})")
            continue
        what = f"rule {name!r}"
        problems.keys(node, ("name", "kind") + RULE_KEYS[kind], what)
        if fallback_line is not None:
            problems.add(line, f"{what} is never tried: the fallback rule on line {fallback_line} always decides")
        rule = _rule(problems, node, kind, name or "", what, teams)
        if rule is not None:
            rules.append(rule)
        if kind == "fallback" and fallback_line is None:
            fallback_line = line
    return tuple(rules)


def _rule(problems: FileProblems, node: dict, kind: str, name: str, what: str, teams: SalesTeams) -> Any:
    line = line_of(node)
    hours = problems.flag(node, "only_during_working_hours", what, kind != "account_owner")
    if kind == "keep_owner":
        ignore = frozenset(e for item, item_line in problems.items(node, "ignore")
                           if (e := _email(problems, item, item_line, f"{what} ignore")))
        return KeepOwner(name, problems.choice(node, "owners", what, Owners, Owners.REPS), ignore, line=line)
    if kind == "account_owner":
        return AccountOwner(name, hours, problems.flag(node, "respect_capacity", what, False), line=line)
    assign = problems.choice(node, "assign", what, Assign, Assign.ROUND_ROBIN)
    if kind == "product_line":
        return ByProductLine(name, assign, hours, line=line)
    if kind == "territory":
        named = tuple(t for item, item_line in problems.items(node, "teams")
                      if (t := _known_team(problems, item, item_line, what, teams)))
        for team in named:
            if not teams.team(team).territories:
                problems.add(line_of(node, "teams"), f"{what}: team {team!r} has no territories in teams.yaml")
        return ByTerritory(name, named, assign, hours, line=line)
    if kind == "round_robin":
        if "team" not in node:
            problems.add(line, f"{what} needs team: the team whose reps share the leads")
        team = _team(problems, node, "team", what, teams)
        return RoundRobinIn(name, team, hours, line=line) if team else None
    given = [key for key in ("queue", "rep") if node.get(key) is not None]
    if len(given) > 1:
        problems.add(line, f"{what} goes to a queue or a rep, not both")
        return None
    queue = problems.text(node["queue"], line_of(node, "queue"), f"{what} queue") if given == ["queue"] else None
    rep = _rep(problems, node, "rep", what, teams)
    to = Fallback(queue=queue) if queue else Fallback(rep=rep) if rep else None
    return FallbackTo(name, to, line=line)


def _team(problems: FileProblems, node: dict, key: str, what: str, teams: SalesTeams) -> str | None:
    if node.get(key) is None:
        return None
    return _known_team(problems, node[key], line_of(node, key), what, teams)


def _known_team(problems: FileProblems, value: Any, line: int | None, what: str, teams: SalesTeams) -> str | None:
    name = problems.text(value, line, f"{what} team")
    if name is None:
        return None
    if name not in {t.name for t in teams.teams}:
        problems.add(line, f"{what}: unknown team {name!r} (teams: {', '.join(t.name for t in teams.teams)})")
        return None
    return name


def _rep(problems: FileProblems, node: dict, key: str, what: str, teams: SalesTeams) -> str | None:
    if node.get(key) is None:
        return None
    email = _email(problems, node[key], line_of(node, key), f"{what} {key}")
    if email and teams.rep(email) is None:
        problems.add(line_of(node, key), f"{what}: unknown rep {email} (a rep is listed under reps: in teams.yaml)")
        return None
    return email


def _email(problems: FileProblems, value: Any, line: int | None, what: str) -> str | None:
    email = normalize_email(value) if isinstance(value, str) else None
    if email is None:
        problems.add(line, f"{what} must be an e-mail address, not {value!r}")
    return email


# ------------------------------------------------------------------------------------------ describing

def describe_routing(rules: RoutingRules, teams: SalesTeams) -> str:
    """The routing rules as markdown: the rules in order and what each does, the product lines and who sells them,
    and where a lead goes when no rule matches."""
    records = "one per person" if rules.lead_records is LeadRecords.PER_PERSON else \
        "one per person and product line (the record's product line decides)"
    out = [f"# Routing rules{f' ({rules.source})' if rules.source else ''}", "", f"Lead records in the CRM: {records}.",
           "", "## Rules (tried in order, the first that matches decides)", "",
           table(("#", "rule", "kind", "what it does"),
                 [(n, rule.name, rule.kind, _what_it_does(rule, teams)) for n, rule in enumerate(rules.rules, 1)])]
    if rules.product_lines:
        out += ["", "## Product lines", "", table(("product line", "shown by", "sold by"), [
            (p.name, ", ".join((p.name,) + p.keywords), p.rep or p.team or
             ", ".join(t.name for t in teams.teams_for(p.name)) or "nobody") for p in rules.product_lines])]
    added = sorted(rules.free_mail_domains - FREE_MAIL_DOMAINS)
    out += ["", f"Free-mail domains ignored by account matching: {len(rules.free_mail_domains)}"
                + (f" (added: {', '.join(added)})" if added else "") + ".",
            f"When no rule matches: the overall fallback of teams.yaml, {teams.fallback}."]
    return "\n".join(out) + "\n"


def _what_it_does(rule: RoutingRule, teams: SalesTeams) -> str:
    hours = "" if not getattr(rule, "only_during_working_hours", False) else ", reps at work only"
    assign = "round robin" if getattr(rule, "assign", Assign.ROUND_ROBIN) is Assign.ROUND_ROBIN else \
        "the team's fallback"
    if isinstance(rule, KeepOwner):
        whose = "a rep" if rule.owners is Owners.REPS else "an active CRM user"
        ignored = f" (not {', '.join(sorted(rule.ignore))})" if rule.ignore else ""
        return f"a lead owned by {whose}{ignored} stays with them; they are notified"
    if isinstance(rule, AccountOwner):
        capacity = ", within capacity" if rule.respect_capacity else ""
        return f"the owner of the company's CRM account (by e-mail domain, then name), if a rep{hours}{capacity}"
    if isinstance(rule, ByProductLine):
        return f"the team selling the lead's product line, {assign}{hours}"
    if isinstance(rule, ByTerritory):
        among = f" among {', '.join(rule.teams)}" if rule.teams else ""
        return f"the team covering the lead's country{among}, {assign}{hours}"
    if isinstance(rule, RoundRobinIn):
        return f"round robin in team {rule.team}{hours}"
    return f"{rule.to}" if rule.to else \
        f"the fallback of the team an earlier rule picked, else {teams.fallback}"
