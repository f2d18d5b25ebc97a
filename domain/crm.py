"""The two-way sync's records and rules, CRM-neutral: what the CRM tells (people, activities, opportunities,
users, accounts), what Handoff writes there, who owns which field, and how what sales did moves a lead's stage."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Mapping

from domain.activity import ActivityType
from domain.lifecycle import Stage


class CrmObject(StrEnum):
    LEAD = "Lead"
    CONTACT = "Contact"


# ---------------------------------------------------------------- what the CRM tells

@dataclass(frozen=True, slots=True)
class CrmPerson:
    """A lead or contact record as the CRM holds it. `handoff_key` is Handoff's external id on the record;
    `master_id` names the record a deleted one was merged into."""

    object: CrmObject
    crm_id: str
    email: str | None
    handoff_key: str | None
    owner_id: str | None
    status: str | None
    converted: bool
    contact_id: str | None
    opportunity_id: str | None
    account_id: str | None
    recycle_reason: str | None
    deleted: bool
    master_id: str | None
    modified_by: str | None
    modified_at: datetime
    product_line: str | None = None


class ContactKind(StrEnum):
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    TASK = "task"


@dataclass(frozen=True, slots=True)
class CrmActivity:
    """A logged call, e-mail, meeting or task on a person (`who_id`: their lead or contact record)."""

    crm_id: str
    who_id: str | None
    kind: ContactKind
    owner_id: str | None
    occurred_at: datetime
    subject: str | None
    deleted: bool
    modified_at: datetime


@dataclass(frozen=True, slots=True)
class CrmOpportunity:
    crm_id: str
    account_id: str | None
    stage_name: str | None
    closed: bool
    won: bool
    amount: float | None
    owner_id: str | None
    close_date: str | None
    deleted: bool
    modified_at: datetime


@dataclass(frozen=True, slots=True)
class CrmUser:
    crm_id: str
    email: str | None
    name: str | None
    active: bool
    manager_id: str | None
    timezone: str | None
    modified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CrmAccount:
    crm_id: str
    name: str | None
    website: str | None
    owner_id: str | None
    deleted: bool
    modified_at: datetime


@dataclass
class CrmChanges:
    """One pull: everything changed since each kind's watermark, the newest change time seen of each kind, and the
    org's clock when each kind's query ran."""

    people: list[CrmPerson] = field(default_factory=list)
    activities: list[CrmActivity] = field(default_factory=list)
    opportunities: list[CrmOpportunity] = field(default_factory=list)
    users: list[CrmUser] = field(default_factory=list)
    accounts: list[CrmAccount] = field(default_factory=list)
    refused: list[tuple[str, str, Any]] = field(default_factory=list)  # (kind, reason, raw record)
    newest: dict[str, datetime] = field(default_factory=dict)
    queried_at: dict[str, datetime] = field(default_factory=dict)

    def watermarks(self) -> dict[str, datetime]:
        """Each kind read up to when its query ran (else to its newest change): a quiet org is then not read
        again from the last change on, run after run; the pull's overlap covers changes committed late."""
        kinds = self.newest.keys() | self.queried_at.keys()
        return {kind: max(t for t in (self.newest.get(kind), self.queried_at.get(kind)) if t is not None)
                for kind in kinds}


# ---------------------------------------------------------------- what Handoff writes

@dataclass(frozen=True, slots=True)
class CrmWrite:
    """One record to write: an update of `crm_id`, or a create (crm_id None) keyed by Handoff's external id.
    `values` hold Handoff's own fields only (and, for a create, the person's details); never a blank."""

    lead_id: int
    object: CrmObject
    crm_id: str | None
    key: str
    values: Mapping[str, Any]

    @property
    def creates(self) -> bool:
        return self.crm_id is None


class Outcome(StrEnum):
    WRITTEN = "written"
    CREATED = "created"
    DUPLICATE = "duplicate"  # the CRM refused a create as a duplicate of `crm_id`: linked instead
    TRANSIENT = "transient"  # try again next run (a locked row, a timeout)
    FAILED = "failed"  # will not succeed as it stands: dead-lettered with the error


@dataclass(frozen=True, slots=True)
class WriteResult:
    """One write's answer. For a duplicate, `crm_id` and `object` name the record the CRM says it duplicates."""

    lead_id: int
    outcome: Outcome
    crm_id: str | None = None
    error_code: str | None = None
    message: str | None = None
    object: CrmObject | None = None


@dataclass(frozen=True, slots=True)
class ApiUsage:
    """The org's API calls used and allowed today (Salesforce's Sforce-Limit-Info header)."""

    used: int
    allowed: int

    @property
    def remaining_share(self) -> float:
        return 1.0 if self.allowed <= 0 else max(0.0, (self.allowed - self.used) / self.allowed)


# ---------------------------------------------------------------- field ownership

# Handoff's fields on a CRM record: only Handoff writes them, and the sync never reads them back as people's
# changes. Everything else on the record (status, owner, conversion, the sales stages) is the CRM's.
HANDOFF_FIELDS = ("score", "fit_grade", "stage", "mql_at", "moment", "moment_at")
# The owner is the CRM's field, written by Handoff only for an assignment it made (routing, a person's, the SLA's
# reassignment), once; whoever changes it in the CRM afterwards decides.
OWNER_FIELD = "owner_id"
# The person's details, written once when Handoff creates the record; afterwards they are sales' to edit.
CREATE_FIELDS = ("email", "first_name", "last_name", "company", "title", "industry", "company_size", "country",
                 "lead_source_channel", "product_interest")


def desired_values(*, score_centipoints: int, fit_grade: str, stage: str, qualified_at: datetime | None,
                   moment: str | None, moment_at: datetime | None) -> dict[str, Any]:
    """Handoff's fields as the CRM should hold them; a value Handoff does not know is left out, never blanked."""
    values: dict[str, Any] = {"score": _points(score_centipoints), "fit_grade": fit_grade, "stage": stage}
    if qualified_at is not None:
        values["mql_at"] = to_milliseconds(qualified_at)
    if moment:
        values["moment"] = moment
        if moment_at is not None:
            values["moment_at"] = to_milliseconds(moment_at)
    return values


def to_milliseconds(moment: datetime) -> datetime:
    """A time as a CRM keeps it (Salesforce: to the millisecond), so what was written compares equal when read."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _points(centipoints: int) -> int:
    """Whole points, halves away from zero: what a rep sorts a list view by."""
    return int(math.copysign(math.floor(abs(centipoints) / 100 + 0.5), centipoints))


def changed_values(desired: Mapping[str, Any], pushed: Mapping[str, Any] | None) -> dict[str, Any]:
    """What differs from what the CRM last accepted; empty when nothing does."""
    pushed = pushed or {}
    return {name: value for name, value in desired.items() if pushed.get(name) != _comparable(value)}


def _comparable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def comparable(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values as they are kept once pushed (JSON-able: times as ISO text)."""
    return {name: _comparable(value) for name, value in values.items()}


def details_for_create(profile: Mapping[str, Any], placeholders: Mapping[str, str]) -> dict[str, Any]:
    """The person's details a new CRM record carries: what Handoff knows, and a placeholder for a field the CRM
    requires and Handoff does not know (a Salesforce Lead needs a last name and a company)."""
    values = {name: profile.get(name) for name in CREATE_FIELDS if profile.get(name) not in (None, "")}
    for name, placeholder in placeholders.items():
        values.setdefault(name, placeholder)
    return values


# ---------------------------------------------------------------- the last interesting moment

_MOMENT_WORDS = {
    ActivityType.NEWSLETTER_SIGNUP: "Signed up for the newsletter",
    ActivityType.EMAIL_OPEN: "Opened e-mail",
    ActivityType.EMAIL_CLICK: "Clicked in e-mail",
    ActivityType.EMAIL_BOUNCE: "E-mail bounced",
    ActivityType.UNSUBSCRIBE: "Unsubscribed",
    ActivityType.PAGE_VIEW: "Visited",
    ActivityType.FORM_FILL: "Filled in form",
    ActivityType.WHITEPAPER_DOWNLOAD: "Downloaded",
    ActivityType.WEBINAR_REGISTRATION: "Registered for webinar",
    ActivityType.WEBINAR_ATTENDED: "Attended webinar",
    ActivityType.DEMO_REQUEST: "Requested a demo",
    ActivityType.TRIAL_SIGNUP: "Started a trial",
    ActivityType.CONTACT_SALES: "Asked to talk to sales",
}
MOMENT_LENGTH = 255


def interesting_moment(kind: str, asset: str | None, campaign: str | None) -> str:
    """The activity that last moved the score, in a rep's words: "Downloaded 'State of RevOps 2026' (campaign
    Q4 nurture)"."""
    try:
        words = _MOMENT_WORDS[ActivityType(kind)]
    except ValueError:
        words = kind.replace("_", " ").capitalize()
    text = f"{words} '{asset}'" if asset else words
    if campaign:
        text += f" (campaign {campaign})"
    return text if len(text) <= MOMENT_LENGTH else text[:MOMENT_LENGTH - 1] + "…"


# ---------------------------------------------------------------- what sales did, as lifecycle moves

@dataclass(frozen=True)
class StageMapping:
    """How the CRM's lead statuses and opportunity stages read as lifecycle stages (config/crm.yaml). A status
    mapped to None leaves the stage as it is (the lead is still open)."""

    statuses: Mapping[str, Stage | None]
    opportunity_stages: Mapping[str, Stage | None]
    won: Stage = Stage.CUSTOMER
    lost: Stage | None = Stage.RECYCLED
    converted: Stage = Stage.SQL
    converted_with_opportunity: Stage = Stage.OPPORTUNITY


@dataclass(frozen=True)
class SalesMove:
    target: Stage
    reason: str


def person_move(person: CrmPerson, before: CrmPerson | None, mapping: StageMapping, by: str | None) -> SalesMove | None:
    """The lifecycle move a person record's change asks for, or None: only a change of the CRM's own fields
    (status, conversion) moves a stage; a record Handoff itself wrote shows no such change."""
    who = f" (by {by})" if by else ""
    if person.converted and not (before and before.converted):
        target = mapping.converted_with_opportunity if person.opportunity_id else mapping.converted
        return SalesMove(target, f"converted in the CRM{' with an opportunity' if person.opportunity_id else ''}{who}")
    if person.status is None or (before is not None and before.status == person.status):
        return None
    target = mapping.statuses.get(person.status)
    if target is None:
        return None
    if target is Stage.RECYCLED:
        reason = person.recycle_reason or "no reason given in the CRM"
        return SalesMove(target, f"sales sent it back to nurture: {reason} (status '{person.status}'){who}")
    if target is Stage.DISQUALIFIED:
        return SalesMove(target, f"sales closed it: status '{person.status}'{who}")
    return SalesMove(target, f"status '{person.status}' in the CRM{who}")


def opportunity_move(opportunity: CrmOpportunity, before: CrmOpportunity | None, mapping: StageMapping) -> SalesMove | None:
    """The lifecycle move an opportunity's change asks for: won makes a customer; lost, by the mapping (back to
    nurture by default); an open stage is Opportunity."""
    if before is not None and (before.stage_name, before.closed, before.won) == \
            (opportunity.stage_name, opportunity.closed, opportunity.won):
        return None
    if opportunity.closed and opportunity.won:
        return SalesMove(mapping.won, f"opportunity won ('{opportunity.stage_name}')")
    if opportunity.closed:
        if mapping.lost is None:
            return None
        return SalesMove(mapping.lost, f"opportunity lost ('{opportunity.stage_name}')")
    target = mapping.opportunity_stages.get(opportunity.stage_name or "", Stage.OPPORTUNITY)
    return None if target is None else SalesMove(target, f"opportunity at '{opportunity.stage_name}'")
