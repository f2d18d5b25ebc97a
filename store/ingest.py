"""Writing one ingested batch atomically: leads, activities, quarantine and the source watermark together."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import psycopg
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError

from domain.activity import (
    EXTERNAL_ID_LENGTH, SOURCE_LENGTH, ActivityRecord, PersonRecord, Rejection, asset_key, key_problem, text_problem,
)
from domain.identity import Identity
from store.bulk import bulk_time_for, db_time, insert_for, insert_new_rows, insert_rows
from store.leads import resolve_leads
from store.reports import quarantine_groups
from store.scoring import hold_merged_states, mark_dirty
from store.tables import Activity, Quarantine, SourceFile, SourceWatermark

activity_t = Activity.__table__
quarantine_t = Quarantine.__table__
watermark_t = SourceWatermark.__table__
file_t = SourceFile.__table__


TRANSIENT_ATTEMPTS = 5
RAW_CAP = 64 * 1024  # bytes of a quarantined payload kept (Settings.max_payload_bytes, by default)


@dataclass(frozen=True)
class BatchCounts:
    """Rows this batch added; whatever else was fetched was already stored (a duplicate)."""

    new: int
    quarantined: int
    leads_created: int = 0
    leads: frozenset[int] = frozenset()  # the leads marked for scoring: new activities or changed details


def get_watermark(engine: Engine, source: str) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(select(watermark_t.c.watermark).where(watermark_t.c.source == source)).scalar_one_or_none()


def is_transient(exc: DBAPIError) -> bool:
    """A deadlock or serialization failure (PostgreSQL) or a lock timeout (SQLite): the transaction was rolled
    back whole, so running it again is safe."""
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40P01", "40001") or "database is locked" in str(exc.orig)


def write_batch(
    engine: Engine,
    *,
    source: str,
    activities: list[ActivityRecord],
    people: list[PersonRecord],
    rejections: list[Rejection],
    checkpoint: datetime | None,
    now: datetime,
    run_id: str | None = None,
    raw_cap: int = RAW_CAP,
    durable: bool = False,
) -> BatchCounts:
    """One transaction: a crash before commit leaves nothing of the batch, after commit all of it and its watermark.
    A transaction that lost a deadlock to a concurrent batch is run again. When the database refuses a record
    (a value it cannot hold), the batch is written apart (`_write_apart`) and that record quarantined.

    Whatever does not depend on what is stored is prepared before the transaction begins: on SQLite the
    transaction holds the database's one write lock, which every other source's batch is waiting for.

    `durable`: the commit waits for the disk even on PostgreSQL, for records nobody sends again (a webhook's)."""
    dialect = engine.dialect.name
    quarantine = _quarantine_rows(rejections, source, now, run_id, raw_cap)
    try:
        return _write(engine, _prepare(dialect, activities, people, quarantine, now, durable), source, checkpoint, now,
                      run_id)
    except Exception as exc:  # noqa: BLE001 - sorted below: a refused record is quarantined, anything else raised
        if not refused_by_database(exc):
            raise
    return _write_apart(engine, source, activities, people, quarantine, checkpoint, now, run_id, raw_cap, durable)


def refused_by_database(exc: BaseException) -> bool:
    """Whether the database refused a value of the batch (a number out of range, a NUL, text it cannot encode, a
    key too long for its index) rather than failing itself: a database that is down is not a bad record."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return False
    if isinstance(orig, (OverflowError, UnicodeEncodeError, sqlite3.DataError, sqlite3.IntegrityError)):
        return True
    if isinstance(orig, (psycopg.DataError, psycopg.IntegrityError)):
        return True
    return isinstance(orig, psycopg.Error) and (getattr(orig, "sqlstate", None) or "")[:2] == "54"  # too long to index


def _write(engine: Engine, prepared: "_Prepared", source: str, checkpoint, now, run_id) -> BatchCounts:
    attempt = 1
    while True:
        try:
            return _write_batch(engine, prepared, source, checkpoint, now, run_id)
        except DBAPIError as exc:
            if attempt >= TRANSIENT_ATTEMPTS or not is_transient(exc):
                raise
            time.sleep(0.05 * attempt)
            attempt += 1


def _write_apart(engine: Engine, source: str, activities, people, quarantine: list[dict], checkpoint, now, run_id,
                 raw_cap: int, durable: bool) -> BatchCounts:
    """Write the batch's records in halves, and halves of the half that is refused, until the records the
    database refuses stand alone: each is quarantined with the database's reason, every other one stored. The
    batch's rejections and its watermark go last, once every record is stored or quarantined."""
    dialect = engine.dialect.name
    parts: list[BatchCounts] = []
    refused: list[Rejection] = []

    def write(records: list) -> None:
        part_activities = [r for r in records if isinstance(r, ActivityRecord)]
        part_people = [r for r in records if not isinstance(r, ActivityRecord)]
        try:
            parts.append(_write(engine, _prepare(dialect, part_activities, part_people, [], now, durable), source, None,
                                now, run_id))
        except Exception as exc:  # noqa: BLE001 - as in write_batch
            if not refused_by_database(exc):
                raise
            if len(records) == 1:
                refused.append(_refusal(records[0], exc))
                return
            middle = len(records) // 2
            write(records[:middle])
            write(records[middle:])

    write([*activities, *people])
    quarantine = quarantine + _quarantine_rows(refused, source, now, run_id, raw_cap)
    last = _write(engine, _prepare(dialect, [], [], quarantine, now, durable), source, checkpoint, now, run_id)
    return BatchCounts(new=sum(p.new for p in parts), quarantined=last.quarantined,
                       leads_created=sum(p.leads_created for p in parts),
                       leads=frozenset().union(*(p.leads for p in parts)))


def _refusal(record: ActivityRecord | PersonRecord, exc: BaseException) -> Rejection:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    reason = f"the database refused it: {type(orig).__name__}: {first_line(orig)}"
    if isinstance(record, ActivityRecord):
        return Rejection(record.source, record.external_id, reason, record.raw_json)
    raw = record.raw if record.raw is not None else repr(record)
    return Rejection(record.source, record.source_contact_id, "person details refused: " + reason, raw)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


@dataclass(frozen=True)
class _Prepared:
    """A batch made ready to write: activities once per key, each with its person's name and its row but
    for the lead, the identities to resolve (each once: the people's and the activities'), and the quarantine
    rows."""

    people: list[PersonRecord]
    identities: list[Identity]
    named: list[tuple[Identity, tuple, ActivityRecord]]
    quarantine: list[dict]
    durable: bool = False


def _prepare(dialect: str, activities, people, quarantine: list[dict], now: datetime, durable: bool = False
             ) -> _Prepared:
    to_db = bulk_time_for(dialect)
    ingested_at = to_db(now)
    unique: dict[tuple[str, str], ActivityRecord] = {}
    for record in activities:
        unique.setdefault((record.source, record.external_id), record)
    # Each row lacks only its lead (the third column), which the transaction resolves.
    named = [(Identity(a.source, a.source_contact_id, a.email),
              (a.type.value, a.asset, asset_key(a.asset), a.campaign, to_db(a.occurred_at), ingested_at, a.raw_json), a)
             for a in unique.values()]
    # Resolve each distinct way a person is named once, not once per activity.
    identities = list(dict.fromkeys([*(Identity(p.source, p.source_contact_id, p.email) for p in people),
                                     *(key for key, _, _ in named)]))
    return _Prepared(people, identities, named, quarantine, durable)


def _write_batch(engine, prepared: _Prepared, source, checkpoint, now, run_id) -> BatchCounts:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql" and not prepared.durable:
            # Commit without waiting for the WAL flush: a crash can lose only whole batches, data and watermark
            # together, and the next run fetches them again; nothing outside the database saw them.
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        resolution = resolve_leads(conn, prepared.identities, prepared.people, now)
        rows = []
        unresolved: list[Rejection] = []
        for key, rest, a in prepared.named:
            lead_id = resolution.lead_of(key)  # resolved once per identity, however many activities name it
            if lead_id is None:
                unresolved.append(Rejection(a.source, a.external_id, "identity could not be resolved to a lead", a.raw_json))
                continue
            rows.append((a.source, a.external_id, lead_id, *rest))
        # An activity already stored (re-read in the overlap window, or sent twice) is skipped by its key; only
        # leads with new activities or changed details need scoring again, not those merely re-read.
        new_leads = _insert_activities(conn, rows)
        new = len(new_leads)
        marked = set(resolution.touched).union(new_leads)
        mark_dirty(conn, marked, now)
        hold_merged_states(conn, resolution.merged_away)
        quarantine = prepared.quarantine + _quarantine_rows(unresolved, source, now, run_id, RAW_CAP)
        quarantined = _quarantine(conn, quarantine)
        if checkpoint is not None:
            _advance_watermark(conn, source, checkpoint, now, run_id)
    return BatchCounts(new=new, quarantined=quarantined, leads_created=resolution.created, leads=frozenset(marked))


ACTIVITY_COLUMNS = ("source", "external_id", "lead_id", "type", "asset", "asset_key", "campaign", "occurred_at",
                    "ingested_at", "raw")


def _insert_activities(conn: Connection, rows: list[tuple]) -> list[int]:
    """The lead of each activity inserted; those already stored are left as they are."""
    return insert_new_rows(conn, activity_t, ACTIVITY_COLUMNS, rows, conflict=("source", "external_id"), report="lead_id")


def _quarantine_rows(rejections: list[Rejection], source: str, now: datetime, run_id: str | None,
                     raw_cap: int) -> list[dict]:
    return [_quarantine_row(r, source, now, run_id, raw_cap) for r in rejections]


def _quarantine_row(rejection: Rejection, source: str, now: datetime, run_id: str | None, raw_cap: int) -> dict:
    """A rejection as a row the database always takes: the payload as text where text holds it exactly, else
    shown with escapes beside its bytes; cut at `raw_cap` bytes, its size as it came noted. A source or an
    external id that cannot be stored (the reason it was rejected, often) is replaced by the batch's source and
    cut; the payload keeps them whole."""
    raw = rejection.raw
    payload = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    exact = isinstance(raw, str) and len(payload) <= raw_cap and text_problem(raw) is None
    kept = payload[:raw_cap]
    name = rejection.source if isinstance(rejection.source, str) and key_problem(
        rejection.source, "source", SOURCE_LENGTH) is None else source
    external_id = None if rejection.external_id is None else _storable(str(rejection.external_id))[:EXTERNAL_ID_LENGTH]
    digest = hashlib.sha256(b"\x00".join([str(rejection.external_id).encode("utf-8", "surrogatepass"),
                                          rejection.reason.encode("utf-8", "surrogatepass"), payload])).hexdigest()
    return {"source": name, "external_id": external_id, "reason": _storable(rejection.reason),
            "raw": raw if exact else _storable(kept.decode("utf-8", "backslashreplace")),
            "raw_bytes": None if exact else kept, "raw_size": len(payload),
            "digest": digest, "quarantined_at": now, "run_id": run_id}


def _storable(text: str) -> str:
    """Text every database takes: a NUL or a lone surrogate is written as its escape."""
    if text_problem(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def quarantine(conn: Connection, rejections: list[Rejection], source: str, now: datetime, run_id: str | None,
               raw_cap: int = RAW_CAP) -> int:
    """Rejected records of `source` into the quarantine, in the caller's transaction; returns those new to it."""
    return _quarantine(conn, _quarantine_rows(rejections, source, now, run_id, raw_cap))


def _quarantine(conn: Connection, rows: list[dict]) -> int:
    """Rejected records, once each: a record re-read in the overlap window is not quarantined again."""
    if not rows:
        return 0
    unique = {(row["source"], row["digest"]): row for row in rows}
    stmt = insert_for(conn, quarantine_t).on_conflict_do_nothing(index_elements=["source", "digest"])
    return len(conn.execute(stmt.returning(quarantine_t.c.id), list(unique.values())).all())


def read_files(engine: Engine, source: str) -> dict[str, tuple[int, int]]:
    """The files a file-based source has read to the end: path -> (size, modification time in ns)."""
    with engine.connect() as conn:
        rows = conn.execute(select(file_t.c.path, file_t.c.size, file_t.c.mtime_ns).where(file_t.c.source == source))
        return {path: (size, mtime_ns) for path, size, mtime_ns in rows}


def record_files(engine: Engine, source: str, files: Sequence[tuple[str, int, int, int]], now: datetime,
                 run_id: str | None) -> None:
    """Note files read to the end, (path, size, mtime_ns, lines) each, once all their lines are committed."""
    if not files:
        return
    with engine.begin() as conn:
        stamp = db_time(conn)(now)
        insert_rows(conn, file_t, ("source", "path", "size", "mtime_ns", "lines", "read_at", "run_id"),
                    [(source, *f, stamp, run_id) for f in files], conflict=("source", "path"),
                    on_conflict="DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, lines = excluded.lines, "
                                "read_at = excluded.read_at, run_id = excluded.run_id")


def advance_watermark(engine: Engine, source: str, checkpoint: datetime, now: datetime, run_id: str | None) -> None:
    """Move a source's watermark forward to `checkpoint` (never back), on its own."""
    with engine.begin() as conn:
        _advance_watermark(conn, source, checkpoint, now, run_id)


def _advance_watermark(conn: Connection, source: str, checkpoint: datetime, now: datetime, run_id: str | None) -> None:
    """Watermarks only move forward, so a re-read of old data never rewinds them."""
    stmt = insert_for(conn, watermark_t).values(source=source, watermark=checkpoint, updated_at=now, run_id=run_id)
    newer = func.coalesce(watermark_t.c.watermark < stmt.excluded.watermark, True)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source"],
        set_={"watermark": stmt.excluded.watermark, "updated_at": stmt.excluded.updated_at, "run_id": stmt.excluded.run_id},
        where=newer,
    )
    conn.execute(stmt)



def quarantine_reasons(engine: Engine, run_id: str, limit: int = 10) -> list[tuple[str, str, int]]:
    """(source, reason, count) of what a run quarantined, most frequent first; reasons that differ only in
    a quoted value or a number (a line number, a size) count as one (store.reports.quarantine_groups)."""
    return [(g.source, g.reason, g.records) for g in quarantine_groups(engine, run_id=run_id)[:limit]]


ERROR_LENGTH = 500  # source_watermark.error


def record_read(engine: Engine, source: str, now: datetime, run_id: str | None, error: str | None = None) -> None:
    """How a source's read at `now` ended: finished (`error` None: whether or not it found anything new) or
    failed, with the error (its first 500 characters). A failure leaves the last finished read as it was; a
    finished read clears the failure. The watermark is not touched."""
    values = {"read_at": now, "failed_at": None, "error": None} if error is None else \
        {"failed_at": now, "error": error[:ERROR_LENGTH]}
    with engine.begin() as conn:
        stmt = insert_for(conn, watermark_t).values(source=source, updated_at=now, run_id=run_id, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["source"], set_=values))
