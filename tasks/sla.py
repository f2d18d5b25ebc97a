"""The SLA's work: every running timer that may have a step now is stepped through what is due (contact closes it;
else reminder, breach and escalation, reassignment, recycling), and each timer's steps are applied once, in one
transaction for the whole scan, with their effects: lead events, notifications, new owners, recycled leads."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from config.settings import get_settings
from domain.lifecycle import Stage, StageMoveRefused, move_by_person
from domain.routing import route
from domain.sla import (
    SlaStep, SlaTimer, StepKind, apply_step, next_step, timer_from_json, timer_to_json, withdrawn,
)
from store import routing as store
from store import scoring, stages
from store.engine import get_engine
from store.scoring import event_row, event_t
from tasks.notify import enqueue_sla_steps
from tasks.routing import QueueIds, Rules, Telling, _owner_ids, load_rules, open_timers, telling_for

log = logging.getLogger("handoff.sla")

STATE_ATTEMPTS = 5


class SlaSummary(BaseModel):
    now: datetime
    run_id: str | None
    looked_at: int = 0
    steps: dict[str, int] = {}  # by kind: met, contacted_late, remind, breach, reassign, recycle
    escalated: int = 0
    moved_by_another_run: int = 0
    reassigned_leads: list[int] = []
    recycled_leads: list[int] = []
    refused: list[str] = []  # recycles the lifecycle did not allow (the lead moved on meanwhile), with why
    markdown: str = ""


@dataclass
class _Scan:
    """One scan's planned steps: per timer the steps due, and the timer after them."""

    moves: list[tuple[int, str, SlaTimer, str]] = field(default_factory=list)
    steps: dict[int, list[SlaStep]] = field(default_factory=dict)
    before: dict[int, SlaTimer] = field(default_factory=dict)
    rows: dict[int, store.TimerRow] = field(default_factory=dict)


def run_sla(engine, rules: Rules, *, now: datetime, run_id: str | None, queue_ids: QueueIds | None = None,
            telling: Telling | None = None) -> SlaSummary:
    """Step every running timer that may have a step now, applying each timer's steps once (a run that finds a
    timer moved by another run leaves it); each step's notifications are enqueued in the same transaction."""
    for attempt in range(1, STATE_ATTEMPTS + 1):
        summary = SlaSummary(now=now, run_id=run_id)
        try:
            with engine.begin() as conn:
                scan = _plan(conn, rules, now)
                summary.looked_at = len(scan.rows)
                moved = store.apply_timer_steps(conn, scan.moves)
                summary.moved_by_another_run = len(scan.moves) - len(moved)
                _effects(conn, scan, moved, rules, now, run_id, queue_ids, telling, summary)
        except _StateMoved:
            continue
        return summary
    raise RuntimeError(f"routing's state was saved by other runs {STATE_ATTEMPTS} times in a row; try again")


class _StateMoved(Exception):
    """Routing's state (for the reassignments) was saved by another run meanwhile: the scan is made again."""


OWNED_BY_SALES = ("mql", "sql", "opportunity", "customer")


def _plan(conn, rules: Rules, now: datetime) -> _Scan:
    scan = _Scan()
    rows = store.timers_to_look_at(conn, now, rules.sla.contacted.counts_status)
    activities, statuses = store.contact_facts(conn, [row.lead_id for row in rows])
    stage_of = {lead_id: state.stage.value for lead_id, state in
                scoring.load_states(conn, [row.lead_id for row in rows]).items()}
    for row in rows:
        scan.rows[row.id] = row
        timer = before = timer_from_json(row.timer)
        if stage_of.get(row.lead_id) not in OWNED_BY_SALES:  # a person recycled or disqualified it meanwhile
            timer = withdrawn(timer, f"the lead is {stage_of.get(row.lead_id)} now: nobody's to contact", now)
            scan.moves.append((row.id, row.state, timer, json.dumps(timer_to_json(timer), sort_keys=True)))
            scan.steps[row.id], scan.before[row.id] = [], before
            continue
        steps = []
        while (step := next_step(timer, now, rules.sla.contacted, activities.get(row.lead_id, ()),
                                 statuses.get(row.lead_id, ()))) is not None:
            steps.append(step)
            timer = apply_step(timer, step, now)
        if steps:
            scan.steps[row.id], scan.before[row.id] = steps, before
            scan.moves.append((row.id, row.state, timer, json.dumps(timer_to_json(timer), sort_keys=True)))
    return scan


def _effects(conn, scan: _Scan, moved: set[int], rules: Rules, now: datetime, run_id: str | None,
             queue_ids: QueueIds | None, telling: Telling | None, summary: SlaSummary) -> None:
    kinds: Counter = Counter()
    events, reassign, recycle, told = [], [], [], []
    for timer_id in sorted(moved):
        row, timer = scan.rows[timer_id], scan.before[timer_id]
        for step in scan.steps[timer_id]:
            kinds[step.kind.value] += 1
            summary.escalated += bool(step.escalate_to)
            events += [event_row(row.lead_id, name.removeprefix("handoff."), timer_id, now, run_id, {
                "lead_id": row.lead_id, "timer_id": timer_id, "owner": timer.owner.rep or timer.owner.queue,
                "policy": timer.policy, "due_at": timer.due_at.isoformat(), "reason": step.reason,
                "escalated_to": step.escalate_to}) for name in step.events]
            told.append((timer_id, timer, step))
            timer = apply_step(timer, step, now)
            if step.kind is StepKind.REASSIGN:
                reassign.append((row, timer, step))
            elif step.kind is StepKind.RECYCLE:
                recycle.append((row, step))
    if events:
        # once per lead, event and timer: a retried scan finds the step applied and emits nothing again
        conn.execute(event_t.insert(), events)
    summary.steps = dict(sorted(kinds.items()))
    _reassign(conn, reassign, rules, now, run_id, queue_ids, summary)
    _recycle(conn, recycle, now, run_id, summary)
    if telling:  # the new owners of reassigned leads are told once the CRM holds them (tell_new_owners)
        enqueue_sla_steps(conn, told, config=telling.config, teams=rules.teams, policies=rules.sla,
                          instance_url=telling.instance_url, now=now)


def _reassign(conn, lapsed: list, rules: Rules, now: datetime, run_id: str | None, queue_ids: QueueIds | None,
              summary: SlaSummary) -> list[int]:
    """Each lapsed lead routed again, never back to a rep who let it lapse; the new owner's timer starts. Returns
    the new assignments."""
    if not lapsed:
        return []
    leads = store.leads_to_route(conn, [row.lead_id for row, _, _ in lapsed])
    directory = store.directory(conn)
    state, version = store.routing_state(conn)
    decisions, after = [], {}
    for row, timer, step in lapsed:
        lead = leads.get(row.lead_id)
        if lead is None:
            continue
        decision, state = route(lead, rules=rules.routing, teams=rules.teams, directory=directory, state=state,
                                now=now, excluded_reps=step.exclude_reps)
        decisions.append(decision)
        after[row.lead_id] = timer
    if not store.save_routing_state(conn, state, version, now):
        raise _StateMoved()
    owners = _owner_ids(decisions, queue_ids)
    made = store.record_assignments(conn, [(d, "reassigned", f"SLA lapsed, {d.rule}", owners.get(int(d.lead_id)))
                                           for d in decisions], now, run_id)
    open_timers(conn, decisions, made, rules, directory, now, after=after)
    summary.reassigned_leads = sorted(made)
    return list(made.values())


def _recycle(conn, lapsed: list, now: datetime, run_id: str | None, summary: SlaSummary) -> None:
    """Leads nobody contacted after every reassignment go back to marketing nurture, with the reason, through the
    lifecycle's own recycle (the CRM learns the stage from the next push)."""
    if not lapsed:
        return
    from config.rulebook import load_rulebook

    rulebook = load_rulebook(get_settings().rulebook_dir)
    ids = sorted({row.lead_id for row, _ in lapsed})
    states = scoring.load_states(conn, ids, lock=True)
    moves = {}
    for row, step in lapsed:
        try:
            moves[row.lead_id] = move_by_person(states.get(row.lead_id), Stage.RECYCLED, f"SLA: {step.reason}", now,
                                                fit=None, rearm_below=rulebook.qualification.rearm_below)
        except StageMoveRefused as refused:
            summary.refused.append(f"lead {row.lead_id}: {refused}")
    if moves:
        bookmarks = scoring.scoring_state(conn)
        stages.save_moves(conn, moves, bookmarks[0] if bookmarks else None, now, run_id)
    summary.recycled_leads = sorted(moves)


# ---------------------------------------------------------------- the Prefect task

@task(cache_policy=NO_CACHE)
def step_sla_timers(now: datetime, run_id: str | None, client=None) -> SlaSummary:
    settings = get_settings()
    engine = get_engine(settings.resolved_database_url())
    return run_sla(engine, load_rules(settings, engine), now=now, run_id=run_id,
                   queue_ids=client.queue_ids if client else None, telling=telling_for(client))
