"""The owner alerts' storage: their cursor through the activity log (held by one run at a time), the activities
a look reads, each lead's owner as the CRM and Handoff know it, and what the alerts remember of each owned lead."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from domain.notifications import Engagement
from domain.owner_alerts import AlertState, AssignedOwner, CrmOwner
from store.bulk import db_time, insert_rows, param_mark, select_where_in
from store.tables import OwnerAlertLead
from store.types import from_db_time

CURSOR = "owner_alerts"
LOCK_TIMEOUT = "2s"  # ingest waits behind the lock request at most this long
LOCK_NOT_AVAILABLE = "55P03"


def settled_through(engine: Engine) -> int | None:
    """The newest activity id below which every activity that will ever be stored is committed: on PostgreSQL a
    transaction may commit a lower id after a higher one, so the SHARE lock waits for the transactions writing
    activities (and holds new ones back for an instant). None when they did not finish in time."""
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                conn.exec_driver_sql("LOCK TABLE activity IN SHARE MODE")
            # On SQLite this transaction holds the one write lock (BEGIN IMMEDIATE): no writer is under way
            return int(conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM activity").scalar_one())
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return None
        raise


def hold_cursor(conn: Connection, now: datetime) -> int:
    """The cursor, held until the caller's transaction ends, so alert runs take turns: every activity up to the
    id returned was looked at."""
    p = param_mark(conn)
    conn.exec_driver_sql(f"INSERT INTO alert_cursor (name, through_id, updated_at) VALUES ({p}, 0, {p}) "
                         "ON CONFLICT (name) DO NOTHING", (CURSOR, db_time(conn)(now)))
    lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    return int(conn.exec_driver_sql(f"SELECT through_id FROM alert_cursor WHERE name = {p}{lock}",
                                    (CURSOR,)).scalar_one())


def move_cursor(conn: Connection, through_id: int, now: datetime, run_id: str | None) -> None:
    p = param_mark(conn)
    conn.exec_driver_sql(f"UPDATE alert_cursor SET through_id = {p}, updated_at = {p}, run_id = {p} WHERE name = {p} "
                         f"AND through_id < {p}", (through_id, db_time(conn)(now), run_id, CURSOR, through_id))


_ACTIVITY = "SELECT a.lead_id, a.id, a.type, a.asset, a.campaign, a.occurred_at FROM activity a "


def activities_between(conn: Connection, after_id: int, through_id: int, since: datetime
                       ) -> dict[int, list[Engagement]]:
    """The activities after `after_id` up to `through_id` that happened at `since` or later, by lead, oldest first
    (a range of the primary key)."""
    p = param_mark(conn)
    rows = conn.exec_driver_sql(_ACTIVITY + f"WHERE a.id > {p} AND a.id <= {p} AND a.occurred_at >= {p} ORDER BY a.id",
                                (after_id, through_id, db_time(conn)(since))).fetchall()
    return _by_lead(rows)


def activities_of(conn: Connection, lead_ids: Sequence[int], after_id: int, since: datetime
                  ) -> dict[int, list[Engagement]]:
    """These leads' activities after `after_id` that happened at `since` or later, by lead, oldest first."""
    rows = select_where_in(conn, _ACTIVITY + "WHERE a.id > ? AND a.occurred_at >= ? AND a.lead_id {keys} "
                                             "ORDER BY a.id", sorted(set(lead_ids)), after_id, db_time(conn)(since))
    return _by_lead(rows)


def _by_lead(rows) -> dict[int, list[Engagement]]:
    found: dict[int, list[Engagement]] = {}
    for lead_id, activity_id, kind, asset, campaign, at in rows:
        found.setdefault(lead_id, []).append(Engagement(kind, asset, campaign, from_db_time(at), activity_id))
    return found


def owners(conn: Connection, lead_ids: Sequence[int]) -> dict[int, tuple[CrmOwner | None, AssignedOwner | None]]:
    """Each lead's owner as the CRM record held it at the last pull (a record still linked), and its current
    assignment in Handoff, each with the owner's CRM user; leads merged into another are left out."""
    rows = select_where_in(
        conn, "SELECT l.id, r.owner_id, u.email, u.name, u.active, r.pulled_at, a.id, a.owner_email, a.owner_name, "
              "a.written_at, au.active FROM lead l "
              "LEFT JOIN crm_record r ON r.lead_id = l.id AND COALESCE(r.contact_id, r.crm_id) IS NOT NULL "
              "LEFT JOIN crm_user u ON u.crm_id = r.owner_id "
              "LEFT JOIN assignment a ON a.lead_id = l.id AND a.superseded_at IS NULL "
              "LEFT JOIN crm_user au ON au.crm_id = a.owner_crm_id "
              "WHERE l.merged_into_id IS NULL AND l.id {keys}", sorted(set(lead_ids)))
    found = {}
    for lead_id, owner_id, email, name, active, pulled_at, assignment, a_email, a_name, written_at, a_active in rows:
        record = CrmOwner(owner_id, email, name, bool(active), from_db_time(pulled_at)) if owner_id else None
        active = None if a_active is None else bool(a_active)
        assigned = AssignedOwner(a_email, a_name, from_db_time(written_at), active) if assignment else None
        found[lead_id] = (record, assigned)
    return found


def scores(conn: Connection, lead_ids: Sequence[int]) -> dict[int, int]:
    """Each scored lead's score (centipoints)."""
    return dict(select_where_in(conn, "SELECT lead_id, score FROM lead_state WHERE lead_id {keys}",
                                sorted(set(lead_ids))))


def unscored(conn: Connection, lead_ids: Sequence[int]) -> set[int]:
    """The leads waiting to be scored (new activities or fields since their last scoring)."""
    return {row[0] for row in select_where_in(conn, "SELECT lead_id FROM lead_dirty WHERE lead_id {keys}",
                                              sorted(set(lead_ids)))}


def states(conn: Connection, lead_ids: Sequence[int]) -> dict[int, AlertState]:
    rows = select_where_in(conn, "SELECT lead_id, engaged_alert_at, looked_through, ready, recheck, engaged_alert_to "
                                 "FROM owner_alert_lead WHERE lead_id {keys}", sorted(set(lead_ids)))
    return {lead_id: AlertState(from_db_time(at), int(through), bool(ready), bool(recheck), to)
            for lead_id, at, through, ready, recheck, to in rows}


def to_recheck(conn: Connection, lead_ids: Sequence[int] | None = None) -> list[int]:
    """Leads whose readiness waits for their activities to be scored (of these, when given)."""
    sql = "SELECT lead_id FROM owner_alert_lead WHERE recheck"
    if lead_ids is not None:
        return [row[0] for row in select_where_in(conn, sql + " AND lead_id {keys}", sorted(set(lead_ids)))]
    return [row[0] for row in conn.exec_driver_sql(sql + " ORDER BY lead_id")]


def save_states(conn: Connection, changed: Sequence[tuple[int, AlertState]], now: datetime) -> None:
    stamp = db_time(conn)
    rows = sorted((lead_id, stamp(s.engaged_alert_at), s.engaged_alert_to, s.looked_through, s.ready, s.recheck,
                   stamp(now)) for lead_id, s in changed)
    columns = ("lead_id", "engaged_alert_at", "engaged_alert_to", "looked_through", "ready", "recheck", "looked_at")
    insert_rows(conn, OwnerAlertLead.__table__, columns, rows, conflict=("lead_id",),
                on_conflict="DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in columns[1:]))

