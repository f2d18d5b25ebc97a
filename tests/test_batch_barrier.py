"""The batch writer's barrier: a record the database refuses is found and quarantined, the rest of its batch
stored; a database that is down still fails the run; the counts a run reports are the rows it really wrote."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import store.ingest as ingest_module
from config.sources import SourceConfig
from domain.activity import ActivityRecord, ActivityType, PersonRecord, build_activity
from store.engine import make_engine
from store.ingest import get_watermark, refused_by_database, write_batch
from store.tables import Activity, Lead, Quarantine
from tasks.ingest import failed_source

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def activity(i: int) -> ActivityRecord:
    return build_activity(source="marketo", external_id=i, type_name="page_view", occurred_at="2026-11-01T10:00:00Z",
                          raw={"id": i}, email=f"p{i}@acme.example", source_contact_id=str(i))


def person(i: int, **fields) -> PersonRecord:
    return PersonRecord("marketo", str(i), f"p{i}@acme.example", company="Acme", raw=f'{{"id": {i}}}', **fields)


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar_one()


def test_a_record_the_database_refuses_is_found_by_halves_and_quarantined_and_the_rest_stored(engine, monkeypatch):
    # The screen is bypassed (a kind of bad value it does not know yet): the database itself refuses 2**70.
    people = [person(i) for i in range(100)]
    people[37] = person(37, company_size=2**70)
    attempts = []
    write = ingest_module._write_batch
    monkeypatch.setattr(ingest_module, "_write_batch", lambda *args: attempts.append(1) or write(*args))
    counts = write_batch(engine, source="marketo", activities=[activity(i) for i in range(100)], people=people,
                         rejections=[], checkpoint=NOW, now=NOW, run_id="r")
    assert len(attempts) > 2  # the whole batch was refused, then written apart
    assert (counts.new, counts.quarantined, counts.leads_created) == (100, 1, 100)
    assert count(engine, Activity) == 100 and count(engine, Lead) == 100
    with engine.connect() as conn:
        [refused] = conn.execute(select(Quarantine.__table__)).all()
        companies = conn.execute(select(func.count()).where(Lead.__table__.c.company == "Acme")).scalar_one()
    assert refused.external_id == "37" and refused.raw == '{"id": 37}'
    assert refused.reason.startswith("person details refused: the database refused it: ")
    assert companies == 99  # every other person's details were stored
    assert get_watermark(engine, "marketo") == NOW  # moved once every record was stored or quarantined


@pytest.mark.postgres
def test_a_nul_that_reaches_postgresql_is_found_and_quarantined(postgres_template, tmp_path):
    from tests.conftest import _postgres_copy

    url, drop = _postgres_copy(postgres_template)
    engine = make_engine(url)
    try:
        bad = ActivityRecord("marketo", "7", ActivityType.PAGE_VIEW, NOW - timedelta(hours=1), "p7@acme.example", None,
                             '{"id": 7}', asset="/pricing\x00")
        batch = [activity(i) for i in range(20) if i != 7] + [bad]
        counts = write_batch(engine, source="marketo", activities=batch, people=[], rejections=[], checkpoint=None,
                             now=NOW)
        assert (counts.new, counts.quarantined) == (19, 1)
        with engine.connect() as conn:
            reason = conn.execute(select(Quarantine.__table__.c.reason)).scalar_one()
        assert reason == "the database refused it: DataError: PostgreSQL text fields cannot contain NUL (0x00) bytes"
    finally:
        engine.dispose()
        drop()


def test_a_database_that_is_down_is_not_a_bad_record_and_fails_the_batch(database_url, tmp_path):
    down = ("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2" if database_url.startswith("postgresql")
            else f"sqlite:///{tmp_path}")  # a directory: there is no database file to open
    engine = make_engine(down)
    with pytest.raises((OperationalError, sqlite3.OperationalError)) as failure:
        write_batch(engine, source="marketo", activities=[activity(1)], people=[], rejections=[], checkpoint=NOW, now=NOW)
    assert not refused_by_database(failure.value)
    engine.dispose()


def test_concurrent_ingests_of_one_file_report_the_leads_they_really_created(engine):
    batch = [activity(i) for i in range(600)]
    results, errors = [], []

    def run() -> None:
        try:
            results.append(write_batch(engine, source="marketo", activities=batch, people=[], rejections=[],
                                       checkpoint=None, now=NOW))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.leads_created for r in results) == count(engine, Lead) == 600
    assert sum(r.new for r in results) == count(engine, Activity) == 600


def test_a_source_that_failed_after_committing_batches_shows_the_watermark_it_committed(engine, database_url,
                                                                                         monkeypatch):
    write_batch(engine, source="marketo", activities=[activity(1)], people=[], rejections=[],
                checkpoint=NOW - timedelta(hours=2), now=NOW)
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    from config.settings import get_settings

    get_settings.cache_clear()
    try:
        summary = failed_source.fn(SourceConfig(name="marketo", kind="marketo", base_url="http://x"), "TransientError: 503")
    finally:
        get_settings.cache_clear()
    assert (summary.status, summary.error, summary.watermark) == ("error", "TransientError: 503", NOW - timedelta(hours=2))
