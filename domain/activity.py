"""The one shape every marketing activity takes once it leaves a connector, and the checks it must pass."""

from __future__ import annotations

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

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@lru_cache(maxsize=262_144)
def _normalized(value: str) -> str | None:
    email = value.strip().lower()
    return email if _EMAIL.match(email) else None


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


def parse_instant(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO-8601 text or epoch milliseconds; None when unparseable."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        return None
    elif isinstance(value, (int, float)):
        try:
            moment = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
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
    return moment.astimezone(timezone.utc)


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

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PERSON_FIELDS if getattr(self, name) is not None}


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
    """A record that could not be accepted, kept with its reason and raw payload."""

    source: str
    external_id: str | None
    reason: str
    raw_json: str


_RAW_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dump_raw(raw: Any) -> str:
    """Compact, stable JSON text for a raw payload; unserializable values become strings."""
    return orjson.dumps(raw, option=_RAW_OPTIONS, default=str).decode()


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
    ext = None if external_id is None or external_id == "" else str(external_id)
    if ext is None:
        return Rejection(source, None, "missing external id", raw_json)
    kind = _TYPES.get(type_name) if isinstance(type_name, str) else None
    if kind is None:
        return Rejection(source, ext, f"unknown activity type {type_name!r}", raw_json)
    moment = parse_instant(occurred_at)
    if moment is None:
        return Rejection(source, ext, f"unparseable occurred_at {occurred_at!r}", raw_json)
    normalized = normalize_email(email)
    contact = None if source_contact_id in (None, "") else str(source_contact_id)
    if normalized is None and contact is None:
        why = f"invalid e-mail {email!r} and no contact id" if email else "missing identity: no e-mail and no contact id"
        return Rejection(source, ext, why, raw_json)
    return ActivityRecord(
        source=source,
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
