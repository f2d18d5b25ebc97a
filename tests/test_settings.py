"""Settings whose default depends on the database: work side by side where PostgreSQL takes concurrent writers,
one at a time on SQLite's single writer."""

from config.settings import Settings

SQLITE, POSTGRES = "sqlite:///x.db", "postgresql://u@h/db"


def test_ingest_windows_are_on_for_postgresql_and_off_for_sqlite_unless_set():
    assert Settings(database_url=SQLITE).resolved_ingest_windows() == 1
    assert Settings(database_url=POSTGRES).resolved_ingest_windows() == 2
    assert Settings(database_url=SQLITE, ingest_windows=3).resolved_ingest_windows() == 3
    assert Settings(database_url=POSTGRES, ingest_windows=1).resolved_ingest_windows() == 1


def test_scoring_workers_are_two_on_postgresql_and_one_on_sqlite_unless_set():
    assert Settings(database_url=SQLITE).resolved_score_workers() == 1
    assert Settings(database_url=POSTGRES).resolved_score_workers() == 2
    assert Settings(database_url=SQLITE, score_workers=2).resolved_score_workers() == 2
    assert Settings(database_url=POSTGRES, score_workers=1).resolved_score_workers() == 1
