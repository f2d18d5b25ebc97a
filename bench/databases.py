"""A fresh, migrated database for a benchmark: a SQLite file in its work folder, or a PostgreSQL database
dropped and created anew on the local server."""

from __future__ import annotations

import os
from pathlib import Path

POSTGRES_ADMIN = os.environ.get("HANDOFF_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh_database(kind: str, workdir: Path, name: str) -> str:
    """The URL of an empty database named `name`, migrated to the latest schema."""
    from sqlalchemy import create_engine, text

    from store.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'{name}.db'}"
    else:
        admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        admin.dispose()
    upgrade(url)
    return url
