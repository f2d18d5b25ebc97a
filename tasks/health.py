"""The health check's facts gathered (store, sources, rulebook, CRM and notifications files) and its report, for
the CLI (`handoff status`) and the health-check flow's artifact."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic_core import to_jsonable_python

from config.crm import load_crm_config
from config.loading import ConfigError
from config.notifications import load_notifications
from config.rulebook import load_rulebook
from config.settings import Settings, get_settings
from config.sources import load_sources
from domain.health import (
    ROUTING, CrmFacts, FeedFacts, Finding, HealthFacts, HealthPolicy, NotificationFacts, RulebookFacts, ago, assess,
)
from store import health as store
from store import notifications as notification_store
from store import outbox
from store.engine import get_engine
from store.migrate import current, head
from store.reports import lead_count
from tasks.markdown import cell

def policy_of(settings: Settings) -> HealthPolicy:
    return HealthPolicy(scoring_lag=timedelta(minutes=settings.health_scoring_lag_minutes),
                        decay_every=timedelta(hours=settings.decay_every_hours),
                        ingest_lag=timedelta(minutes=settings.health_ingest_lag_minutes),
                        crm_pull_lag=timedelta(minutes=settings.health_crm_pull_lag_minutes),
                        routing_lag=timedelta(minutes=settings.health_routing_lag_minutes),
                        sla_lag=timedelta(minutes=settings.health_sla_lag_minutes),
                        notify_lag=timedelta(minutes=settings.health_notify_lag_minutes),
                        feed_lag=timedelta(hours=settings.health_feed_lag_hours))


def gather_facts(now: datetime, settings: Settings | None = None) -> HealthFacts:
    """Everything the health check judges, read at `now`. A database this code cannot read yet (never migrated,
    or behind) gives its revision and nothing more."""
    settings = settings or get_settings()
    url = settings.resolved_database_url()
    schema, schema_head = current(url), head()
    if schema != schema_head:
        return HealthFacts(now=now, schema=schema, schema_head=schema_head)
    enabled, sources_problem = [], None
    try:
        enabled = [source.name for source in load_sources(settings.sources_file)]
    except ConfigError as error:
        sources_problem = str(error)
    configured, rulebook_problem = None, None
    try:
        configured = load_rulebook(settings.rulebook_dir).digest
    except ConfigError as error:
        rulebook_problem = str(error)
    crm, channels = _crm_configured(settings), _channels_configured(settings)
    resend = (now, settings.event_resend_after(), settings.event_max_sends)
    with get_engine(url).connect() as conn:
        sources = store.source_facts(conn, now, enabled)
        in_force = store.version_in_force(conn)
        waiting, oldest_mark = store.scoring_backlog(conn)
        events = {state: sum(kinds.values()) for state, kinds in outbox.outbox_states(conn, *resend).items()}
        oldest_unsent = outbox.oldest_waiting(conn)
        queues = store.open_queues(conn)
        leads = lead_count(conn)
        crm = store.crm_facts(conn) if crm.enabled else crm
        sla = store.sla_facts(conn, now)
        notifications = NotificationFacts(problem=channels[1], channels=channels[0],
                                          states=notification_store.outbox_counts(conn),
                                          oldest_unsent=notification_store.oldest_waiting(conn))
        feeds = _failing_feeds(conn, settings)
    version_id, digest, since, scored_at, decayed_at = in_force or (None, None, None, None, None)
    return HealthFacts(
        now=now, schema=schema, schema_head=schema_head, sources=tuple(sources), sources_problem=sources_problem,
        leads=leads, rulebook=RulebookFacts(version_id=version_id, digest=digest, since=since,
                                            configured_digest=configured, configured_problem=rulebook_problem),
        scored_at=scored_at, decayed_at=decayed_at, waiting=waiting, oldest_mark=oldest_mark, events=events,
        oldest_unsent=oldest_unsent, queues=tuple(queues), crm=crm, sla=sla, notifications=notifications,
        failing_feeds=feeds)


def _failing_feeds(conn, settings: Settings) -> tuple[FeedFacts, ...]:
    """The reps' calendar feeds, as the teams file gives them now, whose last read failed (none when the teams
    file does not load: the routing runs fail on it and say so)."""
    from config.teams import load_teams
    from tasks.calendar_feeds import current_reads

    try:
        teams = load_teams(settings.teams_file)
    except ConfigError:
        return ()
    return tuple(FeedFacts(rep.email, read.failing_since, read.error)
                 for rep, read in sorted(current_reads(conn, teams), key=lambda feed: feed[0].email)
                 if read is not None and read.error and read.failing_since)


def _crm_configured(settings: Settings) -> CrmFacts:
    try:
        return CrmFacts(enabled=load_crm_config(settings.crm_file).enabled)
    except ConfigError as error:
        return CrmFacts(problem=str(error))


def _channels_configured(settings: Settings) -> tuple[tuple[str, ...], str | None]:
    """The kinds of channel notifications go to (each person's first), or why the notifications file does not
    load; never the URLs, which may carry tokens (the error may quote them too)."""
    try:
        config = load_notifications(settings.notifications_file)
    except ConfigError as error:
        return (), re.sub(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+", "<url>", str(error), flags=re.IGNORECASE)
    return tuple(urlsplit(url).scheme or "?" for url in (config.person, *config.also)), None


def _when(now: datetime, moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC ({ago(now, moment)})"


def headline(findings: list[Finding]) -> str:
    problems = sum(f.level == "problem" for f in findings)
    if not problems:
        return "All clear: from ingest to the notifications, the line is keeping up."
    return f"{problems} problem{'' if problems == 1 else 's'} to look at."


def health_markdown(facts: HealthFacts, findings: list[Finding]) -> str:
    now = facts.now
    lines = [f"# Handoff health at {now:%Y-%m-%d %H:%M:%S} UTC", "", f"**{headline(findings)}**", ""]
    if findings:
        lines += ["| | area | finding |", "|---|---|---|"]
        lines += [f"| {'PROBLEM' if f.level == 'problem' else 'note'} | {f.area} | {cell(f.text)} |" for f in findings]
        lines.append("")
    if facts.schema != facts.schema_head:
        return "\n".join(lines)
    lines += ["## Ingest", ""]
    if facts.sources:
        lines += ["| source | enabled | watermark | last read finished | last read failed | quarantined, last 24 h |",
                  "|---|---|---|---|---|---:|"]
        lines += [f"| {s.name} | {'yes' if s.enabled else 'no'} | {_when(now, s.watermark)} | {_when(now, s.read_at)} | "
                  f"{_when(now, s.failed_at)}{': ' + cell(s.error) if s.failing else ''} | {s.quarantined_today} |"
                  for s in facts.sources]
    else:
        lines.append("No source is enabled in the sources file, and none was read before.")
    r = facts.rulebook
    in_force = f"version {r.version_id} (`{r.digest[:12]}`), since {_when(now, r.since)}" if r.digest else "none yet"
    configured = ("does not load" if r.configured_problem else "the same" if r.configured_digest == r.digest
                  else f"`{r.configured_digest[:12]}`: the next scoring run "
                       f"{'rescores every lead with it' if r.digest else 'scores with it'}")
    waiting = f"{facts.waiting:,}" + (f" (the longest marked {ago(now, facts.oldest_mark)})" if facts.waiting else "")
    lines += ["", "## Scoring", "", "| | |", "|---|---|",
              f"| leads | {facts.leads:,} |",
              f"| rulebook in force | {in_force} |",
              f"| configured rulebook | {configured} |",
              f"| last scoring run | {_when(now, facts.scored_at)} |",
              f"| last pass re-decaying every lead | {_when(now, facts.decayed_at)} |",
              f"| leads waiting to be scored | {waiting} |"]
    events = [facts.events.get(state, 0) for state in outbox.STATES]
    lines += ["", "## Lead events", "", *_counts(outbox.STATES, events)]
    others = [q for q in facts.queues if q.queue != ROUTING]
    if others:
        lines += ["", "## Queued for the next rooms", "", "| queue | open | oldest |", "|---|---:|---|"]
        lines += [f"| {q.queue} | {q.open:,} | {_when(now, q.oldest)} |" for q in others]
    lines += _crm_lines(facts) + _routing_lines(facts) + _sla_lines(facts) + _notification_lines(facts)
    return "\n".join(lines) + "\n"


def _crm_lines(facts: HealthFacts) -> list[str]:
    crm, now = facts.crm, facts.now
    lines = ["", "## CRM sync", ""]
    if crm.problem:
        return lines + [f"The CRM file does not load: {crm.problem}"]
    if not crm.enabled:
        return lines + ["Off (`enabled` in config/crm.yaml, `HANDOFF_SALESFORCE_ENABLED`): not configured, so nothing "
                        "is pulled or written, and nothing here is judged."]
    given_up = f"{crm.given_up:,}" + (f" (the oldest {ago(now, crm.oldest_given_up)}; `handoff crm failures`)"
                                      if crm.given_up else "")
    return lines + ["| | |", "|---|---|", f"| last pull finished | {_when(now, crm.pulled_at)} |",
                    f"| writes given up, waiting for a person | {given_up} |"]


def _routing_lines(facts: HealthFacts) -> list[str]:
    queue = next((q for q in facts.queues if q.queue == ROUTING), None)
    waiting = f"{queue.open:,} (the longest queued {ago(facts.now, queue.oldest)})" if queue else "0"
    return ["", "## Routing", "", "| | |", "|---|---|", f"| sales-ready leads waiting for an owner | {waiting} |"]


def _sla_lines(facts: HealthFacts) -> list[str]:
    sla, now = facts.sla, facts.now
    due = f"{sla.steps_due:,}" + (f" (the oldest due {ago(now, sla.oldest_step_due)})" if sla.steps_due else "")
    running = [f"{sla.running.get(state, 0):,}" for state in ("open", "reminded", "breached")]
    return ["", "## SLA timers running", "", *_counts(("open", "reminded", "breached", "with a step due now"),
                                                       [*running, due])]


def _notification_lines(facts: HealthFacts) -> list[str]:
    n = facts.notifications
    lines = ["", "## Notifications", ""]
    if n.problem:
        lines += [f"The notifications file does not load: {n.problem}", ""]
    else:
        also = ", ".join(f"`{channel}`" for channel in n.channels[1:])
        copies = f"; a copy of each to {len(n.channels) - 1} more (by {also})" if also else ""
        lines += [f"Each person by `{n.channels[0]}`{copies}.", ""]
    return lines + _counts(("waiting", "failed, to be tried again", "sent", "given up", "unconfirmed"),
                           [n.states.get(state, 0) for state in notification_store.OUTBOX_STATES])


def _counts(headings: tuple[str, ...], values: list) -> list[str]:
    """A one-row table of counts (or texts) under their headings, right-aligned."""
    return ["| " + " | ".join(headings) + " |", "|" + "---:|" * len(headings),
            "| " + " | ".join(f"{v:,}" if isinstance(v, int) else v for v in values) + " |"]


def health_json(facts: HealthFacts, findings: list[Finding]) -> dict:
    """The same report for machines: findings, and the facts they were judged on (times in ISO-8601)."""
    return {"healthy": not any(f.level == "problem" for f in findings),
            "findings": to_jsonable_python(findings), "facts": to_jsonable_python(facts)}


@task(cache_policy=NO_CACHE)
def check_health(now: datetime) -> tuple[HealthFacts, list[Finding]]:
    facts = gather_facts(now)
    return facts, assess(facts, policy_of(get_settings()))


@task(cache_policy=NO_CACHE)
def publish_health(facts: HealthFacts, findings: list[Finding]) -> str:
    markdown = health_markdown(facts, findings)
    create_markdown_artifact(key="handoff-health", markdown=markdown, description=headline(findings))
    return markdown
