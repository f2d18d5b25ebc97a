"""Scoring, set-wise: rulebook versions, the ledger rebuilt by one windowed INSERT .. SELECT per set of leads,
decayed scores summed in SQL, lead states, stage changes and the event outbox. The arithmetic is integer and
matches domain/scoring.py exactly (the property tests hold the two to it)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Collection, Iterable, Sequence

from sqlalchemy import Connection, MetaData, select

from domain.activity import ActivityType, asset_key
from domain.lifecycle import LeadState, Qualification, Stage, stage_event_kind
from domain.rules import DECAY_TABLE_DAYS, MICROS, Rulebook, _plain, points_text
from domain.scoring import ScoredActivity, epoch_seconds
from domain.versions import rulebook_from_plain
from store.bulk import db_time, driver_rows, in_keys, insert_rows, keys_param, param_mark, select_where_in
from store.types import from_db_time
from store.tables import (
    DecayFactor,
    HandoffQueue,
    LeadDirty,
    LeadEvent,
    LeadState as LeadStateRow,
    RulebookVersion,
    ScoreLedger,
    ScoreRule,
    ScoringState,
    StageChange,
)

HANDOFF_QUEUES = ("routing", "crm_sync")

version_t, rule_t, decay_t = RulebookVersion.__table__, ScoreRule.__table__, DecayFactor.__table__
ledger_t, state_t, change_t = ScoreLedger.__table__, LeadStateRow.__table__, StageChange.__table__
event_t, queue_t, scoring_t = LeadEvent.__table__, HandoffQueue.__table__, ScoringState.__table__
dirty_t = LeadDirty.__table__


# ---------------------------------------------------------------------------------------------- versions

def ensure_version(conn: Connection, rulebook: Rulebook, now: datetime, reason: str | None = None) -> int:
    """The id of this rulebook's version, stored with its rules, rule rows and decay table when new."""
    digest = rulebook.digest
    found = conn.execute(select(version_t.c.id).where(version_t.c.digest == digest)).scalar_one_or_none()
    if found is not None:
        return found
    rules_json = json.dumps(_plain({k: v for k, v in asdict(rulebook).items() if k != "_index"}), sort_keys=True)
    version_id = conn.execute(
        version_t.insert().values(digest=digest, created_at=now, reason=reason, rules=rules_json).returning(version_t.c.id)
    ).scalar_one()
    conn.execute(rule_t.insert(), [
        {"version_id": version_id, "rule_id": n, "action": r.action, "type": r.type.value, "asset": r.asset,
         "asset_key": asset_key(r.asset),
         "points": r.points, "cap": r.cap, "repeat_kind": r.repeat.kind.value, "per_day": r.repeat.per_day}
        for n, r in enumerate(rulebook.rules, start=1)
    ])
    factors = [{"version_id": version_id, "age_days": 0, "factor_micros": MICROS}]
    for age in range(1, DECAY_TABLE_DAYS + 1):
        factor = rulebook.decay.factor_micros(age)
        factors.append({"version_id": version_id, "age_days": age, "factor_micros": factor})
        if factor == 0:
            break
    conn.execute(decay_t.insert(), factors)
    return version_id


def version_rulebook(conn: Connection, version_id: int) -> Rulebook:
    """A stored version's rules, as the Rulebook that scored with them."""
    rules = conn.execute(select(version_t.c.rules).where(version_t.c.id == version_id)).scalar_one()
    return rulebook_from_plain(json.loads(rules))


def rule_ids(rulebook: Rulebook) -> dict[int, int]:
    """id(rule) -> its rule_id in a stored version (rules are numbered in rulebook order)."""
    return {id(rule): n for n, rule in enumerate(rulebook.rules, start=1)}


def scoring_state(conn: Connection) -> tuple[int, datetime | None] | None:
    row = conn.execute(select(scoring_t.c.version_id, scoring_t.c.decayed_at).where(scoring_t.c.key == "default")).first()
    return (row.version_id, row.decayed_at) if row else None


def set_scoring_state(conn: Connection, version_id: int, now: datetime, decayed_at: datetime | None) -> None:
    insert_rows(conn, scoring_t, ("key", "version_id", "decayed_at", "updated_at"),
                [("default", version_id, db_time(conn)(decayed_at), db_time(conn)(now))], conflict=("key",),
                on_conflict="DO UPDATE SET version_id = excluded.version_id, decayed_at = excluded.decayed_at, "
                            "updated_at = excluded.updated_at")


# ---------------------------------------------------------------------------------------------- dirty leads

def mark_dirty(conn: Connection, lead_ids: Iterable[int], now: datetime) -> None:
    """Mark leads for scoring, in lead-id order so concurrent batches lock the marks alike. The keys go as one
    parameter (an array, or a JSON array on SQLite): one statement, not one per lead.

    A lead already marked at `now` (by an earlier batch of the same run) is left as it is: its row is only
    locked, not rewritten, which spares the database a new row version per lead per batch (about 830,000 of
    them in a million-activity backfill, for 100,000 leads). The lock still makes a marking wait for a scoring
    chunk that holds the mark (see lock_marks), so the mark cannot be cleared under a new activity."""
    keys = sorted(set(lead_ids))
    if not keys:
        return
    upsert = (f"ON CONFLICT (lead_id) DO UPDATE SET marked_at = excluded.marked_at "
              f"WHERE {dirty_t.name}.marked_at <> excluded.marked_at")
    if conn.dialect.name == "sqlite":
        # WHERE true: SQLite reads an ON CONFLICT straight after a SELECT's FROM as a join's ON otherwise.
        conn.exec_driver_sql(f"INSERT INTO {dirty_t.name} (lead_id, marked_at) SELECT value, ? FROM json_each(?) WHERE true "
                             f"{upsert}", (db_time(conn)(now), keys_param(conn, keys)))
    else:
        conn.exec_driver_sql(f"INSERT INTO {dirty_t.name} (lead_id, marked_at) SELECT k, %s FROM unnest(%s::bigint[]) AS k "
                             f"{upsert}", (now, keys))


def dirty_leads(conn: Connection, limit: int, lead_ids: Sequence[int] | None = None) -> list[tuple[int, datetime]]:
    """The marks of the leads waiting to be scored (of these leads only, when given)."""
    table = dirty_t
    query = select(table.c.lead_id, table.c.marked_at).order_by(table.c.lead_id).limit(limit)
    if lead_ids is not None:
        query = query.where(table.c.lead_id.in_(sorted(set(lead_ids))))
    return [(row.lead_id, row.marked_at) for row in conn.execute(query).all()]


def lock_marks(conn: Connection, taken: Sequence[tuple[int, datetime]]) -> None:
    """Hold the marks a scoring chunk is about to clear until it commits (PostgreSQL; a SQLite transaction
    holds the one write lock from its start). Without it, a batch that stores an activity for a taken lead
    and commits while the chunk is past reading that lead's activities, leaving the mark as it was (same run,
    same time), would have its activity's mark cleared unscored. With it, the batch's marking waits for the
    chunk and then marks the lead afresh."""
    if not taken or conn.dialect.name == "sqlite":
        return
    conn.exec_driver_sql(f"SELECT lead_id FROM {dirty_t.name} WHERE lead_id {in_keys(conn)} ORDER BY lead_id FOR UPDATE",
                         (keys_param(conn, sorted(lead_id for lead_id, _ in taken)),))


def clear_dirty(conn: Connection, taken: Sequence[tuple[int, datetime]]) -> None:
    """Forget the leads just scored, unless they were marked again meanwhile."""
    if not taken:
        return
    if conn.dialect.name == "sqlite":  # the driver's executemany loops in C: as fast as one statement here
        stamp = db_time(conn)
        conn.exec_driver_sql(f"DELETE FROM {dirty_t.name} WHERE lead_id = ? AND marked_at = ?",
                             [(lead_id, stamp(marked_at)) for lead_id, marked_at in taken])
        return
    # One statement over two arrays: row by row, a rescore's 100,000 marks took 2 s
    conn.exec_driver_sql(
        f"DELETE FROM {dirty_t.name} d USING unnest(%s::bigint[], %s::timestamptz[]) AS t(lead_id, marked_at) "
        "WHERE d.lead_id = t.lead_id AND d.marked_at = t.marked_at",
        ([lead_id for lead_id, _ in taken], [marked_at for _, marked_at in taken]))


# ---------------------------------------------------------------------------------------------- the ledger

def _sql(conn: Connection, template: str, **parts: str) -> str:
    sqlite = conn.dialect.name == "sqlite"
    return template.format(
        **parts,
        greatest="max" if sqlite else "GREATEST",
        least="min" if sqlite else "LEAST",
        # Whole seconds, rounded down as Python does: SQLite's %s would round the fraction to milliseconds first.
        epoch="CAST(strftime('%s', substr(a.occurred_at, 1, 19)) AS INTEGER)" if sqlite
        else "FLOOR(EXTRACT(EPOCH FROM a.occurred_at))::bigint",
        # Ties in time break by (source, external id) compared byte-wise, as Python compares strings.
        text_order="" if sqlite else ' COLLATE "C"',
        # A whole-table read that SQLite would otherwise plan through the (lead, type, time) index: one random
        # table lookup per row, several times slower than the scan
        scan=" NOT INDEXED" if sqlite else "",
        p=param_mark(conn),
    )


_LEDGER = """
INSERT INTO score_ledger (lead_id, activity_id, version_id, rule_id, points, occurred_epoch)
WITH matched AS (
    SELECT a.id AS activity_id, a.lead_id, a.source, a.external_id, {epoch} AS epoch,
           COALESCE(ra.rule_id, rt.rule_id) AS rule_id,
           CASE WHEN ra.rule_id IS NOT NULL THEN ra.points ELSE rt.points END AS points,
           CASE WHEN ra.rule_id IS NOT NULL THEN ra.cap ELSE rt.cap END AS cap,
           CASE WHEN ra.rule_id IS NOT NULL THEN ra.repeat_kind ELSE rt.repeat_kind END AS repeat_kind,
           CASE WHEN ra.rule_id IS NOT NULL THEN ra.per_day ELSE rt.per_day END AS per_day
    FROM activity a
    LEFT JOIN score_rule ra ON ra.version_id = {p} AND ra.type = a.type AND ra.asset_key = a.asset_key
    LEFT JOIN score_rule rt ON rt.version_id = {p} AND rt.type = a.type AND rt.asset_key IS NULL
    WHERE (ra.rule_id IS NOT NULL OR rt.rule_id IS NOT NULL) {leads}
), whole AS (
    -- 'every' and 'first': k counts a lead's occurrences of the rule in history order
    SELECT m.*, ROW_NUMBER() OVER (PARTITION BY m.lead_id, m.rule_id
                                   ORDER BY m.epoch, m.source{text_order}, m.external_id{text_order}) AS k
    FROM matched m WHERE m.repeat_kind <> 'daily'
), daily AS (
    -- 'N/day': first the day's occurrences, then k among those that counted
    SELECT m.*, ROW_NUMBER() OVER (PARTITION BY m.lead_id, m.rule_id, m.epoch / 86400
                                   ORDER BY m.epoch, m.source{text_order}, m.external_id{text_order}) AS nth_today
    FROM matched m WHERE m.repeat_kind = 'daily'
), counted AS (
    SELECT lead_id, activity_id, rule_id, epoch, points, cap, k FROM whole WHERE repeat_kind = 'every' OR k = 1
    UNION ALL
    SELECT lead_id, activity_id, rule_id, epoch, points, cap,
           ROW_NUMBER() OVER (PARTITION BY lead_id, rule_id ORDER BY epoch, source{text_order}, external_id{text_order}) AS k
    FROM daily WHERE nth_today <= per_day
), earned AS (
    SELECT lead_id, activity_id, rule_id, epoch,
           CASE WHEN cap IS NULL THEN points
                WHEN points >= 0 THEN {greatest}(0, {least}(points, cap - (k - 1) * points))
                ELSE -{greatest}(0, {least}(-points, cap + (k - 1) * points)) END AS points
    FROM counted
)
SELECT lead_id, activity_id, {p}, rule_id, points, epoch FROM earned WHERE points <> 0
"""


def rebuild_ledger(conn: Connection, version_id: int, lead_ids: Sequence[int] | None = None) -> int:
    """Recompute the contributions of these leads (all leads when None) from their whole activity history."""
    if lead_ids is None:
        sql = _sql(conn, _LEDGER, leads="")
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DELETE FROM score_ledger")
            return conn.exec_driver_sql(sql, (version_id, version_id, version_id)).rowcount
        # PostgreSQL: TRUNCATE gives the table fresh files inside this transaction (readers wait for the commit),
        # where DELETE would leave a million dead rows for every later read to step over until a vacuum.
        conn.exec_driver_sql("TRUNCATE score_ledger")
        # The key is built once over the new rows rather than kept up row by row while a million arrive (0.8 s
        # instead of 1.4 s); a duplicate would fail the rebuild at the ADD, and nothing of it stays. Only a role
        # that owns the table may: a runtime role apart from the one that migrates keeps the key as it is.
        key, owner = conn.exec_driver_sql(
            "SELECT c.conname, pg_has_role(t.relowner, 'USAGE') FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "WHERE c.conrelid = 'score_ledger'::regclass AND c.contype = 'p'").one()
        if owner:
            conn.exec_driver_sql(f'ALTER TABLE score_ledger DROP CONSTRAINT "{key}"')
        rows = conn.exec_driver_sql(sql, (version_id, version_id, version_id)).rowcount
        if owner:
            conn.exec_driver_sql(f'ALTER TABLE score_ledger ADD CONSTRAINT "{key}" PRIMARY KEY (lead_id, activity_id)')
        # Every row is new: without fresh statistics the chunks that read the ledger next are planned for the
        # table as it was (estimates off by millions of rows), not as it is.
        conn.exec_driver_sql("ANALYZE score_ledger")
        return rows
    if not lead_ids:
        return 0
    keys = keys_param(conn, lead_ids)
    leads_in = in_keys(conn)
    conn.exec_driver_sql(f"DELETE FROM score_ledger WHERE lead_id {leads_in}", (keys,))
    sql = _sql(conn, _LEDGER, leads=f"AND a.lead_id {leads_in}")
    return conn.exec_driver_sql(sql, (version_id, version_id, keys, version_id)).rowcount


_SCORES = """
SELECT l.lead_id,
       SUM(CASE WHEN l.points >= 0 THEN (CAST(l.points AS BIGINT) * f.factor + 500000) / 1000000
                ELSE -((CAST(-l.points AS BIGINT) * f.factor + 500000) / 1000000) END)
FROM score_ledger l
JOIN (SELECT d.age_days, d.factor_micros AS factor FROM decay_factor d WHERE d.version_id = {p}) f
  ON f.age_days = {least}({greatest}(0, ({p} - l.occurred_epoch) / 86400), {p})
{where}
GROUP BY l.lead_id
"""


def behaviour_totals(conn: Connection, version_id: int, now: datetime, lead_ids: Sequence[int] | None = None) -> dict[int, int]:
    """Each lead's decayed total at `now` (before the floor); a lead with no ledger rows is absent."""
    max_age = conn.execute(
        select(decay_t.c.age_days).where(decay_t.c.version_id == version_id).order_by(decay_t.c.age_days.desc()).limit(1)
    ).scalar_one()
    now_epoch = epoch_seconds(now)
    if lead_ids is None:
        rows = driver_rows(conn, _sql(conn, _SCORES, where=""), (version_id, now_epoch, max_age))
    elif not lead_ids:
        return {}
    else:
        sql = _sql(conn, _SCORES, where=f"WHERE l.lead_id {in_keys(conn)}")
        rows = driver_rows(conn, sql, (version_id, now_epoch, max_age, keys_param(conn, lead_ids)))
    return {lead_id: int(total) for lead_id, total in rows}  # PostgreSQL sums bigints as numeric


def ledger_sum(conn: Connection) -> dict[int, int]:
    """The bare SUM(points) GROUP BY lead over the ledger: the benchmark's ceiling."""
    rows = conn.exec_driver_sql("SELECT lead_id, SUM(points) FROM score_ledger GROUP BY lead_id")
    return {lead_id: int(total) for lead_id, total in rows}


def activity_points_sum(conn: Connection, version_id: int) -> dict[int, int]:
    """SUM(points) GROUP BY lead over the activities themselves, each worth its rule's points (no caps, repeats
    or decay): the benchmark's second ceiling, for work that starts from the activity log as a rescore does.
    SQLite is told to scan the table: left to itself it reads the rows in lead order through the (lead, type,
    time) index, one random table lookup each, and took 2.5 s for a million rows where the scan takes 0.4-0.8 s;
    a ceiling is the fastest the database can do it."""
    rows = conn.exec_driver_sql(_sql(conn, (
        "SELECT a.lead_id, SUM(COALESCE(ra.points, rt.points)) FROM activity a{scan} "
        "LEFT JOIN score_rule ra ON ra.version_id = {p} AND ra.type = a.type AND ra.asset_key = a.asset_key "
        "LEFT JOIN score_rule rt ON rt.version_id = {p} AND rt.type = a.type AND rt.asset_key IS NULL "
        "GROUP BY a.lead_id")), (version_id, version_id))
    return {lead_id: int(total or 0) for lead_id, total in rows}


def history_order_pass(conn: Connection) -> int:
    """One ROW_NUMBER() over the whole activity log, per lead and activity type in history order: the least a
    rescore that honours repeat rules and caps has to do (each lead's occurrences of a rule counted in order),
    before it earns, caps, decays or stores anything. The benchmark's floor beside the ceilings; SQLite scans
    the table for it, as for activity_points_sum (1.4 s against 3.4 s through the index, for a million rows)."""
    return int(conn.exec_driver_sql(_sql(conn, (
        "SELECT SUM(k) FROM (SELECT ROW_NUMBER() OVER (PARTITION BY a.lead_id, a.type ORDER BY a.occurred_at, "
        "a.source{text_order}, a.external_id{text_order}) AS k FROM activity a{scan}) n"))).scalar_one() or 0)


def ledger_write_pass(conn: Connection) -> int:
    """The ledger's rows written again, as they are, into a new table keyed like it: what storing a rebuilt
    ledger costs with nothing to work out, the benchmark's second floor beside the window pass. Read in key
    order (the cheapest order to insert in), and on PostgreSQL keyed after the rows are in, as rebuild_ledger
    does. The caller rolls the transaction back; the table never outlives it. Returns the rows written."""
    copy = "bench_ledger_write"
    if conn.dialect.name == "sqlite":  # the ledger's own definition (keyed, without rowid) under another name
        ledger_t.to_metadata(MetaData(), name=copy).create(conn)
    else:
        conn.exec_driver_sql(f"CREATE TABLE {copy} (LIKE score_ledger)")
    rows = conn.exec_driver_sql(
        f"INSERT INTO {copy} (lead_id, activity_id, version_id, rule_id, points, occurred_epoch) "
        "SELECT lead_id, activity_id, version_id, rule_id, points, occurred_epoch FROM score_ledger "
        "ORDER BY lead_id, activity_id").rowcount
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(f"ALTER TABLE {copy} ADD PRIMARY KEY (lead_id, activity_id)")
    return rows


# ---------------------------------------------------------------------------------------------- lead facts and states

def lead_profiles(conn: Connection, lead_ids: Sequence[int]) -> dict[int, dict]:
    rows = select_where_in(
        conn,
        "SELECT id, email, first_name, last_name, company, title, industry, company_size, country, product_interest, "
        "lead_source_channel FROM lead WHERE merged_into_id IS NULL AND id {keys}",
        lead_ids,
    )
    names = ("email", "first_name", "last_name", "company", "title", "industry", "company_size", "country",
             "product_interest", "lead_source_channel")
    return {row[0]: dict(zip(names, row[1:])) for row in rows}


def last_hand_raises(conn: Connection, lead_ids: Sequence[int], kinds: Iterable[str]) -> dict[int, tuple[datetime, str]]:
    """Each lead's latest hand-raising activity (time, type); of two at the same moment, the type named last.
    Answered from the (lead, type, time) index alone."""
    kinds = sorted(kinds)
    if not kinds or not lead_ids:
        return {}
    marks = ", ".join("?" for _ in kinds)
    rows = select_where_in(
        conn, f"SELECT lead_id, type, MAX(occurred_at) FROM activity WHERE type IN ({marks}) AND lead_id {{keys}} "
        "GROUP BY lead_id, type", lead_ids, *kinds
    )
    latest: dict[int, tuple[datetime, str]] = {}
    for lead_id, kind, occurred_at in rows:
        moment = from_db_time(occurred_at)
        if lead_id not in latest or (moment, kind) > latest[lead_id]:
            latest[lead_id] = (moment, kind)
    return latest


def activity_histories(conn: Connection, lead_ids: Sequence[int]) -> dict[int, list[ScoredActivity]]:
    """Each lead's activities as scoring reads them (the activities of leads merged into it count for it)."""
    rows = select_where_in(
        conn, "SELECT lead_id, id, source, external_id, type, asset, occurred_at FROM activity WHERE lead_id {keys}",
        lead_ids)
    histories: dict[int, list[ScoredActivity]] = {}
    for lead_id, activity_id, source, external_id, kind, asset, occurred_at in rows:
        histories.setdefault(lead_id, []).append(ScoredActivity(
            activity_id=activity_id, source=source, external_id=external_id, type=_KINDS[kind], asset=asset,
            occurred_at=from_db_time(occurred_at)))
    return histories


_KINDS = {kind.value: kind for kind in ActivityType}


_STATE_COLUMNS = ("lead_id", "version_id", "score", "peak_score", "fit_points", "fit_grade", "stage", "stage_changed_at",
                  "mql_armed", "crossings", "cold", "qualified_at", "scored_at", "fit_disqualified_from",
                  "recycled_at")


def load_states(conn: Connection, lead_ids: Sequence[int], *, lock: bool = False) -> dict[int, LeadState]:
    """The saved states of these leads. With `lock`, held until the caller commits (PostgreSQL; SQLite's one
    write lock holds them already), to be taken before anything the new states are worked out from is read:
    two transactions at work on one lead (a decay pass, which holds no mark, beside the incremental run that
    holds the lead's; a person's stage move beside either) then take turns, and the second reads what the first
    saved instead of writing back what it had read before. In lead-id order, after the marks (see lock_marks)."""
    sql = f"SELECT {', '.join(_STATE_COLUMNS)} FROM lead_state WHERE lead_id {{keys}}"
    if lock and conn.dialect.name != "sqlite":
        sql += " ORDER BY lead_id FOR UPDATE"
    return {row[0]: _state(row) for row in select_where_in(conn, sql, sorted(lead_ids) if lock else lead_ids)}


def _state(row: Sequence) -> LeadState:
    (_lead_id, _version, score, peak, fit_points, fit_grade, stage, changed_at, armed, crossings, cold, qualified_at, _,
     disqualified_from, recycled_at) = row
    return LeadState(
        stage=_STAGES[stage], score=score, peak_score=peak, fit_points=fit_points, fit_grade=fit_grade,
        mql_armed=bool(armed), crossings=crossings, cold=bool(cold),
        qualified_at=from_db_time(qualified_at) if qualified_at else None, stage_changed_at=from_db_time(changed_at),
        fit_disqualified_from=_STAGES[disqualified_from] if disqualified_from else None,
        recycled_at=from_db_time(recycled_at) if recycled_at else None,
    )


_STAGES = {stage.value: stage for stage in Stage}


def merged_states(conn: Connection, lead_ids: Sequence[int]) -> dict[int, list[tuple[int, LeadState]]]:
    """For each of these leads, the leads merged into it (directly, or through a lead merged into it since) that
    still hold a state of their own, with that state, in lead-id order. Found through the merged_into_id index:
    most chunks find none."""
    columns = ", ".join(f"s.{c}" for c in _STATE_COLUMNS)
    rows = select_where_in(
        conn,
        "WITH RECURSIVE gone (lead_id, survivor) AS ("
        " SELECT id, merged_into_id FROM lead WHERE merged_into_id {keys}"
        " UNION ALL SELECT l.id, g.survivor FROM lead l JOIN gone g ON l.merged_into_id = g.lead_id) "
        f"SELECT g.survivor, {columns} FROM gone g JOIN lead_state s ON s.lead_id = g.lead_id ORDER BY g.survivor, s.lead_id",
        lead_ids,
    )
    found: dict[int, list[tuple[int, LeadState]]] = {}
    for survivor, *state in rows:
        found.setdefault(survivor, []).append((state[0], _state(state)))
    return found


def merged_meanwhile(conn: Connection, lead_ids: Sequence[int]) -> list[int]:
    """Which of these leads, read as leads of their own earlier in this transaction, have been merged into another
    since. On SQLite none: the transaction has held the one write lock from its start, so no merge committed.
    On PostgreSQL a merge waits for a transaction that holds the merged lead's mark or state (mark_dirty,
    hold_merged_states), so a lead with a state cannot be merged between this read and the save. A lead scored
    for the first time holds no state; if a chunk holds no mark for it either (a rescore's), a merge can still
    land in the instant between this read and the save. The state saved then is absorbed when the lead that
    remains is next scored (merged_states)."""
    if not lead_ids or conn.dialect.name == "sqlite":
        return []
    return [row[0] for row in select_where_in(conn, "SELECT id FROM lead WHERE merged_into_id IS NOT NULL AND id {keys}",
                                                lead_ids)]


def hold_merged_states(conn: Connection, merged_away: Sequence[int]) -> None:
    """In a merge's transaction, after its marks (PostgreSQL): wait for any scoring chunk or stage move that holds
    the merged-away leads' states (load_states(lock=True)) to commit. Such a chunk read the lead as a lead of its
    own and saves a state for it; with the merge held until then, the lead that remains absorbs that state when
    next scored. A merge committed under the chunk let the lead that remains, scored meanwhile in another chunk,
    read the state from before and decide again what the chunk decided: a person handed over twice. A
    transaction that holds states waits for nothing a batch holds, so this wait always ends."""
    if merged_away and conn.dialect.name != "sqlite":
        load_states(conn, merged_away, lock=True)


def fold_merged(conn: Connection, folds: dict[int, tuple[list[int], int | None]], now: datetime) -> tuple[int, int, int]:
    """After the leads merged into a lead were absorbed into its state (domain.lifecycle.absorb): forget their
    own states; move the open routing and CRM-sync rows of the one whose stage the person took (`folds`: lead
    that remains -> (merged leads, that one or None)) to the lead that remains, since that handoff is the
    person's; close the others' open rows (outcome "merged", naming the lead that remains). Returns (states
    dropped, queue rows moved, queue rows closed)."""
    if not folds:
        return 0, 0, 0
    p, at = param_mark(conn), db_time(conn)(now)
    gone = sorted(lead_id for merged, _ in folds.values() for lead_id in merged)
    dropped = conn.exec_driver_sql(f"DELETE FROM lead_state WHERE lead_id {in_keys(conn)}", (keys_param(conn, gone),)).rowcount
    # One statement each, run for every pair (both drivers add up the rows an executemany touched); the rows
    # moved first, so that closing finds only the others'
    moves = [(survivor, f"moved from merged lead {took_from}", took_from)
             for survivor, (_, took_from) in sorted(folds.items()) if took_from is not None]
    moved = conn.exec_driver_sql(
        f"UPDATE handoff_queue SET lead_id = {p}, detail = {p} WHERE done_at IS NULL AND lead_id = {p}", moves
    ).rowcount if moves else 0
    closes = [(at, f"merged into lead {survivor}", lead_id)
              for survivor, (merged, _) in sorted(folds.items()) for lead_id in merged]
    closed = conn.exec_driver_sql(
        f"UPDATE handoff_queue SET done_at = {p}, outcome = 'merged', detail = {p} WHERE done_at IS NULL AND lead_id = {p}",
        closes).rowcount
    return dropped, moved, closed


class ScoredMeanwhile(Exception):
    """A lead read with no state (never scored) was given one by another transaction before this one saved its
    own first state: what this one worked out from "no state" is out of date. Raised before anything of the
    lead's is written; the caller rolls back and scores the leads again."""


def save_qualifications(
    conn: Connection,
    results: dict[int, Qualification],
    version_id: int,
    now: datetime,
    run_id: str | None,
    payloads: dict[int, dict] | None = None,
    first: Collection[int] = (),
) -> None:
    """States, stage changes, and for every trigger an outbox event and its routing and CRM-sync queue rows,
    all in the caller's transaction: a retried run finds the crossing recorded and fires nothing again.

    `first` names the leads read with no state. Those have no row for load_states(lock=True) to hold, so two
    transactions may work one out at once (on PostgreSQL: a rescore's chunk, which holds no mark, beside the
    incremental chunk that holds the lead's). Their states are inserted, never overwritten: the second insert
    waits for the first transaction, then finds the row and raises ScoredMeanwhile instead of recording the
    lead's first stages, and its first crossing, a second time."""
    stamp = db_time(conn)
    at = stamp(now)
    rows = [
        (lead_id, version_id, q.state.score, q.state.peak_score, q.state.fit_points, q.state.fit_grade, q.state.stage.value,
         stamp(q.state.stage_changed_at or now), q.state.mql_armed, q.state.crossings, q.state.cold,
         stamp(q.state.qualified_at), at, q.state.fit_disqualified_from and q.state.fit_disqualified_from.value,
         stamp(q.state.recycled_at))
        for lead_id, q in sorted(results.items())
    ]
    new = [row for row in rows if row[0] in first]
    if new and insert_rows(conn, state_t, _STATE_COLUMNS, new, conflict=("lead_id",)) < len(new):
        raise ScoredMeanwhile(f"{len(new)} leads read unscored, some of them scored by another run since")
    update = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS[1:])
    insert_rows(conn, state_t, _STATE_COLUMNS, [row for row in rows if row[0] not in first], conflict=("lead_id",),
                on_conflict=f"DO UPDATE SET {update}")
    record_changes(conn, results, version_id, now, run_id)
    events = [event_row(lead_id, t.kind, t.crossing, now, run_id,
                         {"reason": t.reason, **((payloads or {}).get(lead_id) or {})})
              for lead_id, q in sorted(results.items()) for t in q.triggers]
    if events:
        ids = conn.execute(event_t.insert().returning(event_t.c.id, event_t.c.lead_id, sort_by_parameter_order=True),
                           events).all()
        conn.execute(queue_t.insert(), [
            {"lead_event_id": row.id, "lead_id": row.lead_id, "queue": queue, "created_at": now}
            for row in ids for queue in HANDOFF_QUEUES
        ])


def record_changes(conn: Connection, results: dict[int, Qualification], version_id: int | None, now: datetime,
                   run_id: str | None) -> None:
    """The stage changes of these results, in lead order, with the rulebook version in force and the run; and
    for each change that emits a lead event (domain.lifecycle.stage_event_kind) that event in the outbox, made
    once by the change's id (its `crossing`)."""
    changes = [({"lead_id": lead_id, "changed_at": now, "from_stage": c.from_stage.value if c.from_stage else None,
                 "to_stage": c.to_stage.value, "reason": c.reason, "version_id": version_id, "run_id": run_id},
                stage_event_kind(c))
               for lead_id, q in sorted(results.items()) for c in q.changes]
    if not changes:
        return
    if all(kind is None for _, kind in changes):
        conn.execute(change_t.insert(), [row for row, _ in changes])
        return
    # In the order given, as a lead's history reads its changes by id; the ids back for the events
    ids = conn.execute(change_t.insert().returning(change_t.c.id, sort_by_parameter_order=True),
                       [row for row, _ in changes]).scalars().all()
    conn.execute(event_t.insert(), [
        event_row(row["lead_id"], kind, change_id, now, run_id,
                   {"lead_id": row["lead_id"], "from": row["from_stage"], "to": row["to_stage"],
                    "reason": row["reason"], "score": points_text(results[row["lead_id"]].state.score),
                    "fit_grade": results[row["lead_id"]].state.fit_grade, "stage_change_id": change_id})
        for (row, kind), change_id in zip(changes, ids) if kind is not None])


def event_row(lead_id: int, kind: str, crossing: int, now: datetime, run_id: str | None, payload: dict) -> dict:
    """An outbox row under a fresh id, kept with it: a re-emission after a crash reuses it, and Prefect stores it
    once. `crossing` makes it once per lead and kind: an MQL's count of handovers, a stage event's change id."""
    return {"event_id": str(uuid.uuid4()), "lead_id": lead_id, "kind": kind, "crossing": crossing,
            "occurred_at": now, "run_id": run_id, "payload": json.dumps(payload, sort_keys=True)}


def ledger_lines(conn: Connection, lead_ids: Sequence[int]) -> dict[int, list[dict]]:
    """The stored contributions of some leads, with the activity and the rule behind each."""
    rows = select_where_in(
        conn,
        "SELECT l.lead_id, l.activity_id, l.points, l.occurred_epoch, l.version_id, r.rule_id, r.action, "
        "a.source, a.external_id, a.type, a.asset, a.campaign, a.occurred_at "
        "FROM score_ledger l JOIN score_rule r ON r.version_id = l.version_id AND r.rule_id = l.rule_id "
        "JOIN activity a ON a.id = l.activity_id WHERE l.lead_id {keys} ORDER BY l.lead_id, l.occurred_epoch, a.source, a.external_id",
        lead_ids,
    )
    names = ("lead_id", "activity_id", "points", "occurred_epoch", "version_id", "rule_id", "action", "source",
             "external_id", "type", "asset", "campaign", "occurred_at")
    grouped: dict[int, list[dict]] = {}
    for row in rows:
        line = dict(zip(names, row))
        line["occurred_at"] = from_db_time(line["occurred_at"])
        grouped.setdefault(line["lead_id"], []).append(line)
    return grouped


def leads_by_email(conn: Connection, emails: Sequence[str]) -> dict[str, int]:
    """The lead that holds each of these addresses now, in one query: a lead merged away is followed to the lead
    that remains, through a merge of merges too (the lead it went into may have been merged since). An address
    no lead has is absent."""
    rows = select_where_in(
        conn,
        "WITH RECURSIVE chain (email, id, merged_into_id) AS ("
        " SELECT email, id, merged_into_id FROM lead WHERE email {keys}"
        " UNION SELECT c.email, l.id, l.merged_into_id FROM chain c JOIN lead l ON l.id = c.merged_into_id) "
        "SELECT email, id FROM chain WHERE merged_into_id IS NULL",
        list(emails),
    )
    return dict(rows)


def lead_by_email(conn: Connection, email: str) -> int | None:
    return leads_by_email(conn, [email]).get(email)


def lead_state_row(conn: Connection, lead_id: int) -> dict | None:
    row = conn.execute(select(state_t).where(state_t.c.lead_id == lead_id)).mappings().first()
    return dict(row) if row else None


def stage_history(conn: Connection, lead_id: int) -> list[dict]:
    rows = conn.execute(select(change_t).where(change_t.c.lead_id == lead_id).order_by(change_t.c.id)).mappings().all()
    return [dict(row) for row in rows]


def stage_counts(conn: Connection) -> dict[str, int]:
    rows = conn.exec_driver_sql(
        "SELECT s.stage, COUNT(*) FROM lead_state s JOIN lead l ON l.id = s.lead_id WHERE l.merged_into_id IS NULL "
        "GROUP BY s.stage"
    ).fetchall()
    return dict(rows)


def all_lead_ids(conn: Connection) -> list[int]:
    return [row[0] for row in conn.exec_driver_sql("SELECT id FROM lead WHERE merged_into_id IS NULL ORDER BY id")]
