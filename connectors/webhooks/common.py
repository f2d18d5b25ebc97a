"""What every webhook reader shares: the refusal, the delivery, constant-time checks and the polling path's
screening of what a request carries."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping, Protocol

import orjson

from connectors.records import Unreadable, loads_body, reject_unreadable
from domain.activity import ActivityRecord, PersonRecord, Rejection, dump_raw, screen, screen_people

MAX_BODY_BYTES = 1024 * 1024  # a tool's batch is far smaller; a bigger body is refused before it is read


class Refused(Exception):
    """A request Handoff does not take: 400 (not the tool's format), 401 (signature, token or timestamp), 413 (too
    big). `reason` is one line that never holds the secret or the body."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass
class Delivery:
    """What one request carries, as the polling path would produce it (already screened)."""

    activities: list[ActivityRecord] = field(default_factory=list)
    people: list[PersonRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class WebhookReader(Protocol):
    source: str

    def read(self, method: str, url: str, headers: Mapping[str, str], body: bytes, now: datetime,
             received_at: datetime | None = None) -> Delivery:
        """Verifies the request first (raising Refused), then reads it: a signature's freshness against
        `received_at` (this machine's clock; `now` when not given), the records against `now`."""
        ...


@dataclass(frozen=True)
class Limits:
    """The polling path's screening limits, and the largest body read."""

    max_payload_bytes: int = 64 * 1024
    future_tolerance: timedelta = timedelta(minutes=10)
    max_body_bytes: int = MAX_BODY_BYTES

    @classmethod
    def from_settings(cls) -> "Limits":
        from config.settings import get_settings

        settings = get_settings()
        return cls(settings.max_payload_bytes, timedelta(minutes=settings.future_tolerance_minutes))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (a plain dict is not case-insensitive)."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of a signature or secret."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def hmac_base64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def check_size(body: bytes, limits: Limits) -> None:
    if len(body) > limits.max_body_bytes:
        raise Refused(413, f"the body is {len(body)} bytes, more than {limits.max_body_bytes}")


def parse_json(body: bytes, what: str) -> Any:
    """The body's JSON, read apart when a record in it does not parse; a body that is no JSON is refused."""
    try:
        return loads_body(body)
    except orjson.JSONDecodeError:
        raise Refused(400, f"the body is not JSON ({what} expected)") from None


def odd_record(source: str, record: Any, what: str) -> Rejection:
    """The rejection of an element of a body that is not the record it should be."""
    if isinstance(record, Unreadable):
        return reject_unreadable(source, record)
    return Rejection(source, None, f"{what} is not a JSON object", dump_raw(record))


def delivered(activities: list[ActivityRecord], people: list[PersonRecord], rejections: list[Rejection],
              now: datetime, limits: Limits) -> Delivery:
    """The records screened as the polling path screens a page: oversized or future activities, and people whose
    details cannot be stored, become rejections."""
    accepted, late = screen(activities, now=now, max_payload_bytes=limits.max_payload_bytes,
                            future_tolerance=limits.future_tolerance)
    kept, refused = screen_people(people)
    return Delivery(accepted, kept, rejections + late + refused)
