"""Settings for work done side by side: scoring workers depend on the database (PostgreSQL takes concurrent
writers, SQLite has one); a long backfill is read as two windows on either, as the ingest bench measured; a
rulebook-impact preview, which only reads, works one chunk per core on either."""

from config.settings import Settings

SQLITE, POSTGRES = "sqlite:///x.db", "postgresql://u@h/db"


def test_a_long_backfill_is_read_as_two_windows_on_either_database_unless_set():
    assert Settings(database_url=SQLITE).ingest_windows == 2
    assert Settings(database_url=POSTGRES).ingest_windows == 2
    assert Settings(database_url=SQLITE, ingest_windows=1).ingest_windows == 1


def test_scoring_workers_are_two_on_postgresql_and_one_on_sqlite_unless_set():
    assert Settings(database_url=SQLITE).resolved_score_workers() == 1
    assert Settings(database_url=POSTGRES).resolved_score_workers() == 2
    assert Settings(database_url=SQLITE, score_workers=2).resolved_score_workers() == 2
    assert Settings(database_url=POSTGRES, score_workers=1).resolved_score_workers() == 1


def test_a_rulebook_impact_preview_works_one_chunk_per_core_on_either_database_at_most_four_unless_set(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert Settings(database_url=SQLITE).resolved_impact_workers() == 2
    assert Settings(database_url=POSTGRES).resolved_impact_workers() == 2
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    assert Settings(database_url=POSTGRES).resolved_impact_workers() == 4
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert Settings(database_url=SQLITE).resolved_impact_workers() == 1
    assert Settings(database_url=SQLITE, impact_workers=3).resolved_impact_workers() == 3
