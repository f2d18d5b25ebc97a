"""Set-based helpers shared by the store, at driver level for the hot paths: a list of keys looked up in one
statement, rows staged in bulk (COPY on PostgreSQL, executemany on SQLite), INSERT .. ON CONFLICT."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import orjson
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_for(conn: Connection, table: Table):
    """An INSERT that supports `.on_conflict_do_nothing()` / `.on_conflict_do_update()` on this connection."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {dialect!r}")


def _sqlite_time(value: datetime | None) -> str | None:
    # The text SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds always), so raw and ORM writes
    # compare equal; isoformat is twice as fast as strftime.
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(" ", "microseconds")[:26]


def db_time(conn: Connection) -> Callable[[datetime | None], Any]:
    """How an aware datetime is passed to this connection's driver for a raw (driver-level) write."""
    return _sqlite_time if conn.dialect.name == "sqlite" else (lambda value: value)


def bulk_time_for(dialect: str) -> Callable[[datetime | None], Any]:
    """How an aware datetime goes into a row for `insert_rows` / `insert_new_rows`, prepared before a connection
    is taken: SQLite's stored text, or ISO 8601 text for PostgreSQL's COPY, which parses it exactly as it parses
    the driver's rendering of the datetime. The driver renders each datetime it is handed afresh, about 0.85 µs
    a value, which was a third of formatting an activity row for COPY; the text is made once per value here."""
    return _sqlite_time if dialect == "sqlite" else _iso_time


def _iso_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _is_sqlite(conn: Connection) -> bool:
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"unsupported database dialect {dialect!r}")
    return dialect == "sqlite"


def select_where_in(conn: Connection, sql: str, keys: Sequence[Any], *params: Any) -> list[tuple]:
    """Run `sql`, whose `{keys}` stands for "IN the list of keys", with any number of keys as one parameter:
    a JSON array read by json_each on SQLite, an array on PostgreSQL. `params` come before the keys, as `?`."""
    if not keys:
        return []
    if not _is_sqlite(conn):
        sql = sql.replace("?", "%s")
    return driver_rows(conn, sql.format(keys=in_keys(conn)), (*params, keys_param(conn, keys)))


def param_mark(conn: Connection) -> str:
    """The driver's mark for one parameter in raw SQL."""
    return "?" if _is_sqlite(conn) else "%s"


def in_keys(conn: Connection) -> str:
    """`IN` a list of keys passed as one parameter (see keys_param)."""
    return "IN (SELECT value FROM json_each(?))" if _is_sqlite(conn) else "= ANY(%s)"


def keys_param(conn: Connection, keys: Sequence[Any]) -> Any:
    """Any number of keys as one parameter: a JSON array on SQLite (read by json_each), an array on PostgreSQL."""
    return orjson.dumps(list(keys)).decode() if _is_sqlite(conn) else list(keys)


def driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple]:
    """The rows of `sql` as the driver returns them: no result wrapping on the hot paths that read a batch's worth."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def stage(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple]) -> str:
    """Load rows into an empty temporary table shaped like `table` (for this transaction); returns its name."""
    name = f"{table.name}_stage"
    names = ", ".join(columns)
    if _is_sqlite(conn):
        conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {name} AS SELECT * FROM {table.name} WHERE 0")
        conn.exec_driver_sql(f"DELETE FROM {name}")
        conn.exec_driver_sql(f"INSERT INTO {name} ({names}) VALUES ({_placeholders(len(columns))})", rows)
        return name
    with conn.connection.driver_connection.cursor() as cursor:
        # CREATE TABLE AS copies the columns without their constraints: a staged row may leave columns empty.
        # Its rows go at commit (or rollback); only a second use in the same transaction has to empty it first.
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS AS SELECT * FROM {table.name} WITH NO DATA")
        if _staged_before(conn, name):
            cursor.execute(f"DELETE FROM {name}")
        with cursor.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return name


def _staged_before(conn: Connection, name: str) -> bool:
    """Whether this transaction already filled the staging table `name` (and notes that it now has)."""
    transaction = conn.get_transaction()
    used = conn.info.get("staged")
    if transaction is None or used is None or used[0] is not transaction:
        used = conn.info["staged"] = (transaction, set())
    if name in used[1]:
        return True
    used[1].add(name)
    return transaction is None


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple], conflict: Sequence[str], on_conflict: str = "DO NOTHING"
) -> int:
    """INSERT rows (tuples in `columns` order, times converted with `db_time`) with `ON CONFLICT (conflict)
    on_conflict`; returns the rows inserted or updated. Executemany on SQLite, COPY + INSERT .. SELECT on
    PostgreSQL. In `on_conflict`, `excluded.` names the incoming row and `{table}.` the stored one."""
    if not rows:
        return 0
    names = ", ".join(columns)
    clause = f"ON CONFLICT ({', '.join(conflict)}) {on_conflict.format(table=table.name)}"
    if _is_sqlite(conn):
        sql = f"INSERT INTO {table.name} ({names}) VALUES ({_placeholders(len(columns))}) {clause}"
        return conn.exec_driver_sql(sql, rows).rowcount
    staged = stage(conn, table, columns, rows)
    return conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staged} {clause}").rowcount


def insert_new_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple], conflict: Sequence[str], report: str
) -> list:
    """INSERT rows, skipping those whose `conflict` key is stored; returns column `report` of each row inserted.
    PostgreSQL says so with RETURNING; on SQLite, whose executemany cannot return rows, the new rows are those
    past the largest row id before the insert (this transaction holds the only write lock: BEGIN IMMEDIATE)."""
    if not rows:
        return []
    names = ", ".join(columns)
    clause = f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    if _is_sqlite(conn):
        before = conn.exec_driver_sql(f"SELECT COALESCE(MAX(rowid), 0) FROM {table.name}").scalar_one()
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({_placeholders(len(columns))}) {clause}", rows)
        return [value for (value,) in driver_rows(conn, f"SELECT {report} FROM {table.name} WHERE rowid > ?", (before,))]
    staged = stage(conn, table, columns, rows)
    inserted = conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staged} {clause} RETURNING {report}")
    return [value for (value,) in inserted]
