"""Marketo's webhooks ("Call Webhook" in a trigger campaign's flow), verified by a shared secret in a header.

Marketo signs nothing (Marketo developer docs, "Webhooks"): the admin writes the payload template, whose string
tokens Marketo quotes itself, and may add custom headers. Handoff's template is in docs/webhooks.md; the secret
travels in an `X-Handoff-Webhook-Secret` header (Webhooks Actions > Set Custom Header), compared in constant
time. A webhook carries no activity id, so the key is the lead, the activity type and its time
(webhook-<lead id>-<type>-<epoch ms>) unless the template gives an `id`; the activity feed keys the same activity
by its marketoGUID, so one read both ways is stored twice (docs/webhooks.md: use webhooks for hand-raises).
{{system.dateTime}} carries no zone: such a time is read in `options.webhook_timezone` (default UTC).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from config.sources import SourceConfig
from connectors.records import convert_guarded
from connectors.webhooks.common import Delivery, Limits, Refused, check_size, delivered, header, parse_json, same
from domain.activity import (
    PERSON_FIELDS, ActivityRecord, PersonRecord, Rejection, build_activity, dump_raw, employee_count, normalize_email,
    parse_instant,
)

SECRET_HEADER = "X-Handoff-Webhook-Secret"


class MarketoReader:
    def __init__(self, source: SourceConfig, secret: str, limits: Limits | None = None):
        self.source = source.name
        self._secret = secret
        self._forms = source.form_rules()
        self._zone = ZoneInfo(str(source.options.get("webhook_timezone", "UTC")))
        self._limits = limits or Limits.from_settings()

    def read(self, method: str, url: str, headers: Mapping[str, str], body: bytes, now: datetime,
             received_at: datetime | None = None) -> Delivery:
        check_size(body, self._limits)
        given = header(headers, SECRET_HEADER)
        if not given:
            raise Refused(401, f"no {SECRET_HEADER} header")
        if not same(given.strip(), self._secret):
            raise Refused(401, f"the {SECRET_HEADER} is not this source's secret")
        data = parse_json(body, "one object, the template of docs/webhooks.md")
        if not isinstance(data, dict):
            raise Refused(400, "a Marketo webhook body is one JSON object (the template of docs/webhooks.md)")
        records = convert_guarded(self.source, self._record, data)
        records = records if isinstance(records, list) else [records]
        return delivered([r for r in records if isinstance(r, ActivityRecord)],
                         [r for r in records if isinstance(r, PersonRecord)],
                         [r for r in records if isinstance(r, Rejection)], now, self._limits)

    def _record(self, data: dict) -> list[ActivityRecord | PersonRecord | Rejection]:
        lead = data.get("lead_id")
        lead = None if lead in (None, "") else lead
        type_name, asset = data.get("type"), data.get("asset")
        if not type_name and isinstance(data.get("form"), str) and data["form"]:
            kind, asset = self._forms.classify(data["form"])
            type_name = kind.value
        moment = self._moment(data.get("occurred_at"))
        key = data.get("id")
        if key in (None, "") and lead is not None and moment is not None:
            key = f"webhook-{lead}-{type_name}-{int(moment.timestamp() * 1000)}"
        raw = dump_raw(data)
        activity = build_activity(
            source=self.source, external_id=key, type_name=type_name or "no type and no form",
            occurred_at=moment or data.get("occurred_at"), raw=raw, email=data.get("email"), source_contact_id=lead,
            asset=asset or None, campaign=data.get("campaign") or None,
        )
        person = self._person(data, lead, raw)
        return [activity, person] if person is not None else [activity]

    def _moment(self, value: Any) -> datetime | None:
        """The activity's time; a time with no zone ({{system.dateTime}}) is in the instance's zone."""
        moment = parse_instant(value)
        if moment is not None and isinstance(value, str) and not value.strip().isdigit():
            try:
                naive = datetime.fromisoformat(value.strip()).tzinfo is None
            except ValueError:
                naive = False
            if naive:
                moment = moment.replace(tzinfo=self._zone).astimezone(timezone.utc)
        return moment

    def _person(self, data: dict, lead: Any, raw: str) -> PersonRecord | None:
        fields = {name: data.get(name) or None for name in PERSON_FIELDS if data.get(name) not in (None, "")}
        if not fields:
            return None
        if "company_size" in fields:
            fields["company_size"] = employee_count(fields["company_size"])
        return PersonRecord(self.source, None if lead is None else str(lead), normalize_email(data.get("email")),
                            **fields, raw=raw)
