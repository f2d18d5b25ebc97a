"""The SLA flow: every running timer stepped through what is due (a first contact closes it; else the reminder,
the breach and its escalation, the reassignment, and finally the recycle to nurture), each step once."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from config.settings import get_settings
from store.engine import get_engine
from tasks.crm import CrmSyncSummary
from tasks.crm_sync import close_crm, connect_crm, crm_settings, pull_from_crm, push_to_crm, summarize
from tasks.notify import send_due_notifications
from tasks.outbox import publish_lead_events
from tasks.routing import load_rules, routing_rules, tell_owners
from tasks.sla import SlaSummary, step_sla_timers
from tasks.sla_report import publish_sla_summary, sla_measures_markdown
from tasks.store import check_database


@task(cache_policy=NO_CACHE)
def sla_measures(now: datetime) -> str:
    settings = get_settings()
    return sla_measures_markdown(get_engine(settings.resolved_database_url()), load_rules(settings).teams, now)


@flow(name="sla", description="Remind, escalate, reassign and recycle leads nobody contacted in time; once each.")
def sla_check(now: datetime | None = None) -> SlaSummary:
    """Pull the CRM first (the calls, e-mails and meetings logged since: first contacts close timers), step the
    timers, then write the new owners and the recycled stages to the CRM. Each step emits its event
    (handoff.sla.reminded, .breached, .escalated, .reassigned, .recycled) and its notifications."""
    check_database()
    now = now or datetime.now(timezone.utc)
    run_id = flow_run.get_id()
    rules = routing_rules()
    config = crm_settings()
    client = connect_crm(config) if config.enabled else None
    crm = CrmSyncSummary(now=now, run_id=run_id, enabled=config.enabled)
    try:
        if client is not None:
            crm.pull = pull_from_crm(client, config, now, run_id)
        summary = step_sla_timers(now, run_id, client)
        changed = summary.reassigned_leads + summary.recycled_leads
        if client is not None and changed:
            crm.push = push_to_crm(client, config, now, changed)
    finally:
        if client is not None:
            summarize(crm, client)
            close_crm(client)
    tell_owners(rules, now, client)
    send_due_notifications(now)
    publish_lead_events(now).log_to(get_run_logger())
    summary.markdown = publish_sla_summary(summary, sla_measures(now))
    return summary
