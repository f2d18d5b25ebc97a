"""The generic webhook for any other tool: records in the JSON Lines format of docs/sources.md, one or more lines
in the body, with `Authorization: Bearer <the source's webhook_token>`. Each line is read as a file's line is."""

from __future__ import annotations

import codecs
from datetime import datetime
from typing import Mapping

import orjson

from config.sources import SourceConfig
from connectors.marketing.jsonl import read_line
from connectors.webhooks.common import Delivery, Limits, Refused, check_size, delivered, header, same


class JsonLinesReader:
    def __init__(self, source: SourceConfig, token: str, limits: Limits | None = None):
        self.source = source.name
        self._token = token
        self._limits = limits or Limits.from_settings()

    def read(self, method: str, url: str, headers: Mapping[str, str], body: bytes, now: datetime,
             received_at: datetime | None = None) -> Delivery:
        check_size(body, self._limits)
        scheme, _, token = (header(headers, "Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(401, "no Authorization: Bearer token")
        if not same(token.strip(), self._token):
            raise Refused(401, "the bearer token is not this source's webhook token")
        if body.startswith(codecs.BOM_UTF8):
            body = body[len(codecs.BOM_UTF8):]
        lines = [(number, raw.rstrip(b"\r")) for number, raw in enumerate(body.split(b"\n"), start=1) if raw.strip()]
        if not any(_is_object(raw) for _, raw in lines):
            raise Refused(400, "no line of the body is a JSON object (JSON Lines records expected)")
        activities, people, rejections = [], [], []
        for number, raw in lines:
            activity, person, refused = read_line(self.source, raw, f"line {number}: ")
            activities += [activity] if activity is not None else []
            people += [person] if person is not None else []
            rejections += refused
        return delivered(activities, people, rejections, now, self._limits)


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False
