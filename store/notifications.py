"""The notification outbox (enqueue once per cause, each send claimed before it goes and recorded as it ends) and
the facts about leads and assignments that notifications tell, read set-wise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import Connection

from domain.notifications import Message
from store.bulk import db_time, insert_for, param_mark, select_where_in
from store.tables import Notification
from store.types import from_db_time

notification_t = Notification.__table__

__all__ = ["Message", "Outgoing", "enqueue", "settle_unconfirmed", "due_now", "start_sending", "record_sent",
           "record_failure", "outbox_counts", "oldest_waiting"]

RETRY_CEILING = timedelta(hours=1)  # backoff grows to this and no further


@dataclass(frozen=True)
class Outgoing:
    """A notification due to be sent; `key` may name a shared channel (domain.notifications.channel_of)."""

    id: int
    key: str
    recipient: str
    subject: str
    body: str
    attempts: int


def enqueue(conn: Connection, messages: Sequence[Message], now: datetime) -> int:
    """In the caller's transaction (the decision's): returns how many were new."""
    if not messages:
        return 0
    rows = [{"key": m.key, "kind": m.kind, "lead_id": m.lead_id, "assignment_id": m.assignment_id,
             "recipient": m.recipient, "subject": m.subject, "body": m.body, "created_at": now} for m in messages]
    stmt = insert_for(conn, notification_t).on_conflict_do_nothing(index_elements=["key"])
    return len(conn.execute(stmt.returning(notification_t.c.id), rows).all())


def settle_unconfirmed(conn: Connection, now: datetime) -> int:
    """Sends that were under way when their run died: not sent again (the receiver may hold them), kept as
    unconfirmed for a person to look at. Called by the one run that holds the sending lease."""
    p = param_mark(conn)
    return conn.exec_driver_sql(
        f"UPDATE notification SET unconfirmed_at = {p}, sending_at = NULL WHERE sending_at IS NOT NULL "
        "AND sent_at IS NULL", (db_time(conn)(now),)).rowcount


_SENDABLE = "{t}sent_at IS NULL AND {t}given_up_at IS NULL AND {t}unconfirmed_at IS NULL AND {t}sending_at IS NULL"


def due_now(conn: Connection, now: datetime, limit: int) -> list[Outgoing]:
    """Notifications due now, oldest first: unsent, not given up or unconfirmed, past their retry time, and (for
    one that waits on an assignment) once the CRM holds that owner."""
    rows = conn.exec_driver_sql(
        "SELECT n.id, n.key, n.recipient, n.subject, n.body, n.attempts FROM notification n "
        "LEFT JOIN assignment a ON a.id = n.assignment_id "
        f"WHERE {_SENDABLE.format(t='n.')} "
        f"AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= {param_mark(conn)}) "
        "AND (n.assignment_id IS NULL OR a.written_at IS NOT NULL) "
        f"ORDER BY n.created_at, n.id LIMIT {int(limit)}", (db_time(conn)(now),)).fetchall()
    return [Outgoing(*row) for row in rows]


def start_sending(conn: Connection, notification_id: int, now: datetime) -> bool:
    """Claim one notification just before it goes, committed before the send: a run that dies during the send
    leaves it claimed, and the next run settles it as unconfirmed. False: it is not ours to send."""
    p = param_mark(conn)
    return conn.exec_driver_sql(f"UPDATE notification SET sending_at = {p} WHERE id = {p} AND {_SENDABLE.format(t='')}",
                                (db_time(conn)(now), notification_id)).rowcount == 1


def record_sent(conn: Connection, notification_id: int, now: datetime) -> None:
    p = param_mark(conn)
    conn.exec_driver_sql(f"UPDATE notification SET sent_at = {p}, sending_at = NULL, error = NULL WHERE id = {p}",
                         (db_time(conn)(now), notification_id))


def record_failure(conn: Connection, notification_id: int, error: str, now: datetime, retry_in: timedelta,
                   max_attempts: int) -> bool:
    """A send that failed: tried again after `retry_in`, doubled after each further failure (up to an hour), or
    given up after `max_attempts`. Returns given up."""
    p, stamp = param_mark(conn), db_time(conn)
    row = conn.exec_driver_sql(f"SELECT attempts FROM notification WHERE id = {p}", (notification_id,)).fetchone()
    attempts = (row[0] if row else 0) + 1
    given_up = attempts >= max_attempts
    wait = min(retry_in * 2 ** (attempts - 1), max(retry_in, RETRY_CEILING))
    conn.exec_driver_sql(
        f"UPDATE notification SET attempts = {p}, error = {p}, sending_at = NULL, next_attempt_at = {p}, "
        f"given_up_at = {p} WHERE id = {p}",
        (attempts, error[:1000], stamp(now + wait), stamp(now) if given_up else None, notification_id))
    return given_up


OUTBOX_STATES = ("waiting", "retrying", "sent", "given up", "unconfirmed")


def outbox_counts(conn: Connection) -> dict[str, int]:
    """Notifications by state (OUTBOX_STATES): waiting to be sent (never tried, or under way), retrying (a send
    failed and it is tried again), sent, given up, unconfirmed."""
    unsent = "sent_at IS NULL AND given_up_at IS NULL AND unconfirmed_at IS NULL"
    row = conn.exec_driver_sql(
        f"SELECT SUM(CASE WHEN {unsent} AND attempts = 0 THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {unsent} AND attempts > 0 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN given_up_at IS NOT NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN unconfirmed_at IS NOT NULL THEN 1 ELSE 0 END) FROM notification").fetchone()
    return {name: int(value or 0) for name, value in zip(OUTBOX_STATES, row)}


def oldest_waiting(conn: Connection) -> datetime | None:
    value = conn.exec_driver_sql("SELECT MIN(created_at) FROM notification WHERE sent_at IS NULL AND "
                                 "given_up_at IS NULL AND unconfirmed_at IS NULL").scalar()
    return from_db_time(value)


# ---------------------------------------------------------------------------------------------- what they tell

def lead_facts(conn: Connection, lead_ids: Sequence[int]) -> dict[int, dict]:
    """Each lead's person fields with its score, fit grade, rulebook version and when it was scored."""
    names = ("email", "first_name", "last_name", "company", "title", "country", "score", "fit_grade", "version_id",
             "scored_at")
    rows = select_where_in(
        conn, "SELECT l.id, l.email, l.first_name, l.last_name, l.company, l.title, l.country, s.score, s.fit_grade, "
              "s.version_id, s.scored_at FROM lead l LEFT JOIN lead_state s ON s.lead_id = l.id WHERE l.id {keys}",
        sorted(set(lead_ids)))
    facts = {row[0]: dict(zip(names, row[1:])) for row in rows}
    for fact in facts.values():
        fact["scored_at"] = from_db_time(fact["scored_at"])
    return facts


def mql_reasons(conn: Connection, lead_ids: Sequence[int]) -> dict[int, str]:
    """Why each lead became sales-ready, from its latest move to MQL."""
    rows = select_where_in(
        conn, "SELECT lead_id, reason FROM (SELECT lead_id, reason, ROW_NUMBER() OVER (PARTITION BY lead_id "
              "ORDER BY changed_at DESC, id DESC) AS n FROM stage_change WHERE to_stage = 'mql' AND lead_id {keys}) m "
              "WHERE n = 1", sorted(set(lead_ids)))
    return dict(rows)


def last_marketing_emails(conn: Connection, lead_ids: Sequence[int]) -> dict[int, tuple[str, str | None, str | None,
                                                                                       datetime]]:
    """Each lead's latest open or click of a marketing e-mail: (type, e-mail name, campaign, when)."""
    rows = select_where_in(
        conn, "SELECT lead_id, type, asset, campaign, occurred_at FROM (SELECT lead_id, type, asset, campaign, "
              "occurred_at, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY occurred_at DESC, id DESC) AS n "
              "FROM activity WHERE type IN ('email_open', 'email_click') AND lead_id {keys}) e WHERE n = 1",
        sorted(set(lead_ids)))
    return {row[0]: (row[1], row[2], row[3], from_db_time(row[4])) for row in rows}


@dataclass(frozen=True)
class AssignmentFacts:
    """An assignment as its notifications tell it, with the one it followed (a reassignment's lost owner)."""

    id: int
    lead_id: int
    owner_email: str | None
    owner_crm_id: str | None
    owner_name: str | None
    team: str | None
    rule: str
    kind: str
    reason: str
    decided_at: datetime
    previous_id: int | None
    previous_owner_email: str | None
    previous_owner_name: str | None


def assignment_facts(conn: Connection, assignment_ids: Sequence[int]) -> list[AssignmentFacts]:
    rows = select_where_in(
        conn, "SELECT a.id, a.lead_id, a.owner_email, a.owner_crm_id, a.owner_name, a.team, a.rule, a.kind, a.reason, "
              "a.decided_at, p.id, p.owner_email, p.owner_name FROM assignment a LEFT JOIN assignment p "
              "ON p.id = (SELECT MAX(q.id) FROM assignment q WHERE q.lead_id = a.lead_id AND q.id < a.id) "
              "WHERE a.id {keys} ORDER BY a.id", sorted(set(assignment_ids)))
    return [AssignmentFacts(*row[:9], from_db_time(row[9]), *row[10:]) for row in rows]


@dataclass(frozen=True)
class TimerFacts:
    """An assignment's SLA timer as notifications tell it."""

    id: int
    assignment_id: int
    policy: str
    due_at: datetime
    reassign_at: datetime | None
    manager: str | None


def timers_of(conn: Connection, assignment_ids: Sequence[int]) -> dict[int, TimerFacts]:
    """The SLA timer of each of these assignments that has one."""
    found = {}
    for timer_id, assignment_id, policy, due_at, text in select_where_in(
            conn, "SELECT id, assignment_id, policy, due_at, timer FROM sla_timer WHERE assignment_id {keys}",
            sorted(set(assignment_ids))):
        timer = json.loads(text) if text else {}
        reassign_at = timer.get("reassign_at")
        found[assignment_id] = TimerFacts(timer_id, assignment_id, policy, from_db_time(due_at),
                                          datetime.fromisoformat(reassign_at) if reassign_at else None,
                                          timer.get("manager"))
    return found


def crm_people(conn: Connection, emails: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """CRM users by (lower-case) e-mail: (name, timezone)."""
    rows = select_where_in(conn, "SELECT LOWER(email), name, timezone FROM crm_user WHERE LOWER(email) {keys}",
                           sorted({e.strip().lower() for e in emails if e}))
    return {email: (name, zone) for email, name, zone in rows}
