"""Owner alerts, free of Prefect but for the task at the end: a look at the activities new since the alerts'
cursor (or at the leads a webhook just brought) finds the owned leads among them, decides their owners' alerts
and enqueues them in the transaction that moves the cursor; the notifications' own send path sends them."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from config.notifications import NotificationConfig
from config.settings import get_settings
from domain.notifications import Engagement, Message, owner_alert
from domain.owner_alerts import AlertDecision, AlertRules, AlertState, LeadLook, decide, owner_of
from domain.teams import SalesTeams
from store import notifications as notify_store
from store import owner_alerts as store
from store.engine import get_engine
from tasks.notify import enqueue_messages, gather_leads, notification_config, zone_for

log = logging.getLogger("handoff.alerts")

ID_WINDOW = 50_000  # activity ids a transaction looks through: a backfill's million goes in steps, the cursor with it


class AlertSummary(BaseModel):
    now: datetime
    run_id: str | None
    enabled: bool = True
    through: int | None = None  # the cursor after the run: every activity up to it was looked at
    cursor_waited: bool = False  # the activity writers did not finish in time: the cursor moves at the next run
    activities: int = 0  # fresh activities looked at
    owned: int = 0  # owned leads looked at
    alerts: int = 0  # one per lead and look
    engaged: int = 0  # ... telling an engagement
    reached: int = 0  # ... telling the score reached the readiness level
    quiet: int = 0  # engagements the quiet period held back
    rechecks: int = 0  # leads whose readiness waits for their activities to be scored
    enqueued: int = 0  # notifications written (with the copies to the channels that get everything)
    by_owner: dict[str, int] = {}


@dataclass(frozen=True)
class _Alerting:
    config: NotificationConfig
    rules: AlertRules
    teams: SalesTeams
    instance_url: str | None


def alert_owners(engine, config: NotificationConfig, teams: SalesTeams, *, now: datetime, run_id: str | None,
                 lead_ids: Sequence[int] | None = None, instance_url: str | None = None) -> AlertSummary:
    """Alert the owners of the leads with new activities: the activities past the cursor, which moves over them
    (the scheduled path); or, with `lead_ids`, these leads' activities past it, the cursor left where it is (a
    webhook's leads, at once; the cursor's pass later finds them looked at). Alert runs take turns on the cursor."""
    alerting = _Alerting(config, config.owner_alerts.rules(), teams, instance_url)
    summary = AlertSummary(now=now, run_id=run_id, enabled=alerting.rules.enabled)
    if not alerting.rules.enabled:
        return summary
    since = alerting.rules.fresh_since(now)
    if lead_ids is not None:
        with engine.begin() as conn:
            summary.through = store.hold_cursor(conn, now)
            found = store.activities_of(conn, lead_ids, summary.through, since)
            _look(conn, set(found) | set(store.to_recheck(conn, lead_ids)), found, alerting, now, summary)
        return _logged(summary)
    settled = store.settled_through(engine)
    summary.cursor_waited = settled is None
    first = True
    while True:
        with engine.begin() as conn:
            through = store.hold_cursor(conn, now)
            upto = through if settled is None else min(max(settled, through), through + ID_WINDOW)
            found = store.activities_between(conn, through, upto, since) if upto > through else {}
            _look(conn, set(found) | set(store.to_recheck(conn) if first else ()), found, alerting, now, summary)
            store.move_cursor(conn, upto, now, run_id)
        summary.through, first = upto, False
        if upto >= (settled or 0):
            return _logged(summary)


def _look(conn, leads: set[int], found: Mapping[int, list[Engagement]], alerting: _Alerting, now: datetime,
          summary: AlertSummary) -> None:
    """One look, in the caller's transaction: the owned ones of `leads`, their alerts enqueued, their state kept."""
    summary.activities += sum(len(found[lead_id]) for lead_id in found)
    owned = {}
    for lead_id, (record, assigned) in store.owners(conn, sorted(leads)).items():
        owner, why = owner_of(record, assigned, alerting.teams)
        if owner is not None:  # an unowned lead alerts nobody, and nothing is kept of it
            owned[lead_id] = (owner, why)
    if not owned:
        return
    ids = sorted(owned)
    scores, unscored, states = store.scores(conn, ids), store.unscored(conn, ids), store.states(conn, ids)
    decisions = decide([LeadLook(lead_id, owner, why, tuple(found.get(lead_id, ())), scores.get(lead_id),
                                 lead_id in unscored, states.get(lead_id, AlertState()))
                        for lead_id, (owner, why) in owned.items()], alerting.rules, now)
    alerted = [d for d in decisions if d.alerted]
    for d in decisions:
        log.debug("lead %s, owner %s (%s): %s", d.lead_id, d.owner.email, d.why_owner, d.why)
    summary.enqueued += enqueue_messages(conn, _messages(conn, alerted, alerting, now), alerting.config, now)
    store.save_states(conn, [(d.lead_id, d.state) for d in decisions if d.state != states.get(d.lead_id)], now)
    summary.owned += len(decisions)
    summary.alerts += len(alerted)
    summary.engaged += sum(1 for d in alerted if d.engaged)
    summary.reached += sum(1 for d in alerted if d.reached is not None)
    summary.quiet += sum(d.held_back for d in decisions)
    summary.rechecks += sum(1 for d in decisions if d.state.recheck)
    summary.by_owner = dict(Counter(summary.by_owner) + Counter(d.owner.email for d in alerted))


def _messages(conn, decisions: Sequence[AlertDecision], alerting: _Alerting, now: datetime) -> list[Message]:
    if not decisions:
        return []
    leads = gather_leads(conn, [d.lead_id for d in decisions], config=alerting.config,
                         instance_url=alerting.instance_url)
    people = notify_store.crm_people(conn, [d.owner.email for d in decisions])
    return [owner_alert(leads[d.lead_id], d.owner, engaged=d.engaged, reached=d.reached,
                        level=alerting.rules.readiness_level, why_owner=d.why_owner, quiet_until=d.quiet_until,
                        key=d.key, now=now, zone=zone_for(d.owner.email, None, alerting.teams, people))
            for d in decisions if d.lead_id in leads]


def _logged(summary: AlertSummary) -> AlertSummary:
    log.info("owner alerts: %d activities looked at, %d owned leads, %d alerts (%d engagements, %d readiness), "
             "%d engagements held back by the quiet period%s", summary.activities, summary.owned, summary.alerts,
             summary.engaged, summary.reached, summary.quiet,
             "; the cursor waits for activity writers still under way" if summary.cursor_waited else "")
    return summary


def alerts_markdown(summary: AlertSummary | None) -> str:
    """The owner alerts' paragraph in a run's artifact."""
    if summary is None or not summary.enabled:
        return ""
    waited = " The cursor waits for activity writers still under way: the next run looks." if summary.cursor_waited \
        else ""
    return (f"\n**Owner alerts**: {summary.alerts} to the reps who own the leads ({summary.engaged} of engagement, "
            f"{summary.reached} of the readiness level), {summary.quiet} engagements held back by the quiet period; "
            f"{summary.activities} new activities of {summary.owned} owned leads looked at.{waited}\n")


@task(cache_policy=NO_CACHE)
def alert_lead_owners(now: datetime, run_id: str | None, teams: SalesTeams | None = None, client=None,
                      lead_ids: list[int] | None = None) -> AlertSummary:
    """The flows' step: alert the owners of leads with new activities (of `lead_ids` only, at once, when given),
    with the settings' notifications and teams files; `client` (the CRM's) gives the record links."""
    from config.teams import load_teams

    settings = get_settings()
    return alert_owners(get_engine(settings.resolved_database_url()), notification_config(),
                        teams or load_teams(settings.teams_file), now=now, run_id=run_id, lead_ids=lead_ids,
                        instance_url=getattr(client, "instance_url", None) if client else None)
