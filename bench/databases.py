"""A fresh, migrated database for a benchmark: a SQLite file in its work folder, or a PostgreSQL database
dropped and created anew on the local server."""

from __future__ import annotations

import os
from pathlib import Path

POSTGRES_ADMIN = os.environ.get("HANDOFF_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh_database(kind: str, workdir: Path, name: str) -> str:
    """The URL of an empty database named `name`, migrated to the latest schema."""
    from store.migrate import upgrade

    url = f"sqlite:///{workdir / f'{name}.db'}" if kind == "sqlite" else empty_postgres_database(name)
    upgrade(url)
    return url


def empty_postgres_database(name: str, driver: str | None = None) -> str:
    """The URL of an empty PostgreSQL database named `name` (dropped first if it exists), with `driver` if given."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = admin.url.set(database=name)
    admin.dispose()
    return (url.set(drivername=f"postgresql+{driver}") if driver else url).render_as_string(hide_password=False)
