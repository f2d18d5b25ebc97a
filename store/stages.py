"""Stage moves people ask for (recycle, disqualify, a sales stage) saved, and the routing a move withdraws."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from domain.lifecycle import Qualification
from store.bulk import db_time, param_mark
from store.scoring import record_changes

# handoff_queue.detail's width: a reason longer than that is cut, the whole of it stays in stage_change
_DETAIL = 200


def save_moves(conn: Connection, moves: dict[int, Qualification], version_id: int | None, now: datetime,
               run_id: str | None) -> None:
    """The new stages and their changes (a person's move leaves no stage for the fit to return the lead to), and
    for a recycle its time and the trigger's arming. Score, fit and crossings are the scoring's and stay."""
    if not moves:
        return
    p, stamp = param_mark(conn), db_time(conn)
    conn.exec_driver_sql(
        f"UPDATE lead_state SET stage = {p}, stage_changed_at = {p}, fit_disqualified_from = NULL, recycled_at = {p}, "
        f"mql_armed = {p} WHERE lead_id = {p}",
        [(q.state.stage.value, stamp(q.state.stage_changed_at or now), stamp(q.state.recycled_at), q.state.mql_armed,
          lead_id) for lead_id, q in sorted(moves.items())])
    record_changes(conn, moves, version_id, now, run_id)


def withdraw_routing(conn: Connection, withdrawals: list[tuple[int, str, str]], now: datetime) -> int:
    """Close the open routing rows of leads that no longer wait for a rep (`withdrawals`: lead, outcome, detail):
    recycled or disqualified before routing got to them, or taken on by sales already. Their CRM-sync rows stay:
    the CRM is told where the lead stands either way. Returns the rows closed."""
    if not withdrawals:
        return 0
    p = param_mark(conn)
    return conn.exec_driver_sql(
        f"UPDATE handoff_queue SET done_at = {p}, outcome = {p}, detail = {p} "
        f"WHERE done_at IS NULL AND queue = 'routing' AND lead_id = {p}",
        [(db_time(conn)(now), outcome, detail[:_DETAIL], lead_id) for lead_id, outcome, detail in sorted(withdrawals)],
    ).rowcount
