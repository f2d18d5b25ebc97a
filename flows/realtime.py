"""The hand-off-now flow: the leads a webhook just touched are scored, a sales-ready one routed to its rep, the CRM
given their score and owner, and the owner told, at once instead of at the next runs of each scheduled flow. The
scheduled flows do the same work for whatever this flow leaves (its marks, queue rows and outbox rows stay)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel

from tasks.alerts import alert_lead_owners
from tasks.crm import PushSummary
from tasks.crm_sync import close_crm, connect_crm, crm_settings, pull_from_crm, push_to_crm
from tasks.notify import send_due_notifications
from tasks.outbox import publish_lead_events
from tasks.routing import route_waiting_leads, routing_rules, tell_owners
from tasks.scoring import score_leads_now
from tasks.store import check_database

PUSH_WAIT_SECONDS = 30  # how long the push waits for a scheduled sync's push to finish before leaving it to the next


class HandOffNowSummary(BaseModel):
    now: datetime
    leads: int
    scored: int | None = None  # None: the configured rulebook is not in force yet; the scheduled run scores them
    new_mqls: list[str] = []
    routed: dict[str, str] = {}  # e-mail -> owner
    pushed: PushSummary | None = None
    told: int = 0
    alerts: int = 0  # owners told their lead engaged (owner alerts)
    sent: int = 0


@flow(name="hand-off-now", description="Score, route and sync at once the leads a marketing tool's webhook touched.")
def hand_off_now(lead_ids: list[int], now: datetime | None = None) -> HandOffNowSummary:
    check_database()
    now = now or datetime.now(timezone.utc)
    run_id = flow_run.get_id()
    log = get_run_logger()
    summary = HandOffNowSummary(now=now, leads=len(lead_ids))
    outcome = score_leads_now(sorted(set(lead_ids)), now, run_id)
    if outcome is None:
        log.info("the configured rulebook is not in force yet: the scheduled scoring run scores these leads")
    else:
        summary.scored, summary.new_mqls = outcome.leads, [m.email for m in outcome.new_mqls]
    rules = routing_rules()
    config = crm_settings()
    client = connect_crm(config) if config.enabled else None
    try:
        if client is not None:
            pull_from_crm(client, config, now, run_id)
        routed = route_waiting_leads(rules, now, run_id, client)
        summary.routed = {d.email: d.owner for d in routed.decisions}
        if client is not None:
            summary.pushed = _push(client, config, now, sorted(set(lead_ids) | {d.lead_id for d in routed.decisions}))
    finally:
        if client is not None:
            close_crm(client)
    summary.told = tell_owners(rules, now, client)
    summary.alerts = alert_lead_owners(now, run_id, rules.teams, client, lead_ids=sorted(set(lead_ids))).alerts
    summary.sent = send_due_notifications(now).sent
    publish_lead_events(now).log_to(log)
    log.info("%d leads: %s scored, %d new MQLs, %d routed, %d owners told, %d owners alerted, %d notifications sent",
             summary.leads, summary.scored, len(summary.new_mqls), len(summary.routed), summary.told, summary.alerts,
             summary.sent)
    return summary


def _push(client, config, now: datetime, lead_ids: list[int]) -> PushSummary:
    """Wait a little for a scheduled push that holds the lease: it may be writing other leads for seconds."""
    deadline = time.monotonic() + PUSH_WAIT_SECONDS
    while True:
        pushed = push_to_crm(client, config, now, lead_ids)
        if not pushed.another_run_pushing or time.monotonic() > deadline:
            return pushed
        time.sleep(1)
