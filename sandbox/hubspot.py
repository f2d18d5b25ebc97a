"""A local HubSpot that speaks HubSpot's own wire formats over the synthetic world, with its faults.

What it reproduces, and where each behaviour was looked up:
- Auth. Bearer tokens on every API call; `POST /oauth/v1/token` (form body, grant_type=refresh_token with
  client_id, client_secret, refresh_token) answering access_token, refresh_token, expires_in, token_type
  (HubSpot's OAuth v1 spec, HubSpot/HubSpot-public-api-spec-collection PublicApiSpecs/Auth/Oauth/.../v1/oauth.json;
  singer-io/tap-hubspot `acquire_access_token_from_refresh_token`). A bad refresh token is a 400 with
  status BAD_REFRESH_TOKEN, a bad client a 400 with BAD_CLIENT_ID (the message "missing or invalid refresh
  token" as clients match it, e.g. supaglue's HubSpot client). An unknown or missing token is a 401 with
  category INVALID_AUTHENTICATION, an expired one a 401 with category EXPIRED_AUTHENTICATION and the message
  "The OAuth token used to make this call expired N day(s) ago." (HubSpot's Error model: status, message,
  correlationId, category, context). Private-app tokens are accepted and never expire.
- Rate limits. Every API response carries X-HubSpot-RateLimit-Daily, -Daily-Remaining, -Interval-Milliseconds,
  -Max, -Remaining, -Secondly, -Secondly-Remaining; a 429 body is {status: "error", message: "You have reached
  your ten_secondly_rolling limit.", errorType: "RATE_LIMIT", correlationId, policyName: TEN_SECONDLY_ROLLING}
  or policyName DAILY once the daily budget is spent (HubSpot API usage guidelines and changelog 2018-11-06
  "rate limit information headers"; clients in the wild parse exactly these fields).
- CRM contacts v3 (PublicApiSpecs/CRM/Contacts/.../v3/contacts.json): `GET /crm/v3/objects/contacts` with
  limit (default 10, at most 100), after, properties (comma separated) answering results + paging.next.after/link;
  `POST /crm/v3/objects/contacts/batch/read` with inputs (at most 100), properties and idProperty, answering
  200 {status: COMPLETE, results, startedAt, completedAt}, or 207 with numErrors and an OBJECT_NOT_FOUND error.
  Properties come back as strings; hs_object_id, createdate and lastmodifieddate always come along.
- Marketing e-mail events (legacy "Get email events", GET /email/public/v1/events): startTimestamp / endTimestamp
  in epoch milliseconds, both inclusive; limit default 10, 1..1000; an opaque, short-lived `offset` token with
  `hasMore`; events are returned in reverse-chronological order. Event fields per the Email Events Overview:
  id, created, type, recipient, portalId, appId, appName, emailCampaignId, sentBy; OPEN/CLICK carry userAgent,
  browser, location (CLICK also url); BOUNCE carries category, response, status; STATUSCHANGE carries source,
  subscriptions[{id, status}] and portalSubscriptionStatus.
- Events v3 (PublicApiSpecs/Events/.../v3/events.json; HubSpot/hubspot-api-python EventsApi: "sort ... Defaults
  to ascending, prefix with `-` for descending"; limit defaults to 20): GET /events/v3/events with objectType,
  eventType, occurredAfter / occurredBefore (ISO 8601), limit, after, sort; results of {objectType, objectId,
  eventType, occurredAt, id, properties} and paging.next.after. e_visited_page carries hs_url, hs_title,
  hs_session_source (the ExternalUnifiedEvent example); e_submitted_form carries hs_form_id, hs_url, hs_title (as
  clients read it). Fivetran's HubSpot events connector example pages one eventType at a time with limit 1000.
  GET /events/v3/events/event-types lists the event type names ({"eventTypes": [...]}).
- Marketing e-mails v3 (GET /marketing/v3/emails: total, results of id, name, subject, campaign, campaignName
  with marketingCampaignNames=true, allEmailCampaignIds) and forms v3 (GET /marketing/v3/forms: id, name,
  formType, createdAt, updatedAt, archived), both with after paging.

How the world is rendered (HubSpot has no single activity log, so each kind goes where HubSpot keeps it):
e-mail opens, clicks, bounces and unsubscribes are e-mail events (OPEN, CLICK, BOUNCE, STATUSCHANGE with an
UNSUBSCRIBED subscription); page views are e_visited_page; newsletter, demo, trial, contact-sales, white-paper and
webinar-registration forms are e_submitted_form occurrences of HubSpot forms of those names; webinar attendance is
a custom behavioral event `pe{portalId}_webinar_attended` with a `webinar_name` property (HubSpot's own webinar
attendance lives on marketing events, which have no per-occurrence feed).
Data faults: an unknown native type is an e-mail event whose `type` is outside the documented enum (the e-mail
feed is the one a client reads unfiltered); no identity drops recipient / objectId; a bad time is an unparseable
`created` / `occurredAt`; an oversized record carries a > 100 KB userAgent / hs_referrer; a duplicate is served
twice (right after itself, on the next page when the page is full). Late events stay hidden until the world's
clock passes them and then appear in their place, so paging by time returns them.

Webhooks, with a receiver set: HubSpot has no webhook for a form submission as such, but a submission sets the
contact's recent_conversion_event_name, so the app (subscribed to contact.propertyChange of that property) gets
{eventId, subscriptionId, portalId, appId, occurredAt, subscriptionType, attemptNumber, objectId, propertyName,
propertyValue, changeSource, sourceId} events, up to 100 a request, for the submissions that become visible. A
hand-raise made now can instead come as a workflow's "Send a webhook" (delivery "workflow"): the enrolled contact
as the v1 contacts API gives it, with its form-submissions. Both are signed v3 (X-HubSpot-Signature-v3 =
base64(HMAC-SHA256(client secret, "POST" + URL + body + X-HubSpot-Request-Timestamp)), the URL with %3A %2F %3F
%40 %21 %24 %27 %28 %29 %2A %2C %3B decoded; developers.hubspot.com "Validating requests"), with the v1 header
beside. A submission is numbered form-submission-<contact id>-<epoch ms> on the events API and in webhooks alike.
HubSpot retries an app's delivery that failed (no connection, no answer in 5 s, any 4xx or 5xx) up to 10 times over
24 hours, attemptNumber counting up; here the same 10 retries come within about 4 minutes. A workflow's webhook is
not retried after a 4xx other than 429 (developers.hubspot.com, "Webhooks" > Retries, and workflows' webhook
information).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import catalog
from sandbox import world as w
from sandbox.control import control_routes, delay
from sandbox.faults import RequestFaults
from sandbox.webhooks import Outcome, WebhookControl, WebhookSender

_dumps = orjson.dumps  # renders a 1,000-record page several times faster than json


TOOL = "hubspot"
PORTAL_ID = 40_212_733
WEBINAR_EVENT = f"pe{PORTAL_ID}_webinar_attended"
PAGE_VIEW_EVENT = "e_visited_page"
FORM_EVENT = "e_submitted_form"
UNKNOWN_EMAIL_TYPE = "NEW_EVENT_TYPE"
EVENT_TYPES = (
    "e_visited_page", "e_submitted_form", "e_form_submission_v2", "e_ad_interaction", "e_clicked_cta",
    "e_viewed_document", WEBINAR_EVENT,
)
EMAIL_KINDS = {
    w.EMAIL_OPENED: "OPEN", w.EMAIL_CLICKED: "CLICK", w.EMAIL_BOUNCED: "BOUNCE", w.UNSUBSCRIBED: "STATUSCHANGE",
}
FORM_KINDS = {
    w.SUBSCRIBED, w.WHITEPAPER_DOWNLOADED, w.WEBINAR_REGISTERED, w.DEMO_REQUESTED, w.TRIAL_STARTED,
    w.CONTACT_SALES, w.FORM_FILLED,
}
ANALYTICS_SOURCE = {  # HubSpot's hs_analytics_source enumeration for each acquisition channel
    "Paid Search": "PAID_SEARCH", "Organic Search": "ORGANIC_SEARCH", "Webinar": "OFFLINE", "Referral": "REFERRALS",
    "Event": "OFFLINE", "Social": "SOCIAL_MEDIA", "Content Syndication": "OTHER_CAMPAIGNS",
}
DEFAULT_PROPERTIES = ("email", "firstname", "lastname")
ALWAYS_PROPERTIES = ("createdate", "hs_object_id", "lastmodifieddate")
OVERSIZED = "Mozilla/5.0 " + "x" * 120_000
BAD_TIME = "2026-02-30T25:61:00Z"
SUBSCRIPTION_ID = 7_044_512  # the "Marketing Information" subscription type
CONTACT_ID_BASE = 101
APP_ID = 3_512_204
WEBHOOK_SUBSCRIPTION_ID = 1_844_221
CONVERSION_PROPERTY = "recent_conversion_event_name"
WEBHOOK_BATCH = 100
WEBHOOK_RETRIES = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0)  # 10 retries over 24 h, compressed
CONTACT_PROPERTIES = ("email", "firstname", "lastname", "company", "jobtitle", "industry", "numberofemployees",
                      "country", "hs_analytics_source", "lead_source", "product_interest")
_SIGNED_ESCAPES = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)

_clock: Callable[[], float] = time.monotonic  # token lifetimes; tests may replace it


def new_credentials() -> dict[str, str]:
    """OAuth refresh credentials (so tokens expire and get refreshed) plus a private-app token."""
    return {
        "access_token": "",
        "client_id": str(uuid.UUID(bytes=secrets.token_bytes(16))),
        "client_secret": secrets.token_urlsafe(24),
        "refresh_token": "na1-" + secrets.token_urlsafe(32),
        "private_app_token": "pat-na1-" + secrets.token_urlsafe(32),
    }


def source_env(url: str, credentials: dict[str, str]) -> dict[str, str]:
    return {
        "HANDOFF_HUBSPOT_ENABLED": "true",
        "HANDOFF_HUBSPOT_BASE_URL": url,
        "HANDOFF_HUBSPOT_ACCESS_TOKEN": "",
        "HANDOFF_HUBSPOT_CLIENT_ID": credentials["client_id"],
        "HANDOFF_HUBSPOT_CLIENT_SECRET": credentials["client_secret"],
        "HANDOFF_HUBSPOT_REFRESH_TOKEN": credentials["refresh_token"],
        "HANDOFF_HUBSPOT_WEBHOOK_SECRET": credentials["client_secret"],  # the app's webhooks sign with it
    }


def webhook_signature(body: bytes, secret: str, url: str) -> dict[str, str]:
    """The headers HubSpot signs a webhook with, timestamped now: v3, and v1 for older receivers."""
    stamp = str(int(time.time() * 1000))
    uri = _SIGNED_ESCAPES.sub(lambda match: chr(int(match.group(1), 16)), url)
    v3 = hmac.new(secret.encode(), b"POST" + uri.encode() + body + stamp.encode(), hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon",
        "X-HubSpot-Signature": hashlib.sha256(secret.encode() + body).hexdigest(),
        "X-HubSpot-Signature-Version": "v1",
        "X-HubSpot-Signature-v3": base64.b64encode(v3).decode(),
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Timeout-Millis": "10000",
    }


# --- ids the stand-in gives world objects (tests use them to map records back) -------------------------------

def contact_id(person: w.Person) -> str:
    return str(CONTACT_ID_BASE + person.index)


def native_id(event: w.Event) -> str:
    """The id HubSpot shows for an event: a UUID for e-mail events, a `leviathan-` id for other web events, and for
    a form submission its contact and time, as its webhooks name it too."""
    core = f"{event.id:08x}-5b2e-4c1d-9f3a-{event.id * 2654435761 % 2**48:012x}"
    if _in_email_feed(event):
        return core
    if event.kind in FORM_KINDS:
        return f"form-submission-{CONTACT_ID_BASE + event.person}-{event.ts * 1000}"
    return f"leviathan-{core}"


def _in_email_feed(event: w.Event) -> bool:
    return event.kind in EMAIL_KINDS or event.fault == "unknown_type"


def form_name(event: w.Event) -> str:
    if event.kind == w.WHITEPAPER_DOWNLOADED:
        return catalog.WHITEPAPER_FORM.format(event.asset)
    if event.kind == w.WEBINAR_REGISTERED:
        return catalog.WEBINAR_FORM.format(event.asset)
    return event.asset or "Contact Us"


def _guid(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hubspot:{kind}:{name}"))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".000Z"


def _page_title(path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return "Home" if not last else last.replace("-", " ").title()


# --- the service ---------------------------------------------------------------------------------------------

@dataclass
class Limits:
    """The account's API budget as the headers report it; the daily one is enforced (429 DAILY)."""

    daily: int = 1_000_000
    burst: int = 100_000
    interval_ms: int = 10_000
    used_today: int = 0
    _window: tuple[float, int] = (0.0, 0)
    _second: tuple[float, int] = (0.0, 0)

    def count(self) -> None:
        now = time.monotonic()
        start, n = self._window
        self._window = (start, n + 1) if now - start < self.interval_ms / 1000 else (now, 1)
        start, n = self._second
        self._second = (start, n + 1) if now - start < 1 else (now, 1)
        self.used_today += 1

    def headers(self, exhausted: bool = False) -> dict[str, str]:
        secondly = max(1, self.burst * 1000 // self.interval_ms)
        return {
            "X-HubSpot-RateLimit-Daily": str(self.daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily - self.used_today)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms),
            "X-HubSpot-RateLimit-Max": str(self.burst),
            "X-HubSpot-RateLimit-Remaining": "0" if exhausted else str(max(0, self.burst - self._window[1])),
            "X-HubSpot-RateLimit-Secondly": str(secondly),
            "X-HubSpot-RateLimit-Secondly-Remaining": "0" if exhausted else str(max(0, secondly - self._second[1])),
        }


@dataclass
class Stats:
    """What clients asked for: requests per path, contacts looked up, tokens issued (tests read it)."""

    requests: dict[str, int] = field(default_factory=dict)
    contacts_read: int = 0
    tokens_issued: int = 0


@dataclass
class Feed:
    """Events of one kind, oldest first, with their times for bisecting."""

    events: list[w.Event] = field(default_factory=list)
    times: list[int] = field(default_factory=list)

    def add(self, event: w.Event) -> None:
        self.events.append(event)
        self.times.append(event.ts)

    def insert(self, event: w.Event) -> None:
        """Add an event in its place by time (after those of the same second)."""
        at = bisect.bisect_right(self.times, event.ts)
        self.events.insert(at, event)
        self.times.insert(at, event.ts)


class HubSpot:
    def __init__(self, world: w.World, faults: RequestFaults, credentials: dict[str, str]):
        self.world, self.faults, self.credentials = world, faults, credentials
        self.limits, self.stats = Limits(), Stats()
        self.tokens: dict[str, float] = {}  # OAuth access token -> expiry on _clock
        self.expired: dict[str, float] = {}  # tokens the expire switch took away -> when
        self.lock = threading.Lock()
        self.people = {contact_id(p): p for p in world.tool_people(TOOL)}
        self.contact_order = sorted(self.people, key=int)
        self.by_email = {world.email_in(p, TOOL).lower(): p for p in self.people.values()}
        self.email_feeds: dict[str | None, Feed] = {None: Feed()}
        self.web_feeds: dict[str | None, Feed] = {None: Feed()}
        self.timelines: dict[int, Feed] = {}  # one contact's web events, for objectId queries
        first_seen: dict[int, int] = {}
        forms: set[str] = set()
        for event in world.events:
            if event.tool != TOOL:
                continue
            first_seen.setdefault(event.person, event.ts)
            if _in_email_feed(event):
                self.email_feeds[None].add(event)
                self.email_feeds.setdefault(self._email_type(event), Feed()).add(event)
            else:
                self.web_feeds[None].add(event)
                self.web_feeds.setdefault(self._event_type(event), Feed()).add(event)
                self.timelines.setdefault(event.person, Feed()).add(event)
                if event.kind in FORM_KINDS:
                    forms.add(form_name(event))
        start = world.spec.end.timestamp() - world.spec.weeks * 7 * 86400
        self.created = {p.index: first_seen.get(p.index, int(start)) for p in self.people.values()}
        forms.update([catalog.NEWSLETTER_FORM, catalog.DEMO_FORM, catalog.TRIAL_FORM, catalog.CONTACT_SALES_FORM])
        self.forms = {name: _guid("form", name) for name in sorted(forms)}
        self.emails = [  # one marketing e-mail per catalog e-mail, each sent as one e-mail campaign
            {"id": str(150_000_000 + i), "name": name, "campaign_name": campaign, "campaign": _guid("campaign", campaign),
             "email_campaign_id": 31_000_000 + i, "subject": name}
            for i, (campaign, name) in enumerate(catalog.EMAILS)
        ]
        self.email_campaign = {(e["campaign_name"], e["name"]): e["email_campaign_id"] for e in self.emails}

    # -- auth ---------------------------------------------------------------------------------------------

    def issue_token(self) -> tuple[str, int]:
        ttl = int(self.faults.token_ttl_seconds)
        token = "CJ" + secrets.token_urlsafe(40)
        with self.lock:
            self.tokens[token] = _clock() + ttl
            self.stats.tokens_issued += 1
        return token, ttl

    def auth_problem(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if token and token == self.credentials.get("private_app_token"):
            return None
        expires = self.tokens.get(token)
        now = _clock()
        if expires is not None and now >= expires:
            with self.lock:
                self.tokens.pop(token, None)
                self.expired[token] = expires
        elif expires is not None and self.faults.hit("expire_token"):
            with self.lock:
                self.tokens.pop(token, None)
                self.expired[token] = now
        elif expires is not None:
            return None
        if token in self.expired:
            return _error(401, _expired_message(now - self.expired[token]), "EXPIRED_AUTHENTICATION")
        return _error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more "
            "details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "INVALID_AUTHENTICATION",
        )

    # -- rendering ----------------------------------------------------------------------------------------

    @staticmethod
    def _email_type(event: w.Event) -> str:
        return UNKNOWN_EMAIL_TYPE if event.fault == "unknown_type" else EMAIL_KINDS[event.kind]

    @staticmethod
    def _event_type(event: w.Event) -> str:
        if event.kind == w.PAGE_VISITED:
            return PAGE_VIEW_EVENT
        if event.kind == w.WEBINAR_ATTENDED:
            return WEBINAR_EVENT
        return FORM_EVENT

    def render_email_event(self, event: w.Event) -> dict:
        person = self.world.people[event.person]
        created = event.ts * 1000
        ident = native_id(event)
        record: dict[str, Any] = {
            "appId": 113,
            "appName": "Batch",
            "created": created,
            "emailCampaignId": self.email_campaign.get((event.campaign, event.asset), 31_000_999),
            "id": ident,
            "portalId": PORTAL_ID,
            "recipient": self.world.email_in(person, TOOL),
            "sentBy": {"created": created - 3_600_000, "id": ident[:-4] + "5e17"},
            "type": self._email_type(event),
        }
        kind = event.kind
        if kind in (w.EMAIL_OPENED, w.EMAIL_CLICKED):
            record["userAgent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari"
            record["browser"] = {"family": "Safari", "name": "Safari 17", "type": "Browser", "version": ["17.5"]}
            record["location"] = {"country": person.country, "state": "", "city": ""}
            if kind == w.EMAIL_CLICKED:
                record["url"] = f"{catalog.SITE}/blog/lead-scoring-101?utm_campaign={event.campaign}"
        elif kind == w.EMAIL_BOUNCED:
            record.update(category="UNKNOWN_USER", status="5.1.1",
                          response="550 5.1.1 The email account that you tried to reach does not exist.")
        elif kind == w.UNSUBSCRIBED:
            record.update(source="SOURCE_RECIPIENT", portalSubscriptionStatus="SUBSCRIBED",
                          subscriptions=[{"id": SUBSCRIPTION_ID, "status": "UNSUBSCRIBED"}])
        fault = event.fault
        if fault == "no_identity":
            del record["recipient"]
        elif fault == "bad_time":
            record["created"] = BAD_TIME
        elif fault == "oversized":
            record["userAgent"] = OVERSIZED
        return record

    def render_web_event(self, event: w.Event) -> dict:
        kind = event.kind
        if kind == w.PAGE_VISITED:
            event_type = PAGE_VIEW_EVENT
            properties = {"hs_url": catalog.SITE + event.asset, "hs_title": _page_title(event.asset),
                          "hs_session_source": "DIRECT"}
        elif kind == w.WEBINAR_ATTENDED:
            event_type = WEBINAR_EVENT
            properties = {"webinar_name": event.asset, "hs_url": f"{catalog.SITE}/webinars/live"}
        else:
            event_type = FORM_EVENT
            name = form_name(event)
            properties = {"hs_form_id": self.forms[name], "hs_url": f"{catalog.SITE}/forms/{self.forms[name][:8]}",
                          "hs_title": name}
        record: dict[str, Any] = {
            "objectType": "CONTACT",
            "objectId": str(CONTACT_ID_BASE + event.person),
            "eventType": event_type,
            "occurredAt": _iso(event.ts),
            "id": native_id(event),
            "properties": properties,
        }
        fault = event.fault
        if fault == "no_identity":
            del record["objectId"]
        elif fault == "bad_time":
            record["occurredAt"] = BAD_TIME
        elif fault == "oversized":
            properties["hs_referrer"] = OVERSIZED
        return record

    def render_contact(self, person: w.Person, wanted: list[str] | None) -> dict:
        ident = contact_id(person)
        created = _iso(self.created[person.index])
        values = {
            "email": self.world.email_in(person, TOOL),
            "firstname": person.first_name,
            "lastname": person.last_name,
            "company": person.company,
            "jobtitle": person.title,
            "industry": person.industry,
            "numberofemployees": str(person.company_size),
            "country": person.country,
            "hs_analytics_source": ANALYTICS_SOURCE.get(person.channel, "OTHER_CAMPAIGNS"),
            "lead_source": person.channel,
            "product_interest": person.product_interest,
        }
        properties = {name: values[name] for name in (wanted or DEFAULT_PROPERTIES) if name in values}
        properties.update(zip(ALWAYS_PROPERTIES, (created, ident, created)))
        return {"id": ident, "properties": properties, "createdAt": created, "updatedAt": created, "archived": False}


    # -- events added now, and their webhooks -------------------------------------------------------------------

    def index(self, event: w.Event) -> None:
        """Take an event added to the world into the feeds (it shows from the next request on)."""
        if event.tool != TOOL:
            return
        if _in_email_feed(event):
            self.email_feeds[None].insert(event)
            self.email_feeds.setdefault(self._email_type(event), Feed()).insert(event)
            return
        self.web_feeds[None].insert(event)
        self.web_feeds.setdefault(self._event_type(event), Feed()).insert(event)
        self.timelines.setdefault(event.person, Feed()).insert(event)
        if event.kind in FORM_KINDS:
            self.forms.setdefault(form_name(event), _guid("form", form_name(event)))

    def webhooked(self, event: w.Event) -> bool:
        """Whether the event makes a webhook: a form submission (through the contact property it sets)."""
        return event.tool == TOOL and event.kind in FORM_KINDS and not event.malformed and not _in_email_feed(event)

    def app_event(self, event: w.Event, attempt: int) -> dict:
        name = form_name(event)
        return {
            "eventId": 3_000_000_000 + event.id, "subscriptionId": WEBHOOK_SUBSCRIPTION_ID, "portalId": PORTAL_ID,
            "appId": APP_ID, "occurredAt": event.ts * 1000, "subscriptionType": "contact.propertyChange",
            "attemptNumber": attempt, "objectId": CONTACT_ID_BASE + event.person, "propertyName": CONVERSION_PROPERTY,
            "propertyValue": name, "changeSource": "FORM", "sourceId": self.forms.get(name, _guid("form", name)),
        }

    def workflow_contact(self, event: w.Event) -> dict:
        """The enrolled contact as a contact workflow posts it (the v1 contact, property values with history)."""
        person = self.world.people[event.person]
        ident, stamp, name = CONTACT_ID_BASE + person.index, event.ts * 1000, form_name(event)
        current = self.render_contact(person, list(CONTACT_PROPERTIES))["properties"]
        current.update({CONVERSION_PROPERTY: name, "recent_conversion_date": str(stamp)})
        properties = {key: {"value": value, "versions": [{"value": value, "source-type": "FORM", "timestamp": stamp}]}
                      for key, value in current.items()}
        guid = self.forms.get(name, _guid("form", name))
        submission = {"conversion-id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hubspot:conversion:{event.id}")),
                      "timestamp": stamp, "form-id": guid, "portal-id": PORTAL_ID, "title": name,
                      "page-url": f"{catalog.SITE}/forms/{guid[:8]}", "form-type": "HUBSPOT", "meta-data": []}
        identity = {"vid": ident, "saved-at-timestamp": stamp, "deleted-changed-timestamp": 0,
                    "identities": [{"type": "EMAIL", "value": current["email"], "timestamp": stamp, "is-primary": True}]}
        return {"vid": ident, "canonical-vid": ident, "merged-vids": [], "portal-id": PORTAL_ID, "is-contact": True,
                "properties": properties, "form-submissions": [submission], "identity-profiles": [identity]}


class HubSpotWebhooks:
    """The app's webhook subscription, and contact workflows that send a webhook, with the ids their events carry."""

    tool = TOOL

    def __init__(self, hub: HubSpot, sender: WebhookSender | None):
        self.hub, self.sender = hub, sender

    def deliver(self, events: list[w.Event], on_result: Outcome | None = None, style: str | None = None) -> bool:
        hooked = [event for event in events if self.hub.webhooked(event)]
        if self.sender is None or not hooked:
            return False
        if style == "workflow":  # one request per enrolled contact
            for event in hooked:
                body = _dumps(self.hub.workflow_contact(event))
                self.sender.post(lambda attempt, body=body: body, on_result)
            return True
        for start in range(0, len(hooked), WEBHOOK_BATCH):
            batch = hooked[start:start + WEBHOOK_BATCH]
            self.sender.post(lambda attempt, batch=batch: _dumps([self.hub.app_event(e, attempt) for e in batch]),
                             on_result if start == 0 else None, retry_refusals=True)
        return True

    def activity_id(self, event: w.Event) -> str:
        return native_id(event)

    def contact_id(self, person: w.Person) -> str:
        return contact_id(person)

    def address(self, person: w.Person) -> str:
        return self.hub.world.email_in(person, TOOL)


# --- paging over a feed in O(page) --------------------------------------------------------------------------

def _encode(position: int, repeat: int) -> str:
    return base64.b64encode(f"{position}.{repeat}\n".encode()).decode()


def _decode(token: str) -> tuple[int, int]:
    position, repeat = base64.b64decode(token.encode(), validate=True).decode().strip().split(".")
    return int(position), int(repeat)


def page_of(feed: Feed, lo: int, hi: int, cursor: tuple[int, int] | None, limit: int, descending: bool,
            clock: int, render: Callable[[w.Event], dict]) -> tuple[list[dict], tuple[int, int] | None]:
    """Up to `limit` visible events of feed[lo:hi] from the cursor on; a duplicate is served twice in a row."""
    events = feed.events
    step = -1 if descending else 1
    position, repeat = cursor if cursor else ((hi - 1 if descending else lo), 0)
    out: list[dict] = []
    while lo <= position < hi:
        if len(out) >= limit:
            return out, (position, repeat)
        event = events[position]
        if event.available_ts > clock:
            position += step
            repeat = 0
            continue
        out.append(render(event))
        if event.fault == w.DUPLICATE and not repeat:
            repeat = 1
            continue
        position += step
        repeat = 0
    return out, None


# --- HTTP ----------------------------------------------------------------------------------------------------

def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(body), status_code=status, headers=headers, media_type="application/json;charset=utf-8")


def _error(status: int, message: str, category: str, **extra: Any) -> Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category, **extra}
    return _json(body, status)


def _expired_message(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return f"The OAuth token used to make this call expired {int(seconds // size)} {unit}(s) ago."
    return f"The OAuth token used to make this call expired {max(0, int(seconds))} second(s) ago."


def _bad_request(message: str) -> Response:
    return _error(400, message, "VALIDATION_ERROR")


def _int(value: str | None, default: int, low: int, high: int, name: str) -> int:
    if value in (None, ""):
        return default
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {number}")
    return number


def _instant(value: str | None) -> float | None:
    if not value:
        return None
    if value.isdigit():
        return int(value) / 1000
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def create_app(world: w.World, faults: RequestFaults, credentials: dict[str, str],
               webhooks: WebhookSender | None = None) -> Starlette:
    """The stand-in; with `webhooks`, a sender to the receiver that its webhooks go to."""
    hub = HubSpot(world, faults, credentials)
    hooks = HubSpotWebhooks(hub, webhooks)
    world.on_add(hub.index)
    if webhooks is not None:
        world.watch(hooks.deliver)
    control = WebhookControl(world, hooks)

    def api(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """Auth, request faults and the rate-limit headers around one API endpoint."""

        async def endpoint(request: Request) -> Response:
            await delay(faults)
            path = request.url.path
            hub.stats.requests[path] = hub.stats.requests.get(path, 0) + 1
            problem = hub.auth_problem(request)
            if problem is not None:
                return problem
            limits = hub.limits
            limits.count()
            if faults.hit("rate_limit"):
                return _json(_rate_limited("ten_secondly_rolling", "TEN_SECONDLY_ROLLING"), 429,
                             limits.headers(exhausted=True))
            if limits.used_today > limits.daily:
                return _json(_rate_limited("daily", "DAILY"), 429, limits.headers(exhausted=True))
            if faults.hit("server_error"):
                body = {"status": "error", "message": "internal error", "correlationId": str(uuid.uuid4())}
                return _json(body, 502, limits.headers())
            try:
                result = await handler(request)
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
                return _bad_request(f"Invalid input: {exc}")
            if isinstance(result, Response):
                return result
            status, body = result
            return _json(body, status, limits.headers())

        return endpoint

    async def token(request: Request) -> Response:
        await delay(faults)
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        if form.get("grant_type") != "refresh_token":
            return _json({"status": "BAD_GRANT_TYPE", "message": "grant_type must be refresh_token here",
                          "correlationId": str(uuid.uuid4())}, 400)
        if form.get("client_id") != credentials["client_id"] or form.get("client_secret") != credentials["client_secret"]:
            return _json({"status": "BAD_CLIENT_ID", "message": "missing or invalid client id or secret",
                          "correlationId": str(uuid.uuid4())}, 400)
        if form.get("refresh_token") != credentials["refresh_token"]:
            return _json({"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token",
                          "correlationId": str(uuid.uuid4())}, 400)
        access, ttl = hub.issue_token()
        return _json({"token_type": "bearer", "refresh_token": credentials["refresh_token"], "access_token": access,
                      "expires_in": ttl, "hub_id": PORTAL_ID})

    async def email_events(request: Request):
        q = request.query_params
        limit = _int(q.get("limit"), 10, 1, 1000, "limit")
        feed = hub.email_feeds.get(q.get("eventType"), Feed()) if q.get("eventType") else hub.email_feeds[None]
        start, end = _int(q.get("startTimestamp"), 0, 0, 2**62, "startTimestamp"), q.get("endTimestamp")
        lo = bisect.bisect_left(feed.times, start / 1000)
        hi = bisect.bisect_right(feed.times, int(end) / 1000) if end else len(feed.events)
        cursor = _decode(q["offset"]) if q.get("offset") else None
        if faults.hit("empty_page"):
            cursor = cursor or (hi - 1, 0)
            return 200, {"hasMore": lo <= cursor[0] < hi, "offset": _encode(*cursor), "events": []}
        events, following = page_of(feed, lo, hi, cursor, limit, True, world.clock, hub.render_email_event)
        body: dict[str, Any] = {"hasMore": following is not None, "events": events}
        if following is not None:
            body["offset"] = _encode(*following)
        return 200, body

    async def web_events(request: Request):
        q = request.query_params
        limit = _int(q.get("limit"), 20, 1, 1000, "limit")
        object_type = (q.get("objectType") or "contact").lower()
        if object_type not in ("contact", "contacts", "0-1"):
            return 200, {"results": []}
        event_type = q.get("eventType")
        if q.get("objectId"):  # one contact's timeline: a few events, filtered by type here
            timeline = hub.timelines.get(int(q["objectId"]) - CONTACT_ID_BASE, Feed())
            feed = Feed()
            for event in timeline.events:
                if not event_type or hub._event_type(event) == event_type:
                    feed.add(event)
        else:
            feed = hub.web_feeds.get(event_type, Feed()) if event_type else hub.web_feeds[None]
        after, before = _instant(q.get("occurredAfter")), _instant(q.get("occurredBefore"))
        lo = bisect.bisect_right(feed.times, after) if after is not None else 0
        hi = bisect.bisect_left(feed.times, before) if before is not None else len(feed.events)
        descending = q.get("sort", "").upper() in ("-OCCURREDAT", "DESCENDING")
        cursor = _decode(q["after"]) if q.get("after") else None
        if faults.hit("empty_page"):
            cursor = cursor or ((hi - 1) if descending else lo, 0)
            return 200, {"results": [], "paging": {"next": {"after": _encode(*cursor)}}}
        results, following = page_of(feed, lo, hi, cursor, limit, descending, world.clock, hub.render_web_event)
        body: dict[str, Any] = {"results": results}
        if following is not None:
            token = _encode(*following)
            body["paging"] = {"next": {"after": token, "link": f"{request.url.path}?after={token}"}}
        return 200, body

    async def event_types(_: Request):
        return 200, {"eventTypes": list(EVENT_TYPES)}

    async def contacts(request: Request):
        q = request.query_params
        limit = _int(q.get("limit"), 10, 1, 100, "limit")
        wanted = [name for value in q.getlist("properties") for name in value.split(",") if name]
        start = bisect.bisect_left(hub.contact_order, int(q["after"]), key=int) if q.get("after") else 0
        chunk = hub.contact_order[start:start + limit]
        body: dict[str, Any] = {"results": [hub.render_contact(hub.people[c], wanted) for c in chunk]}
        if start + limit < len(hub.contact_order):
            following = hub.contact_order[start + limit]
            body["paging"] = {"next": {"after": following, "link": f"{request.url.path}?after={following}"}}
        return 200, body

    async def batch_read(request: Request):
        started = datetime.now(timezone.utc).isoformat()
        payload = json.loads(await request.body())
        inputs = payload["inputs"]
        if len(inputs) > 100:
            return _bad_request(f"Batch input size must be at most 100, got {len(inputs)}")
        by_email = payload.get("idProperty") == "email"
        results, missing = [], []
        for item in inputs:
            key = str(item["id"])
            person = hub.by_email.get(key.lower()) if by_email else hub.people.get(key)
            if person is None:
                missing.append(key)
            else:
                results.append(hub.render_contact(person, payload.get("properties")))
        hub.stats.contacts_read += len(inputs)
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                                "completedAt": datetime.now(timezone.utc).isoformat()}
        if not missing:
            return 200, body
        body["numErrors"] = 1
        body["errors"] = [{
            "status": "error", "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
            "context": {"ids": missing}, "links": {}, "errors": [],
        }]
        return 207, body

    async def marketing_emails(request: Request):
        q = request.query_params
        limit = _int(q.get("limit"), 10, 1, 500, "limit")
        start = int(q["after"]) if q.get("after") else 0
        names = q.get("marketingCampaignNames", "").lower() == "true"
        results = []
        for e in hub.emails[start:start + limit]:
            item = {"id": e["id"], "name": e["name"], "subject": e["subject"], "campaign": e["campaign"],
                    "allEmailCampaignIds": [str(e["email_campaign_id"])], "state": "PUBLISHED", "type": "BATCH_EMAIL",
                    "isPublished": True, "archived": False}
            if names:
                item["campaignName"] = e["campaign_name"]
            results.append(item)
        body: dict[str, Any] = {"total": len(hub.emails), "results": results}
        if start + limit < len(hub.emails):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return 200, body

    async def forms(request: Request):
        q = request.query_params
        limit = _int(q.get("limit"), 20, 1, 500, "limit")
        items = list(hub.forms.items())
        start = int(q["after"]) if q.get("after") else 0
        created = _iso(world.spec.end.timestamp() - world.spec.weeks * 7 * 86400 - 86400)
        results = [{"id": guid, "name": name, "formType": "hubspot", "createdAt": created, "updatedAt": created,
                    "archived": False, "fieldGroups": []} for name, guid in items[start:start + limit]]
        body: dict[str, Any] = {"results": results}
        if start + limit < len(items):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return 200, body

    routes = [
        Route("/oauth/v1/token", token, methods=["POST"]),
        Route("/email/public/v1/events", api(email_events), methods=["GET"]),
        Route("/events/v3/events", api(web_events), methods=["GET"]),
        Route("/events/v3/events/", api(web_events), methods=["GET"]),
        Route("/events/v3/events/event-types", api(event_types), methods=["GET"]),
        Route("/crm/v3/objects/contacts", api(contacts), methods=["GET"]),
        Route("/crm/v3/objects/contacts/batch/read", api(batch_read), methods=["POST"]),
        Route("/marketing/v3/emails", api(marketing_emails), methods=["GET"]),
        Route("/marketing/v3/emails/", api(marketing_emails), methods=["GET"]),
        Route("/marketing/v3/forms", api(forms), methods=["GET"]),
        Route("/marketing/v3/forms/", api(forms), methods=["GET"]),
        *control_routes(world, faults),
        *control.routes(),
    ]
    app = Starlette(routes=routes)
    app.state.hubspot = hub
    app.state.webhooks = control
    return app


def _rate_limited(window: str, policy: str) -> dict:
    return {"status": "error", "message": f"You have reached your {window} limit.", "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()), "policyName": policy}
