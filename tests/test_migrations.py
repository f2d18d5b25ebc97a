"""The Alembic revisions build exactly the schema the code declares, on both databases."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import store.tables  # noqa: F401 - registers the tables
from store.engine import make_engine
from store.migrate import SchemaOutOfDate, current, head, require_head


def test_migrated_database_matches_the_declared_tables(database_url):
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    engine.dispose()
    assert diff == []
    assert current(database_url) == head()


def test_flows_refuse_an_unmigrated_database_and_say_how_to_fix_it(tmp_path):
    with pytest.raises(SchemaOutOfDate, match="handoff db upgrade"):
        require_head(f"sqlite:///{tmp_path / 'empty.db'}")
