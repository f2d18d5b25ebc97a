"""The crm-sync flow: pull what sales did from the CRM, then push what changed in Handoff's fields; and the
resync-leads flow, for people who want some leads synced now."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from tasks.crm import CrmSyncSummary
from tasks.crm_sync import (
    close_crm, connect_crm, crm_settings, leads_to_resync, publish_crm_summary, pull_from_crm, pull_leads_from_crm,
    push_to_crm, summarize,
)
from tasks.outbox import publish_lead_events
from tasks.store import check_database


class ResyncRefused(ValueError):
    """Some addresses name no lead; nothing was synced."""


@flow(name="crm-sync", description="Pull what sales did in the CRM, then push score, fit and stage to it.")
def crm_sync(now: datetime | None = None) -> CrmSyncSummary:
    """Pull first (so a lead sales converted is written to its contact, and a status a rep set is not taken for
    a change of Handoff's), then push; every write recorded as the CRM answers it, so a retried or crashed run
    repeats none. The stage changes sales made emit their lead events."""
    check_database()
    now = now or datetime.now(timezone.utc)
    run_id = flow_run.get_id()
    config = crm_settings()
    summary = CrmSyncSummary(now=now, run_id=run_id, enabled=config.enabled)
    if config.enabled:
        client = connect_crm(config)
        try:
            summary.pull = pull_from_crm(client, config, now, run_id)
            summary.push = push_to_crm(client, config, now)
        finally:
            summarize(summary, client)
            close_crm(client)
        publish_lead_events(now).log_to(get_run_logger())
    summary.markdown = publish_crm_summary(summary)
    return summary


@flow(name="resync-leads", description="Pull and push these leads' CRM records now, by e-mail address.")
def resync_leads(emails: list[str], now: datetime | None = None) -> CrmSyncSummary:
    """Reads each lead's record from the CRM and writes Handoff's fields to it (creating it when the lead stands
    at a stage that gets one), whatever changed or not; an address that names no lead fails the run, listed."""
    check_database()
    now = now or datetime.now(timezone.utc)
    run_id = flow_run.get_id()
    config = crm_settings()
    if not config.enabled:
        raise ResyncRefused("the CRM sync is off: set HANDOFF_SALESFORCE_ENABLED (config/crm.yaml) first")
    lead_ids, unknown = leads_to_resync(emails)
    if unknown:
        raise ResyncRefused("no lead has these addresses: " + ", ".join(unknown))
    summary = CrmSyncSummary(now=now, run_id=run_id)
    client = connect_crm(config)
    try:
        summary.pull = pull_leads_from_crm(client, config, lead_ids, emails, now, run_id)
        summary.push = push_to_crm(client, config, now, lead_ids, force=True)
    finally:
        summarize(summary, client)
        close_crm(client)
    publish_lead_events(now).log_to(get_run_logger())
    summary.markdown = publish_crm_summary(summary, key="resync-leads")
    return summary
