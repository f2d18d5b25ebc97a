"""Schema migrations with Alembic: the same revisions build SQLite and PostgreSQL databases."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from store.engine import normalize_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from store.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


class SchemaOutOfDate(RuntimeError):
    """The database is not at the revision this code expects."""


def head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def require_head(url: str) -> None:
    """Fail fast, with the fix in the message, when the database was never migrated or is behind."""
    found, expected = current(url), head()
    if found != expected:
        state = "has no Handoff schema" if found is None else f"is at revision {found}"
        raise SchemaOutOfDate(f"the database {state}; this version needs {expected}: run `handoff db upgrade`")
