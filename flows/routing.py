"""The route-leads flow: each MQL waiting for an owner goes to a rep (or a queue) by the routing rules, the CRM gets
the owner, the rep is told, and reps who already own leads are alerted of their engagement; and the assign-lead
flow, for a person who gives a lead to a rep by hand."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from tasks.alerts import alert_lead_owners
from tasks.calendar_feeds import read_calendar_feeds
from tasks.crm import CrmSyncSummary
from tasks.crm_sync import close_crm, connect_crm, crm_settings, pull_from_crm, push_to_crm, summarize
from tasks.notify import send_due_notifications
from tasks.outbox import publish_lead_events
from tasks.routing import (
    Routed, RoutingSummary, assign_lead_by_hand, route_waiting_leads, routing_rules, tell_owners,
)
from tasks.routing_report import publish_routing_summary
from tasks.store import check_database


@flow(name="route-leads", description="Give each sales-ready lead its owner by the routing rules, and tell them.")
def route_leads(now: datetime | None = None) -> RoutingSummary:
    """Pull the CRM first (owners, accounts and users as they are now), route the MQLs waiting in the routing
    queue, then write the owners to the CRM (creating the records that need one) and send the notifications,
    each once. Every decision is logged with its routing path (`handoff explain EMAIL`)."""
    check_database()
    now = now or datetime.now(timezone.utc)
    run_id = flow_run.get_id()
    feeds = read_calendar_feeds(now)
    rules = routing_rules()
    config = crm_settings()
    client = connect_crm(config) if config.enabled else None
    crm = CrmSyncSummary(now=now, run_id=run_id, enabled=config.enabled)
    try:
        if client is not None:
            crm.pull = pull_from_crm(client, config, now, run_id)
        summary = route_waiting_leads(rules, now, run_id, client)
        if client is not None and summary.decisions:
            crm.push = push_to_crm(client, config, now, [d.lead_id for d in summary.decisions])
    finally:
        if client is not None:
            summarize(crm, client)
            close_crm(client)
    # After the pull, so the owners are the CRM's as of now. A failure fails the run only once routing's owners
    # were told (a broken alert must not keep the new leads' notifications back)
    alerting = alert_lead_owners(now, run_id, rules.teams, client, return_state=True)
    tell_owners(rules, now, client)
    send_due_notifications(now)  # the owners the CRM now holds are told, and the owners alerted
    publish_lead_events(now).log_to(get_run_logger())
    alerts = alerting.result(raise_on_failure=False) if alerting.is_completed() else None
    summary.markdown = publish_routing_summary(summary, crm, alerts, feeds)
    if alerting.is_failed():
        alerting.result()  # raises the alert step's error
    return summary


@flow(name="assign-lead", description="Give a lead to a rep by hand, with the reason; logged, timed and told.")
def assign_lead(email: str, to: str, reason: str, requested_by: str | None = None,
                now: datetime | None = None) -> Routed:
    """`to` is the rep's e-mail (an active CRM user); the reason, and who asked, go on the assignment. The CRM gets
    the owner at once, and the SLA clock starts."""
    check_database()
    now = now or datetime.now(timezone.utc)
    run_id = flow_run.get_id()
    rules = routing_rules()
    config = crm_settings()
    client = connect_crm(config) if config.enabled else None
    try:
        if client is not None:
            pull_from_crm(client, config, now, run_id)
        routed = assign_lead_by_hand(email, to, reason, requested_by, rules, now, run_id)
        if client is not None:
            push_to_crm(client, config, now, [routed.lead_id])
    finally:
        if client is not None:
            close_crm(client)
    tell_owners(rules, now, client)
    send_due_notifications(now)
    return routed
