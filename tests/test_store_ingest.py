"""Writing ingested batches: exactly once, atomically, set-wise, on SQLite and PostgreSQL."""

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from domain.activity import PersonRecord, Rejection, build_activity
from store.ingest import get_watermark, quarantine_reasons, write_batch
from store.tables import Activity, Lead, LeadContact, Quarantine

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def activity(source, ext, email=None, contact=None, when="2026-11-01T10:00:00Z", kind="email_open"):
    return build_activity(source=source, external_id=ext, type_name=kind, occurred_at=when, raw={"id": ext},
                          email=email, source_contact_id=contact)


def count(engine, table, *where):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__).where(*where)).scalar_one()


def write(engine, activities=(), people=(), rejections=(), checkpoint=None, run_id="run-1"):
    return write_batch(engine, source="marketo", activities=list(activities), people=list(people),
                       rejections=list(rejections), checkpoint=checkpoint, now=NOW, run_id=run_id)


def test_writing_the_same_batch_twice_adds_nothing_the_second_time(engine):
    batch = [activity("marketo", i, email=f"p{i % 4}@acme.example", contact=str(i % 4)) for i in range(20)]
    first = write(engine, batch)
    second = write(engine, batch)
    assert (first.new, first.leads_created) == (20, 4)
    assert (second.new, second.leads_created) == (0, 0)
    assert count(engine, Activity) == 20 and count(engine, Lead) == 4 and count(engine, LeadContact) == 4


def test_a_record_repeated_inside_one_batch_is_stored_once(engine):
    record = activity("marketo", "a1", email="ada@acme.example")
    assert write(engine, [record, record]).new == 1
    assert count(engine, Activity) == 1


def test_same_person_in_two_tools_is_one_lead_with_both_contact_ids(engine):
    write(engine, [activity("marketo", 1, email="ada@acme.example", contact="101")])
    write(engine, [activity("hubspot", 1, email="Ada@Acme.example", contact="9001")])
    assert count(engine, Lead) == 1
    assert count(engine, LeadContact) == 2
    assert count(engine, Activity) == 2


def test_activities_of_an_emailless_contact_follow_it_when_it_merges_into_the_email_owner(engine):
    write(engine, [activity("marketo", 1, email="ada@acme.example", contact="101")])
    write(engine, [activity("hubspot", 1, contact="9001")])
    assert count(engine, Lead, Lead.__table__.c.merged_into_id.is_(None)) == 2
    write(engine, [], people=[PersonRecord("hubspot", "9001", "ada@acme.example")])
    with engine.connect() as conn:
        owners = conn.execute(select(func.count(func.distinct(Activity.__table__.c.lead_id)))).scalar_one()
    assert owners == 1
    assert count(engine, Lead, Lead.__table__.c.merged_into_id.is_(None)) == 1


def test_a_merge_fills_the_remaining_leads_empty_fields_and_keeps_its_own(engine):
    write(engine, [activity("marketo", 1, email="ada@acme.example", contact="101")],
          people=[PersonRecord("marketo", "101", "ada@acme.example", title="CRO")])
    write(engine, [activity("hubspot", 1, contact="9001")],
          people=[PersonRecord("hubspot", "9001", None, first_name="Ada", title="VP Sales", company_size=300)])
    write(engine, [], people=[PersonRecord("hubspot", "9001", "ada@acme.example")])  # the same person: merged
    with engine.connect() as conn:
        lead = conn.execute(select(Lead.__table__).where(Lead.__table__.c.merged_into_id.is_(None))).one()
    assert (lead.email, lead.first_name, lead.title, lead.company_size) == ("ada@acme.example", "Ada", "CRO", 300)


def test_person_fields_fill_in_and_the_latest_non_empty_value_wins(engine):
    write(engine, [activity("marketo", 1, email="ada@acme.example")],
          people=[PersonRecord("marketo", None, "ada@acme.example", company="Acme", title="VP Sales", company_size=300)])
    write(engine, people=[PersonRecord("hubspot", "9", "ada@acme.example", title="CRO", country="US")])
    with engine.connect() as conn:
        lead = conn.execute(select(Lead.__table__)).one()
    assert (lead.company, lead.title, lead.company_size, lead.country) == ("Acme", "CRO", 300, "US")


def test_rejected_records_are_quarantined_once_with_reason_and_raw_payload(engine):
    bad = activity("marketo", "x", kind="booth_visit", email="ada@acme.example")
    assert isinstance(bad, Rejection)
    assert write(engine, rejections=[bad]).quarantined == 1
    assert write(engine, rejections=[bad], run_id="run-2").quarantined == 0
    with engine.connect() as conn:
        row = conn.execute(select(Quarantine.__table__)).one()
    assert row.reason == "unknown activity type 'booth_visit'" and '"id":"x"' in row.raw
    assert quarantine_reasons(engine, "run-1") == [("marketo", "unknown activity type …", 1)]


def test_watermark_moves_only_forward(engine):
    early, late = NOW - timedelta(days=2), NOW - timedelta(days=1)
    write(engine, checkpoint=late)
    write(engine, checkpoint=early)
    assert get_watermark(engine, "marketo") == late
    assert get_watermark(engine, "hubspot") is None


def test_a_batch_that_fails_midway_leaves_nothing_behind(engine, monkeypatch):
    import store.ingest as ingest_module

    def broken(conn, rows):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest_module, "_insert_activities", broken)
    with pytest.raises(RuntimeError):
        write(engine, [activity("marketo", 1, email="ada@acme.example")], checkpoint=NOW)
    assert count(engine, Lead) == 0 and get_watermark(engine, "marketo") is None


def test_concurrent_batches_naming_the_same_people_make_one_lead_each(engine):
    batches = [
        [activity(source, i, email=f"p{i % 50}@acme.example") for i in range(300)]
        for source in ("marketo", "hubspot", "mautic")
    ]
    errors = []

    def run(batch):
        try:
            write_batch(engine, source=batch[0].source, activities=batch, people=[], rejections=[], checkpoint=None, now=NOW)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(engine, Lead) == 50 and count(engine, Activity) == 900


def test_times_round_trip_as_aware_utc_on_both_databases(engine):
    write(engine, [activity("marketo", 1, email="ada@acme.example", when="2026-11-01T11:30:00+01:00")])
    with engine.connect() as conn:
        stored = conn.execute(select(Activity.__table__.c.occurred_at)).scalar_one()
        engine_name = conn.dialect.name
        if engine_name == "postgresql":
            assert conn.execute(text("select data_type from information_schema.columns where table_name='activity' "
                                     "and column_name='occurred_at'")).scalar_one() == "timestamp with time zone"
    assert stored == datetime(2026, 11, 1, 10, 30, tzinfo=timezone.utc)
