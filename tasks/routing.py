"""Routing's work, free of Prefect: the MQLs waiting for an owner decided by the rules of config/routing.yaml, each
decision recorded with its path and SLA timer in one transaction over routing's versioned state; and a person's
assignment by hand, recorded the same way."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from config.notifications import NotificationConfig
from config.settings import get_settings

from domain.activity import normalize_email
from domain.crm_directory import CrmDirectory
from domain.routing import RoutingState, route
from domain.routing_decision import Owner, RoutingDecision, RuleTried
from domain.routing_rules import RoutingRules
from domain.sla import SlaPolicies, SlaSubject, open_timer, timer_to_json
from domain.teams import SalesTeams
from store import routing as store
from store import scoring
from store.engine import get_engine
from tasks.notify import enqueue_routed, notification_config

log = logging.getLogger("handoff.routing")

STATE_ATTEMPTS = 5  # another run saving routing's state meanwhile: decide again from the state it left
HAND_RAISES = ("demo_request", "trial_signup", "contact_sales")


class Routed(BaseModel):
    lead_id: int
    email: str
    owner: str
    rule: str
    kind: str
    team: str | None
    due: str | None  # the SLA due time, in UTC (the e-mail to the rep gives it in their timezone)


class RoutingSummary(BaseModel):
    now: datetime
    run_id: str | None
    routed: int = 0
    kept: int = 0  # the relationship owner keeps the lead and is told
    to_queue: int = 0
    by_rule: dict[str, int] = {}
    by_owner: dict[str, int] = {}
    decisions: list[Routed] = []
    state_conflicts: int = 0
    markdown: str = ""


@dataclass(frozen=True)
class Rules:
    """Everything a routing decision reads besides the lead and the store."""

    teams: SalesTeams
    routing: RoutingRules
    sla: SlaPolicies


QueueIds = Callable[[Sequence[str]], Mapping[str, str]]


@dataclass(frozen=True)
class Telling:
    """Where notifications go, and the CRM instance their record links point at."""

    config: NotificationConfig
    instance_url: str | None = None

    def routed(self, conn, assignment_ids: Sequence[int], rules: Rules, now: datetime) -> int:
        return enqueue_routed(conn, assignment_ids, config=self.config, teams=rules.teams, policies=rules.sla,
                              instance_url=self.instance_url, now=now)


def route_waiting(engine, rules: Rules, *, now: datetime, run_id: str | None, queue_ids: QueueIds | None = None,
                  limit: int = 10_000, lead_ids: Sequence[int] | None = None) -> RoutingSummary:
    """Route the MQLs waiting in the routing queue (or these leads'), oldest first. All in one transaction with
    routing's state: a run that finds the state saved by another meanwhile decides again from it, so two runs
    never give one lead to two reps nor share the round robin out twice. The owners are told once the CRM holds
    them (`tell_new_owners`)."""
    for attempt in range(1, STATE_ATTEMPTS + 1):
        summary = RoutingSummary(now=now, run_id=run_id, state_conflicts=attempt - 1)
        try:
            with engine.begin() as conn:
                # The state before the queue: a run that saved the state since has closed the rows it routed, and
                # this run's save, over the version it read, then fails (each statement sees the latest commits)
                state, version = store.routing_state(conn)
                waiting = store.routing_queue(conn, limit, lead_ids)
                if not waiting:
                    return summary
                leads = store.leads_to_route(conn, [w.lead_id for w in waiting])
                directory = store.directory(conn)
                decisions, state = _decide(waiting, leads, rules, directory, state, now)
                owners = _owner_ids(decisions, queue_ids)
                if not store.save_routing_state(conn, state, version, now):
                    raise _StateMoved()
                made = store.record_assignments(
                    conn, [(d, "kept" if d.notify_only else "routed", _reason(d), owners.get(int(d.lead_id)))
                           for d in decisions], now, run_id)
                store.close_queue_rows(conn, [(w.queue_id, None, None) for w in waiting if w.lead_id in made], now)
                timers = open_timers(conn, decisions, made, rules, directory, now)
        except _StateMoved:
            continue
        return _summarized(summary, decisions, timers)
    raise RuntimeError(f"routing's state was saved by other runs {STATE_ATTEMPTS} times in a row; try again")


class _StateMoved(Exception):
    """Another run saved routing's state since this one read it: its decisions are rolled back and made again."""


def _decide(waiting, leads, rules: Rules, directory: CrmDirectory, state: RoutingState, now: datetime
            ) -> tuple[list[RoutingDecision], RoutingState]:
    decisions = []
    for lead_id in dict.fromkeys(w.lead_id for w in waiting):
        lead = leads.get(lead_id)
        if lead is None:
            continue
        decision, state = route(lead, rules=rules.routing, teams=rules.teams, directory=directory, state=state, now=now)
        decisions.append(decision)
    return decisions, state


def _owner_ids(decisions: Sequence[RoutingDecision], queue_ids: QueueIds | None) -> dict[int, str | None]:
    """Each decision's owner as the CRM knows them: the rep's CRM user, or the queue's id (asked of the CRM)."""
    queues = sorted({d.owner.queue for d in decisions if d.owner.queue})
    found = dict(queue_ids(queues)) if queues and queue_ids else {}
    for name in queues:
        if name not in found:
            log.warning("the CRM has no lead queue named %r: leads routed to it keep the owner they have", name)
    return {int(d.lead_id): d.owner.crm_user_id if not d.owner.queue else found.get(d.owner.queue) for d in decisions}


def _reason(decision: RoutingDecision) -> str:
    matched = next((step for step in decision.path if step.matched), None)
    return f"{decision.rule}: {matched.reason}" if matched else decision.rule


def open_timers(conn, decisions: Sequence[RoutingDecision], made: Mapping[int, int], rules: Rules,
                directory: CrmDirectory, now: datetime, after: Mapping[int, object] | None = None) -> dict[int, object]:
    """An SLA timer for each lead handed to a rep (a queue has nobody to hold to it), by the policy that fits it;
    `after`: the timers of reps who let a lead lapse, when these follow a reassignment."""
    reps = [d for d in decisions if d.owner.rep]
    if not reps:
        return {}
    subjects = _subjects(conn, [int(d.lead_id) for d in reps], {int(d.lead_id): d.product_line for d in reps})
    timers = {}
    for decision in reps:
        lead_id = int(decision.lead_id)
        policy = rules.sla.policy_for(subjects[lead_id])
        timers[lead_id] = open_timer(lead_id, decision.owner, team=decision.team, policy=policy, teams=rules.teams,
                                     opened_at=now, after=(after or {}).get(lead_id), directory=directory)
    store.open_timers(conn, [(lead_id, made[lead_id], timer, json.dumps(timer_to_json(timer), sort_keys=True))
                             for lead_id, timer in timers.items()], now)
    return timers


def _subjects(conn, lead_ids: Sequence[int], product_lines: Mapping[int, str | None]) -> dict[int, SlaSubject]:
    """What picks each lead's SLA policy: fit grade, product line, source channel, and the hand-raise that made it
    sales-ready (its latest)."""
    profiles = scoring.lead_profiles(conn, lead_ids)
    raised = scoring.last_hand_raises(conn, lead_ids, HAND_RAISES)
    states = scoring.load_states(conn, lead_ids)
    return {lead_id: SlaSubject(
        fit_grade=states[lead_id].fit_grade if lead_id in states else None,
        product_line=product_lines.get(lead_id),
        source=(profiles.get(lead_id) or {}).get("lead_source_channel"),
        hand_raise=raised[lead_id][1] if lead_id in raised else None) for lead_id in lead_ids}


def _summarized(summary: RoutingSummary, decisions: Sequence[RoutingDecision], timers: Mapping[int, object]
                ) -> RoutingSummary:
    for decision in decisions:
        if decision.notify_only:
            summary.kept += 1
        elif decision.owner.queue:
            summary.to_queue += 1
        else:
            summary.routed += 1
        timer = timers.get(int(decision.lead_id))
        summary.decisions.append(Routed(
            lead_id=int(decision.lead_id), email=decision.email, owner=str(decision.owner), rule=decision.rule,
            kind="kept" if decision.notify_only else "routed", team=decision.team,
            due=_local_due(timer) if timer else None))
    summary.by_rule = dict(Counter(d.rule for d in decisions).most_common())
    summary.by_owner = dict(Counter(str(d.owner) for d in decisions).most_common())
    return summary


def _local_due(timer) -> str:
    return f"{timer.due_at:%Y-%m-%d %H:%M} UTC"


# ---------------------------------------------------------------- by hand

class AssignRefused(ValueError):
    """An assignment by hand that cannot be made: the lead or the rep is unknown, or the rep cannot take leads."""


def assign_by_hand(engine, email: str, rep: str, reason: str, *, rules: Rules, by: str | None, now: datetime,
                   run_id: str | None) -> Routed:
    """A person gives a lead to a rep, with the reason: recorded and timed like routing's decisions, the routing
    path saying who decided; the lead's open routing rows are done."""
    address, rep_email = normalize_email(email), (rep or "").strip().lower()
    why = " ".join((reason or "").split())
    if not why:
        raise AssignRefused("say why: an assignment by hand is recorded with its reason")
    with engine.begin() as conn:
        lead_id = scoring.lead_by_email(conn, address) if address else None
        if lead_id is None:
            raise AssignRefused(f"{email!r}: no lead has this address")
        directory = store.directory(conn)
        user = directory.active_user(rep_email)
        if user is None:
            raise AssignRefused(f"{rep!r} is not an active user of the CRM (as last pulled): the lead would have no owner")
        known = rules.teams.rep(rep_email)
        team = known.teams[0] if known else None
        who = f" (by {by.strip()})" if by and by.strip() else ""
        decision = RoutingDecision(
            lead_id=lead_id, email=address, rule="by hand", kind="by_hand",
            owner=Owner(rep=rep_email, crm_user_id=user.crm_id, name=user.name), notify_only=False, decided_at=now,
            path=(RuleTried("by hand", "by_hand", True, f"{why}{who}"),), team=team)
        made = store.record_assignments(conn, [(decision, "by_hand", f"by hand: {why}{who}", user.crm_id)], now, run_id)
        store.close_queue_rows(conn, [(w.queue_id, None, None) for w in store.routing_queue(conn, 0, [lead_id])], now)
        timers = open_timers(conn, [decision], made, rules, directory, now)
    timer = timers.get(lead_id)
    return Routed(lead_id=lead_id, email=address, owner=str(decision.owner), rule="by hand", kind="by_hand",
                  team=team, due=_local_due(timer) if timer else None)


# ---------------------------------------------------------------- the Prefect tasks of the routing flow

def load_rules(settings, engine=None) -> Rules:
    """The teams, routing and SLA files; with `engine`, the reps' absences read from their calendar feeds too."""
    from config.routing import load_routing
    from config.sla import load_sla
    from config.teams import load_teams
    from tasks.calendar_feeds import with_feed_absences

    teams = load_teams(settings.teams_file)
    if engine is not None:
        teams = with_feed_absences(engine, teams)
    routing = load_routing(teams, settings.routing_file)
    lines = {line.name for line in routing.product_lines} | {line for team in teams.teams for line in team.product_lines}
    return Rules(teams=teams, routing=routing, sla=load_sla(settings.sla_file, product_lines=lines or None))


@task(cache_policy=NO_CACHE)
def routing_rules() -> Rules:
    settings = get_settings()
    return load_rules(settings, get_engine(settings.resolved_database_url()))


def tell_new_owners(engine, rules: Rules, telling: Telling, now: datetime) -> int:
    """Enqueue the notifications of every current assignment the CRM holds whose owner was not told yet: after the
    CRM took the owner, so the message carries the record's link; any run's sweep catches what a run cut short left
    (each message is keyed by its assignment, so none is enqueued twice)."""
    with engine.begin() as conn:
        return telling.routed(conn, store.untold_assignments(conn), rules, now)


def telling_for(client) -> Telling:
    return Telling(notification_config(), getattr(client, "instance_url", None) if client else None)


@task(cache_policy=NO_CACHE)
def route_waiting_leads(rules: Rules, now: datetime, run_id: str | None, client=None) -> RoutingSummary:
    engine = get_engine(get_settings().resolved_database_url())
    return route_waiting(engine, rules, now=now, run_id=run_id, queue_ids=client.queue_ids if client else None)


@task(cache_policy=NO_CACHE)
def assign_lead_by_hand(email: str, rep: str, reason: str, by: str | None, rules: Rules, now: datetime,
                        run_id: str | None) -> Routed:
    engine = get_engine(get_settings().resolved_database_url())
    return assign_by_hand(engine, email, rep, reason, rules=rules, by=by, now=now, run_id=run_id)


@task(cache_policy=NO_CACHE)
def tell_owners(rules: Rules, now: datetime, client=None) -> int:
    return tell_new_owners(get_engine(get_settings().resolved_database_url()), rules, telling_for(client), now)
