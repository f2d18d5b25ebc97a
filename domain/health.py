"""Is the line moving? What the store and the configuration say about ingest, scoring, the lead events, the CRM
sync, routing, the SLA and notifications, judged against how far behind each may fall before someone should look.
Pure: the facts are read elsewhere (store/health.py, tasks/health.py), and the same facts at the same `now` always
give the same findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

Level = Literal["problem", "note"]
ROUTING = "routing"  # the queue of sales-ready leads waiting for an owner


@dataclass(frozen=True)
class SourceFacts:
    """One source: enabled in the sources file, or known to the store from earlier runs (or both)."""

    name: str
    enabled: bool
    watermark: datetime | None = None  # the newest activity time committed
    read_at: datetime | None = None  # when a read last finished, whether or not it found anything new
    failed_at: datetime | None = None  # when a read last failed (after its retries) ...
    error: str | None = None  # ... and why
    quarantined_today: int = 0  # records quarantined in the 24 hours before now

    @property
    def failing(self) -> bool:
        """The last read failed: no read has finished since."""
        return self.failed_at is not None and (self.read_at is None or self.failed_at > self.read_at)


@dataclass(frozen=True)
class RulebookFacts:
    """The rulebook in force (the version the last scoring run scored with) and the one configured now."""

    version_id: int | None = None
    digest: str | None = None
    since: datetime | None = None  # when that version was first registered
    configured_digest: str | None = None
    configured_problem: str | None = None  # why the configured rulebook does not load


@dataclass(frozen=True)
class QueueFacts:
    queue: str
    open: int
    oldest: datetime | None


@dataclass(frozen=True)
class CrmFacts:
    """The CRM sync as the CRM file and the store have it; nothing but `enabled` and `problem` while it is off."""

    enabled: bool = False
    problem: str | None = None  # why the CRM file does not load
    pulled_at: datetime | None = None  # when a pull last finished (moved the pulled kinds' watermarks)
    given_up: int = 0  # writes dead-lettered: each waits for a person
    oldest_given_up: datetime | None = None


@dataclass(frozen=True)
class SlaFacts:
    running: dict[str, int] = field(default_factory=dict)  # running timers by state
    steps_due: int = 0  # running timers with a step due now
    oldest_step_due: datetime | None = None


@dataclass(frozen=True)
class NotificationFacts:
    problem: str | None = None  # why the notifications file does not load
    channels: tuple[str, ...] = ()  # the kinds of channel they go to (URL schemes: the URLs may hold secrets)
    states: dict[str, int] = field(default_factory=dict)  # notifications by outbox state
    oldest_unsent: datetime | None = None  # the oldest neither sent, nor given up, nor unconfirmed


@dataclass(frozen=True)
class FeedFacts:
    """A rep's out-of-office calendar feed whose last read failed."""

    rep: str
    failing_since: datetime
    error: str


@dataclass(frozen=True)
class HealthFacts:
    now: datetime
    schema: str | None  # the database's revision (None: never migrated)
    schema_head: str  # the revision this code needs
    sources: tuple[SourceFacts, ...] = ()
    sources_problem: str | None = None  # why the sources file does not load
    leads: int = 0
    rulebook: RulebookFacts = field(default_factory=RulebookFacts)
    scored_at: datetime | None = None  # the last scoring run's finish (its bookmarks)
    decayed_at: datetime | None = None  # the last pass that re-decayed every lead
    waiting: int = 0  # leads marked for scoring
    oldest_mark: datetime | None = None
    events: dict[str, int] = field(default_factory=dict)  # lead events by outbox state
    oldest_unsent: datetime | None = None  # the oldest lead event never sent
    queues: tuple[QueueFacts, ...] = ()
    crm: CrmFacts = field(default_factory=CrmFacts)
    sla: SlaFacts = field(default_factory=SlaFacts)
    notifications: NotificationFacts = field(default_factory=NotificationFacts)
    failing_feeds: tuple[FeedFacts, ...] = ()


@dataclass(frozen=True)
class HealthPolicy:
    scoring_lag: timedelta  # how long a lead may wait to be scored, or an event to be sent
    decay_every: timedelta  # how often a scoring run re-decays every lead
    ingest_lag: timedelta = timedelta(hours=1)  # how long an enabled source may go without a read that finishes
    crm_pull_lag: timedelta = timedelta(hours=1)  # how long the sync, when on, may go without a pull that finishes
    routing_lag: timedelta = timedelta(minutes=30)  # how long a sales-ready lead may wait for an owner
    sla_lag: timedelta = timedelta(hours=1)  # how long a running SLA timer's step may stay due
    notify_lag: timedelta = timedelta(hours=1)  # how long a notification may wait to be sent
    feed_lag: timedelta = timedelta(hours=24)  # how long a rep's calendar feed may fail before someone should look


@dataclass(frozen=True)
class Finding:
    level: Level
    area: str
    text: str


def ago(now: datetime, moment: datetime | None) -> str:
    """A moment as people read it beside the time it is now: '12 min ago'; '—' for never."""
    if moment is None:
        return "—"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _plural(n: int, one: str) -> str:
    return f"{n:,} {one if n == 1 else one + 's'}"


def assess(facts: HealthFacts, policy: HealthPolicy) -> list[Finding]:
    """Problems first (each one a reason to look now), then notes; in a fixed order within each."""
    now = facts.now
    if facts.schema != facts.schema_head:
        state = "has no Handoff schema" if facts.schema is None else f"is at revision {facts.schema}"
        # Nothing else can be read with confidence from a schema this code does not know
        return [Finding("problem", "database", f"the database {state}; this version needs {facts.schema_head}: run "
                                               "`handoff db upgrade`")]
    found: list[Finding] = []
    problem = lambda area, text: found.append(Finding("problem", area, text))  # noqa: E731
    note = lambda area, text: found.append(Finding("note", area, text))  # noqa: E731

    if facts.sources_problem:
        problem("ingest", f"the sources file does not load, so ingest runs fail: {facts.sources_problem}")
    if not facts.sources_problem and not any(source.enabled for source in facts.sources):
        note("ingest", "no source is enabled in the sources file: ingest runs read nothing")
    for source in facts.sources:
        if source.enabled:
            _judge_source(source, now, policy.ingest_lag, problem, note)
    quarantined = sorted((s for s in facts.sources if s.quarantined_today), key=lambda s: (-s.quarantined_today, s.name))
    if quarantined:
        note("ingest", f"{_plural(sum(s.quarantined_today for s in quarantined), 'record')} quarantined in the last 24 h"
                       f" ({', '.join(f'{s.name} {s.quarantined_today:,}' for s in quarantined)}), each kept with its "
                       "reason in the quarantine table")

    rulebook = facts.rulebook
    if rulebook.configured_problem:
        problem("scoring", f"the configured rulebook does not load, so scoring runs fail: {rulebook.configured_problem}")
    elif rulebook.digest and rulebook.configured_digest and rulebook.configured_digest != rulebook.digest:
        note("scoring", f"the configured rulebook differs from version {rulebook.version_id} in force: the next "
                        "scoring run rescores every lead with it (preview first: `handoff rules impact`)")
    if facts.waiting and facts.oldest_mark is not None and now - facts.oldest_mark > policy.scoring_lag:
        never = " (no scoring run has finished yet)" if facts.scored_at is None else ""
        problem("scoring", f"scoring is behind: {_plural(facts.waiting, 'lead')} waiting, the longest marked "
                           f"{ago(now, facts.oldest_mark)}{never}")
    if facts.decayed_at is not None and now - facts.decayed_at > policy.decay_every + policy.scoring_lag:
        problem("scoring", f"the pass that re-decays every lead is overdue: the last ran {ago(now, facts.decayed_at)}, "
                           f"due every {_hours(policy.decay_every)}")

    given_up = facts.events.get("given up", 0)
    if given_up:
        problem("events", f"{_plural(given_up, 'lead event')} given up after the most sends allowed: the Prefect "
                          "server never held them (`handoff events` lists them, `handoff events retry` sends them again)")
    if facts.oldest_unsent is not None and now - facts.oldest_unsent > policy.scoring_lag:
        unsent = facts.events.get("waiting", 0)
        problem("events", f"{_plural(unsent, 'lead event')} never sent, the oldest written "
                          f"{ago(now, facts.oldest_unsent)}: the next scoring run or stage move sends them")

    _judge_crm(facts.crm, now, policy.crm_pull_lag, problem, note)
    for queue in facts.queues:
        if queue.queue == ROUTING and queue.oldest is not None and now - queue.oldest > policy.routing_lag:
            problem("routing", f"{_plural(queue.open, 'sales-ready lead')} waiting for an owner, the longest queued "
                               f"{ago(now, queue.oldest)} (is the route-leads deployment running, and do its runs "
                               "finish?)")
        elif queue.open:
            since = f", the oldest queued {ago(now, queue.oldest)}" if queue.oldest else ""
            note("queues", f"{queue.queue}: {_plural(queue.open, 'lead')} queued{since}")
    sla = facts.sla
    if sla.oldest_step_due is not None and now - sla.oldest_step_due > policy.sla_lag:
        problem("sla", f"the SLA flow is behind: {_plural(sla.steps_due, 'running timer')} with a step due, the "
                       f"oldest due {ago(now, sla.oldest_step_due)}, so reminders, escalations and reassignments wait "
                       "(is the sla deployment running, and do its runs finish?)")
    _judge_notifications(facts.notifications, now, policy.notify_lag, problem, note)
    for feed in facts.failing_feeds:
        text = (f"{feed.rep}'s out-of-office calendar feed has failed every read for "
                f"{ago(now, feed.failing_since).removesuffix(' ago')}: {feed.error}; the absences of its last good "
                "read still count, newer ones are missed")
        (problem if now - feed.failing_since > policy.feed_lag else note)("routing", text)
    return sorted(found, key=lambda f: f.level != "problem")


def _judge_crm(crm: CrmFacts, now: datetime, lag: timedelta, problem, note) -> None:
    """A sync that is on is a problem when no pull has finished for longer than `lag`, and while any write is
    given up (nothing writes it again until a person has looked)."""
    if crm.problem:
        problem("crm", f"the CRM file does not load, so the CRM sync, routing and SLA runs fail: {crm.problem}")
        return
    if not crm.enabled:  # not configured: the report says so, and there is nothing to judge
        return
    if crm.pulled_at is None:
        note("crm", "the CRM sync is on and no pull has finished yet")
    elif now - crm.pulled_at > lag:
        problem("crm", f"no pull from the CRM has finished for {ago(now, crm.pulled_at).removesuffix(' ago')} (is the "
                       "crm-sync deployment running, and do its runs finish?)")
    if crm.given_up:
        problem("crm", f"{_plural(crm.given_up, 'CRM write')} given up, the oldest {ago(now, crm.oldest_given_up)}: "
                       "each waits for a person (`handoff crm failures` shows the CRM's errors; fix the cause, then "
                       "`handoff crm retry`)")


def _judge_notifications(notifications: NotificationFacts, now: datetime, lag: timedelta, problem, note) -> None:
    if notifications.problem:
        problem("notifications", "the notifications file does not load, so route-leads and SLA runs fail and no one "
                                 f"is told: {notifications.problem}")
    states = notifications.states
    if states.get("given up"):
        problem("notifications", f"{_plural(states['given up'], 'notification')} given up after the most sends "
                                 "allowed, so their people were never told: each keeps its error (runbook, "
                                 "Notifications: fix the cause, then clear them)")
    unsent = notifications.oldest_unsent
    if unsent is not None and now - unsent > lag:
        waiting = states.get("waiting", 0) + states.get("retrying", 0)
        problem("notifications", f"{_plural(waiting, 'notification')} not sent, the oldest written {ago(now, unsent)}"
                                 ": route-leads and SLA runs send them, a new owner's once the CRM holds the owner "
                                 "(are those runs finishing, does the channel answer?)")
    if states.get("unconfirmed"):
        note("notifications", f"{_plural(states['unconfirmed'], 'notification')} unconfirmed: a run died while "
                              "sending them, and they are not sent again by themselves (runbook, Notifications)")


def _judge_source(source: SourceFacts, now: datetime, lag: timedelta, problem, note) -> None:
    """An enabled source is a problem when no read of it has finished for longer than `lag`, or when it has never
    finished one and its reads fail; a read that failed since the last that finished is otherwise a note."""
    failure = f"the last read failed {ago(now, source.failed_at)}: {source.error}" if source.failing else ""
    if source.read_at is None:
        if source.failing:
            problem("ingest", f"{source.name}: no read has finished yet; {failure}")
        else:
            note("ingest", f"{source.name}: enabled, not read yet")
    elif now - source.read_at > lag:
        problem("ingest", f"{source.name}: no read has finished for {ago(now, source.read_at).removesuffix(' ago')}"
                          + (f"; {failure}" if failure else " (is its ingest running?)"))
    elif failure:
        note("ingest", f"{source.name}: {failure}; the last that finished was {ago(now, source.read_at)}")


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h"
