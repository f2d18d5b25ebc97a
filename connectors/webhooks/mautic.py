"""Mautic's webhooks (Settings > Webhooks): form submissions, page hits (tracked e-mail clicks among them), e-mail
opens and points changes, verified by their `Webhook-Signature` header.

The wire, as Mautic's WebhookBundle writes it (Http/Client.php, Model/WebhookModel.php; developer docs
"Webhooks"): a POST whose JSON body groups the queued events by type, {"mautic.form_on_submit": [{...,
"timestamp"}], ...}, one event per request in immediate mode, up to the webhook limit in queue mode;
`Webhook-Signature` is base64(HMAC-SHA256(the raw body, the webhook's secret)). Each event is read into the key
the activity feed gives it (form.submitted<submission id>, page.hit<hit id>, email.read<stat id>), so one read by
webhook and again by the poll is stored once. A points change carries no activity Handoff scores (Handoff keeps
its own score); it brings the contact's details.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from config.sources import SourceConfig
from connectors.marketing.mautic import CONTACT_FIELDS, contact_person
from connectors.records import convert_guarded
from connectors.webhooks.common import (
    Delivery, Limits, Refused, check_size, delivered, header, hmac_base64, odd_record, parse_json, same,
)
from domain.activity import ActivityRecord, ActivityType, PersonRecord, Rejection, build_activity, dump_raw, normalize_email

SIGNATURE = "Webhook-Signature"
FORM_SUBMITTED, PAGE_HIT = "mautic.form_on_submit", "mautic.page_on_hit"
EMAIL_OPENED, POINTS_CHANGED = "mautic.email_on_open", "mautic.lead_points_change"

Records = list[ActivityRecord | PersonRecord | Rejection]


class MauticReader:
    def __init__(self, source: SourceConfig, secret: str, limits: Limits | None = None):
        self.source = source.name
        self._secret = secret.encode()
        self._forms = source.form_rules()
        self._fields = {**CONTACT_FIELDS, **(source.options.get("contact_fields") or {})}
        self._limits = limits or Limits.from_settings()
        self._events: dict[str, Callable[[Any], Records]] = {
            FORM_SUBMITTED: self._form_submitted, PAGE_HIT: self._page_hit, EMAIL_OPENED: self._email_opened,
            POINTS_CHANGED: self._points_changed,
        }

    def read(self, method: str, url: str, headers: Mapping[str, str], body: bytes, now: datetime,
             received_at: datetime | None = None) -> Delivery:
        check_size(body, self._limits)
        given = header(headers, SIGNATURE)
        if not given:
            raise Refused(401, f"no {SIGNATURE} header")
        if not same(given.strip(), hmac_base64(self._secret, body)):
            raise Refused(401, f"the {SIGNATURE} does not match the body")
        data = parse_json(body, "an object of event types")
        if not isinstance(data, dict):
            raise Refused(400, "a Mautic webhook body is a JSON object of event types")
        activities, people, rejections = [], [], []
        for kind, events in data.items():
            read = self._events.get(kind)
            if read is None:  # a type Handoff does not read (contact updates, ...), or the old top-level timestamp
                continue
            for event in events if isinstance(events, list) else [events]:
                if not isinstance(event, dict):
                    rejections.append(odd_record(self.source, event, f"a {kind} event"))
                    continue
                records = convert_guarded(self.source, read, event)
                for record in records if isinstance(records, list) else [records]:
                    (activities if isinstance(record, ActivityRecord) else people if isinstance(record, PersonRecord)
                     else rejections).append(record)
        return delivered(activities, people, rejections, now, self._limits)

    # -- one event of each type --------------------------------------------------------------------------------

    def _form_submitted(self, event: dict) -> Records:
        submission = _dict(event.get("submission"))
        name = _dict(submission.get("form")).get("name")
        kind, asset = self._forms.classify(name) if isinstance(name, str) and name else (None, None)
        person = self._person(submission.get("lead"))
        results = _dict(submission.get("results"))
        email = person.email if person and person.email else normalize_email(results.get("email"))
        return self._activity(event, "form.submitted", submission.get("id"),
                              kind.value if kind else "form.submitted without a form name", asset, None,
                              submission.get("dateSubmitted"), person, email)

    def _page_hit(self, event: dict) -> Records:
        hit = _dict(event.get("hit"))
        person = self._person(event.get("contact") or event.get("lead") or hit.get("lead"))
        if hit.get("source") == "email":  # a tracked link in an e-mail: a click
            email = _dict(hit.get("email"))
            kind, asset, campaign = ActivityType.EMAIL_CLICK, hit.get("sourceName") or email.get("name"), _campaign(email)
        else:
            url = hit.get("url")
            path = (urlsplit(url).path or "/") if isinstance(url, str) and url else None
            kind, asset, campaign = ActivityType.PAGE_VIEW, path, None
        return self._activity(event, "page.hit", hit.get("id"), kind.value, asset, campaign, hit.get("dateHit"), person)

    def _email_opened(self, event: dict) -> Records:
        stat = _dict(event.get("stat"))
        email = _dict(stat.get("email"))
        person = self._person(event.get("contact") or event.get("lead") or stat.get("lead"))
        asset = email.get("name") or stat.get("emailName") or stat.get("subject")
        return self._activity(event, "email.read", stat.get("id"), ActivityType.EMAIL_OPEN.value, asset,
                              _campaign(email), stat.get("dateRead"), person)

    def _points_changed(self, event: dict) -> Records:
        person = self._person(event.get("contact") or event.get("lead"))
        if person is None:
            return [Rejection(self.source, None, "points change without a contact", dump_raw(event))]
        return [person]

    def _activity(self, event: dict, kind: str, number: Any, type_name: str, asset: Any, campaign: Any,
                  occurred_at: Any, person: PersonRecord | None, email: str | None = None) -> Records:
        record = build_activity(
            source=self.source,
            external_id=None if number in (None, "") else f"{kind}{number}",
            type_name=type_name,
            occurred_at=occurred_at or event.get("timestamp"),
            raw=dump_raw(event),
            email=email or (person.email if person else None),
            source_contact_id=person.source_contact_id if person else None,
            asset=asset or None,
            campaign=campaign or None,
        )
        return [record, person] if person is not None else [record]

    def _person(self, contact: Any) -> PersonRecord | None:
        return contact_person(self.source, contact, self._fields)


def _campaign(email: dict) -> str | None:
    """As the activity feed's e-mail lookup names it: the e-mail's UTM campaign, else its category."""
    return _dict(email.get("utmTags")).get("utmCampaign") or _dict(email.get("category")).get("title")


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
