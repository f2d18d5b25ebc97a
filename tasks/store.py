"""Tasks about the database itself."""

from __future__ import annotations

from prefect import task

from config.settings import get_settings
from store.migrate import require_head


@task
def check_database() -> None:
    """Stop before any work when the schema is missing or behind, with the command that fixes it."""
    require_head(get_settings().resolved_database_url())
