"""The notification outbox: enqueue once per cause, claim what is due, record each send as it ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import Connection

from store.bulk import db_time, insert_for, param_mark
from store.tables import Notification
from store.types import from_db_time

notification_t = Notification.__table__


@dataclass(frozen=True)
class Message:
    """A notification to write: `key` names its cause, so the same cause enqueues it once."""

    key: str
    kind: str
    recipient: str
    subject: str
    body: str
    lead_id: int | None = None
    assignment_id: int | None = None


@dataclass(frozen=True)
class Due:
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


def claim_due(conn: Connection, now: datetime, limit: int) -> list[Due]:
    """Notifications due now, oldest first, marked as being sent: unsent, not given up or unconfirmed, past their
    retry time, and (for one that waits on an assignment) once the CRM holds that owner."""
    p, stamp = param_mark(conn), db_time(conn)
    rows = conn.exec_driver_sql(
        "SELECT n.id, n.key, n.recipient, n.subject, n.body, n.attempts FROM notification n "
        "LEFT JOIN assignment a ON a.id = n.assignment_id "
        "WHERE n.sent_at IS NULL AND n.given_up_at IS NULL AND n.unconfirmed_at IS NULL AND n.sending_at IS NULL "
        f"AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= {p}) "
        "AND (n.assignment_id IS NULL OR a.written_at IS NOT NULL) "
        f"ORDER BY n.created_at, n.id LIMIT {int(limit)}", (stamp(now),)).fetchall()
    due = [Due(*row) for row in rows]
    if due:
        conn.exec_driver_sql(f"UPDATE notification SET sending_at = {p} WHERE id = {p}",
                             [(stamp(now), d.id) for d in due])
    return due


def record_sent(conn: Connection, notification_id: int, now: datetime) -> None:
    p = param_mark(conn)
    conn.exec_driver_sql(f"UPDATE notification SET sent_at = {p}, sending_at = NULL, error = NULL WHERE id = {p}",
                         (db_time(conn)(now), notification_id))


def record_failure(conn: Connection, notification_id: int, error: str, now: datetime, retry_in: timedelta,
                   max_attempts: int) -> bool:
    """A send that failed: tried again after `retry_in`, or given up after `max_attempts`. Returns given up."""
    p, stamp = param_mark(conn), db_time(conn)
    row = conn.exec_driver_sql(f"SELECT attempts FROM notification WHERE id = {p}", (notification_id,)).fetchone()
    attempts = (row[0] if row else 0) + 1
    given_up = attempts >= max_attempts
    conn.exec_driver_sql(
        f"UPDATE notification SET attempts = {p}, error = {p}, sending_at = NULL, next_attempt_at = {p}, "
        f"given_up_at = {p} WHERE id = {p}",
        (attempts, error[:1000], stamp(now + retry_in), stamp(now) if given_up else None, notification_id))
    return given_up


def outbox_counts(conn: Connection) -> dict[str, int]:
    """Notifications by state: waiting, sent, given up, unconfirmed."""
    row = conn.exec_driver_sql(
        "SELECT SUM(CASE WHEN sent_at IS NULL AND given_up_at IS NULL AND unconfirmed_at IS NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END), SUM(CASE WHEN given_up_at IS NOT NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN unconfirmed_at IS NOT NULL THEN 1 ELSE 0 END) FROM notification").fetchone()
    return {name: int(value or 0) for name, value in zip(("waiting", "sent", "given up", "unconfirmed"), row)}


def oldest_waiting(conn: Connection) -> datetime | None:
    value = conn.exec_driver_sql("SELECT MIN(created_at) FROM notification WHERE sent_at IS NULL AND "
                                 "given_up_at IS NULL AND unconfirmed_at IS NULL").scalar()
    return from_db_time(value)
