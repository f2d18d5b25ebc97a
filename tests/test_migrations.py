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


def test_upgrading_keys_the_assets_already_stored_so_they_match_their_rules(tmp_path):
    from sqlalchemy import text

    from store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0006")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO lead (email, created_at, updated_at) VALUES ('a@b.example', '2026-11-01', '2026-11-01')"))
        conn.execute(text("INSERT INTO activity (source, external_id, lead_id, type, asset, occurred_at, ingested_at, raw) "
                          "VALUES ('m', '1', 1, 'whitepaper_download', 'STATE OF  RevOps 2026', '2026-11-01', '2026-11-01', '{}'), "
                          "('m', '2', 1, 'email_open', NULL, '2026-11-01', '2026-11-01', '{}')"))
    upgrade(url)
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT external_id, asset_key FROM activity ORDER BY external_id")).all()
    engine.dispose()
    assert keys == [("1", "state of revops 2026"), ("2", None)]
