"""Notifications, free of Prefect but for the task at the end: the messages of routing and SLA decisions built from
the store's facts and enqueued in the decision's transaction, and the outbox sent through Apprise, each
notification at most once, by one run at a time."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterable, Sequence
from urllib.parse import quote

import apprise
from apprise import NotifyFormat
from apprise.plugins.email import NotifyEmail
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from config.notifications import NotificationConfig, load_notifications
from config.settings import get_settings
from domain.business_hours import zone_of
from domain.explain import LedgerEntry, explain_score
from domain.notifications import (
    Contribution, Due, EngagedEmail, LeadFacts, Message, Person, channel_of, lead_kept, lead_reassigned,
    lead_recycled, lead_routed, notification_key, on_channel, sla_breached, sla_escalated, sla_reminder,
)
from domain.sla import ClockKind, SlaPolicies, SlaStep, SlaTimer, StepKind
from domain.teams import SalesTeams
from store import crm as crm_store
from store import notifications as store
from store import scoring
from store.engine import get_engine

log = logging.getLogger("handoff.notify")

KEY_HEADER = "X-Handoff-Notification"  # lets a receiver tell a repeat; the outbox already sends none
LEASE = "notify"
LEASE_TIME = timedelta(minutes=15)
RUN_BUDGET_SECONDS = 300  # a run starts no send after this, so it ends well inside its lease
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 10.0
ERRORS_KEPT = 10


class NotifySummary(BaseModel):
    now: datetime
    sent: int = 0
    failed: int = 0  # failed this run, tried again later
    given_up: int = 0  # failed the most times allowed: kept, counted, not tried again
    unconfirmed: int = 0  # under way when an earlier run died: never sent again
    left: int = 0  # due, left for the next run (this one's time was up)
    another_run_sending: bool = False
    errors: list[str] = []  # the first failures: key and Apprise's reason


# ---------------------------------------------------------------------------------------------- sending

def send_notifications(engine, config: NotificationConfig, *, now: datetime, limit: int = 500,
                       retry_in: timedelta = timedelta(minutes=2)) -> NotifySummary:
    """Send what is due, oldest first, under the `notify` lease (a run that finds it held sends nothing). Sends
    cut short by a dead run are settled first as unconfirmed, never repeated; each send is claimed before it
    goes and recorded right after, so a crash repeats none."""
    holder = uuid.uuid4().hex
    with engine.begin() as conn:
        held = crm_store.take_lease(conn, LEASE, holder, now, now + LEASE_TIME)
    if not held:
        log.info("another run is sending notifications: this one sends nothing")
        return NotifySummary(now=now, another_run_sending=True)
    try:
        return _send(engine, config, now=now, limit=limit, retry_in=retry_in)
    finally:
        with engine.begin() as conn:
            crm_store.release_lease(conn, LEASE, holder)


def _send(engine, config: NotificationConfig, *, now: datetime, limit: int, retry_in: timedelta) -> NotifySummary:
    summary = NotifySummary(now=now)
    with engine.begin() as conn:
        summary.unconfirmed = store.settle_unconfirmed(conn, now)
        due = store.due_now(conn, now, limit)
    if summary.unconfirmed:
        log.warning("%d notification(s) were being sent when a run died: not sent again, kept as unconfirmed",
                    summary.unconfirmed)
    started = time.monotonic()
    for number, item in enumerate(due):
        if time.monotonic() - started > RUN_BUDGET_SECONDS:
            summary.left = len(due) - number
            break
        with engine.begin() as conn:
            if not store.start_sending(conn, item.id, now):
                continue
        url = url_for(config, item)
        problem = deliver(url, subject=item.subject, body=item.body, key=channel_of(item.key)[0]) if url else \
            "its channel is no longer in the notifications file"
        with engine.begin() as conn:
            if problem is None:
                store.record_sent(conn, item.id, now)
                summary.sent += 1
                continue
            given_up = store.record_failure(conn, item.id, problem, now, retry_in, config.max_attempts)
        summary.given_up += given_up
        summary.failed += not given_up
        if len(summary.errors) < ERRORS_KEPT:
            summary.errors.append(f"{item.key}: {problem}")
        log.warning("notification %s not sent (attempt %d%s): %s", item.key, item.attempts + 1,
                    ", given up" if given_up else "", problem)
    return summary


def url_for(config: NotificationConfig, item: store.Outgoing) -> str | None:
    """The one Apprise URL a stored notification goes to: the recipient's channel, or the shared channel its key
    names (None when that channel has been taken out of the file)."""
    _, channel = channel_of(item.key)
    if channel is None:  # quoted: a '+' in an address would read as a space in the URL's query
        return config.person.replace("{email}", quote(item.recipient, safe="@"))
    return next((url for url in config.also if channel_id(url) == channel), None)


def channel_id(url: str) -> str:
    """A shared channel's name in the outbox: a digest, so no token of its URL is stored."""
    return "also-" + hashlib.sha256(url.encode()).hexdigest()[:12]


def deliver(url: str, *, subject: str, body: str, key: str) -> str | None:
    """Send one notification to one Apprise URL, with short socket timeouts and the key in a header where the
    service takes headers (e-mail, json://, xml://, form://). None when sent, else why not."""
    with _apprise_reasons() as reasons:
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            return f"not a URL Apprise can send to ({url.partition('://')[0] or 'no scheme'}://...)"
        plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, CONNECT_TIMEOUT)
        plugin.socket_read_timeout = min(plugin.socket_read_timeout, READ_TIMEOUT)
        if isinstance(getattr(plugin, "headers", None), dict):
            plugin.headers[KEY_HEADER] = key
        if isinstance(plugin, NotifyEmail) and "format=" not in url:  # the messages are plain text
            plugin.notify_format = NotifyFormat.TEXT
        try:
            sent = plugin.notify(body=body, title=subject, body_format=NotifyFormat.TEXT)
        except Exception as exc:  # noqa: BLE001 - a plugin's own bug is a failed send, not a failed run
            return _redacted(f"{type(exc).__name__}: {exc}")
    return None if sent else ("; ".join(dict.fromkeys(reasons))[:1000]
                              or "the service did not take it (Apprise gave no reason)")


class _Reasons(logging.Filter):
    """On Apprise's logger while one send runs: keeps its warnings and the socket error behind them (a debug
    line), and lets on to the log's handlers only what they would have had anyway (no message bodies)."""

    def __init__(self, passes_at: int):
        super().__init__()
        self.passes_at, self.kept = passes_at, []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or str(record.msg).startswith("Socket Exception"):
            self.kept.append(_redacted(record.getMessage().strip()))
        return record.levelno >= self.passes_at


@contextmanager
def _apprise_reasons():
    from apprise.logger import logger

    level, reasons = logger.level, _Reasons(logger.getEffectiveLevel())
    logger.addFilter(reasons)
    logger.setLevel(logging.DEBUG)
    try:
        yield reasons.kept
    finally:
        logger.setLevel(level)
        logger.removeFilter(reasons)


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+|\burl: \S+", re.IGNORECASE)


def _redacted(text: str) -> str:
    """Without URLs: they may carry tokens."""
    return _URL.sub("<url>", text)


def notification_config() -> NotificationConfig:
    """The notifications file the settings name (HANDOFF_NOTIFICATIONS_FILE)."""
    return load_notifications(get_settings().notifications_file)


@task(cache_policy=NO_CACHE)
def send_due_notifications(now: datetime) -> NotifySummary:
    """The flows' step: send the notifications due, with the settings' notifications file."""
    settings = get_settings()
    summary = send_notifications(get_engine(settings.resolved_database_url()), notification_config(), now=now)
    log.info("notifications: %d sent, %d failed, %d given up, %d unconfirmed%s", summary.sent, summary.failed,
             summary.given_up, summary.unconfirmed, " (another run was sending)" if summary.another_run_sending else "")
    return summary


# ---------------------------------------------------------------------------------------------- enqueueing

def enqueue_messages(conn, messages: Sequence[Message], config: NotificationConfig, now: datetime) -> int:
    """Enqueue messages in the caller's transaction: each to its recipient, and a copy to every channel that gets
    every notification, each copy sent (and retried) on its own. Returns how many rows were new."""
    rows = [copy for message in messages
            for copy in (message, *(on_channel(message, channel_id(url)) for url in config.also))]
    return store.enqueue(conn, rows, now)


def enqueue_routed(conn, assignment_ids: Sequence[int], *, config: NotificationConfig, teams: SalesTeams,
                   policies: SlaPolicies | None, instance_url: str | None, now: datetime) -> int:
    """The notifications of these assignments, in the transaction that records them: the new owner's lead (sent
    once the CRM holds the owner), a kept lead's owner told, and for a reassignment or a lead moved by hand, the
    rep who lost it and (for a reassignment) their manager. Facts are read once per kind for all of them."""
    assigned = [a for a in store.assignment_facts(conn, assignment_ids) if a.owner_email]
    if not assigned:
        return 0
    timers = store.timers_of(conn, [a.id for a in assigned] + [a.previous_id for a in assigned if a.previous_id])
    leads = gather_leads(conn, [a.lead_id for a in assigned], config=config, instance_url=instance_url)
    people = store.crm_people(conn, [e for a in assigned for e in (a.owner_email, a.previous_owner_email) if e]
                              + [t.manager for t in timers.values() if t.manager])
    messages: list[Message] = []
    for a in assigned:
        lead = leads.get(a.lead_id)
        if lead is None:
            continue
        owner = _person(a.owner_email, a.owner_name, people, teams)
        zone = zone_for(owner.email, a.team, teams, people)
        timer = timers.get(a.id)
        due = _due(timer.due_at, timer.policy, zone, policies) if timer else None
        lost = a.previous_owner_email if a.kind in ("reassigned", "by_hand") else None
        lost = lost if lost and lost.lower() != owner.email.lower() else None
        if a.kind == "kept":
            messages.append(lead_kept(lead, owner, due=due, key=notification_key("kept", a.id), now=now,
                                      assignment_id=a.id))
            continue
        why = f"It comes to you as a reassignment: {a.reason}" if a.kind == "reassigned" else None
        messages.append(lead_routed(lead, owner, rule=a.reason, due=due, key=notification_key("routed", a.id),
                                    now=now, assignment_id=a.id, why=why))
        if lost:
            before = _person(lost, a.previous_owner_name, people, teams)
            told = [("previous-owner", before)]
            previous = timers.get(a.previous_id)
            manager = (previous.manager if previous else None) or teams.manager_of(lost)
            if a.kind == "reassigned" and manager and manager.lower() not in (lost.lower(), owner.email.lower()):
                told.append(("manager", _person(manager, None, people, teams)))
            for role, person in told:
                messages.append(lead_reassigned(
                    lead, person, lost_by=before, new_owner=owner, reason=a.reason,
                    key=notification_key("reassigned", a.id, role), now=now,
                    zone=zone_for(person.email, a.team, teams, people), assignment_id=a.id))
    return enqueue_messages(conn, messages, config, now)


def enqueue_sla_steps(conn, steps: Sequence[tuple[int, SlaTimer, SlaStep]], *, config: NotificationConfig,
                      teams: SalesTeams, policies: SlaPolicies | None, instance_url: str | None,
                      now: datetime) -> int:
    """The notifications of SLA steps (timer id, the timer before the step, the step), in the transaction that
    applies them: the reminder; the breach to the rep and its escalation to the manager; the recycle to the last
    owner and the manager. A reassignment is told by `enqueue_routed` of the new assignment."""
    told = [(timer_id, timer, step) for timer_id, timer, step in steps
            if step.kind in (StepKind.REMIND, StepKind.BREACH, StepKind.RECYCLE)]
    if not told:
        return 0
    leads = gather_leads(conn, [int(timer.lead_id) for _, timer, _ in told], config=config, instance_url=instance_url)
    people = store.crm_people(conn, [person for _, timer, step in told
                                     for person in (timer.owner.rep, timer.manager, *step.notify) if person])
    messages: list[Message] = []
    for timer_id, timer, step in told:
        lead = leads.get(int(timer.lead_id))
        if lead is None:
            continue
        rep = timer.owner.rep
        owner = _person(rep, timer.owner.name, people, teams) if rep else None
        zone = zone_for(rep, timer.team, teams, people)
        due = _due(timer.due_at, timer.policy, zone, policies)
        if step.kind is StepKind.REMIND and owner:
            messages.append(sla_reminder(lead, owner, due=due, key=notification_key("sla-reminded", timer_id),
                                         now=now))
        elif step.kind is StepKind.BREACH:
            manager = _person(step.escalate_to, None, people, teams) if step.escalate_to else None
            recycles = timer.reassignments >= timer.max_reassignments
            if owner:
                messages.append(sla_breached(lead, owner, due=due, manager=manager, reassign_at=timer.reassign_at,
                                             key=notification_key("sla-breached", timer_id), now=now,
                                             recycles=recycles))
            if manager and owner:
                messages.append(sla_escalated(lead, manager, owner=owner, due=_due(
                    timer.due_at, timer.policy, zone_for(manager.email, timer.team, teams, people), policies),
                    reassign_at=timer.reassign_at, key=notification_key("sla-escalated", timer_id), now=now,
                    recycles=recycles))
        elif step.kind is StepKind.RECYCLE:
            for email in step.notify:
                role = "owner" if owner and email == owner.email else "manager"
                person = owner if role == "owner" else _person(email, None, people, teams)
                messages.append(lead_recycled(lead, person, owner=owner, reason=step.reason,
                                              key=notification_key("recycled", timer_id, role), now=now,
                                              zone=zone_for(email, timer.team, teams, people)))
    return enqueue_messages(conn, messages, config, now)


# ---------------------------------------------------------------------------------------------- the facts

def gather_leads(conn, lead_ids: Iterable[int], *, config: NotificationConfig, instance_url: str | None
                 ) -> dict[int, LeadFacts]:
    """What a rep needs of each lead, one query per kind of fact: the person, score and fit, why it is sales-ready,
    the contributions at their value when it was scored, the last marketing e-mail engaged with, the CRM link."""
    ids = sorted(set(lead_ids))
    found = store.lead_facts(conn, ids)
    reasons = store.mql_reasons(conn, ids)
    emails = store.last_marketing_emails(conn, ids)
    lines = scoring.ledger_lines(conn, ids)
    records = crm_store.records_of(conn, ids)
    decays = {version: scoring.version_rulebook(conn, version).decay
              for version in sorted({f["version_id"] for f in found.values() if f["version_id"]})}
    leads = {}
    for lead_id, fact in found.items():
        contributions = ()
        if fact["version_id"] and lines.get(lead_id):
            explained = explain_score([_entry(line) for line in lines[lead_id]], decays[fact["version_id"]],
                                      fact["scored_at"])
            contributions = tuple(Contribution(x.entry.action, x.entry.type, x.entry.asset, x.entry.campaign,
                                               x.entry.occurred_at, x.value) for x in explained.lines if x.value)
        engaged = emails.get(lead_id)
        last_email = EngagedEmail(engaged[1], engaged[2], engaged[0] == "email_click", engaged[3]) if engaged else None
        leads[lead_id] = LeadFacts(
            lead_id=lead_id, email=fact["email"] or "", first_name=fact["first_name"], last_name=fact["last_name"],
            company=fact["company"], title=fact["title"], country=fact["country"], score=fact["score"],
            fit_grade=fact["fit_grade"], mql_reason=reasons.get(lead_id), contributions=contributions,
            last_email=last_email,
            record_link=_record_link(config, records.get(lead_id), instance_url))
    return leads


def _entry(line: dict) -> LedgerEntry:
    return LedgerEntry(activity_id=line["activity_id"], action=line["action"], type=line["type"], asset=line["asset"],
                       campaign=line["campaign"], source=line["source"], occurred_at=line["occurred_at"],
                       points=line["points"], occurred_epoch=line["occurred_epoch"])


def _record_link(config: NotificationConfig, record, instance_url: str | None) -> str | None:
    if record is None or not instance_url:
        return None
    is_contact = record.object.value == "Contact" and record.contact_id
    crm_id = record.contact_id if is_contact else record.crm_id
    if not crm_id:
        return None
    return config.record_link.format(instance_url=instance_url.rstrip("/"), object=record.object.value, crm_id=crm_id)


def zone_for(email: str | None, team: str | None, teams: SalesTeams, people: dict) -> str:
    """The timezone a person reads times in: a rep's calendar in teams.yaml, else their CRM user's timezone, else
    the team's (a manager's team), else UTC."""
    if email and teams.rep(email):
        return teams.calendar_of(email).timezone
    zone = (people.get((email or "").lower()) or (None, None))[1]
    if zone:
        try:
            return zone_of(zone).key
        except ValueError:
            pass
    if team and team in {t.name for t in teams.teams}:
        return teams.team(team).timezone
    return "UTC"


def _person(email: str, name: str | None, people: dict, teams: SalesTeams) -> Person:
    known = teams.rep(email)
    manager = next((m for m in teams.managers if m.email.lower() == email.lower()), None)
    crm_name = (people.get(email.lower()) or (None, None))[0]
    return Person(email, name or crm_name or (known.name if known else "") or (manager.name if manager else ""))


def _due(at: datetime, policy_name: str, zone: str, policies: SlaPolicies | None) -> Due:
    policy = next((p for p in policies.policies if p.name == policy_name), None) if policies else None
    return Due(at=at, zone=zone, hours=Decimal(policy.respond_within) if policy else None,
               business_hours=policy is None or policy.clock is ClockKind.BUSINESS_HOURS, policy=policy_name)
