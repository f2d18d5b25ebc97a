"""Reps' out-of-office calendar feeds as last read (table ooo_feed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import Connection

from store.bulk import db_time, insert_rows
from store.tables import OooFeed
from store.types import from_db_time

COLUMNS = ("rep_email", "url_digest", "absences", "read_at", "tried_at", "error", "failing_since")


@dataclass(frozen=True)
class FeedRead:
    """One row of ooo_feed; `absences` is their JSON list."""

    rep_email: str
    url_digest: str
    absences: str
    read_at: datetime | None
    tried_at: datetime
    error: str | None = None
    failing_since: datetime | None = None


def feed_reads(conn: Connection) -> dict[str, FeedRead]:
    rows = conn.exec_driver_sql(f"SELECT {', '.join(COLUMNS)} FROM ooo_feed").fetchall()
    return {row[0]: FeedRead(row[0], row[1], row[2], from_db_time(row[3]), from_db_time(row[4]), row[5],
                             from_db_time(row[6])) for row in rows}


def save_feed_reads(conn: Connection, reads: Sequence[FeedRead]) -> None:
    stamp = db_time(conn)
    rows = sorted((r.rep_email, r.url_digest, r.absences, stamp(r.read_at), stamp(r.tried_at), r.error,
                   stamp(r.failing_since)) for r in reads)
    insert_rows(conn, OooFeed.__table__, COLUMNS, rows, conflict=("rep_email",),
                on_conflict="DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:]))
