"""Routing's and the SLA's storage: the leads waiting for an owner with what routing reads of them, the CRM's
directory, routing's versioned state, each lead's assignments, and the SLA timers with their exactly-once steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy import Connection

from domain.crm_directory import CrmDirectory, DirectoryAccount, DirectoryUser
from domain.routing import RoutingState
from domain.routing_decision import RoutingDecision
from domain.routing_rules import LeadToRoute, RecentActivity
from store.bulk import db_time, in_keys, insert_for, keys_param, param_mark, select_where_in
from store.tables import Assignment, SlaTimerRow
from store.types import from_db_time

STATE_KEY = "routing"
assignment_t, timer_t = Assignment.__table__, SlaTimerRow.__table__


# ---------------------------------------------------------------- what waits, and what routing reads of it

@dataclass(frozen=True)
class Waiting:
    queue_id: int
    lead_id: int
    lead_event_id: int


def routing_queue(conn: Connection, limit: int, lead_ids: Sequence[int] | None = None) -> list[Waiting]:
    """Open routing rows of leads still sales-ready (an MQL not merged away), oldest first."""
    sql = ("SELECT q.id, q.lead_id, q.lead_event_id FROM handoff_queue q JOIN lead_state s ON s.lead_id = q.lead_id "
           "JOIN lead l ON l.id = q.lead_id WHERE q.done_at IS NULL AND q.queue = 'routing' AND s.stage = 'mql' "
           "AND l.merged_into_id IS NULL")
    if lead_ids is not None:
        rows = select_where_in(conn, sql + " AND q.lead_id {keys} ORDER BY q.created_at, q.id", list(lead_ids))
    else:
        rows = conn.exec_driver_sql(sql + f" ORDER BY q.created_at, q.id LIMIT {int(limit)}").fetchall()
    return [Waiting(*row) for row in rows]


def close_queue_rows(conn: Connection, closed: Sequence[tuple[int, str | None, str | None]], now: datetime) -> None:
    """Routing rows done: (queue row id, outcome, detail); a routed row has no outcome."""
    if not closed:
        return
    p, at = param_mark(conn), db_time(conn)(now)
    alike: dict[tuple[str | None, str | None], list[int]] = {}
    for queue_id, outcome, detail in closed:
        alike.setdefault((outcome, (detail or None) and detail[:200]), []).append(queue_id)
    for (outcome, detail), ids in alike.items():  # one statement for the rows closed alike (a run's routed rows)
        conn.exec_driver_sql(f"UPDATE handoff_queue SET done_at = {p}, outcome = {p}, detail = {p} "
                             f"WHERE id {in_keys(conn)} AND done_at IS NULL",
                             (at, outcome, detail, keys_param(conn, sorted(ids))))


def leads_to_route(conn: Connection, lead_ids: Sequence[int], activities: int = 10) -> dict[int, LeadToRoute]:
    """Each lead as routing sees it: details, score and fit, its CRM owner and record product line, and its most
    recent activities (what they engaged with), set-wise."""
    ids = sorted(set(lead_ids))
    rows = select_where_in(
        conn, "SELECT l.id, l.email, l.company, l.country, l.product_interest, s.fit_grade, s.score, r.owner_id, "
              "r.product_line FROM lead l JOIN lead_state s ON s.lead_id = l.id LEFT JOIN crm_record r "
              "ON r.lead_id = l.id WHERE l.id {keys}", ids)
    recent: dict[int, list[RecentActivity]] = {}
    for lead_id, kind, asset, campaign, at in select_where_in(
            conn, "SELECT lead_id, type, asset, campaign, occurred_at FROM (SELECT lead_id, type, asset, campaign, "
                  "occurred_at, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY occurred_at DESC, id DESC) AS n "
                  f"FROM activity WHERE lead_id {{keys}}) a WHERE n <= {int(activities)} ORDER BY lead_id, n", ids):
        recent.setdefault(lead_id, []).append(RecentActivity(from_db_time(at), kind, asset, campaign))
    return {row[0]: LeadToRoute(lead_id=row[0], email=row[1] or "", company=row[2], country=row[3],
                                product_interest=row[4], activities=tuple(recent.get(row[0], ())), fit_grade=row[5],
                                score=row[6] / 100, crm_owner_id=row[7], record_product_line=row[8])
            for row in rows}


def directory(conn: Connection) -> CrmDirectory:
    """The CRM's users and accounts as last pulled (deleted accounts left out)."""
    users = tuple(DirectoryUser(crm_id, email, name or "", bool(active), manager_id, timezone)
                  for crm_id, email, name, active, manager_id, timezone in conn.exec_driver_sql(
                      "SELECT crm_id, email, name, active, manager_id, timezone FROM crm_user ORDER BY crm_id"))
    accounts = tuple(DirectoryAccount(crm_id, name, domain, owner_id)
                     for crm_id, name, domain, owner_id in conn.exec_driver_sql(
                         "SELECT crm_id, name, domain, owner_id FROM crm_account WHERE NOT deleted ORDER BY crm_id"))
    return CrmDirectory(users, accounts)


# ---------------------------------------------------------------- routing's state

def routing_state(conn: Connection) -> tuple[RoutingState, int]:
    """The state and its version (0: never saved)."""
    row = conn.exec_driver_sql(f"SELECT state, version FROM routing_state WHERE key = '{STATE_KEY}'").fetchone()
    return (RoutingState.from_json(json.loads(row[0])), row[1]) if row else (RoutingState(), 0)


def save_routing_state(conn: Connection, state: RoutingState, version: int, now: datetime) -> bool:
    """Save over `version` only: False when another run saved meanwhile (its leads were shared out from the same
    state; this run's decisions must then be made again)."""
    p, stamp = param_mark(conn), db_time(conn)
    text = json.dumps(state.to_json(), sort_keys=True)
    if version == 0:
        inserted = conn.exec_driver_sql(
            f"INSERT INTO routing_state (key, state, version, updated_at) VALUES ({p}, {p}, 1, {p}) "
            "ON CONFLICT (key) DO NOTHING", (STATE_KEY, text, stamp(now))).rowcount
        return inserted == 1
    return conn.exec_driver_sql(
        f"UPDATE routing_state SET state = {p}, version = version + 1, updated_at = {p} WHERE key = {p} "
        f"AND version = {p}", (text, stamp(now), STATE_KEY, version)).rowcount == 1


# ---------------------------------------------------------------- assignments

@dataclass(frozen=True)
class Assigned:
    id: int
    lead_id: int
    owner_email: str | None
    owner_crm_id: str | None
    owner_name: str | None
    queue: str | None
    team: str | None
    rule: str
    kind: str
    reason: str
    notify_only: bool
    decided_at: datetime
    written_at: datetime | None
    path: dict


_ASSIGNED = ("id", "lead_id", "owner_email", "owner_crm_id", "owner_name", "queue", "team", "rule", "kind", "reason",
             "notify_only", "decided_at", "written_at", "path")


def _assigned(row: Sequence) -> Assigned:
    values = dict(zip(_ASSIGNED, row))
    values.update(notify_only=bool(values["notify_only"]), decided_at=from_db_time(values["decided_at"]),
                  written_at=from_db_time(values["written_at"]), path=json.loads(values["path"]))
    return Assigned(**values)


def current_assignments(conn: Connection, lead_ids: Sequence[int]) -> dict[int, Assigned]:
    rows = select_where_in(conn, f"SELECT {', '.join(_ASSIGNED)} FROM assignment WHERE superseded_at IS NULL "
                                 "AND lead_id {keys}", sorted(set(lead_ids)))
    return {row[1]: _assigned(row) for row in rows}


def assignments(conn: Connection, ids: Sequence[int]) -> list[Assigned]:
    rows = select_where_in(conn, f"SELECT {', '.join(_ASSIGNED)} FROM assignment WHERE id {{keys}} ORDER BY id",
                           sorted(set(ids)))
    return [_assigned(row) for row in rows]


def assignment_history(conn: Connection, lead_id: int) -> list[Assigned]:
    p = param_mark(conn)
    rows = conn.exec_driver_sql(f"SELECT {', '.join(_ASSIGNED)} FROM assignment WHERE lead_id = {p} ORDER BY id",
                                (lead_id,)).fetchall()
    return [_assigned(row) for row in rows]


def record_assignments(conn: Connection, decisions: Sequence[tuple[RoutingDecision, str, str, str | None]],
                       now: datetime, run_id: str | None) -> dict[int, int]:
    """Each lead's new current assignment: (decision, kind, reason, owner's CRM id); the one before is superseded.
    A kept owner needs no write to the CRM: it counts as written at once. Returns lead -> assignment id."""
    if not decisions:
        return {}
    p = param_mark(conn)
    leads = sorted({int(d.lead_id) for d, *_ in decisions})
    superseded = [row[0] for row in conn.exec_driver_sql(
        f"UPDATE assignment SET superseded_at = {p} WHERE superseded_at IS NULL AND lead_id {in_keys(conn)} "
        "RETURNING id", (db_time(conn)(now), keys_param(conn, leads)))]
    handed_to = {int(d.lead_id): d.owner.name or d.owner.rep or d.owner.queue for d, *_ in decisions}
    _withdraw_timers(conn, superseded, handed_to, now)
    rows = [{"lead_id": int(decision.lead_id), "owner_email": decision.owner.rep, "owner_crm_id": owner_crm_id,
             "owner_name": decision.owner.name or decision.owner.queue, "queue": decision.owner.queue,
             "team": decision.team, "rule": decision.rule, "kind": kind, "reason": reason,
             "path": json.dumps(decision.to_json(), sort_keys=True), "notify_only": decision.notify_only,
             "decided_at": now, "written_at": now if decision.notify_only or owner_crm_id is None else None,
             "run_id": run_id} for decision, kind, reason, owner_crm_id in decisions]
    # In few statements (multi-row INSERT .. RETURNING), not one round trip a lead
    made = conn.execute(assignment_t.insert().returning(assignment_t.c.lead_id, assignment_t.c.id,
                                                        sort_by_parameter_order=True), rows)
    return {lead_id: assignment_id for lead_id, assignment_id in made}


def mark_written(conn: Connection, assignment_ids: Sequence[int], now: datetime) -> None:
    """The CRM took these assignments' owners."""
    if not assignment_ids:
        return
    p = param_mark(conn)
    conn.exec_driver_sql(f"UPDATE assignment SET written_at = {p} WHERE id = {p} AND written_at IS NULL",
                         [(db_time(conn)(now), assignment_id) for assignment_id in sorted(set(assignment_ids))])


# ---------------------------------------------------------------- SLA timers

@dataclass(frozen=True)
class TimerRow:
    id: int
    lead_id: int
    assignment_id: int
    state: str
    timer: dict


def open_timers(conn: Connection, timers: Sequence[tuple[int, int, Any, str]], now: datetime) -> dict[int, int]:
    """New timers: (lead, assignment, domain timer, its JSON), one per assignment (a repeat opens none). Returns
    assignment -> timer id."""
    if not timers:
        return {}
    rows = [{"lead_id": lead_id, "assignment_id": assignment_id, "owner_email": timer.owner.rep, "team": timer.team,
             "policy": timer.policy, "state": timer.state.value, "opened_at": timer.opened_at, "due_at": timer.due_at,
             "next_step_at": next_step_at(timer), "timer": text} for lead_id, assignment_id, timer, text in timers]
    stmt = insert_for(conn, timer_t).on_conflict_do_nothing(index_elements=["assignment_id"])
    return {assignment_id: timer_id for assignment_id, timer_id in
            conn.execute(stmt.returning(timer_t.c.assignment_id, timer_t.c.id), rows)}


def next_step_at(timer) -> datetime:
    """The earliest moment a step of this timer can fall due without a contact (contacts are looked for at each
    scan of a running timer)."""
    if timer.state.value == "open":
        return timer.remind_at or timer.due_at
    if timer.state.value == "reminded":
        return timer.due_at
    return timer.reassign_at


def running_timers(conn: Connection, lead_ids: Sequence[int] | None = None) -> list[TimerRow]:
    sql = "SELECT id, lead_id, assignment_id, state, timer FROM sla_timer WHERE closed_at IS NULL"
    rows = (select_where_in(conn, sql + " AND lead_id {keys} ORDER BY id", list(lead_ids)) if lead_ids is not None
            else conn.exec_driver_sql(sql + " ORDER BY id").fetchall())
    return [TimerRow(row[0], row[1], row[2], row[3], json.loads(row[4])) for row in rows]


def apply_timer_step(conn: Connection, timer_id: int, from_state: str, timer, text: str) -> bool:
    """Move a timer on, only from the state the step expects: False when another run moved it first."""
    p, stamp = param_mark(conn), db_time(conn)
    closed = not timer.running
    return conn.exec_driver_sql(
        f"UPDATE sla_timer SET state = {p}, timer = {p}, next_step_at = {p}, closed_at = {p}, first_contact_at = {p} "
        f"WHERE id = {p} AND state = {p}",
        (timer.state.value, text, stamp(next_step_at(timer)), stamp(timer.closed_at) if closed else None,
         stamp(timer.first_contact_at), timer_id, from_state)).rowcount == 1


def _withdraw_timers(conn: Connection, assignment_ids: Sequence[int], handed_to: dict[int, str],
                     now: datetime) -> None:
    """The running timers of assignments a new one replaced: the old owner's clock stops (else two owners'
    timers run on one lead, and both could breach and reassign it)."""
    from domain.sla import timer_from_json, timer_to_json, withdrawn

    if not assignment_ids:
        return
    stamp, p = db_time(conn), param_mark(conn)
    moves = []
    for timer_id, lead_id, text in select_where_in(
            conn, "SELECT id, lead_id, timer FROM sla_timer WHERE closed_at IS NULL AND assignment_id {keys}",
            sorted(assignment_ids)):
        timer = withdrawn(timer_from_json(json.loads(text)), f"handed to {handed_to.get(lead_id)}", now)
        moves.append((timer.state.value, stamp(now), json.dumps(timer_to_json(timer), sort_keys=True), timer_id))
    if moves:
        conn.exec_driver_sql(f"UPDATE sla_timer SET state = {p}, closed_at = {p}, timer = {p} "
                             f"WHERE id = {p} AND closed_at IS NULL", moves)


def contact_facts(conn: Connection, lead_ids: Sequence[int]) -> tuple[dict[int, list], dict[int, list]]:
    """For the SLA: each lead's logged activities (when, kind, by whom) and its CRM status as last pulled (with
    when the record changed), from the CRM pull."""
    from domain.sla import LoggedActivity, StatusChange

    ids = sorted(set(lead_ids))
    activities: dict[int, list] = {}
    for lead_id, at, kind, by in select_where_in(
            conn, "SELECT lead_id, occurred_at, kind, owner_id FROM crm_activity WHERE NOT deleted AND lead_id {keys} "
                  "ORDER BY occurred_at", ids):
        activities.setdefault(lead_id, []).append(LoggedActivity(from_db_time(at), kind, by))
    statuses: dict[int, list] = {}
    for lead_id, status, at in select_where_in(
            conn, "SELECT lead_id, status, modified_at FROM crm_record WHERE status IS NOT NULL AND modified_at IS NOT "
                  "NULL AND lead_id {keys}", ids):
        statuses.setdefault(lead_id, []).append(StatusChange(from_db_time(at), status))
    return activities, statuses


def timers_to_look_at(conn: Connection, now: datetime,
                      counts_status: Callable[[str], bool] | None = None) -> list[TimerRow]:
    """Running timers that may have a step now: one whose next step is due, or whose lead has a contact logged
    since the timer opened, or whose CRM record changed since to a status that counts as contact (`counts_status`;
    any status when None): either may close it. Read by the indexes on these, not by every running timer's facts."""
    p, stamp = param_mark(conn), db_time(conn)
    params: list[Any] = [stamp(now)]
    status: str | None = "r.status IS NOT NULL"
    if counts_status is not None:
        # Routing's own write of the owner changes every record after its timer opens, to a status (the open one)
        # that is no contact: only the statuses that count are looked for, else every running timer is read. The
        # org's statuses are a handful: which of them count is asked of the rules, exactly as the step asks it
        statuses = [s for (s,) in conn.exec_driver_sql(
            "SELECT DISTINCT status FROM crm_record WHERE status IS NOT NULL") if counts_status(s)]
        status = f"r.status {in_keys(conn)}" if statuses else None
        params += [keys_param(conn, statuses)] if statuses else []
    changed = (" OR EXISTS (SELECT 1 FROM crm_record r WHERE r.lead_id = t.lead_id AND r.modified_at >= t.opened_at "
               f"AND {status})") if status else ""
    sql = ("SELECT t.id, t.lead_id, t.assignment_id, t.state, t.timer FROM sla_timer t WHERE t.closed_at IS NULL AND "
           f"(t.next_step_at <= {p} OR EXISTS (SELECT 1 FROM crm_activity a WHERE a.lead_id = t.lead_id AND "
           f"a.occurred_at >= t.opened_at AND NOT a.deleted){changed}) ORDER BY t.id")
    rows = conn.exec_driver_sql(sql, tuple(params)).fetchall()
    return [TimerRow(row[0], row[1], row[2], row[3], json.loads(row[4])) for row in rows]


def apply_timer_steps(conn: Connection, moves: Sequence[tuple[int, str, Any, str]]) -> set[int]:
    """Move timers on in one statement: (timer id, the state the first step expects, the timer after its steps,
    its JSON). Only a timer still in that state moves; returns the ids that did (the others another run moved)."""
    if not moves:
        return set()
    stamp = db_time(conn)
    rows = [(timer_id, from_state, timer.state.value, text, stamp(next_step_at(timer)),
             stamp(timer.closed_at) if not timer.running else None, stamp(timer.first_contact_at))
            for timer_id, from_state, timer, text in moves]
    time = "TEXT" if conn.dialect.name == "sqlite" else "TIMESTAMPTZ"
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS sla_move (id INTEGER, from_state TEXT, state TEXT, timer TEXT, "
                         f"next_step_at {time}, closed_at {time}, first_contact_at {time})")
    conn.exec_driver_sql("DELETE FROM sla_move")
    p = param_mark(conn)
    conn.exec_driver_sql(f"INSERT INTO sla_move VALUES ({', '.join([p] * 7)})", rows)
    moved = conn.exec_driver_sql(
        "UPDATE sla_timer SET state = m.state, timer = m.timer, next_step_at = m.next_step_at, closed_at = m.closed_at, "
        "first_contact_at = m.first_contact_at FROM sla_move AS m WHERE sla_timer.id = m.id "
        "AND sla_timer.state = m.from_state AND sla_timer.closed_at IS NULL RETURNING sla_timer.id")
    return {row[0] for row in moved}


def timers_opened_since(conn: Connection, since: datetime | None) -> list[dict]:
    """Every timer opened at or after `since` (all when None), as the domain's JSON, for the SLA measures."""
    if since is None:
        rows = conn.exec_driver_sql("SELECT timer FROM sla_timer ORDER BY id").fetchall()
    else:
        rows = conn.exec_driver_sql(f"SELECT timer FROM sla_timer WHERE opened_at >= {param_mark(conn)} ORDER BY id",
                                    (db_time(conn)(since),)).fetchall()
    return [json.loads(row[0]) for row in rows]


def timers_of_lead(conn: Connection, lead_id: int) -> dict[int, dict]:
    """A lead's timers by assignment: policy, state, due and first contact, and why it closed."""
    p = param_mark(conn)
    rows = conn.exec_driver_sql(f"SELECT assignment_id, timer FROM sla_timer WHERE lead_id = {p}", (lead_id,)).fetchall()
    return {assignment_id: {name: json.loads(timer).get(name) for name in
                            ("policy", "state", "due_at", "first_contact_at", "reason")}
            for assignment_id, timer in rows}


def untold_assignments(conn: Connection) -> list[int]:
    """Current assignments to a person that the CRM holds and whose notifications were never enqueued."""
    return [row[0] for row in conn.exec_driver_sql(
        "SELECT a.id FROM assignment a WHERE a.superseded_at IS NULL AND a.written_at IS NOT NULL "
        "AND a.owner_email IS NOT NULL AND NOT EXISTS (SELECT 1 FROM notification n WHERE n.assignment_id = a.id) "
        "ORDER BY a.id")]
