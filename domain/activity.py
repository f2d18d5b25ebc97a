"""The one shape every marketing activity takes once it leaves a connector, and the checks it must pass."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from functools import lru_cache
from typing import Any, Iterable

import orjson


class ActivityType(StrEnum):
    """Canonical activity types; every tool's native events map onto these."""

    NEWSLETTER_SIGNUP = "newsletter_signup"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    EMAIL_BOUNCE = "email_bounce"
    UNSUBSCRIBE = "unsubscribe"
    PAGE_VIEW = "page_view"
    FORM_FILL = "form_fill"
    WHITEPAPER_DOWNLOAD = "whitepaper_download"
    WEBINAR_REGISTRATION = "webinar_registration"
    WEBINAR_ATTENDED = "webinar_attended"
    DEMO_REQUEST = "demo_request"
    TRIAL_SIGNUP = "trial_signup"
    CONTACT_SALES = "contact_sales"


_TYPES = {kind.value: kind for kind in ActivityType}

PERSON_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "industry",
    "company_size",
    "country",
    "product_interest",
    "lead_source_channel",
)

# No white space, control characters or lone surrogates anywhere in an address.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+@[^@\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+"
                    r"\.[^@\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
EMAIL_LENGTH = 320  # RFC 5321: 64 for the local part, 255 for the domain

# The longest keys a record may carry; longer ones are refused, not cut (a key cut short names another record).
SOURCE_LENGTH = 40
EXTERNAL_ID_LENGTH = 200
CONTACT_ID_LENGTH = 200

# Activity times before this are sentinels (0, "0001-01-01") or mistakes, not marketing activities.
EARLIEST_ACTIVITY = datetime(1990, 1, 1, tzinfo=timezone.utc)
# An epoch number below this is in seconds: in milliseconds it would be before March 1973.
EPOCH_MILLISECONDS_FROM = 100_000_000_000


@lru_cache(maxsize=262_144)
def _normalized(value: str) -> str | None:
    email = value.strip().lower()
    return email if len(email) <= EMAIL_LENGTH and _EMAIL.match(email) else None


def normalize_email(value: Any) -> str | None:
    """Lower-cased, trimmed e-mail, or None when the value is not an e-mail address."""
    return _normalized(value) if isinstance(value, str) else None


@lru_cache(maxsize=65_536)
def asset_key(asset: str | None) -> str | None:
    """What an asset name matches by: case-folded, with runs of white space as one space. Marketers type asset
    names into the rulebook by hand, and tools spell the same asset differently ("State of RevOps 2026" and
    "State of Revops  2026")."""
    if not asset:
        return None
    return " ".join(asset.split()).casefold() or None


def text_problem(value: str) -> str | None:
    """Why a text cannot be stored as it came, or None: a NUL (PostgreSQL refuses it, SQLite's functions stop at
    it) or a lone surrogate (no encoding can write it). Other control characters are kept, and shown safely."""
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (a lone surrogate)"
    return None


def key_problem(value: Any, what: str, longest: int) -> str | None:
    """Why `value` cannot key a record (None when it can): keys are text or whole numbers, stored exactly."""
    if isinstance(value, float) or isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"{what} {_shown(value)} is not text or a whole number"
    text = str(value)
    if len(text) > longest:
        return f"{what} is {len(text)} characters long, more than {longest}"
    problem = text_problem(text)
    return f"{what} {problem}" if problem else None


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_instant(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO-8601 text or an epoch number (milliseconds, or seconds when below
    EPOCH_MILLISECONDS_FROM); None when unparseable."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        return None
    elif isinstance(value, (int, float)):
        try:
            seconds = value / 1000 if abs(value) >= EPOCH_MILLISECONDS_FROM else value
            moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit() or text[:1] == "-" and text[1:].isdigit():
            return parse_instant(int(text))
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is timezone.utc:
            return moment  # the common case: already UTC
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # a time at the very edge of the calendar, e.g. 9999-12-31T23:00-01:00
        return None


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """A person as one source knows them: identity plus firmographic fields (None = unknown)."""

    source: str
    source_contact_id: str | None
    email: str | None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    industry: str | None = None
    company_size: int | None = None
    country: str | None = None
    product_interest: str | None = None
    lead_source_channel: str | None = None
    # The payload the person came in (text or bytes), for the quarantine should the record be refused
    raw: str | bytes | None = field(default=None, compare=False, repr=False)

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PERSON_FIELDS if getattr(self, name) is not None}


COMPANY_SIZE_MAX = 2_147_483_647  # the column is a 32-bit integer


def employee_count(value: Any) -> Any:
    """A company size as a whole number when the value says one exactly (250, 250.0, "250"); any other value
    is passed on as it came, for the screen to refuse with the value named (never dropped unsaid)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return value
    exact = math.isfinite(number) and number.is_integer() and abs(number) <= 2**53  # beyond, a double is not exact
    return int(number) if exact else value


def person_problem(person: PersonRecord) -> str | None:
    """Why a person's details cannot be stored as they came, or None. A field is never dropped or cut to fit:
    the whole person record is refused, with the field named."""
    if person.source_contact_id is not None:
        problem = key_problem(person.source_contact_id, "contact id", CONTACT_ID_LENGTH)
        if problem:
            return problem
    for name in PERSON_FIELDS:
        value = getattr(person, name)
        if value is None:
            continue
        if name == "company_size":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COMPANY_SIZE_MAX:
                return f"company_size {_shown(value)} is not a number of employees (0 to {COMPANY_SIZE_MAX:,})"
            continue
        if not isinstance(value, str):
            return f"{name} {_shown(value)} is not text"
        problem = text_problem(value)
        if problem:
            return f"{name} {problem}"
    return None


@dataclass(slots=True)
class ActivityRecord:
    """One marketing activity, keyed by (source, external_id). Not frozen only because frozen dataclasses are
    five times slower to build (a million per benchmark run); nothing mutates one."""

    source: str
    external_id: str
    type: ActivityType
    occurred_at: datetime
    email: str | None
    source_contact_id: str | None
    raw_json: str
    asset: str | None = None
    campaign: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that could not be accepted, kept with its reason and its payload as it came: text, or the bytes
    when they are not text."""

    source: str
    external_id: str | None
    reason: str
    raw: str | bytes


_RAW_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dump_raw(raw: Any) -> str:
    """Compact, stable JSON text for a raw payload; unserializable values become strings."""
    try:
        return orjson.dumps(raw, option=_RAW_OPTIONS, default=str).decode()
    except orjson.JSONEncodeError:
        # Lone surrogates (written as escapes here), nesting deeper than orjson goes, numbers past 64 bits
        try:
            return json.dumps(raw, sort_keys=True, default=str, separators=(",", ":"))
        except (RecursionError, TypeError, ValueError):
            return repr(raw)


def build_activity(
    *,
    source: str,
    external_id: Any,
    type_name: str | None,
    occurred_at: Any,
    raw: Any,
    email: Any = None,
    source_contact_id: Any = None,
    asset: str | None = None,
    campaign: str | None = None,
    properties: dict[str, Any] | None = None,
) -> ActivityRecord | Rejection:
    """Validate one normalized activity: the connector maps wire fields, this decides accept or reject."""
    raw_json = raw if isinstance(raw, str) else dump_raw(raw)
    if external_id is None or external_id == "":
        return Rejection(source, None, "missing external id", raw_json)
    problem = key_problem(external_id, "external id", EXTERNAL_ID_LENGTH)
    if problem:
        return Rejection(source, None, problem, raw_json)
    ext = str(external_id)
    problem = key_problem(source, "source", SOURCE_LENGTH) if source else "missing source"
    if problem:
        return Rejection(source, ext, problem, raw_json)
    kind = _TYPES.get(type_name) if isinstance(type_name, str) else None
    if kind is None:
        return Rejection(source, ext, f"unknown activity type {_shown(type_name)}", raw_json)
    moment = parse_instant(occurred_at)
    if moment is None:
        return Rejection(source, ext, f"unparseable occurred_at {_shown(occurred_at)}", raw_json)
    if moment < EARLIEST_ACTIVITY:
        return Rejection(source, ext, f"occurred_at {_shown(occurred_at)} is {moment.isoformat()}, before "
                                      f"{EARLIEST_ACTIVITY.year}: not a real activity time", raw_json)
    normalized = normalize_email(email)
    contact = None if source_contact_id in (None, "") else source_contact_id
    if contact is not None:
        problem = key_problem(contact, "contact id", CONTACT_ID_LENGTH)
        if problem:
            return Rejection(source, ext, problem, raw_json)
        contact = str(contact)
    if normalized is None and isinstance(email, str) and _CONTROL.search(email):
        return Rejection(source, ext, f"e-mail {_shown(email)} contains a control character", raw_json)
    if normalized is None and contact is None:
        why = f"invalid e-mail {_shown(email)} and no contact id" if email else "missing identity: no e-mail and no contact id"
        return Rejection(source, ext, why, raw_json)
    for name, value in (("asset", asset), ("campaign", campaign)):
        if value is not None and not isinstance(value, str):
            return Rejection(source, ext, f"{name} {_shown(value)} is not text", raw_json)
        problem = text_problem(value) if value else None
        if problem:
            return Rejection(source, ext, f"{name} {problem}", raw_json)
    return ActivityRecord(
        source=str(source),
        external_id=ext,
        type=kind,
        occurred_at=moment,
        email=normalized,
        source_contact_id=contact,
        raw_json=raw_json,
        asset=asset or None,
        campaign=campaign or None,
        properties=properties or {},
    )


def screen(
    records: Iterable[ActivityRecord], *, now: datetime, max_payload_bytes: int, future_tolerance: timedelta
) -> tuple[list[ActivityRecord], list[Rejection]]:
    """Checks that need the run's clock and limits: oversized payloads and activities from the future."""
    accepted: list[ActivityRecord] = []
    rejected: list[Rejection] = []
    horizon = now + future_tolerance
    for record in records:
        size = len(record.raw_json.encode("utf-8")) if len(record.raw_json) * 4 > max_payload_bytes else 0
        if size > max_payload_bytes:
            reason = f"oversized payload: {size} bytes > {max_payload_bytes}"
            rejected.append(Rejection(record.source, record.external_id, reason, record.raw_json))
        elif record.occurred_at > horizon:
            reason = f"occurred_at {record.occurred_at.isoformat()} is in the future (now {now.isoformat()})"
            rejected.append(Rejection(record.source, record.external_id, reason, record.raw_json))
        else:
            accepted.append(record)
    return accepted, rejected


def screen_people(people: Iterable[PersonRecord]) -> tuple[list[PersonRecord], list[Rejection]]:
    """People whose details can be stored as they came, and the others refused with the field named."""
    accepted: list[PersonRecord] = []
    rejected: list[Rejection] = []
    for person in people:
        problem = person_problem(person)
        if problem is None:
            accepted.append(person)
        else:
            raw = person.raw if person.raw is not None else dump_raw({"contact_id": person.source_contact_id,
                                                                      "email": person.email, **person.fields()})
            rejected.append(Rejection(person.source, person.source_contact_id if isinstance(person.source_contact_id, str)
                                      else None, f"person details refused: {problem}", raw))
    return accepted, rejected
