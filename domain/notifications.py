"""What Handoff tells reps and managers about their leads, as plain text a person reads on a phone: a new lead with
the facts a first call needs, the SLA's reminder, breach, escalation, reassignment and recycle, and an owner's
alert that their lead engaged or reached the readiness level."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Sequence

from domain.business_hours import zone_of
from domain.crm import interesting_moment
from domain.rules import points_text

SUBJECT_LENGTH = 200
TOP_CONTRIBUTIONS = 5
CHANNEL_MARK = "#"  # joins a message's key and one of the channels every notification also goes to


# ---------------------------------------------------------------------------------------------- the facts

@dataclass(frozen=True)
class Message:
    """A notification to write to the outbox: `key` names its cause, so the same cause is enqueued once."""

    key: str
    kind: str
    recipient: str
    subject: str
    body: str
    lead_id: int | None = None
    assignment_id: int | None = None  # sent only once the CRM holds this assignment's owner


@dataclass(frozen=True)
class Person:
    """Someone told: a rep or a manager, by e-mail."""

    email: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email

    @property
    def called(self) -> str:
        return self.name or self.email


@dataclass(frozen=True)
class Contribution:
    """One activity that made the score: the rule's action, the activity, and its points (centipoints) as scored."""

    action: str
    type: str
    asset: str | None
    campaign: str | None
    occurred_at: datetime
    points: int


@dataclass(frozen=True)
class EngagedEmail:
    """The marketing e-mail the person last opened or clicked."""

    name: str | None
    campaign: str | None
    clicked: bool
    at: datetime


@dataclass(frozen=True)
class Engagement:
    """A marketing activity as an owner's alert names it: what the person did, with which asset, in which campaign."""

    type: str
    asset: str | None
    campaign: str | None
    occurred_at: datetime
    activity_id: int | None = None


@dataclass(frozen=True)
class LeadFacts:
    """A lead as a rep needs it before the first call (score in centipoints, as stored)."""

    lead_id: int
    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    country: str | None = None
    score: int | None = None
    fit_grade: str | None = None
    mql_reason: str | None = None
    contributions: tuple[Contribution, ...] = ()
    last_email: EngagedEmail | None = None
    record_link: str | None = None

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or self.email

    @property
    def short(self) -> str:
        """Who, in a few words: "Ana Example, Acme"."""
        return f"{self.name}, {self.company}" if self.company else self.name

    @property
    def score_line(self) -> str:
        score = "not scored" if self.score is None else whole_points(self.score)
        return f"{score}, fit {self.fit_grade}" if self.fit_grade else score


@dataclass(frozen=True)
class Due:
    """When the rep must have made first contact, read in `zone` (the rep's own timezone)."""

    at: datetime
    zone: str = "UTC"
    hours: Decimal | None = None  # the policy's response window
    business_hours: bool = True
    policy: str | None = None

    @property
    def local(self) -> str:
        return local_time(self.at, self.zone)

    @property
    def window(self) -> str:
        if self.hours is None:
            return ""
        hours = points_text(int(Decimal(self.hours) * 100))
        unit = "business hour" if self.business_hours else "hour"
        return f"{hours} {unit}{'' if Decimal(self.hours) == 1 else 's'}"


def notification_key(cause: str, ident: int | str, role: str | None = None) -> str:
    """A message's dedupe key from its cause: `routed:12`, `sla-breached:7`, `recycled:7:manager`."""
    key = f"{cause}:{ident}" + (f":{role}" if role else "")
    if CHANNEL_MARK in key:
        raise ValueError(f"a notification key has no {CHANNEL_MARK!r}: {key!r}")
    return key


def on_channel(message: Message, channel: str) -> Message:
    """The copy of a message for a channel every notification also goes to: its own key, the recipient named."""
    return Message(key=f"{message.key}{CHANNEL_MARK}{channel}", kind=message.kind, recipient=message.recipient,
                   subject=message.subject, body=f"For {message.recipient}\n\n{message.body}",
                   lead_id=message.lead_id, assignment_id=message.assignment_id)


def channel_of(key: str) -> tuple[str, str | None]:
    """A stored key as (the cause's key, the shared channel or None for the recipient's own)."""
    cause, mark, channel = key.partition(CHANNEL_MARK)
    return cause, channel if mark else None


# ---------------------------------------------------------------------------------------------- new leads

def lead_routed(lead: LeadFacts, to: Person, *, rule: str, due: Due | None, key: str, now: datetime,
                assignment_id: int | None = None, why: str | None = None) -> Message:
    """A sales-ready lead for `to`, chosen by `rule`; `why`: a line saying why it came (a reassignment)."""
    zone = due.zone if due else "UTC"
    head = f"{lead.name} is yours: a sales-ready lead."
    lines = [head, *([why] if why else []), "", *_profile(lead), "", _due_line(due), "",
             *_score_story(lead, zone, now), "", _link_line(lead), f"Routed to you by: {rule}"]
    return _message(key, "reassigned" if why else "routed", to, lead, assignment_id,
                    f"New lead: {lead.short} (score {lead.score_line})" + (f", contact by {due.local}" if due else ""),
                    lines)


def lead_kept(lead: LeadFacts, to: Person, *, due: Due | None, key: str, now: datetime,
              assignment_id: int | None = None) -> Message:
    """The relationship owner told their own lead became sales-ready."""
    zone = due.zone if due else "UTC"
    lines = [f"{lead.name} is sales-ready. You already own this lead: nothing was re-routed.", "",
             *_profile(lead), "", _due_line(due), "", *_score_story(lead, zone, now), "", _link_line(lead)]
    return _message(key, "kept", to, lead, assignment_id, f"Your lead is sales-ready: {lead.short} "
                    f"(score {lead.score_line})", lines)


def owner_alert(lead: LeadFacts, to: Person, *, engaged: Sequence[Engagement], reached: int | None,
                level: int | None, why_owner: str, quiet_until: datetime | None, key: str, now: datetime,
                zone: str = "UTC") -> Message:
    """To the rep who owns a lead: it just engaged (`engaged`, newest first) and/or its score reached the readiness
    level (`reached`, centipoints); nothing is re-routed."""
    lines = []
    if engaged:
        latest = engaged[0]
        lines += [f"{lead.name} just engaged: {_moment(latest)}, {_when(latest.occurred_at, zone, now)}.",
                  f"Campaign: {latest.campaign or 'none named by the marketing tool'}"]
        if len(engaged) > 1:
            lines += ["Before that:", *(f"- {_moment(e)}, {_when(e.occurred_at, zone, now)}"
                                        for e in engaged[1:TOP_CONTRIBUTIONS])]
            rest = len(engaged) - TOP_CONTRIBUTIONS
            lines += [f"  and {rest} more"] if rest > 0 else []
    if reached is not None:
        lines.append(f"Their score is {whole_points(reached)} points: at or above your alert level of "
                     f"{whole_points(level or reached)}.")
    lines += [f"You are told because {why_owner}; nothing was re-routed.", "", *_profile(lead), "",
              *_score_story(lead, zone, now), "", _link_line(lead)]
    if engaged and quiet_until:
        lines.append(f"No other engagement alert for this lead before {local_time(quiet_until, zone)}.")
    if engaged:
        subject = f"Your lead {lead.short} engaged: {_moment(engaged[0])}"
        subject += f", score now {whole_points(reached)}" if reached is not None else ""
    else:
        subject = f"Your lead {lead.short} is at {whole_points(reached)} points"
    return _message(key, "owner_alert", to, lead, None, subject, lines)


# ---------------------------------------------------------------------------------------------- the SLA

def sla_reminder(lead: LeadFacts, to: Person, *, due: Due, key: str, now: datetime) -> Message:
    """Before the due time: the rep has not made first contact yet."""
    left = _span(due.at - now)
    lines = [f"You have not contacted {lead.name} yet.", f"Contact by {due.local} ({left} from now"
             + (f", {due.window}" if due.window else "") + ").", "", *_profile(lead), "", _link_line(lead)]
    return _message(key, "sla_reminder", to, lead, None, f"Reminder: contact {lead.short} by {due.local}", lines)


def sla_breached(lead: LeadFacts, to: Person, *, due: Due, manager: Person | None, reassign_at: datetime | None,
                 key: str, now: datetime, recycles: bool = False) -> Message:
    """To the rep: the due time passed without a first contact."""
    told = f"Your manager {manager} has been told." if manager else "No manager was found to tell."
    lines = [f"{lead.name} was due a first contact by {due.local}: {_span(now - due.at)} ago, none logged.", told]
    if reassign_at:
        lines.append(f"Contact them before {local_time(reassign_at, due.zone)}, or the lead {_next_step(recycles)}.")
    lines += ["", *_profile(lead), "", _link_line(lead)]
    return _message(key, "sla_breached", to, lead, None, f"SLA missed: {lead.short}, due {due.local}", lines)


def sla_escalated(lead: LeadFacts, to: Person, *, owner: Person, due: Due, reassign_at: datetime | None, key: str,
                  now: datetime, recycles: bool = False) -> Message:
    """To the rep's manager: who let which lead lapse, and since when."""
    zone = due.zone
    lines = [f"{owner} has not contacted {lead.name} ({lead.company or 'no company given'}).",
             f"First contact was due by {due.local}, {_span(now - due.at)} ago"
             + (f" ({due.window}, policy {due.policy})" if due.window and due.policy else "") + "."]
    if reassign_at:
        lines.append(f"Unless contacted by {local_time(reassign_at, zone)}, it {_next_step(recycles)}.")
    lines += ["", *_profile(lead), "", _link_line(lead)]
    return _message(key, "sla_escalated", to, lead, None,
                    f"Escalation: {owner.called} has not contacted {lead.short} (due {due.local})", lines)


def _next_step(recycles: bool) -> str:
    """What the grace period's end brings: the last reassignment allowed is spent, or not."""
    return "goes back to marketing nurture" if recycles else "goes to another rep"


def lead_reassigned(lead: LeadFacts, to: Person, *, lost_by: Person, new_owner: Person, reason: str, key: str,
                    now: datetime, zone: str = "UTC", assignment_id: int | None = None) -> Message:
    """To the rep who lost the lead (or their manager): it went to someone else, and why."""
    yours = to.email == lost_by.email
    head = (f"{lead.name} is no longer yours: it now belongs to {new_owner}." if yours else
            f"{lead.name} went from {lost_by} to {new_owner}.")
    lines = [head, f"Why: {reason}", f"At: {local_time(now, zone)}", "", *_profile(lead), "", _link_line(lead)]
    subject = (f"Lead reassigned: {lead.short} now goes to {new_owner.called}" if yours else
               f"Lead reassigned: {lead.short}, from {lost_by.called} to {new_owner.called}")
    return _message(key, "reassigned_away", to, lead, assignment_id, subject, lines)


def lead_recycled(lead: LeadFacts, to: Person, *, owner: Person | None, reason: str, key: str, now: datetime,
                  zone: str = "UTC") -> Message:
    """To the last owner and the manager: the lead went back to marketing nurture, and why."""
    yours = owner is not None and to.email == owner.email
    head = (f"{lead.name} went back to marketing nurture; it is no longer yours." if yours else
            f"{lead.name} went back to marketing nurture" + (f" from {owner}." if owner else "."))
    lines = [head, f"Why: {reason}", f"At: {local_time(now, zone)}", "", *_profile(lead), "", _link_line(lead)]
    return _message(key, "recycled", to, lead, None, f"Back to nurture: {lead.short}", lines)


# ---------------------------------------------------------------------------------------------- the words

def local_time(at: datetime, zone: str, *, year: bool = False, named: bool = True) -> str:
    """`Tue 4 Dec 11:00 Europe/Berlin`: a moment as the person reads it on their own clock."""
    moment = at.astimezone(zone_of(zone))
    day = f"{moment:%a} {moment.day} {moment:%b}" + (f" {moment.year}" if year else "")
    return f"{day} {moment:%H:%M}" + (f" {zone}" if named else "")


def whole_points(centipoints: int) -> str:
    """Points as a rep reads them, rounded to whole ones (`handoff explain` has the exact ones)."""
    return str(int((Decimal(centipoints) / 100).quantize(Decimal(1), ROUND_HALF_UP)))


def one_line(text: str) -> str:
    """A subject: one line, of a length every mail client shows."""
    flat = " ".join(text.split())
    return flat if len(flat) <= SUBJECT_LENGTH else flat[:SUBJECT_LENGTH - 1] + "…"


def _message(key: str, kind: str, to: Person, lead: LeadFacts, assignment_id: int | None, subject: str,
             lines: list[str]) -> Message:
    body = "\n".join(lines).strip("\n")
    while "\n\n\n" in body:  # a section left empty
        body = body.replace("\n\n\n", "\n\n")
    return Message(key=key, kind=kind, recipient=to.email, subject=one_line(subject), body=body + "\n",
                   lead_id=lead.lead_id, assignment_id=assignment_id)


def _profile(lead: LeadFacts) -> list[str]:
    lines = [f"Who: {lead.name} <{lead.email}>" if lead.name != lead.email else f"Who: {lead.email}"]
    lines += [f"{label}: {value}" for label, value in
              (("Company", lead.company), ("Title", lead.title), ("Country", lead.country)) if value]
    lines.append(f"Score: {lead.score_line}")
    if lead.mql_reason:
        lines.append(f"Sales-ready because: {lead.mql_reason}")
    return lines


def _due_line(due: Due | None) -> str:
    if due is None:
        return "No SLA clock runs on this lead."
    window = f", {due.window}" if due.window else ""
    policy = f" (SLA policy '{due.policy}')" if due.policy else ""
    return f"Contact by {due.local}{window}{policy}."


def _score_story(lead: LeadFacts, zone: str, now: datetime) -> list[str]:
    lines = []
    if lead.contributions:
        top = sorted(lead.contributions, key=lambda c: (-c.points, -c.occurred_at.timestamp()))[:TOP_CONTRIBUTIONS]
        lines.append("What made the score:")
        for c in sorted(top, key=lambda c: c.occurred_at, reverse=True):
            sign = "+" if c.points >= 0 else ""
            lines.append(f"- {sign}{whole_points(c.points)} {interesting_moment(c.type, c.asset, c.campaign)}, "
                         f"{_when(c.occurred_at, zone, now)}")
        rest = len(lead.contributions) - len(top)
        if rest > 0:
            lines.append(f"  and {rest} more")
    engaged = lead.last_email
    if engaged:
        what = f"'{engaged.name}'" if engaged.name else "a marketing e-mail"
        campaign = f" (campaign {engaged.campaign})" if engaged.campaign else ""
        verb = "clicked" if engaged.clicked else "opened"
        lines += ["", f"Last marketing e-mail they engaged with: {what}{campaign}, {verb} "
                      f"{_when(engaged.at, zone, now)}. If it went out in your name, their reply lands in your inbox."]
    return lines


def _moment(engagement: Engagement) -> str:
    return interesting_moment(engagement.type, engagement.asset, engagement.campaign)


def _link_line(lead: LeadFacts) -> str:
    return f"In the CRM: {lead.record_link}" if lead.record_link else "Not in the CRM yet."


def _when(at: datetime, zone: str, now: datetime) -> str:
    """A past moment on the reader's clock, the year only when it is not this one."""
    other_year = at.astimezone(zone_of(zone)).year != now.astimezone(zone_of(zone)).year
    return local_time(at, zone, year=other_year, named=False)


def _span(delta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"
