"""Engines for the embedded SQLite default and for PostgreSQL, tuned for bulk writes."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

EXAMPLES = "postgresql://user:password@host:5432/handoff or sqlite:///path/to/handoff.db"
_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg", "sqlite": "pysqlite"}  # the ones this project installs


class DatabaseUrlError(ValueError):
    """The database URL cannot work as written: its form, its kind of database, a directory, host, database or
    login it names that is not there. Never holds the password."""


class DatabaseUnavailable(RuntimeError):
    """The database the URL names does not answer (refused, timed out, gone away): it may later, as it is."""


def masked(url: str | URL) -> str:
    """The URL as it may be shown: its password as ***."""
    return make_url(url).render_as_string(hide_password=True)


def checked_url(url: str) -> URL:
    """`url` parsed, or refused with what is wrong with it: not a URL, not a database Handoff runs on (PostgreSQL,
    SQLite), or a SQLite file in a directory that does not exist (it would not be created somewhere unexpected)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # the text may hold a password: it is not repeated
        raise DatabaseUrlError(f"the database URL is not a URL Handoff can read; write it as {EXAMPLES}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in _DRIVERS:
        raise DatabaseUrlError(f"the database URL {masked(parsed)} names a {backend!r} database; "
                               f"Handoff runs on PostgreSQL or SQLite: {EXAMPLES}")
    if driver and driver != _DRIVERS[backend]:
        raise DatabaseUrlError(f"the database URL {masked(parsed)} names the driver {driver!r}; Handoff connects "
                               f"with {_DRIVERS[backend]} (or leave the driver out: {EXAMPLES})")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not parsed.query.get("uri"):
        directory = Path(parsed.database).parent
        if not directory.is_dir():
            raise DatabaseUrlError(f"the SQLite database {parsed.database} is in a directory that does not exist "
                                   f"({directory}): create it, or correct the path")
    return parsed


def normalize_url(url: str) -> str:
    """Plain postgresql:// URLs use the psycopg 3 driver this project installs."""
    parsed = checked_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


# What the drivers say when they cannot use the database, and what a person makes of it:
# (what they say, the problem, what to do, whether the URL is at fault rather than the server)
_CONNECT_FAILURES = (
    (r"failed to resolve host|could not translate host name", "its host is not known", "correct the host", True),
    (r'database ".*" does not exist', "that database does not exist on the server",
     "create it (createdb) or correct its name", True),
    (r'password authentication failed|no password supplied|role ".*" does not exist', "the server refused the login",
     "correct the user or the password", True),
    (r"invalid connection option|invalid dsn|invalid integer value", "the server cannot read its options",
     "correct the options after '?'", True),
    (r"unable to open database file", "the SQLite file cannot be opened", "check the path and its permissions", True),
    (r"connection refused", "the server refused the connection", "is it running on that host and port?", False),
    (r"timeout expired|timed out", "the server did not answer in time", "is the host reachable?", False),
    (r"server closed the connection|terminating connection", "the server closed the connection", "is it running?",
     False),
)


def connection_problem(exc: BaseException, url: str) -> DatabaseUrlError | DatabaseUnavailable | None:
    """What a driver's failure to use the database at `url` means to a person, or None when it is no such failure."""
    if not isinstance(exc, DBAPIError):
        return None
    for said, problem, fix, url_at_fault in _CONNECT_FAILURES:
        if re.search(said, str(exc.orig), re.IGNORECASE):
            message = f"cannot use the database at {masked(url)}: {problem}; {fix}"
            return DatabaseUrlError(message) if url_at_fault else DatabaseUnavailable(message)
    return None


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
