"""Engines for the embedded SQLite default and for PostgreSQL, tuned for bulk writes."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalize_url(url: str) -> str:
    """Plain postgresql:// URLs use the psycopg 3 driver this project installs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


_engines: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine (and connection pool) per database URL per process."""
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def make_engine(url: str) -> Engine:
    """Bound parameters are kept out of error messages and logs: they hold people's names and addresses."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Bulk batches touch index pages all over: a 64 MB page cache and checkpoints every ~40 MB of WAL
            # (not every 4 MB) write each page once instead of many times.
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.execute("PRAGMA wal_autocheckpoint=10000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            # Take the write lock up front: a deferred transaction that read first fails instead of waiting
            # when another writer commits in between (SQLITE_BUSY_SNAPSHOT under WAL).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No server-side prepared statements: a generic plan for `email IN (...900 values...)` on a table whose
    # statistics lag behind a bulk load picks sequential scans, seconds per batch instead of milliseconds.
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args={"prepare_threshold": None})

    @event.listens_for(engine, "connect")
    def _no_jit(dbapi_connection, _record):
        # PostgreSQL compiles any statement its planner costs above jit_above_cost, which every set-wise
        # statement over a large table is; the compiling took longer than it saved (about a second of a full
        # ledger rebuild, and 0.1-0.2 s of each chunk of a rescore). A SET, not a startup option, so that
        # connection poolers which refuse startup options (PgBouncer) still let it through.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET jit = off")
        dbapi_connection.commit()

    return engine


# What pg_export_snapshot() returns: hexadecimal groups joined by dashes (00000003-0000001B-1)
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(?:-[0-9A-Fa-f]+)+")
_SNAPSHOT_READS = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"  # both ends of a shared snapshot


def export_snapshot(conn: Connection) -> str | None:
    """Begin a read-only, repeatable-read transaction on `conn` (which must not have begun one) and return the
    id of the snapshot it reads, for other sessions to read exactly what it reads while it lasts (PostgreSQL).
    None on SQLite, whose connections cannot share one: each reads what is committed when it begins."""
    if conn.dialect.name != "postgresql":
        return None
    conn.exec_driver_sql(_SNAPSHOT_READS)
    return conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()


def read_in_snapshot(conn: Connection, snapshot: str | None) -> None:
    """Begin `conn`'s transaction (it must not have begun one) read-only on `snapshot` (from export_snapshot, in
    a transaction still open): it sees the database as that transaction does, whatever was committed since.
    None: the transaction reads as any other."""
    if snapshot is None:
        return
    if conn.dialect.name != "postgresql":
        raise ValueError("only a PostgreSQL database shares a snapshot between sessions")
    if not _SNAPSHOT_ID.fullmatch(snapshot):  # SET TRANSACTION takes no bound parameter: the id goes in the text
        raise ValueError(f"{snapshot!r} is not a snapshot id")
    conn.exec_driver_sql(_SNAPSHOT_READS)
    conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
