"""The routing rulebook (config/routing.yaml as values) and the lead as routing sees it, with how the product line
a lead showed interest in is found."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from domain.business_hours import UTC
from domain.crm_directory import FREE_MAIL_DOMAINS, email_domain
from domain.teams import Fallback


# ------------------------------------------------------------------------------------------ the lead

@dataclass(frozen=True)
class RecentActivity:
    """One of the lead's recent marketing activities: what it engaged with, and when."""

    at: datetime
    kind: str = ""
    asset: str | None = None
    campaign: str | None = None


@dataclass(frozen=True)
class LeadToRoute:
    """A sales-ready lead as routing sees it. `record_product_line` is the CRM record's own product line, for orgs
    that keep one lead record per product line."""

    lead_id: int | str
    email: str
    company: str | None = None
    country: str | None = None  # ISO 3166 alpha-2
    product_interest: str | None = None
    activities: tuple[RecentActivity, ...] = ()  # most recent first
    fit_grade: str | None = None
    score: float | None = None
    crm_owner_id: str | None = None
    record_product_line: str | None = None

    @property
    def email_domain(self) -> str | None:
        return email_domain(self.email)


# ------------------------------------------------------------------------------------------ the rulebook

class LeadRecords(StrEnum):
    """How the org keeps leads in the CRM: one record per person, or one per person and product line."""

    PER_PERSON = "per_person"
    PER_PRODUCT_LINE = "per_product_line"


class Assign(StrEnum):
    """How a rule that picked a team chooses the owner within it."""

    ROUND_ROBIN = "round_robin"
    TEAM_FALLBACK = "team_fallback"  # the team's own fallback (its queue, say) from teams.yaml


class Owners(StrEnum):
    """Whose ownership keep_owner respects."""

    REPS = "reps"
    ACTIVE_USERS = "active_users"


@dataclass(frozen=True)
class ProductLine:
    """A product line, the words that show interest in it, and (optionally) the one team or rep that sells it."""

    name: str
    keywords: tuple[str, ...] = ()
    team: str | None = None
    rep: str | None = None
    line: int | None = field(default=None, compare=False)
    _pattern: re.Pattern | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.strip().lower())
        words = sorted({k.strip() for k in (self.name, *self.keywords) if k.strip()}, key=len, reverse=True)
        # Whole words only: 'sla' in 'SLA Benchmarks' and '/blog/sla-for-sales', never in 'Slack' or 'translation'.
        alternatives = "|".join(re.escape(w) for w in words)
        object.__setattr__(self, "_pattern", re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE))

    def keyword_in(self, text: str | None) -> str | None:
        """The keyword (or the line's own name) `text` mentions, if any."""
        found = self._pattern.search(text) if text else None
        return found.group(0) if found else None


@dataclass(frozen=True)
class KeepOwner:
    """A lead whose CRM owner is an active rep (or any active CRM user) stays with them, who is notified."""

    kind: ClassVar[str] = "keep_owner"
    name: str
    owners: Owners = Owners.REPS
    ignore: frozenset[str] = frozenset()  # e-mails of CRM users whose leads are not kept (the integration user)
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AccountOwner:
    """A lead whose company has an account in the CRM (by e-mail domain, then by company name) goes to the
    account's owner, when that owner is a rep who can take it."""

    kind: ClassVar[str] = "account_owner"
    name: str
    only_during_working_hours: bool = False
    respect_capacity: bool = False
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ByProductLine:
    """The team (or rep) selling the product line the lead showed interest in."""

    kind: ClassVar[str] = "product_line"
    name: str
    assign: Assign = Assign.ROUND_ROBIN
    only_during_working_hours: bool = True
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ByTerritory:
    """The team whose territory covers the lead's country (only `teams`, when given)."""

    kind: ClassVar[str] = "territory"
    name: str
    teams: tuple[str, ...] = ()
    assign: Assign = Assign.ROUND_ROBIN
    only_during_working_hours: bool = True
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RoundRobinIn:
    """Weighted round robin within one named team."""

    kind: ClassVar[str] = "round_robin"
    name: str
    team: str
    only_during_working_hours: bool = True
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class FallbackTo:
    """When nobody could take the lead: `to`, else the fallback of the team an earlier rule picked, else the
    overall fallback of teams.yaml."""

    kind: ClassVar[str] = "fallback"
    name: str
    to: Fallback | None = None
    line: int | None = field(default=None, compare=False)


RoutingRule = KeepOwner | AccountOwner | ByProductLine | ByTerritory | RoundRobinIn | FallbackTo
RULE_KINDS: dict[str, type] = {rule.kind: rule for rule in (KeepOwner, AccountOwner, ByProductLine, ByTerritory,
                                                             RoundRobinIn, FallbackTo)}


@dataclass(frozen=True)
class RoutingRules:
    """The ordered rules (first match wins), the product lines and how the org keeps its lead records."""

    rules: tuple[RoutingRule, ...]
    product_lines: tuple[ProductLine, ...] = ()
    lead_records: LeadRecords = LeadRecords.PER_PERSON
    free_mail_domains: frozenset[str] = FREE_MAIL_DOMAINS
    source: str = field(default="", compare=False)

    def product_line(self, name: str) -> ProductLine | None:
        key = name.strip().lower()
        return next((p for p in self.product_lines if p.name == key), None)


# ------------------------------------------------------------------------------------------ product interest

@dataclass(frozen=True)
class ProductInterest:
    """The product line a lead showed interest in, and what showed it."""

    line: str
    evidence: str


def product_line_of(lead: LeadToRoute, rules: RoutingRules) -> ProductInterest | None:
    """Per product line record: the record's product line. Per person: the product interest field, else the most
    recent activity whose asset or campaign names a product line."""
    if rules.lead_records is LeadRecords.PER_PRODUCT_LINE:
        line = _line_named(lead.record_product_line, rules)
        return ProductInterest(line, f"the CRM record's product line '{lead.record_product_line}'") if line else None
    line = _line_named(lead.product_interest, rules)
    if line:
        return ProductInterest(line, f"the product interest field '{lead.product_interest}'")
    for activity in sorted(lead.activities, key=lambda a: a.at, reverse=True):
        for what, text in (("asset", activity.asset), ("campaign", activity.campaign)):
            for product in rules.product_lines:
                keyword = product.keyword_in(text)
                if keyword:
                    kind = f"{activity.kind} " if activity.kind else ""
                    when = activity.at.astimezone(UTC)
                    return ProductInterest(product.name, f"{what} '{text}' of the {kind}activity of "
                                                         f"{when:%Y-%m-%d %H:%M} UTC ('{keyword}')")
    return None


def _line_named(value: str | None, rules: RoutingRules) -> str | None:
    """The product line a field value names: the line's own name first, else the first line a keyword points to."""
    if not value or not value.strip():
        return None
    exact = rules.product_line(value)
    if exact:
        return exact.name
    return next((p.name for p in rules.product_lines if p.keyword_in(value)), None)
