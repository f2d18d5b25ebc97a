"""Set-based helpers shared by the store: dialect-aware INSERT .. ON CONFLICT and chunked IN lists."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")

# SQLite allows 32766 bound parameters; PostgreSQL 65535. Stay well below both.
IN_CHUNK = 900


def insert_for(conn: Connection, table: Table):
    """An INSERT that supports `.on_conflict_do_nothing()` / `.on_conflict_do_update()` on this connection."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {dialect!r}")


def chunks(items: Sequence[T] | Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
