"""The Alembic revisions build exactly the schema the code declares, on both databases."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import store.tables  # noqa: F401 - registers the tables
from store.engine import make_engine
from store.migrate import SchemaOutOfDate, current, head, require_head, upgrade


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


def upgraded(tmp_path, revision: str, statements: list[tuple], query: str) -> list:
    """A SQLite database at `revision`, given rows by `statements` ((sql, params) or (sql,)), then upgraded to
    the latest schema: what `query` reads from it."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, revision)
    engine = make_engine(url)
    with engine.begin() as conn:
        for statement, *params in statements:
            conn.execute(text(statement), *params)
    upgrade(url)
    with engine.connect() as conn:
        found = conn.execute(text(query)).all()
    engine.dispose()
    return found


def test_upgrading_keys_the_assets_already_stored_so_they_match_their_rules(tmp_path):
    keys = upgraded(tmp_path, "0006", [
        ("INSERT INTO lead (email, created_at, updated_at) VALUES ('a@b.example', '2026-11-01', '2026-11-01')",),
        ("INSERT INTO activity (source, external_id, lead_id, type, asset, occurred_at, ingested_at, raw) "
         "VALUES ('m', '1', 1, 'whitepaper_download', 'STATE OF  RevOps 2026', '2026-11-01', '2026-11-01', '{}'), "
         "('m', '2', 1, 'email_open', NULL, '2026-11-01', '2026-11-01', '{}')",),
    ], "SELECT external_id, asset_key FROM activity ORDER BY external_id")
    assert keys == [("1", "state of revops 2026"), ("2", None)]


def test_upgrading_tells_the_fit_s_disqualifications_from_a_person_s_by_the_stage_history(tmp_path):
    rules = ('{"fit": {"disqualifiers": [{"reason": "works for a competitor", "effect": "disqualify"}, '
             '{"reason": "personal e-mail address", "effect": "max_grade"}]}}')
    statements = [("INSERT INTO rulebook_version (id, digest, created_at, rules) VALUES (1, 'd1', '2026-11-01', :r)",
                   {"r": rules})]
    for lead_id, stage in [(1, "disqualified"), (2, "disqualified"), (3, "recycled")]:
        statements += [
            ("INSERT INTO lead (id, email, created_at, updated_at) VALUES (:id, :email, '2026-11-01', '2026-11-01')",
             {"id": lead_id, "email": f"{lead_id}@b.example"}),
            ("INSERT INTO lead_state (lead_id, version_id, score, peak_score, fit_points, fit_grade, stage, "
             "stage_changed_at, mql_armed, crossings, cold, scored_at) VALUES "
             "(:id, 1, 0, 0, 0, 'D', :stage, '2026-11-02', 1, 0, 0, '2026-11-02')", {"id": lead_id, "stage": stage}),
        ]
    statements.append((
        "INSERT INTO stage_change (lead_id, changed_at, from_stage, to_stage, reason, version_id) VALUES "
        "(1, '2026-11-01', NULL, 'lead', 'first seen', 1), "
        "(1, '2026-11-01', 'lead', 'mql', 'hand-raise', 1), "
        "(1, '2026-11-02', 'mql', 'disqualified', 'disqualified: works for a competitor', 1), "
        "(2, '2026-11-02', 'lead', 'disqualified', 'disqualified: spam sign-up (by jane)', 1), "
        "(3, '2026-11-01', 'lead', 'disqualified', 'disqualified: works for a competitor', 1), "
        "(3, '2026-11-02', 'disqualified', 'recycled', 'recycled: a buyer after all', 1)",))
    held = upgraded(tmp_path, "0010", statements, "SELECT lead_id, fit_disqualified_from FROM lead_state ORDER BY lead_id")
    # Lead 1 the fit took out of MQL; lead 2 a person disqualified; lead 3 was taken back by a person since
    assert held == [(1, "mql"), (2, None), (3, None)]


def test_upgrading_dates_each_lead_s_last_recycle_by_a_person_from_the_stage_history(tmp_path):
    statements = [("INSERT INTO rulebook_version (id, digest, created_at, rules) VALUES (1, 'd1', '2026-11-01', '{}')",)]
    for lead_id, stage, changed_at, disqualified_from in [(1, "recycled", "2026-11-04", None), (2, "recycled", "2026-11-03", None),
                                                         (3, "disqualified", "2026-11-02", "recycled"), (4, "mql", "2026-11-01", None)]:
        statements += [
            ("INSERT INTO lead (id, email, created_at, updated_at) VALUES (:id, :email, '2026-10-01', '2026-10-01')",
             {"id": lead_id, "email": f"{lead_id}@b.example"}),
            ("INSERT INTO lead_state (lead_id, version_id, score, peak_score, fit_points, fit_grade, stage, "
             "stage_changed_at, mql_armed, crossings, cold, scored_at, fit_disqualified_from) VALUES "
             "(:id, 1, 0, 0, 0, 'D', :stage, :at, 1, 0, 0, '2026-11-05', :out)",
             {"id": lead_id, "stage": stage, "at": changed_at, "out": disqualified_from}),
        ]
    statements.append((
        "INSERT INTO stage_change (lead_id, changed_at, from_stage, to_stage, reason, version_id) VALUES "
        "(1, '2026-10-20', 'mql', 'recycled', 'recycled: sales rejected (by jane)', 1), "
        "(1, '2026-10-25', 'recycled', 'mql', 'hand-raise', 1), "
        "(1, '2026-11-01', 'mql', 'recycled', 'recycled: no budget (by jane)', 1), "
        "(1, '2026-11-02', 'recycled', 'disqualified', 'disqualified: works for a competitor', 1), "
        "(1, '2026-11-04', 'disqualified', 'recycled', 'reinstated: the fit no longer disqualifies it', 1), "
        "(2, '2026-11-03', 'lead', 'recycled', 'merged with lead 9 (recycled)', 1), "
        "(3, '2026-10-30', 'mql', 'recycled', 'recycled: nobody answered', 1), "
        "(3, '2026-11-02', 'recycled', 'disqualified', 'disqualified: works for a competitor', 1)",))
    held = upgraded(tmp_path, "0011", statements, "SELECT lead_id, recycled_at FROM lead_state ORDER BY lead_id")
    # Lead 1's last recycle was a person's, before the rules' round trip; lead 2 took its stage from a merged
    # record (the time it entered Recycled stands); lead 3 is out with its recycle kept; lead 4 never recycled
    assert [(lead_id, at and at[:10]) for lead_id, at in held] == [
        (1, "2026-11-01"), (2, "2026-11-03"), (3, "2026-10-30"), (4, None)]
