"""The Salesforce stand-in's org in memory: records and their indexes, writes under the org's rules, and queries.

Rules a real org would enforce and this one does: field types and lengths, required fields, read-only fields,
restricted picklists, references to live records of the right type, inactive owners, unique external ids, converted
leads refusing updates, the lead duplicate rule (e-mail matches a live lead or contact: DUPLICATES_DETECTED with its
duplicateResult) and the active lead assignment rule. Writes journal their before-images so an allOrNone call can
roll back. People's work (sandbox.salesforce_people) goes through the same store with their own user stamps.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from sandbox import soql
from sandbox.salesforce_people import Workforce, WorkRates
from sandbox.salesforce_schema import RecordError, SObject, build_schema, coerce, full_id, make_id, render
from sandbox.world import World

VERSIONS = ("52.0", "55.0", "57.0", "58.0", "59.0", "60.0", "61.0", "62.0")
BATCH_DEFAULT, BATCH_MIN = 2000, 200
CURSORS_PER_USER = 10  # Salesforce keeps ten open query cursors per user and drops the oldest
CURSOR_IDLE_SECONDS = 15 * 60
PEOPLE_BASE = 62 ** 8  # ids of records people create come from their own range, so API writes never shift them
DUPLICATE_MESSAGE = "Use one of these records?"
CLOSED_STAGES = ("Closed Won", "Closed Lost")
# The active lead assignment rule: by country to that country's rep, every other lead to the inbound queue.
COUNTRY_REP = {"US": "jordan", "CA": "priya", "GB": "oliver", "DE": "jonas", "NL": "emma", "FR": "sophie"}
COUNTRY_NAMES = {"united states": "US", "usa": "US", "canada": "CA", "united kingdom": "GB", "uk": "GB",
                 "germany": "DE", "netherlands": "NL", "france": "FR"}


@dataclass
class WriteContext:
    """Who writes, when, and which of the org's automations run for the call."""

    user: str
    now: int
    version: str = "59.0"
    assign: bool = True
    duplicate_rule: bool = True
    from_text: bool = False  # Bulk CSV cells: "" leaves a field alone, "#N/A" clears it
    record_fault: Callable[[str | None], RecordError | None] = lambda record_id: None


@dataclass
class Cursor:
    id: str
    plan: soql.Plan
    rows: list[dict]
    user: str
    batch: int
    touched: float = field(default_factory=time.monotonic)


class Org:
    def __init__(self, world: World, rates: WorkRates | None = None):
        self.world = world
        self.schema = build_schema()
        self.by_prefix = {o.prefix: o for o in self.schema.values()}
        self.records: dict[str, dict[str, dict]] = {name: {} for name in self.schema}
        self.meta: dict[str, dict] = {}  # hidden per-record state (when a lead's owner was set)
        self.counters: dict[str, int] = {}
        self.external: dict[tuple[str, str], dict[str, str]] = {}
        self.emails: dict[str, set[str]] = {}
        self.accounts_by_name: dict[str, str] = {}
        self.activities_by_who: dict[str, set[str]] = {}
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()
        self.lock = threading.RLock()
        self.journal: list | None = None
        self.depth = 0  # transactions open in the journal
        self.staff: dict[str, dict] = {}  # user key -> {"id", "role", "product_line", "timezone", "active"}
        self.queue_id = self.rule_id = self.org_id = ""
        self.workforce = Workforce(self, rates or WorkRates())
        from sandbox.salesforce_seed import seed  # the starting data needs the org's write helpers
        seed(self)

    # ------------------------------------------------------------ ids and lookups

    def new_id(self, sobject: SObject, people: bool = False) -> str:
        key = sobject.prefix + ("p" if people else "")
        n = self.counters.get(key, 0) + 1
        self.counters[key] = n
        return make_id(sobject.prefix, n + (PEOPLE_BASE if people else 0))

    def sobject(self, name: str) -> SObject | None:
        return self.schema.get(name.lower())

    def find(self, record_id: str | None) -> tuple[str, dict] | None:
        if not record_id:
            return None
        sobject = self.by_prefix.get(record_id[:3])
        record = self.records[sobject.name.lower()].get(record_id) if sobject else None
        return (sobject.name, record) if record is not None else None

    def user(self, key: str) -> str:
        return self.staff[key]["id"]

    @property
    def now(self) -> int:
        return self.world.clock

    # ------------------------------------------------------------ the store

    def insert(self, name: str, values: dict, user: str, at: int, people: bool = False) -> dict:
        """Store a new record as given (no checks): seed data, people's work, and validated API writes."""
        sobject = self.schema[name.lower()]
        record = {f.name: False if f.type == "boolean" else f.default for f in sobject.fields.values()
                  if f.default is not None or f.type == "boolean"}
        record.update(values)
        record.update({"Id": self.new_id(sobject, people), "IsDeleted": False, "CreatedDate": at, "CreatedById": user,
                       "LastModifiedDate": at, "LastModifiedById": user, "SystemModstamp": at})
        _derive(sobject, record, at)
        self._remember(sobject.name, record["Id"], None)
        self.records[sobject.name.lower()][record["Id"]] = record
        self._index(sobject, record)
        if sobject.name == "Lead" or sobject.name == "Opportunity":
            self._owner_set(sobject, record, at)
        return record

    def put(self, name: str, record_id: str, changes: dict, user: str, at: int) -> dict:
        """Change a stored record and stamp who and when (no checks)."""
        sobject = self.schema[name.lower()]
        record = self.records[sobject.name.lower()][record_id]
        self._remember(sobject.name, record_id, record)
        self._unindex(sobject, record)
        old_owner = record.get("OwnerId")
        record.update(changes)
        record.update({"LastModifiedDate": at, "LastModifiedById": user, "SystemModstamp": at})
        _derive(sobject, record, at)
        self._index(sobject, record)
        if record.get("OwnerId") != old_owner and sobject.name in ("Lead", "Opportunity"):
            self._owner_set(sobject, record, at)
        return record

    def _owner_set(self, sobject: SObject, record: dict, at: int) -> None:
        self.meta.setdefault(record["Id"], {})["owner_set"] = at
        self.workforce.owner_set(sobject.name, record, at)

    def owner_set_at(self, record_id: str) -> int | None:
        return self.meta.get(record_id, {}).get("owner_set")

    def _remember(self, name: str, record_id: str, record: dict | None) -> None:
        if self.journal is not None:
            before = dict(record) if record is not None else None
            self.journal.append((name, record_id, before, dict(self.meta.get(record_id, {}))))

    def begin(self) -> int:
        """Open the journal, or mark where a transaction nested in the open one starts (an sObject Collections call
        inside a composite call); the mark is what `end` rolls back to."""
        if self.journal is None:
            self.journal, self.depth = [], 0
        self.depth += 1
        return len(self.journal)

    def end(self, rollback: bool, mark: int = 0) -> None:
        journal = self.journal or []
        undone = journal[mark:] if rollback else []
        del journal[len(journal) - len(undone):]
        self.depth -= 1
        if self.depth <= 0:
            self.journal, self.depth = None, 0
        for name, record_id, before, meta in reversed(undone):
            sobject = self.schema[name.lower()]
            store = self.records[name.lower()]
            if record_id in store:
                self._unindex(sobject, store[record_id])
            if before is None:
                store.pop(record_id, None)
                self.meta.pop(record_id, None)
            else:
                store[record_id] = before
                self.meta[record_id] = meta
                self._index(sobject, before)

    # ------------------------------------------------------------ indexes

    def _index(self, sobject: SObject, record: dict) -> None:
        live, rid, name = not record["IsDeleted"], record["Id"], sobject.name
        if live:
            for f in sobject.fields.values():
                if f.external_id and record.get(f.name):
                    self.external.setdefault((name, f.name), {})[record[f.name].lower()] = rid
        if record.get("Email") and name in ("Lead", "Contact"):
            self.emails.setdefault(record["Email"].lower(), set()).add(rid)
        if live and name == "Account" and record.get("Name"):
            self.accounts_by_name.setdefault(record["Name"].lower(), rid)
        if name in ("Task", "Event") and record.get("WhoId"):
            self.activities_by_who.setdefault(record["WhoId"], set()).add(rid)

    def _unindex(self, sobject: SObject, record: dict) -> None:
        rid, name = record["Id"], sobject.name
        for f in sobject.fields.values():
            value = record.get(f.name)
            if f.external_id and value and self.external.get((name, f.name), {}).get(value.lower()) == rid:
                del self.external[(name, f.name)][value.lower()]
        if record.get("Email") and name in ("Lead", "Contact"):
            self.emails.get(record["Email"].lower(), set()).discard(rid)
        if name == "Account" and record.get("Name") and self.accounts_by_name.get(record["Name"].lower()) == rid:
            del self.accounts_by_name[record["Name"].lower()]
        if name in ("Task", "Event") and record.get("WhoId"):
            self.activities_by_who.get(record["WhoId"], set()).discard(rid)

    # ------------------------------------------------------------ API writes, checked as a real org checks them

    def create(self, sobject: SObject, values: dict, ctx: WriteContext) -> dict:
        if not sobject.createable:
            raise RecordError("INVALID_TYPE_FOR_OPERATION", f"entity type cannot be inserted: {sobject.name}")
        clean = self._clean(sobject, values, ctx, creating=True)
        missing = [f.name for f in sobject.fields.values()
                   if f.required and f.createable and clean.get(f.name, f.default) in (None, "")]
        if missing:
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        self._check_references(sobject, clean)
        self._check_unique(sobject, clean, None)
        self._fault(ctx, None)
        if sobject.name == "Lead" and ctx.duplicate_rule and clean.get("Email"):
            self._check_duplicates(clean["Email"], ctx.version)
        if sobject.field("OwnerId"):
            clean.setdefault("OwnerId", ctx.user)
        if sobject.name == "Lead" and ctx.assign:
            clean["OwnerId"] = self.assignment_owner(clean)
        return self.insert(sobject.name, clean, ctx.user, ctx.now)

    def update(self, sobject: SObject, record_id: str, values: dict, ctx: WriteContext) -> dict:
        record = self.live(sobject, record_id)
        if sobject.name == "Lead" and record.get("IsConverted"):
            raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        body = {k: v for k, v in values.items() if k.lower() != "id"}
        clean = self._clean(sobject, body, ctx, creating=False)
        emptied = [n for n, v in clean.items() if v in (None, "") and sobject.field(n).required]
        if emptied:
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(emptied)}]", emptied)
        self._check_references(sobject, clean)
        self._check_unique(sobject, clean, record["Id"])
        self._fault(ctx, record["Id"])
        if sobject.name == "Lead" and ctx.assign:
            owner = self.assignment_owner({**record, **clean})
            if owner != record.get("OwnerId"):
                clean["OwnerId"] = owner
        return self.put(sobject.name, record["Id"], clean, ctx.user, ctx.now)

    def upsert(self, sobject: SObject, id_field: str, key: str, values: dict, ctx: WriteContext) -> tuple[dict, bool]:
        f = sobject.field(id_field)
        if f is None or not f.external_id:
            raise RecordError("NOT_FOUND", "Provided external ID field does not exist or is not accessible: "
                                           f"{id_field}")
        body = {k: v for k, v in values.items() if k.lower() != f.name.lower()}
        existing = self.external.get((sobject.name, f.name), {}).get(str(key).lower())
        if existing:
            return self.update(sobject, existing, body, ctx), False
        return self.create(sobject, {**body, f.name: key}, ctx), True

    def delete(self, sobject: SObject, record_id: str, ctx: WriteContext) -> dict:
        if not sobject.createable:
            raise RecordError("INVALID_TYPE_FOR_OPERATION", f"entity type cannot be deleted: {sobject.name}")
        record = self.live(sobject, record_id)
        self._fault(ctx, record["Id"])
        return self.put(sobject.name, record["Id"], {"IsDeleted": True}, ctx.user, ctx.now)

    def live(self, sobject: SObject, record_id: str) -> dict:
        normal = full_id(record_id)
        record = self.records[sobject.name.lower()].get(normal) if normal else None
        if normal is None or (record is None and normal[:3] != sobject.prefix):
            raise RecordError("MALFORMED_ID", f"{sobject.label} ID: id value of incorrect type: {record_id}", ["Id"])
        if record is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if record["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        return record

    def _clean(self, sobject: SObject, values: dict, ctx: WriteContext, creating: bool) -> dict:
        clean = {}
        for key, raw in values.items():
            if key == "attributes":
                continue
            f = sobject.field(key)
            if f is None:
                raise RecordError("INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}", [key])
            if not (f.createable if creating else f.updateable):
                raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE",
                                  f"Unable to create/update fields: {f.name}. Please check the security settings of "
                                  "this field and verify that it is read/write for your profile or permission set.",
                                  [f.name])
            if ctx.from_text and raw == "":
                continue
            clean[f.name] = coerce(f, None if ctx.from_text and raw == "#N/A" else raw, ctx.from_text)
        return clean

    def _check_references(self, sobject: SObject, clean: dict) -> None:
        for name, value in clean.items():
            f = sobject.field(name)
            if f.type != "reference" or value is None:
                continue
            found = self.find(value)
            if found is not None and found[0] not in f.reference_to:
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", f"{f.label}: id value of incorrect type: {value}",
                                  [f.name])
            if found is None or found[1]["IsDeleted"]:
                raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
            if name == "OwnerId" and found[0] == "User" and not found[1].get("IsActive"):
                raise RecordError("INACTIVE_OWNER_OR_USER", f"operation performed with inactive user [{value}] as "
                                  f"owner of {sobject.name.lower()}", [])

    def _check_unique(self, sobject: SObject, clean: dict, record_id: str | None) -> None:
        for name, value in clean.items():
            f = sobject.field(name)
            if f.unique and value:
                other = self.external.get((sobject.name, f.name), {}).get(value.lower())
                if other and other != record_id:
                    raise RecordError("DUPLICATE_VALUE", f"duplicate value found: {f.name} duplicates value on record "
                                      f"with id: {other}", [])

    def _fault(self, ctx: WriteContext, record_id: str | None) -> None:
        problem = ctx.record_fault(record_id)
        if problem is not None:
            raise problem

    def _check_duplicates(self, email: str, version: str) -> None:
        """The active lead duplicate rule: the same e-mail on a live lead or contact blocks the save."""
        matches = sorted(i for i in self.emails.get(email.lower(), ()) if self._blocks(i))
        if not matches:
            return
        results = []
        for kind, prefix in (("Lead", "00Q"), ("Contact", "003")):
            ids = [m for m in matches if m.startswith(prefix)]
            if ids:
                records = [{"additionalInformation": [], "fieldDiffs": [], "matchConfidence": 100.0,
                            "record": {"attributes": {"type": kind, "url": record_url(version, kind, i)}, "Id": i}}
                           for i in ids]
                results.append({"entityType": kind, "errors": [], "matchEngine": "ExactMatchEngine",
                                "matchRecords": records, "rule": f"Handoff_{kind}_Email_Match", "size": len(records),
                                "success": True})
        duplicate = {"allowSave": False, "duplicateRule": "Handoff_Lead_Duplicate_Rule",
                     "duplicateRuleEntityType": "Lead", "errorMessage": DUPLICATE_MESSAGE, "matchResults": results}
        raise RecordError("DUPLICATES_DETECTED", DUPLICATE_MESSAGE, [], {"duplicateResult": duplicate})

    def _blocks(self, record_id: str) -> bool:
        """Whether a record the e-mail index names counts for the duplicate rule: live, and not a converted lead."""
        record = self.find(record_id)[1]
        return not record["IsDeleted"] and not record.get("IsConverted")

    def assignment_owner(self, lead: dict) -> str:
        country = (lead.get("Country") or "").strip()
        code = COUNTRY_NAMES.get(country.lower(), country.upper())
        rep = COUNTRY_REP.get(code)
        return self.user(rep) if rep else self.queue_id

    # ------------------------------------------------------------ queries

    def run_query(self, text: str, include_deleted: bool) -> tuple[soql.Plan, list[dict]]:
        plan = soql.plan(text, self.schema, self.find, self.now)
        store = self.records[plan.sobject.name.lower()]
        if plan.keys:
            candidates = self._by_keys(plan.sobject, store, *plan.keys, include_deleted)
        else:
            candidates = store.values()
        rows = plan.run(r for r in candidates if include_deleted or not r["IsDeleted"])
        return plan, rows

    def _by_keys(self, sobject: SObject, store: dict, name: str, values: list, include_deleted: bool) -> list[dict]:
        """Candidates for an `Id` / `Email` / external id equality or IN list, from the indexes."""
        if name == "Id":
            ids = values
        elif name == "Email" and sobject.name in ("Lead", "Contact"):
            ids = [i for v in values for i in self.emails.get(v, ())]
        elif name == "Email":
            return list(store.values())
        else:
            index = self.external.get((sobject.name, name), {})
            ids = [index[v] for v in values if v in index]
            if include_deleted:  # the external id index holds live records only
                ids += [r["Id"] for r in store.values() if r["IsDeleted"]]
        seen, found = set(), []
        for i in ids:
            if i in store and i not in seen:
                seen.add(i)
                found.append(store[i])
        return found

    def open_cursor(self, plan: soql.Plan, rows: list[dict], user: str, batch: int) -> Cursor:
        self._expire_cursors()
        mine = [c for c in self.cursors.values() if c.user == user]
        if len(mine) >= CURSORS_PER_USER:
            del self.cursors[mine[0].id]
        cursor_id = make_id("01g", int.from_bytes(secrets.token_bytes(5), "big"))
        cursor = Cursor(cursor_id, plan, rows, user, batch)
        self.cursors[cursor_id] = cursor
        return cursor

    def cursor(self, cursor_id: str) -> Cursor | None:
        self._expire_cursors()
        cursor = self.cursors.get(cursor_id)
        if cursor is not None:
            cursor.touched = time.monotonic()
            self.cursors.move_to_end(cursor_id)
        return cursor

    def _expire_cursors(self) -> None:
        cutoff = time.monotonic() - CURSOR_IDLE_SECONDS
        for cursor_id in [c.id for c in self.cursors.values() if c.touched < cutoff]:
            del self.cursors[cursor_id]

    def page(self, cursor: Cursor, start: int, size: int, version: str) -> dict:
        """One page of a query's result; the last page closes the cursor, as Salesforce's does."""
        rows, plan = cursor.rows, cursor.plan
        if plan.count:
            self.cursors.pop(cursor.id, None)
            return {"totalSize": len(rows), "done": True, "records": []}
        chunk = rows[start:start + size]
        body: dict[str, Any] = {"totalSize": len(rows), "done": start + size >= len(rows),
                                "records": [plan.render(r, version) for r in chunk]}
        if body["done"]:
            self.cursors.pop(cursor.id, None)
        else:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor.id}-{start + size}"
        return body

    def render_record(self, sobject: SObject, record: dict, version: str, fields: list[str] | None = None) -> dict:
        url = record_url(version, sobject.name, record["Id"])
        out: dict[str, Any] = {"attributes": {"type": sobject.name, "url": url}}
        chosen = [sobject.field(n) for n in fields] if fields else list(sobject.fields.values())
        for f in chosen:
            out[f.name] = render(f, record.get(f.name))
        return out

    # ------------------------------------------------------------ time

    def catch_up(self) -> None:
        """Let the org's people do what they did up to the world's clock (before any request is answered)."""
        self.workforce.catch_up(self.now)


def record_url(version: str, kind: str, record_id: str) -> str:
    return f"/services/data/v{version}/sobjects/{kind}/{record_id}"


def _derive(sobject: SObject, record: dict, at: int) -> None:
    """Fields the org computes itself."""
    name = sobject.name
    if name in ("Lead", "Contact", "User"):
        record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)
    elif name == "Opportunity":
        record["IsClosed"] = record.get("StageName") in CLOSED_STAGES
        record["IsWon"] = record.get("StageName") == "Closed Won"
    elif name == "Task":
        closed = record.get("Status") == "Completed"
        if closed and not record.get("IsClosed"):
            record["CompletedDateTime"] = at
        record["IsClosed"] = closed
