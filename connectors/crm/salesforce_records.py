"""How Salesforce's records read as the CRM-neutral ones of domain/crm.py and how Handoff's values are written:
one declared stream per kind of record pulled, typed reads that refuse a value they cannot take, and date-times
in Salesforce's own form."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from typing import Any, Callable, Mapping

from config.crm import CrmConfig
from domain.activity import text_problem
from domain.crm import (
    CREATE_FIELDS, HANDOFF_FIELDS, ContactKind, CrmAccount, CrmActivity, CrmObject, CrmOpportunity, CrmPerson,
    CrmUser, CrmWrite, OWNER_FIELD, Outcome, WriteResult,
)

ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?\Z")
_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})\Z", re.ASCII)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}\Z", re.ASCII)
_TIMES = ("mql_at", "moment_at")  # Handoff's fields that hold a date-time
# Errors a later run may not meet again: the record was busy, or the org was
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUEST_RUNNING_TOO_LONG",
                             "SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION", "QUERY_TIMEOUT", "PROCESSING_HALTED"})


class Unreadable(ValueError):
    """A record the connector cannot take as it came; the message says which field and why."""


class Unwritable(ValueError):
    """A value Handoff asked to write that has no form on the wire (NaN, an object)."""


# ---------------------------------------------------------------- reading

def parse_datetime(text: str) -> datetime:
    """An aware UTC datetime from Salesforce's `2026-11-20T10:00:00.000+0000` (or Z, or +hh:mm)."""
    match = _DATETIME.match(text)
    if not match:
        raise ValueError(f"not a date-time: {text[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    offset = 0
    if zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = (int(digits[:2]) * 60 + int(digits[2:])) * (1 if zone[0] == "+" else -1)
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, timezone.utc)
        return moment - timedelta(minutes=offset)
    except OverflowError:
        raise ValueError(f"out of range: {text[:40]!r}") from None


class Row:
    """One record as the API gave it, read field by field; a value of the wrong kind is Unreadable."""

    def __init__(self, raw: Any):
        if not isinstance(raw, Mapping):
            raise Unreadable(f"not a record but {type(raw).__name__}")
        self.raw = raw

    def text(self, name: str | None) -> str | None:
        if not name:
            return None
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise Unreadable(f"{name} is {type(value).__name__}, not text")
        problem = text_problem(value)
        if problem:
            raise Unreadable(f"{name} {problem}")
        return value

    def id(self, name: str, required: bool = False) -> str | None:
        value = self.text(name)
        if value is None or value == "":
            if required:
                raise Unreadable(f"{name} is missing")
            return None
        if not ID.match(value):
            raise Unreadable(f"{name} is not a Salesforce id: {value[:40]!r}")
        return value

    def flag(self, name: str) -> bool:
        value = self.raw.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise Unreadable(f"{name} is {type(value).__name__}, not true or false")
        return value

    def moment(self, name: str, required: bool = False) -> datetime | None:
        value = self.text(name)
        if value is None:
            if required:
                raise Unreadable(f"{name} is missing")
            return None
        try:
            return parse_datetime(value)
        except ValueError:
            raise Unreadable(f"{name} is not a date-time: {value[:40]!r}") from None

    def number(self, name: str) -> float | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Unreadable(f"{name} is {type(value).__name__}, not a number")
        if not math.isfinite(value) or abs(value) >= 1e18:
            raise Unreadable(f"{name} is out of range: {value!r}")
        return float(value)

    def day(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            if _DAY.match(value) and date.fromisoformat(value):
                return value
        except ValueError:
            pass
        raise Unreadable(f"{name} is not a date: {value[:40]!r}")


# ---------------------------------------------------------------- streams: what a pull reads of each kind

@dataclass(frozen=True)
class Stream:
    kind: str  # its watermark's name (connectors.crm.base.PULLED)
    object: str
    fields: tuple[str, ...]
    read: Callable[[Row], Any]
    into: str  # the CrmChanges list it fills


def _unique(*names: str | None) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for name in names:
        if name and name.lower() not in {n.lower() for n in seen}:
            seen[name] = None
    return tuple(seen)


_SYSTEM = ("Id", "IsDeleted", "SystemModstamp")


def streams(config: CrmConfig) -> list[Stream]:
    """Every kind a pull reads, in the order of connectors.crm.base.PULLED."""
    key, recycle, line = config.fields["key"], config.recycle_reason_field, config.product_line_field

    def person(obj: CrmObject) -> Callable[[Row], CrmPerson]:
        lead = obj is CrmObject.LEAD

        def read(row: Row) -> CrmPerson:
            return CrmPerson(
                object=obj, crm_id=row.id("Id", required=True), email=row.text("Email"), handoff_key=row.text(key),
                owner_id=row.id("OwnerId"), status=row.text("Status") if lead else None,
                converted=row.flag("IsConverted") if lead else False,
                contact_id=row.id("ConvertedContactId") if lead else None,
                opportunity_id=row.id("ConvertedOpportunityId") if lead else None,
                account_id=row.id("ConvertedAccountId" if lead else "AccountId"),
                recycle_reason=row.text(recycle) if lead else None, deleted=row.flag("IsDeleted"),
                master_id=row.id("MasterRecordId"), modified_by=row.id("LastModifiedById"),
                modified_at=row.moment("SystemModstamp", required=True), product_line=row.text(line))
        return read

    def user(row: Row) -> CrmUser:
        return CrmUser(crm_id=row.id("Id", required=True), email=row.text("Email"), name=row.text("Name"),
                       active=row.flag("IsActive"), manager_id=row.id("ManagerId"), timezone=row.text("TimeZoneSidKey"),
                       modified_at=row.moment("SystemModstamp", required=True))

    def account(row: Row) -> CrmAccount:
        return CrmAccount(crm_id=row.id("Id", required=True), name=row.text("Name"), website=row.text("Website"),
                          owner_id=row.id("OwnerId"), deleted=row.flag("IsDeleted"),
                          modified_at=row.moment("SystemModstamp", required=True))

    def opportunity(row: Row) -> CrmOpportunity:
        return CrmOpportunity(crm_id=row.id("Id", required=True), account_id=row.id("AccountId"),
                              stage_name=row.text("StageName"), closed=row.flag("IsClosed"), won=row.flag("IsWon"),
                              amount=row.number("Amount"), owner_id=row.id("OwnerId"), close_date=row.day("CloseDate"),
                              deleted=row.flag("IsDeleted"), modified_at=row.moment("SystemModstamp", required=True))

    def task(row: Row) -> CrmActivity:
        occurred = row.moment("CompletedDateTime") or row.moment("CreatedDate", required=True)
        return _activity(row, task_kind(row.text("TaskSubtype"), row.text("Type")), occurred)

    def event(row: Row) -> CrmActivity:
        return _activity(row, ContactKind.MEETING, row.moment("StartDateTime", required=True))

    people = ("Email", key, "OwnerId", "MasterRecordId", "LastModifiedById", line)
    return [
        Stream("users", "User", ("Id", "SystemModstamp", "Email", "Name", "IsActive", "ManagerId", "TimeZoneSidKey"),
               user, "users"),
        Stream("accounts", "Account", _unique(*_SYSTEM, "Name", "Website", "OwnerId"), account, "accounts"),
        Stream("leads", "Lead", _unique(*_SYSTEM, *people, "Status", "IsConverted", "ConvertedContactId",
                                        "ConvertedOpportunityId", "ConvertedAccountId", recycle),
               person(CrmObject.LEAD), "people"),
        Stream("contacts", "Contact", _unique(*_SYSTEM, *people, "AccountId"), person(CrmObject.CONTACT), "people"),
        Stream("opportunities", "Opportunity", _unique(*_SYSTEM, "AccountId", "StageName", "IsClosed", "IsWon",
                                                       "Amount", "OwnerId", "CloseDate"), opportunity, "opportunities"),
        Stream("tasks", "Task", _unique(*_SYSTEM, "WhoId", "OwnerId", "Subject", "Type", "TaskSubtype", "CreatedDate",
                                        "CompletedDateTime"), task, "activities"),
        Stream("events", "Event", _unique(*_SYSTEM, "WhoId", "OwnerId", "Subject", "StartDateTime"), event,
               "activities"),
    ]


def _activity(row: Row, kind: ContactKind, occurred: datetime) -> CrmActivity:
    return CrmActivity(crm_id=row.id("Id", required=True), who_id=row.id("WhoId"), kind=kind, owner_id=row.id("OwnerId"),
                       occurred_at=occurred, subject=row.text("Subject"), deleted=row.flag("IsDeleted"),
                       modified_at=row.moment("SystemModstamp", required=True))


def task_kind(subtype: str | None, kind: str | None) -> ContactKind:
    """A Task's kind of contact: its subtype (set by "Log a Call", "Send Email"), else the Type a rep picked."""
    for value in (subtype, kind):
        word = (value or "").strip().lower()
        if word == "call":
            return ContactKind.CALL
        if word in ("email", "listemail"):
            return ContactKind.EMAIL
        if word == "meeting":
            return ContactKind.MEETING
    return ContactKind.TASK


def modstamp(raw: Any) -> datetime | None:
    """A record's SystemModstamp when it can be read (a refused record still moves its kind's watermark)."""
    try:
        return Row(raw).moment("SystemModstamp")
    except Unreadable:
        return None


def read_page(stream: Stream, records: list) -> tuple[list, list[tuple[str, str, Any]], datetime | None]:
    """A page's records as domain records, the ones that cannot be read as (kind, reason, raw), and the newest
    change time on the page. One record's problem never stops the rest."""
    taken, refused, newest = [], [], None
    for raw in records:
        try:
            record = stream.read(Row(raw))
        except Exception as exc:  # noqa: BLE001 - whatever breaks on one record is that record's, refused with it
            refused.append((stream.kind, str(exc) if isinstance(exc, Unreadable) else
                            f"could not be read: {type(exc).__name__}: {exc}"[:500], raw))
            stamp = modstamp(raw)
        else:
            taken.append(record)
            stamp = record.modified_at
        if stamp is not None and (newest is None or stamp > newest):
            newest = stamp
    return taken, refused, newest


# ---------------------------------------------------------------- Handoff's fields as the CRM holds them

def handoff_values(raw: Mapping, config: CrmConfig) -> dict[str, Any]:
    """Handoff's fields of a record read back, as domain.crm.comparable writes them (times as aware-UTC ISO text,
    whole scores as int), and its owner; a field the CRM holds no value in is left out."""
    values: dict[str, Any] = {OWNER_FIELD: raw["OwnerId"]} if raw.get("OwnerId") else {}
    for name in HANDOFF_FIELDS:
        field = config.fields.get(name)
        value = raw.get(field) if field else None
        if value is None:
            continue
        if name in _TIMES and isinstance(value, str):
            try:
                value = parse_datetime(value).isoformat()
            except ValueError:
                pass  # kept as it came: it then differs from what was pushed, and is written again
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        values[name] = value
    return values


# ---------------------------------------------------------------- writing

def format_datetime(moment: datetime) -> str:
    """A time as Salesforce writes it, to the millisecond in UTC (a naive one is taken as UTC)."""
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def wire_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unwritable(f"{value!r} is not a number Salesforce takes")
        return value
    raise Unwritable(f"a {type(value).__name__} has no form on the wire")


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def record_values(write: CrmWrite, config: CrmConfig) -> dict[str, Any]:
    """The org's fields for one write: the key always; Handoff's own fields (and, for a create, the person's
    details) mapped through the configuration; never a blank; a name with no field mapped is left out."""
    allowed = {*HANDOFF_FIELDS, OWNER_FIELD} | (set(CREATE_FIELDS) if write.creates else set())
    mapping = {**config.create_fields, **config.fields, OWNER_FIELD: "OwnerId"}
    out: dict[str, Any] = {config.fields["key"]: write.key}
    for name, value in write.values.items():
        field = mapping.get(name)
        if name not in allowed or field is None or blank(value):
            continue
        out[field] = wire_value(value)
    return out


# ---------------------------------------------------------------- what the org answered

def record_result(write: CrmWrite, item: Any) -> WriteResult:
    """One record's result of an sObject Collections call."""
    if not isinstance(item, dict):
        return WriteResult(write.lead_id, Outcome.TRANSIENT, write.crm_id, "NO_RESULT", "no answer for this record")
    if item.get("success") is True:
        outcome = Outcome.CREATED if write.creates else Outcome.WRITTEN
        return WriteResult(write.lead_id, outcome, item.get("id") or write.crm_id)
    errors = item.get("errors") if isinstance(item.get("errors"), list) else []
    error = errors[0] if errors and isinstance(errors[0], dict) else {}
    return error_result(write, str(error.get("statusCode") or "UNKNOWN"), str(error.get("message") or ""),
                        error.get("fields"), duplicate_of(error))


def error_result(write: CrmWrite, code: str, message: str, fields: Any = None,
                 duplicate: tuple[str, CrmObject] | None = None) -> WriteResult:
    if isinstance(fields, list) and fields:
        message = f"{message} (fields: {', '.join(map(str, fields))})"
    if code == "DUPLICATES_DETECTED" and duplicate:
        return WriteResult(write.lead_id, Outcome.DUPLICATE, duplicate[0], code, message, object=duplicate[1])
    outcome = Outcome.TRANSIENT if code in TRANSIENT_CODES or code == "DUPLICATES_DETECTED" else Outcome.FAILED
    return WriteResult(write.lead_id, outcome, write.crm_id, code, message)


def duplicate_of(error: Mapping) -> tuple[str, CrmObject] | None:
    """The record a DUPLICATES_DETECTED error names, and what it is: a contact before a lead (the person is a
    contact already, and Handoff writes to the contact then)."""
    result = error.get("duplicateResult") if isinstance(error, Mapping) else None
    matches = []
    for match in (result or {}).get("matchResults") or [] if isinstance(result, Mapping) else []:
        for record in (match or {}).get("matchRecords") or []:
            found = (record or {}).get("record") or {}
            entity = match.get("entityType")
            if isinstance(found.get("Id"), str) and entity in ("Lead", "Contact"):
                matches.append((entity != "Contact", found["Id"], CrmObject(entity)))
    return min(matches)[1:] if matches else None
