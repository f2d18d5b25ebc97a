"""The CRM sync's storage: each lead's CRM record (the link, what sales did, what Handoff wrote and is writing),
the CRM's users, accounts, activities and opportunities, and the pull's watermarks; set-wise."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, select

from domain.crm import (
    ContactKind, CrmAccount as CrmAccountRecord, CrmActivity as CrmActivityRecord, CrmObject,
    CrmOpportunity as CrmOpportunityRecord, CrmPerson, CrmUser as CrmUserRecord, CrmWrite, Outcome, WriteResult,
)
from store.bulk import db_time, in_keys, insert_rows, keys_param, param_mark, select_where_in
from store.tables import CrmOpportunity, CrmRecord, CrmWatermark
from store.types import from_db_time

record_t, opportunity_t, watermark_t = CrmRecord.__table__, CrmOpportunity.__table__, CrmWatermark.__table__

KEY_PREFIX = "handoff:"


def key_of(lead_id: int) -> str:
    """Handoff's external id on a lead's CRM record."""
    return f"{KEY_PREFIX}{lead_id}"


def lead_of_key(key: str | None) -> int | None:
    if not key or not key.startswith(KEY_PREFIX) or not key[len(KEY_PREFIX):].isdigit():
        return None
    return int(key[len(KEY_PREFIX):])


# ---------------------------------------------------------------- leases

def take_lease(conn: Connection, name: str, holder: str, now: datetime, expires_at: datetime) -> bool:
    """Hold the lease `name` until `expires_at` (or its release), unless another holder has it unexpired."""
    stamp = db_time(conn)
    taken = insert_rows(conn, CrmRecord.metadata.tables["run_lease"], ("name", "holder", "expires_at"),
                        [(name, holder, stamp(expires_at))], conflict=("name",),
                        on_conflict="DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
                                    f"WHERE {{table}}.holder = excluded.holder OR {{table}}.expires_at < {_literal(conn, now)}")
    return taken > 0


def _literal(conn: Connection, moment: datetime) -> str:
    value = db_time(conn)(moment)
    return f"'{value}'" if conn.dialect.name == "sqlite" else f"'{value.isoformat()}'::timestamptz"


def release_lease(conn: Connection, name: str, holder: str) -> None:
    p = param_mark(conn)
    conn.exec_driver_sql(f"DELETE FROM run_lease WHERE name = {p} AND holder = {p}", (name, holder))


# ---------------------------------------------------------------- watermarks

def watermarks(conn: Connection) -> dict[str, datetime | None]:
    return {kind: mark for kind, mark in conn.execute(select(watermark_t.c.kind, watermark_t.c.watermark))}


def advance_watermarks(conn: Connection, newest: dict[str, datetime], now: datetime, run_id: str | None) -> None:
    """Each kind's watermark to its newest change time pulled, never back."""
    stamp = db_time(conn)
    rows = [(kind, stamp(moment), stamp(now), run_id) for kind, moment in sorted(newest.items())]
    insert_rows(conn, watermark_t, ("kind", "watermark", "updated_at", "run_id"), rows, conflict=("kind",),
                on_conflict="DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at, "
                            "run_id = excluded.run_id WHERE {table}.watermark IS NULL OR "
                            "{table}.watermark < excluded.watermark")


# ---------------------------------------------------------------- the CRM's directory

def save_users(conn: Connection, users: Sequence[CrmUserRecord]) -> None:
    stamp = db_time(conn)
    rows = [(u.crm_id, (u.email or "").strip().lower() or None, u.name, u.active, u.manager_id, u.timezone,
             stamp(u.modified_at)) for u in users]
    insert_rows(conn, CrmRecord.metadata.tables["crm_user"], ("crm_id", "email", "name", "active", "manager_id",
                                                                "timezone", "modified_at"), rows, conflict=("crm_id",),
                on_conflict=_replace("email", "name", "active", "manager_id", "timezone", "modified_at"))


_LEGAL = re.compile(r"\b(inc|incorporated|ltd|limited|llc|gmbh|ag|sa|sas|bv|nv|plc|corp|corporation|co|company|oy|ab)\b")


def user_names(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    """CRM users' names (their e-mail when nameless), by id: who did what, in a stage change's reason."""
    rows = select_where_in(conn, "SELECT crm_id, COALESCE(name, email) FROM crm_user WHERE crm_id {keys}",
                           sorted(set(ids)))
    return {crm_id: name for crm_id, name in rows if name}


def company_key(name: str | None) -> str | None:
    """A company name as accounts are matched by: case, punctuation and legal suffixes left out."""
    if not name:
        return None
    words = _LEGAL.sub(" ", re.sub(r"[^\w\s]", " ", name.casefold()))
    return " ".join(words.split())[:300] or None


def website_domain(website: str | None) -> str | None:
    if not website:
        return None
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", website.strip().lower()).split("/")[0].split(":")[0]
    return host.removeprefix("www.")[:255] or None


def save_accounts(conn: Connection, accounts: Sequence[CrmAccountRecord]) -> None:
    stamp = db_time(conn)
    rows = [(a.crm_id, a.name, company_key(a.name), website_domain(a.website), a.owner_id, a.deleted,
             stamp(a.modified_at)) for a in accounts]
    insert_rows(conn, CrmRecord.metadata.tables["crm_account"], ("crm_id", "name", "name_key", "domain", "owner_id",
                                                                   "deleted", "modified_at"), rows, conflict=("crm_id",),
                on_conflict=_replace("name", "name_key", "domain", "owner_id", "deleted", "modified_at"))


def _replace(*columns: str) -> str:
    return "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in columns)


# ---------------------------------------------------------------- people: links and what sales did

@dataclass(frozen=True)
class StoredRecord:
    """What the store holds of a lead's CRM record: the CRM's side as a CrmPerson (None before the first pull of
    it), and the link."""

    lead_id: int
    object: CrmObject
    crm_id: str | None
    contact_id: str | None
    person: CrmPerson | None
    opportunity_id: str | None


_RECORD_COLUMNS = ("lead_id", "object", "crm_id", "contact_id", "owner_id", "status", "converted", "opportunity_id",
                   "account_id", "recycle_reason", "product_line", "modified_at", "modified_by", "pulled_at")


def records_by_crm_id(conn: Connection, ids: Sequence[str]) -> dict[str, StoredRecord]:
    """The stored records that a CRM id names, as their lead or contact id (both are keys of one person)."""
    ids = sorted(set(ids))
    found = {}
    for column in ("crm_id", "contact_id"):
        rows = select_where_in(conn, f"SELECT {', '.join(_RECORD_COLUMNS)} FROM crm_record WHERE {column} {{keys}}", ids)
        for row in rows:
            record = _stored(row)
            found.setdefault(getattr(record, column), record)
    return found


def records_of(conn: Connection, lead_ids: Sequence[int]) -> dict[int, StoredRecord]:
    rows = select_where_in(conn, f"SELECT {', '.join(_RECORD_COLUMNS)} FROM crm_record WHERE lead_id {{keys}}",
                           sorted(set(lead_ids)))
    return {row[0]: _stored(row) for row in rows}


def _stored(row: Sequence) -> StoredRecord:
    (lead_id, obj, crm_id, contact_id, owner_id, status, converted, opportunity_id, account_id, recycle_reason,
     product_line, modified_at, modified_by, pulled_at) = row
    person = None
    if pulled_at is not None and crm_id is not None:
        person = CrmPerson(object=CrmObject(obj), crm_id=crm_id, email=None, handoff_key=None, owner_id=owner_id,
                           status=status, converted=bool(converted), contact_id=contact_id,
                           opportunity_id=opportunity_id, account_id=account_id, recycle_reason=recycle_reason,
                           deleted=False, master_id=None, modified_by=modified_by,
                           modified_at=from_db_time(modified_at), product_line=product_line)
    return StoredRecord(lead_id, CrmObject(obj), crm_id, contact_id, person, opportunity_id)


def save_people(conn: Connection, linked: Sequence[tuple[int, CrmPerson]], now: datetime) -> None:
    """The CRM's side of each lead's record as pulled (a lead's Lead id stays its `crm_id` after conversion; the
    contact it became is `contact_id`, and Handoff writes to the contact from then on)."""
    stamp = db_time(conn)
    rows = []
    for lead_id, p in linked:
        lead_record = p.crm_id if p.object is CrmObject.LEAD else None
        contact = p.contact_id if p.object is CrmObject.LEAD else p.crm_id
        target = CrmObject.CONTACT if contact else CrmObject.LEAD
        rows.append((lead_id, target.value, lead_record or contact, contact, p.owner_id, p.status, p.converted,
                     p.opportunity_id, p.account_id, p.recycle_reason, p.product_line, stamp(p.modified_at),
                     p.modified_by, stamp(now)))
    keep = "{table}"
    insert_rows(conn, record_t, _RECORD_COLUMNS, sorted(rows), conflict=("lead_id",), on_conflict=(
        "DO UPDATE SET object = excluded.object, "
        # a lead's own Lead id is kept when its contact is pulled on its own
        f"crm_id = CASE WHEN excluded.object = 'Contact' AND {keep}.crm_id IS NOT NULL AND {keep}.contact_id IS NULL "
        f"THEN {keep}.crm_id ELSE COALESCE({keep}.crm_id, excluded.crm_id) END, "
        "contact_id = COALESCE(excluded.contact_id, {table}.contact_id), owner_id = excluded.owner_id, "
        "status = COALESCE(excluded.status, {table}.status), converted = excluded.converted OR {table}.converted, "
        "opportunity_id = COALESCE(excluded.opportunity_id, {table}.opportunity_id), "
        "account_id = COALESCE(excluded.account_id, {table}.account_id), recycle_reason = excluded.recycle_reason, "
        "product_line = excluded.product_line, modified_at = excluded.modified_at, "
        "modified_by = excluded.modified_by, pulled_at = excluded.pulled_at, released_at = NULL, "
        "released_reason = NULL"))


def repoint(conn: Connection, merged: Sequence[tuple[str, str]]) -> int:
    """Leads whose record was merged into another (`merged`: loser id, winner id) follow it to the winner."""
    if not merged:
        return 0
    p = param_mark(conn)
    moved = 0
    for column in ("crm_id", "contact_id"):
        moved += conn.exec_driver_sql(f"UPDATE crm_record SET {column} = {p} WHERE {column} = {p}",
                                      [(winner, loser) for loser, winner in merged]).rowcount
    return moved


def release(conn: Connection, deleted: Sequence[str], now: datetime) -> list[int]:
    """Leads whose CRM record was deleted (not merged) lose the link, with the reason; the lead is kept, and gets
    a new record only when it qualifies again. Returns the leads released."""
    if not deleted:
        return []
    records = records_by_crm_id(conn, deleted)
    if not records:
        return []
    p, stamp = param_mark(conn), db_time(conn)
    leads = sorted({r.lead_id for r in records.values()})
    conn.exec_driver_sql(
        f"UPDATE crm_record SET crm_id = NULL, contact_id = NULL, object = 'Lead', pushed = NULL, pushed_at = NULL, "
        f"sending = NULL, released_at = {p}, released_reason = {p} WHERE lead_id = {p}",
        [(stamp(now), f"its CRM record {crm_id} was deleted in the CRM", records[crm_id].lead_id)
         for crm_id in sorted(records)])
    return leads


def save_opportunities(conn: Connection, opportunities: Sequence[CrmOpportunityRecord]
                       ) -> dict[str, CrmOpportunityRecord]:
    """Store the opportunities as pulled; returns what was stored of each before (to tell what changed)."""
    ids = [o.crm_id for o in opportunities]
    before = {row[0]: CrmOpportunityRecord(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5], row[6], row[7],
                                           bool(row[8]), from_db_time(row[9]))
              for row in select_where_in(conn, "SELECT crm_id, account_id, stage_name, closed, won, amount, owner_id, "
                                               "close_date, deleted, modified_at FROM crm_opportunity WHERE crm_id {keys}",
                                         ids)}
    stamp = db_time(conn)
    rows = [(o.crm_id, o.account_id, o.stage_name, o.closed, o.won, o.amount, o.owner_id, o.close_date, o.deleted,
             stamp(o.modified_at)) for o in opportunities]
    columns = ("crm_id", "account_id", "stage_name", "closed", "won", "amount", "owner_id", "close_date", "deleted",
               "modified_at")
    insert_rows(conn, opportunity_t, columns, rows, conflict=("crm_id",), on_conflict=_replace(*columns[1:]))
    return before


def leads_of_opportunities(conn: Connection, ids: Sequence[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for opportunity_id, lead_id in select_where_in(
            conn, "SELECT opportunity_id, lead_id FROM crm_record WHERE opportunity_id {keys} ORDER BY lead_id", ids):
        found.setdefault(opportunity_id, []).append(lead_id)
    return found


def save_activities(conn: Connection, activities: Sequence[CrmActivityRecord]) -> int:
    """Store the logged calls, e-mails and meetings, each on the lead its person record belongs to (None when
    the record is no lead of Handoff's). Returns how many belong to a lead."""
    people = records_by_crm_id(conn, [a.who_id for a in activities if a.who_id])
    stamp = db_time(conn)
    rows = [(a.crm_id, a.who_id, people[a.who_id].lead_id if a.who_id in people else None, a.kind.value, a.owner_id,
             stamp(a.occurred_at), a.subject, a.deleted, stamp(a.modified_at)) for a in activities]
    columns = ("crm_id", "who_id", "lead_id", "kind", "owner_id", "occurred_at", "subject", "deleted", "modified_at")
    insert_rows(conn, CrmRecord.metadata.tables["crm_activity"], columns, rows, conflict=("crm_id",),
                on_conflict=_replace(*columns[1:]))
    return sum(1 for row in rows if row[2] is not None)


def first_contacts(conn: Connection, lead_ids: Sequence[int], kinds: Iterable[ContactKind]) -> dict[int, datetime]:
    """Each lead's earliest logged contact of these kinds (deleted ones left out)."""
    names = sorted(k.value for k in kinds)
    p = param_mark(conn)
    marks = ", ".join(p for _ in names)
    rows = select_where_in(conn, f"SELECT lead_id, MIN(occurred_at) FROM crm_activity WHERE NOT deleted AND kind IN "
                                 f"({marks}) AND lead_id {{keys}} GROUP BY lead_id", sorted(set(lead_ids)), *names)
    return {lead_id: from_db_time(moment) for lead_id, moment in rows}


# ---------------------------------------------------------------- pushing: what changed, and the writes in flight

@dataclass(frozen=True)
class PushCandidate:
    lead_id: int
    email: str | None
    stage: str
    score: int
    fit_grade: str
    qualified_at: datetime | None
    object: CrmObject
    target_id: str | None  # the record Handoff writes (the contact once converted); None: not created yet
    pushed: dict | None
    sending: dict | None
    attempts: int
    assignment_id: int | None = None  # an assignment whose owner the CRM does not hold yet
    owner_id: str | None = None


def push_candidates(conn: Connection, create_at: Sequence[str], *, lead_ids: Sequence[int] | None = None,
                    create_when_assigned: bool = False) -> list[PushCandidate]:
    """Leads whose record may need a write: linked ones scored or moved since their last write, or never written,
    or with an owner to write; unlinked ones standing at a stage that gets a record (and, if their record was
    deleted, qualified since; with `create_when_assigned`, once routing gave them an owner); any with a write in
    flight. Dead-lettered ones wait for a person. `lead_ids` asks for these leads whatever their times (a
    resync, a routing run)."""
    p = param_mark(conn)
    stages = ", ".join(p for _ in create_at) or "NULL"
    base = (
        "SELECT s.lead_id, l.email, s.stage, s.score, s.fit_grade, s.qualified_at, COALESCE(r.object, 'Lead'), "
        "CASE WHEN r.object = 'Contact' THEN r.contact_id ELSE r.crm_id END, r.pushed, r.sending, "
        "COALESCE(r.attempts, 0), a.id, a.owner_crm_id FROM lead_state s JOIN lead l ON l.id = s.lead_id "
        "LEFT JOIN crm_record r ON r.lead_id = s.lead_id LEFT JOIN assignment a ON a.lead_id = s.lead_id "
        "AND a.superseded_at IS NULL AND a.written_at IS NULL AND a.owner_crm_id IS NOT NULL "
        "WHERE l.merged_into_id IS NULL AND r.dead_at IS NULL AND ")
    params: list[Any] = list(create_at)
    linked = "COALESCE(r.contact_id, r.crm_id) IS NOT NULL"
    creatable = f"s.stage IN ({stages})" + (" AND a.id IS NOT NULL" if create_when_assigned else "")
    if lead_ids is not None:
        rows = select_where_in(conn, base + f"({linked} OR ({creatable})) AND s.lead_id {{keys}} "
                                            "ORDER BY s.lead_id", list(lead_ids), *params)
    else:
        unlinked = "(r.lead_id IS NULL OR COALESCE(r.contact_id, r.crm_id) IS NULL)"
        due = (f"(r.sending IS NOT NULL "
               f"OR ({linked} AND (r.pushed_at IS NULL OR s.scored_at > r.pushed_at OR s.stage_changed_at > r.pushed_at "
               f"OR a.id IS NOT NULL)) "
               f"OR ({unlinked} AND {creatable} AND (r.released_at IS NULL OR s.qualified_at > r.released_at)))")
        rows = conn.exec_driver_sql(base + due + " ORDER BY s.lead_id", tuple(params)).fetchall()
    return [PushCandidate(row[0], row[1], row[2], row[3], row[4], from_db_time(row[5]), CrmObject(row[6]), row[7],
                          json.loads(row[8]) if row[8] else None, json.loads(row[9]) if row[9] else None, row[10],
                          row[11], row[12])
            for row in rows]


def interesting_moments(conn: Connection, lead_ids: Sequence[int]) -> dict[int, tuple[str, str | None, str | None, datetime]]:
    """Each lead's activity that last moved its score (type, asset, campaign, when), from the ledger."""
    rows = select_where_in(
        conn,
        "SELECT lead_id, type, asset, campaign, occurred_at FROM (SELECT l.lead_id, a.type, a.asset, a.campaign, "
        "a.occurred_at, ROW_NUMBER() OVER (PARTITION BY l.lead_id ORDER BY l.occurred_epoch DESC, a.id DESC) AS n "
        "FROM score_ledger l JOIN activity a ON a.id = l.activity_id WHERE l.points <> 0 AND l.lead_id {keys}) m "
        "WHERE n = 1", sorted(set(lead_ids)))
    return {row[0]: (row[1], row[2], row[3], from_db_time(row[4])) for row in rows}


def mark_sending(conn: Connection, writes: Sequence[CrmWrite], payloads: dict[int, dict], now: datetime) -> None:
    """Note each write before it is sent (its record's key, the values): a run cut short before the answer is
    recorded leaves them, and the next run asks the CRM what it took instead of sending them again."""
    stamp = db_time(conn)
    rows = [(w.lead_id, w.object.value, w.crm_id if w.object is CrmObject.LEAD else None,
             w.crm_id if w.object is CrmObject.CONTACT else None, json.dumps(payloads[w.lead_id], sort_keys=True),
             stamp(now)) for w in writes]
    insert_rows(conn, record_t, ("lead_id", "object", "crm_id", "contact_id", "sending", "sending_at"), sorted(rows),
                conflict=("lead_id",), on_conflict="DO UPDATE SET sending = excluded.sending, "
                                                   "sending_at = excluded.sending_at")


def record_results(conn: Connection, results: Sequence[WriteResult], payloads: dict[int, dict], now: datetime,
                   max_attempts: int) -> None:
    """What the CRM answered, record by record: a write it took becomes what was pushed (the record's id kept for a
    create); a duplicate is linked to the record the CRM named and written again next run; a transient failure
    counts an attempt (dead-lettered after `max_attempts`); a failure that will not pass is dead-lettered."""
    stamp, p = db_time(conn), param_mark(conn)
    at = stamp(now)
    done, linked, failed = [], [], []
    for r in results:
        payload = payloads[r.lead_id]
        if r.outcome in (Outcome.WRITTEN, Outcome.CREATED):
            done.append((r.lead_id, r.crm_id, json.dumps(payload["values"], sort_keys=True), payload["object"]))
        elif r.outcome is Outcome.DUPLICATE:
            linked.append((r.lead_id, r.crm_id, (r.object or CrmObject.LEAD).value))
        else:
            failed.append((r.lead_id, r.outcome, (r.error_code or "")[:60] or None, r.message))
    if done:
        done.sort(key=lambda row: row[0])  # in lead order, as the pull's writes to these rows go
        _record_pushed(conn, done, at)
        conn.exec_driver_sql(f"UPDATE handoff_queue SET done_at = {p} WHERE done_at IS NULL AND queue = 'crm_sync' "
                             f"AND lead_id {in_keys(conn)}", (at, keys_param(conn, [row[0] for row in done])))
        owners = [payloads[lead_id]["assignment_id"] for lead_id, *_ in done if payloads[lead_id].get("assignment_id")]
        if owners:  # the CRM holds the owner routing chose: its notifications may go
            conn.exec_driver_sql(f"UPDATE assignment SET written_at = {p} WHERE id = {p} AND written_at IS NULL",
                                 [(at, assignment_id) for assignment_id in owners])
    if linked:  # the record the CRM named: a contact is written to as the person's contact
        conn.exec_driver_sql(
            f"UPDATE crm_record SET object = {p}, crm_id = CASE WHEN {p} = 'Lead' THEN COALESCE(crm_id, {p}) ELSE crm_id "
            f"END, contact_id = CASE WHEN {p} = 'Contact' THEN {p} ELSE contact_id END, sending = NULL, "
            f"sending_at = NULL, pushed = NULL, pushed_at = NULL WHERE lead_id = {p}",
            [(obj, obj, crm_id, obj, crm_id, lead_id) for lead_id, crm_id, obj in linked])
    if failed:
        conn.exec_driver_sql(
            f"UPDATE crm_record SET sending = NULL, sending_at = NULL, attempts = attempts + 1, error_code = {p}, "
            f"error = {p}, failed_at = {p}, dead_at = CASE WHEN {p} OR attempts + 1 >= {p} THEN {p} ELSE NULL END "
            f"WHERE lead_id = {p}",
            [(code, message, at, outcome is Outcome.FAILED, max_attempts, at, lead_id)
             for lead_id, outcome, code, message in failed])


_PUSHED = ("pushed_at = {at}, sending = NULL, sending_at = NULL, attempts = 0, error_code = NULL, error = NULL, "
           "failed_at = NULL, crm_id = CASE WHEN {obj} = 'Lead' THEN COALESCE(crm_id, {id}) ELSE crm_id END, "
           "contact_id = CASE WHEN {obj} = 'Contact' THEN COALESCE(contact_id, {id}) ELSE contact_id END")


def _record_pushed(conn: Connection, done: Sequence[tuple[int, str | None, str, str]], at: Any) -> None:
    """Writes the CRM took (lead, record id, values as JSON, object), in lead order. On PostgreSQL one statement for
    them all: a statement per record, each a round trip, was 8.5 of the 17 s a push of 100,000 took there; SQLite
    has no round trips, and keeps executemany."""
    p = param_mark(conn)
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql(
            f"UPDATE crm_record SET pushed = CASE WHEN pushed IS NULL THEN {p} ELSE {_merge_json(conn, p)} END, "
            + _PUSHED.format(at=p, obj=p, id=p) + f" WHERE lead_id = {p}",
            [(values, values, at, obj, crm_id, obj, crm_id, lead_id) for lead_id, crm_id, values, obj in done])
        return
    columns = list(zip(*done))
    conn.exec_driver_sql(
        "UPDATE crm_record SET pushed = CASE WHEN pushed IS NULL THEN v.new_values ELSE "
        f"{_merge_json(conn, 'v.new_values')} END, " + _PUSHED.format(at="%s", obj="v.new_object", id="v.new_id")
        + " FROM unnest(%s::integer[], %s::text[], %s::text[], %s::text[]) AS v(lead_key, new_id, new_values, "
        "new_object) WHERE crm_record.lead_id = v.lead_key",
        (at, *[list(column) for column in columns]))


def _merge_json(conn: Connection, p: str) -> str:
    """SQL that lays the JSON object `p` over the stored `pushed` object (the fields written now over the rest)."""
    if conn.dialect.name == "sqlite":
        return f"json_patch(pushed, {p})"
    return f"(pushed::jsonb || {p}::jsonb)::text"


def touch_pushed(conn: Connection, lead_ids: Sequence[int], now: datetime) -> None:
    """Leads looked at whose CRM record already holds what Handoff would write: not looked at again until they change."""
    if not lead_ids:
        return
    p = param_mark(conn)
    conn.exec_driver_sql(f"UPDATE crm_record SET pushed_at = {p} WHERE lead_id = {p}",
                         [(db_time(conn)(now), lead_id) for lead_id in sorted(lead_ids)])


def clear_sending(conn: Connection, lead_ids: Sequence[int]) -> None:
    """Writes the CRM did not take before a run was cut short: forgotten, to be planned again from what changed."""
    if not lead_ids:
        return
    p = param_mark(conn)
    conn.exec_driver_sql(f"UPDATE crm_record SET sending = NULL, sending_at = NULL WHERE lead_id = {p}",
                         [(lead_id,) for lead_id in sorted(lead_ids)])


def in_flight(conn: Connection) -> list[tuple[int, dict]]:
    rows = conn.exec_driver_sql("SELECT lead_id, sending FROM crm_record WHERE sending IS NOT NULL ORDER BY lead_id")
    return [(lead_id, json.loads(sending)) for lead_id, sending in rows]


def dead_letters(conn: Connection, limit: int | None = None) -> list[dict]:
    sql = ("SELECT r.lead_id, l.email, r.object, COALESCE(r.contact_id, r.crm_id), r.error_code, r.error, r.attempts, "
           "r.dead_at FROM crm_record r JOIN lead l ON l.id = r.lead_id WHERE r.dead_at IS NOT NULL "
           "ORDER BY r.dead_at DESC, r.lead_id")
    rows = conn.exec_driver_sql(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
    names = ("lead_id", "email", "object", "crm_id", "error_code", "error", "attempts", "dead_at")
    return [dict(zip(names, row[:-1]), dead_at=from_db_time(row[-1])) for row in rows]


def requeue(conn: Connection, lead_ids: Sequence[int] | None = None) -> int:
    """Give dead-lettered records their attempts back (all, or these leads'): the next run writes them again."""
    sql = "UPDATE crm_record SET dead_at = NULL, attempts = 0 WHERE dead_at IS NOT NULL"
    if lead_ids is None:
        return conn.exec_driver_sql(sql).rowcount
    p = param_mark(conn)
    return conn.exec_driver_sql(sql + f" AND lead_id = {p}", [(lead_id,) for lead_id in lead_ids]).rowcount
