"""HubSpot's webhooks: an app's webhook events and workflows' "Send a webhook" action, verified by signature v3.

Signature v3 (developers.hubspot.com, "Validating requests"; changelog "Introducing version 3 of webhook
signatures"): `X-HubSpot-Signature-v3` is base64(HMAC-SHA256(the app's client secret, method + URI + raw body +
timestamp)), `X-HubSpot-Request-Timestamp` is the sending time in epoch milliseconds, and a request older than 5
minutes is refused. The URI is the full URL HubSpot posted to (scheme, host, path and query), with the escapes
%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B decoded. The older v1 and v2 signatures carry no timestamp, so a
replay cannot be told from a delivery: they are not taken.

What is read:
- An app's webhook events (a JSON array of {eventId, subscriptionId, portalId, appId, occurredAt,
  subscriptionType, attemptNumber, objectId, propertyName, propertyValue, changeSource, ...}). HubSpot sends no
  webhook for a form submission or a marketing e-mail as such, but a submission sets the contact's
  `recent_conversion_event_name` to the form's name: a `contact.propertyChange` (or `object.propertyChange` of a
  contact) of that property is read as that form's submission. Every other event is not an activity and is
  passed over.
- A workflow's webhook: the enrolled contact as the contacts API gives it ({"vid", "properties": {name: {"value"}},
  "form-submissions": [...]} or {"id", "properties": {name: value}}): the person's details, and each form
  submission it lists (else the one its recent_conversion_* properties name).
Either way a submission's key is its contact and time, form-submission-<contact id>-<epoch ms>: the same however
it came. HubSpot's events API numbers a submission its own way, so in a real portal the poll stores such a
submission a second time under that number (docs/webhooks.md says what that costs and how to avoid it).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping

from config.sources import SourceConfig
from connectors.marketing.hubspot import contact_person
from connectors.records import convert_guarded
from connectors.webhooks.common import (
    Delivery, Limits, Refused, check_size, delivered, header, hmac_base64, odd_record, parse_json, same,
)
from domain.activity import ActivityRecord, PersonRecord, Rejection, build_activity, dump_raw, parse_instant

SIGNATURE = "X-HubSpot-Signature-v3"
TIMESTAMP = "X-HubSpot-Request-Timestamp"
MAX_AGE_MS = 5 * 60 * 1000
CONVERSION_PROPERTY = "recent_conversion_event_name"
PROPERTY_CHANGES = ("contact.propertyChange", "object.propertyChange")
CONTACT_OBJECT_TYPE = "0-1"
_SIGNED_ESCAPES = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


def signed_uri(url: str) -> str:
    """The URL as HubSpot puts it in the signed text: the listed escapes decoded."""
    return _SIGNED_ESCAPES.sub(lambda match: chr(int(match.group(1), 16)), url)


def submission_key(contact: Any, moment: datetime) -> str:
    return f"form-submission-{contact}-{int(moment.timestamp() * 1000)}"


class HubSpotReader:
    def __init__(self, source: SourceConfig, secret: str, limits: Limits | None = None):
        self.source = source.name
        self._secret = secret.encode()
        self._forms = source.form_rules()
        self._limits = limits or Limits.from_settings()

    def read(self, method: str, url: str, headers: Mapping[str, str], body: bytes, now: datetime,
             received_at: datetime | None = None) -> Delivery:
        check_size(body, self._limits)
        self._verify(method, url, headers, body, received_at or now)
        data = parse_json(body, "an array of events or a contact")
        activities: list[ActivityRecord] = []
        people: list[PersonRecord] = []
        rejections: list[Rejection] = []
        if isinstance(data, list):
            for event in data:
                record = convert_guarded(self.source, self._event, event) if isinstance(event, dict) \
                    else odd_record(self.source, event, "a webhook event")
                if isinstance(record, ActivityRecord):
                    activities.append(record)
                elif record is not None:
                    rejections.append(record)
        elif isinstance(data, dict):
            records = convert_guarded(self.source, self._contact, data)
            for record in records if isinstance(records, list) else [records]:
                (activities if isinstance(record, ActivityRecord) else people if isinstance(record, PersonRecord)
                 else rejections).append(record)
        else:
            raise Refused(400, "a HubSpot webhook body is an array of events or a contact object")
        return delivered(activities, people, rejections, now, self._limits)

    def _verify(self, method: str, url: str, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        given, stamp = header(headers, SIGNATURE), header(headers, TIMESTAMP)
        if not given:
            raise Refused(401, f"no {SIGNATURE} header")
        if not stamp or not stamp.strip().isdigit():
            raise Refused(401, f"{TIMESTAMP} is missing or not epoch milliseconds")
        stamp = stamp.strip()
        age = int(now.timestamp() * 1000) - int(stamp)
        if age > MAX_AGE_MS:
            raise Refused(401, f"{TIMESTAMP} is {age // 1000} s old, more than {MAX_AGE_MS // 1000} s")
        if -age > MAX_AGE_MS:
            raise Refused(401, f"{TIMESTAMP} is {-age // 1000} s ahead of this server's clock")
        signed = method.upper().encode() + signed_uri(url).encode() + body + stamp.encode()
        if not same(given.strip(), hmac_base64(self._secret, signed)):
            raise Refused(401, f"the {SIGNATURE} does not match the request")

    # -- an app's webhook event -------------------------------------------------------------------------------

    def _event(self, event: dict) -> ActivityRecord | Rejection | None:
        kind = event.get("subscriptionType")
        if kind not in PROPERTY_CHANGES or event.get("propertyName") != CONVERSION_PROPERTY:
            return None
        if kind == "object.propertyChange" and event.get("objectTypeId") not in (None, CONTACT_OBJECT_TYPE):
            return None
        return self._submission(event, event.get("objectId"), event.get("propertyValue"), event.get("occurredAt"))

    # -- a workflow's webhook: the enrolled contact ----------------------------------------------------------------

    def _contact(self, contact: dict) -> list[ActivityRecord | PersonRecord | Rejection]:
        raw = contact.get("properties")
        properties = {name: value.get("value") if isinstance(value, dict) else value
                      for name, value in (raw.items() if isinstance(raw, dict) else ())}
        ident = next((value for value in (contact.get("vid"), contact.get("canonical-vid"), contact.get("id"),
                                          properties.get("hs_object_id")) if value not in (None, "")), None)
        if ident is None:
            return [Rejection(self.source, None, "a contact without vid, id or hs_object_id", dump_raw(contact))]
        records: list[ActivityRecord | PersonRecord | Rejection] = [
            contact_person(self.source, {"id": ident, "properties": properties})]
        submissions = contact.get("form-submissions")
        if isinstance(submissions, list):
            for submission in submissions:
                records.append(self._submission(submission, ident, submission.get("title"), submission.get("timestamp"))
                               if isinstance(submission, dict) else odd_record(self.source, submission, "a form submission"))
        elif properties.get(CONVERSION_PROPERTY):
            records.append(self._submission(contact, ident, properties[CONVERSION_PROPERTY],
                                            properties.get("recent_conversion_date")))
        return records

    def _submission(self, raw: dict, contact: Any, form: Any, occurred_at: Any) -> ActivityRecord | Rejection:
        if contact in (None, ""):
            return Rejection(self.source, None, "form submission without a contact id", dump_raw(raw))
        moment = parse_instant(occurred_at)
        if moment is None:
            return Rejection(self.source, None, f"form submission at an unreadable time {str(occurred_at)[:80]!r}",
                             dump_raw(raw))
        kind, asset = self._forms.classify(form) if isinstance(form, str) and form else (None, None)
        return build_activity(
            source=self.source,
            external_id=submission_key(contact, moment),
            type_name=kind.value if kind else "form submission without a form name",
            occurred_at=moment,
            raw=dump_raw(raw),
            source_contact_id=contact,
            asset=asset,
        )
