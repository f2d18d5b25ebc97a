"""Mautic stand-in: the REST API's contacts, e-mails and all-contacts activity feed over the synthetic world.

What it reproduces, and where it was looked up (mautic/mautic 5.x source unless noted; the developer docs are
mautic/developer-documentation-new docs/rest_api/contacts.rst and emails.rst):
- HTTP basic auth on /api (app/config/security.php `http_basic`). No or non-basic credentials: 401
  {"errors":[{"message":"API authorization denied.","code":401,"type":"access_denied"}]}; wrong basic
  credentials: the same with "Authorization denied, invalid credentials." (ApiBundle ApiSubscriber and its
  en_US messages; the body is also the one users report in mautic/mautic#11615 and #7509).
- Errors as {"errors":[{"code","message","details","type"}]} (FetchCommonApiController::returnError); a 5xx as
  "Looks like I encountered an error (error #500). ..." (CoreBundle ExceptionController, mautic.core.error.generic).
- Mautic's own API rate limiter (noxlogic/ratelimit-bundle, configured in app/config/config.php): 429 with the
  raw text/html body '{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of N API calls per
  hour.", "details": [] } ]}' and X-RateLimit-Limit / -Remaining / -Reset (epoch) headers. Mautic sends no
  Retry-After; deployments' front proxies do, so the rate_limit switch adds one (Retry-After: 1).
- GET /api/contacts: start / limit (default 30) / search (`ids:1,2`, `email:x`, free text) / where[n][col|expr|val]
  (eq, neq, lt, lte, gt, gte, in, notIn with comma-separated values, CommonRepository::buildWhereClauseFromArray)
  / orderBy / orderByDir / minimal / select[] (only those fields, nulls left out; FetchCommonApiController and
  CustomFieldRepositoryTrait::getEntitiesWithCustomFields); default order last_active DESC. `total` is a STRING
  (a DBAL count) and `contacts` an object keyed by id ({} when empty). Contact fields come grouped (core, social,
  personal, professional) with id/label/alias/type/group/object/is_fixed/properties/default_value/value/normalizedValue,
  plus `all` (alias => raw value); select fields store a value and `normalizedValue` is the list label
  (CustomFieldValueHelper); number fields are ints (CustomFieldsApiControllerTrait::fixNumbers). Countries are
  stored by the names of CoreBundle/Assets/json/countries.json. GET /api/contacts/{id} gives {"contact": ...}.
- GET /api/emails: same list parameters; `total` an int and `emails` a JSON list; utmTags carry utmCampaign.
- GET /api/contacts/activity (LeadApiController::getAllActivityAction, LeadModel::getEngagements,
  LeadTimelineEvent, Entity/TimelineTrait): filters[search|includeEvents|excludeEvents|dateFrom|dateTo], page
  (default 1), limit (default 25), order[0]/order[1] (default ["timestamp","DESC"]; the merged page is reversed
  only for exactly "DESC"). `limit` applies PER EVENT TYPE: every type runs its own offset query
  ((page-1)*limit, ordered by its timestamp then row id), the slices are merged and sorted by timestamp, so one
  page holds up to limit x types events and pages are not globally ordered; total = sum of the per-type counts
  (an int), maxPages = ceil(largest type count / limit) (1 when empty). dateFrom/dateTo are inclusive and a
  date without an offset is read in the instance's default_timezone (EnvironmentSubscriber). Events keep
  event, eventId, eventLabel, eventType, timestamp, contactId (a string), details; relative hrefs get site_url.
  Timestamps of converted columns are in the instance's time zone with its offset (TimelineTrait dateTimeColumns
  via getLocalDateTime); asset downloads stay UTC (their column alias is not converted). Nested detail keys are
  camelCased as in the documented (Mautic 2-4) payload. PHP's json_encode escapes "/" as "\\/".
- Native events (the subscribers' addEvent calls): page.hit (eventId = the hit id; tracked-link e-mail clicks
  are page hits with source "email", sourceId and sourceName = the e-mail; PageModel::hitPage),
  form.submitted (eventId form.submitted<id>, label = form name), asset.download, email.read (label = e-mail
  name, stat.emailId/emailName), lead.donotcontact (reason text from DncReasonHelper: unsubscribe = "Contact
  unsubscribed from this channel.", bounce = "Communication bounced for this channel."; label "Email / <name>"),
  webinar.attended from the GoToWebinar plugin (MauticCitrixBundle LeadSubscriber: label "Attended webinar -
  <title>", eventType "Webinar attendance", details eventName/eventId/eventDesc/joinUrl).
Data faults: unknown_type -> a GoToMeeting "meeting.attended" event (a plugin type a client may not know);
no_identity -> contactId null and no e-mail anywhere; bad_time -> MySQL's zero date ("-0001-11-30T00:00:00+00:00"),
which sorts first and falls outside any dateFrom; oversized -> > 100 KB in the record's free-text field (form
result, bounce diagnostics, e-mail open details, ...); duplicate -> the row is served twice in a row.
Webhooks (WebhookBundle Http/Client.php and Model/WebhookModel.php; developer docs "Webhooks"): with a receiver
set, events that become visible are posted as Mautic's webhooks do, grouped by type in one JSON object
({"mautic.form_on_submit": [{"submission", "timestamp"}], "mautic.page_on_hit": [{"hit", "contact",
"timestamp"}], "mautic.email_on_open": [{"stat", "timestamp"}], "mautic.lead_points_change": [{"contact",
"points": {"old_points", "new_points"}, "timestamp"}]}), up to 10 events a request as in queue mode (a hand-raise
made now goes alone, as in immediate mode), with `Webhook-Signature` = base64(HMAC-SHA256(body, secret)) and
X-Origin-Base-URL. A submission's, hit's and stat's ids are the activity feed's (form.submitted<id>, page.hit<id>,
email.read<id>). Asset downloads, do-not-contact and webinar events have no webhook here; malformed events are not
posted (their damage is the feed's). In queue mode Mautic sends a batch whose request failed again at its next
cron run: here every 2 s, given up after 30 tries; a 4xx is not sent again.
Not reproduced: OAuth, search / eventLabel ordering inside the activity feed, per-contact activity, writes.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import catalog
from sandbox import world as w
from sandbox.control import control_routes, delay
from sandbox.faults import RequestFaults
from sandbox.webhooks import Outcome, WebhookControl, WebhookSender
from sandbox.world import World

from orjson import dumps as _dumps  # encodes pages several times faster than the standard library

SITE_URL = "https://mautic.handoff-demo.example"
INSTANCE_TZ = ZoneInfo("Europe/Berlin")  # the instance's default_timezone
RATE_LIMIT = 5000  # api_rate_limiter_limit, calls per hour
ZERO_DATE = "-0001-11-30T00:00:00+00:00"  # how PHP renders MySQL's 0000-00-00 00:00:00
ZERO_SORT = -62_169_984_000
OVERSIZED_CHARS = 120_000
REFERER = f"{catalog.SITE}/contact"
CLICK_URL = f"{catalog.SITE}/"
CLICK_LABEL = {"label": CLICK_URL, "href": CLICK_URL, "isExternal": True}

# The types the activity feed registers (natcasesort by label), as in the documented all-contacts response.
TYPES = {
    "lead.ipadded": "Accessed from IP",
    "asset.download": "Asset downloaded",
    "meeting.attended": "Attended meeting",
    "webinar.attended": "Attended webinar",
    "campaign.event": "Campaign action triggered",
    "campaign.event.scheduled": "Campaign event scheduled",
    "lead.donotcontact": "Do not contact",
    "email.failed": "Email failed",
    "email.read": "Email read",
    "email.sent": "Email sent",
    "form.submitted": "Form submitted",
    "lead.imported": "Imported",
    "page.hit": "Page hit",
    "point.gained": "Point gained",
    "meeting.registered": "Registered for meeting",
    "webinar.registered": "Registration to Webinar",
    "stage.changed": "Stage changed",
    "lead.utmtagsadded": "UTM tags recorded",
    "page.videohit": "Video view event",
}
PAGE_HIT, FORM, ASSET, EMAIL_READ = "page.hit", "form.submitted", "asset.download", "email.read"
DNC, WEBINAR, MEETING = "lead.donotcontact", "webinar.attended", "meeting.attended"
SERVED = (ASSET, MEETING, WEBINAR, DNC, EMAIL_READ, FORM, PAGE_HIT)  # the order the subscribers add them
KIND_TYPE = {
    w.SUBSCRIBED: FORM, w.EMAIL_OPENED: EMAIL_READ, w.EMAIL_CLICKED: PAGE_HIT, w.EMAIL_BOUNCED: DNC,
    w.UNSUBSCRIBED: DNC, w.PAGE_VISITED: PAGE_HIT, w.WHITEPAPER_DOWNLOADED: ASSET, w.WEBINAR_REGISTERED: FORM,
    w.WEBINAR_ATTENDED: WEBINAR, w.DEMO_REQUESTED: FORM, w.TRIAL_STARTED: FORM, w.CONTACT_SALES: FORM,
    w.FORM_FILLED: FORM,
}
DNC_REASONS = {1: "Contact unsubscribed from this channel.", 2: "Communication bounced for this channel."}
BOUNCE_COMMENT = "550 5.1.1 The email account that you tried to reach does not exist."
COUNTRY_NAMES = {
    "US": "United States", "GB": "United Kingdom", "DE": "Germany", "CA": "Canada", "NL": "Netherlands",
    "BR": "Brazil", "IN": "India", "NG": "Nigeria", "ID": "Indonesia", "VN": "Vietnam",
}
USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)
DEVICES = (("desktop", "Mac"), ("desktop", "Windows"), ("smartphone", "iOS"))
UNAUTHORIZED = "API authorization denied."
RATE_LIMITED = (  # noxlogic's rate_response_message as app/config/config.php sets it, sent as text/html
    '{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of '
    f'{RATE_LIMIT} API calls per hour.", "details": [] }} ]}}'
)
BAD_CREDENTIALS = "Authorization denied, invalid credentials."
WEBHOOK_BATCH = 10  # webhook_limit: events a queue-mode request carries
WEBHOOK_RETRIES = (2.0,) * 30  # the next cron runs, compressed to seconds
FORM_ON_SUBMIT, PAGE_ON_HIT = "mautic.form_on_submit", "mautic.page_on_hit"
EMAIL_ON_OPEN, POINTS_CHANGE = "mautic.email_on_open", "mautic.lead_points_change"
POINTS = {FORM: 10, PAGE_HIT: 1, EMAIL_READ: 1}  # the instance's point actions, per event type
HAND_RAISE_POINTS = 50


def new_credentials() -> dict[str, str]:
    return {"username": f"api-{secrets.token_hex(4)}", "password": secrets.token_urlsafe(24),
            "webhook_secret": secrets.token_urlsafe(24)}


def source_env(url: str, credentials: dict[str, str]) -> dict[str, str]:
    return {
        "HANDOFF_MAUTIC_ENABLED": "true",
        "HANDOFF_MAUTIC_BASE_URL": url,
        "HANDOFF_MAUTIC_USERNAME": credentials["username"],
        "HANDOFF_MAUTIC_PASSWORD": credentials["password"],
        "HANDOFF_MAUTIC_WEBHOOK_SECRET": credentials["webhook_secret"],
    }


def webhook_signature(body: bytes, secret: str, url: str) -> dict[str, str]:
    """The headers Mautic's webhook client sends: the body's HMAC-SHA256 under the webhook's secret, base64."""
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "X-Origin-Base-URL": SITE_URL, "Webhook-Signature": signature}


# ---------------------------------------------------------------- wire helpers

def php_json(payload) -> bytes:
    """JSON as PHP's json_encode writes it by default: \\uXXXX escapes and escaped slashes."""
    body = _dumps(payload)
    if not body.isascii():
        body = json.dumps(payload, separators=(",", ":")).encode()
    return body.replace(b"/", b"\\/")


def _json(payload, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(php_json(payload), status_code=status, media_type="application/json", headers=headers)


def _error(message: str, code: int, kind: str | None = None) -> Response:
    return _json({"errors": [{"code": code, "message": message, "details": [], "type": kind}]}, code)


def _server_error() -> Response:
    return _error("Looks like I encountered an error (error #500). "
                  "If I do it again, please report me to the system administrator!", 500)


_KEY = re.compile(r"\[([^\]]*)\]")


def php_query(request: Request) -> dict:
    """The query string as PHP parses it: `a[b][]=1&a[b][]=2` -> {"a": {"b": {"0": "1", "1": "2"}}}."""
    parsed: dict = {}
    for raw_key, value in request.query_params.multi_items():
        head, _, rest = raw_key.partition("[")
        keys = [head] + (_KEY.findall("[" + rest) if rest else [])
        node = parsed
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if key == "":
                key = str(sum(1 for k in node if k.isdigit())) if isinstance(node, dict) else "0"
            if last:
                node[key] = value
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = node[key] = {}
                node = child
    return parsed


def _listed(value) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    return list(value.values()) if isinstance(value, dict) else [value]


def _php_int(value, default: int) -> int:
    try:
        return int(str(value).strip() or default)
    except ValueError:
        match = re.match(r"\s*-?\d+", str(value))
        return int(match.group()) if match else 0


def _php_datetime(text: str) -> int:
    """Epoch seconds of a date filter; naive text is the instance's local time, as PHP's `new \\DateTime()`."""
    moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1) if "T" not in text else text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=INSTANCE_TZ)
    return int(moment.timestamp())


def _local(ts: int) -> str:
    return datetime.fromtimestamp(ts, INSTANCE_TZ).isoformat()


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _slug(text: str, sep: str = "-") -> str:
    return re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)


LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * (OVERSIZED_CHARS // 57 + 1)


def _bulk(prefix: str = "") -> str:
    return prefix + LOREM[:OVERSIZED_CHARS]


# ---------------------------------------------------------------- the instance's content

class Instance:
    """Mautic's entities over the world: contacts (id = person index + 1), e-mails, forms, assets, webinars, and a
    per-type index of timeline rows (sorted by timestamp then row id) rebuilt when the world's clock moves.
    The static parts of events (labels, forms, assets, pages) are built once and shared."""

    def __init__(self, world: World):
        self.world = world
        self.emails = {name: (n, campaign) for n, (campaign, name) in enumerate(catalog.EMAILS, start=1)}
        self.assets = {title: n for n, title in enumerate(catalog.WHITEPAPERS, start=1)}
        self.webinars = {title: 813_400_000 + 17 * n for n, title in enumerate(catalog.WEBINARS, start=1)}
        forms = [catalog.NEWSLETTER_FORM, catalog.DEMO_FORM, catalog.TRIAL_FORM, catalog.CONTACT_SALES_FORM]
        forms += [catalog.WEBINAR_FORM.format(title) for title in catalog.WEBINARS]
        self.forms = {name: n for n, name in enumerate(forms, start=1)}
        self.people = {p.index + 1: p for p in world.tool_people("mautic")}
        self._parts: dict[tuple[str, str | None], tuple] = {}
        rows: dict[str, list] = {t: [] for t in SERVED}
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for event in world.events:
            if event.tool != "mautic":
                continue
            kind = MEETING if event.fault == "unknown_type" else KIND_TYPE[event.kind]
            key = ZERO_SORT if event.fault == "bad_time" else event.ts
            rows[kind].append((key, event.id, event))
            if event.fault == w.DUPLICATE:
                rows[kind].append((key, event.id, event))
            if event.kind == w.WEBINAR_REGISTERED or event.kind == w.FORM_FILLED:
                self._form(self._form_name(event))
            first[event.person] = min(first.get(event.person, event.ts), event.ts)
            last[event.person] = max(last.get(event.person, event.ts), event.ts)
        for kind in rows:
            rows[kind].sort(key=lambda row: (row[0], row[1]))
        self._rows = rows
        self._first, self._last = first, last
        self._clock: int | None = None
        self._visible: dict[str, tuple[list[int], list[w.Event]]] = {}
        self._contacts: dict[int, dict] = {}
        self._addresses: dict[int, str] = {}
        self.contact_order = sorted(self.people, key=lambda cid: (-last.get(cid - 1, 0), cid))  # last_active DESC
        self.contact_position = {cid: n for n, cid in enumerate(self.contact_order)}
        self._points: dict[int, int] = {}

    def _form_name(self, event: w.Event) -> str:
        if event.kind == w.WEBINAR_REGISTERED:
            return catalog.WEBINAR_FORM.format(event.asset)
        return event.asset or "Contact Us"

    def _form(self, name: str) -> tuple[int, dict, dict]:
        """(form id, the form as the timeline shows it, the event label), built once per form."""
        parts = self._parts.get(("form", name))
        if parts is None:
            fid = self.forms.setdefault(name, len(self.forms) + 1)
            form = {"id": fid, "name": name, "alias": _slug(name, "")[:10]}
            parts = self._parts[("form", name)] = (fid, form, {"label": name, "href": f"{SITE_URL}/s/forms/view/{fid}"})
        return parts

    def _static(self, kind: str, asset: str | None) -> tuple:
        """The parts of an event that depend only on its type and asset, built once."""
        parts = self._parts.get((kind, asset))
        if parts is not None:
            return parts
        if kind == ASSET:
            aid = self.assets.setdefault(asset, len(self.assets) + 1)
            alias = _slug(asset)
            label = {"label": asset, "href": f"{SITE_URL}/s/assets/view/{aid}"}
            parts = (aid, alias, label, f"{SITE_URL}/asset/{aid}:{alias}")
        elif kind in (EMAIL_READ, DNC):  # e-mail reads, do-not-contacts and clicks
            eid, _ = self.emails[asset]
            parts = (eid, str(eid), {"label": f"Email / {asset}", "href": f"{SITE_URL}/s/emails/view/{eid}"},
                     f"{SITE_URL}/s/emails/view/{eid}", f"/s/emails/view/{eid}")
        elif kind == PAGE_HIT:
            url = catalog.SITE + (asset or "/")
            title = _page_title(asset or "/")
            label = {"label": title, "href": url, "isExternal": True}
            parts = (url, title, label, {"pageUrl": url, "pageTitle": title})
        else:  # webinars
            parts = (str(self.webinars.get(asset, 813_400_000)), _slug(asset), f"Attended webinar - {asset}")
        self._parts[(kind, asset)] = parts
        return parts

    def address(self, person: w.Person) -> str:
        email = self._addresses.get(person.index)
        if email is None:
            email = self._addresses[person.index] = self.world.email_in(person, "mautic")
        return email

    def index(self, event: w.Event) -> None:
        """Take an event added to the world into the timeline (it shows from the next request on)."""
        if event.tool != "mautic":
            return
        kind = KIND_TYPE[event.kind]
        bisect.insort(self._rows[kind], (event.ts, event.id, event), key=lambda row: (row[0], row[1]))
        if event.kind == w.WEBINAR_REGISTERED or event.kind == w.FORM_FILLED:
            self._form(self._form_name(event))
        self._first.setdefault(event.person, event.ts)
        self._last[event.person] = max(self._last.get(event.person, event.ts), event.ts)
        self._clock = None

    def visible(self, kind: str) -> tuple[list[int], list[w.Event]]:
        """(sort keys, events) of one type that the instance shows at the world's current clock."""
        if self._clock != self.world.clock:
            clock = self.world.clock
            self._visible = {}
            for name, rows in self._rows.items():
                shown = [row for row in rows if row[2].available_ts <= clock]
                self._visible[name] = ([row[0] for row in shown], [row[2] for row in shown])
            self._clock = clock
        return self._visible[kind]

    # -------------------------------------------------------- contacts

    def contact(self, cid: int, minimal: bool, select: tuple[str, ...] = ()) -> dict:
        record = self._contacts.get(cid)
        if record is None:
            record = self._contacts[cid] = self._render_contact(cid)
        if select:  # only the selected columns become fields, and nulls are not serialized
            fields: dict = {}
            for group, entries in record["fields"].items():
                if group == "all":
                    fields[group] = {k: v for k, v in entries.items() if (k in select or k == "id") and v is not None}
                    continue
                chosen = {
                    alias: {k: v for k, v in entry.items() if v is not None}
                    for alias, entry in (entries.items() if entries else ()) if alias in select
                }
                fields[group] = chosen or []
            record = {**record, "fields": fields}
        if minimal:
            return {key: record[key] for key in ("id", "points", "color", "fields")}
        return record

    def _render_contact(self, cid: int) -> dict:
        person = self.people[cid]
        added = self._first.get(person.index, self.world.clock)
        active = self._last.get(person.index, added)
        values = {
            "firstname": person.first_name, "lastname": person.last_name, "company": person.company,
            "position": person.title, "email": self.address(person), "points": 0,
            "country": COUNTRY_NAMES.get(person.country, person.country),
            "last_active": datetime.fromtimestamp(active, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "lead_source": _option_value("lead_source", person.channel),
            "product_interest": _option_value("product_interest", person.product_interest),
            "industry": _option_value("industry", person.industry), "company_size": person.company_size,
        }
        groups: dict = {"core": {}, "social": {}, "personal": [], "professional": {}}
        flat: dict = {}
        for alias, group, base, labels in FIELD_META:
            value = values.get(alias)
            shown = labels.get(value, value) if labels else value
            groups[group][alias] = {**base, "value": value, "normalizedValue": "" if shown is None else shown}
            flat[alias] = value
        flat["id"] = str(cid)
        groups["all"] = flat
        return {
            "isPublished": True, "dateAdded": _utc(added), "dateModified": _utc(active), "createdBy": None,
            "createdByUser": None, "modifiedBy": None, "modifiedByUser": None, "id": cid, "points": 0, "color": None,
            "fields": groups, "lastActive": _utc(active), "owner": None, "ipAddresses": [], "tags": [],
            "utmtags": [], "stage": None, "dateIdentified": _utc(added), "preferredProfileImage": "gravatar",
            "doNotContact": [], "frequencyRules": [],
        }

    def email_entity(self, name: str) -> dict:
        eid, campaign = self.emails[name]
        return {
            "isPublished": True, "dateAdded": "2026-08-03T09:00:00+00:00", "dateModified": None, "createdBy": 1,
            "createdByUser": "Marketing Ops", "modifiedBy": None, "modifiedByUser": None, "id": eid, "name": name,
            "subject": name, "language": "en", "category": None, "fromAddress": None, "fromName": None,
            "replyToAddress": None, "bccAddress": None, "useOwnerAsMailer": False,
            "utmTags": {"utmSource": "mautic", "utmMedium": "email", "utmCampaign": campaign,
                        "utmContent": _slug(name)},
            "preheaderText": None, "customHtml": f"<h1>{name}</h1>", "plainText": None, "template": "blank",
            "emailType": "template", "publishUp": None, "publishDown": None, "publicPreview": False, "readCount": 0,
            "sentCount": 0, "revision": 1, "assetAttachments": [], "variantStartDate": None, "variantSentCount": 0,
            "variantReadCount": 0, "variantParent": None, "variantChildren": [], "translationParent": None,
            "translationChildren": [], "unsubscribeForm": None, "dynamicContent": [], "lists": [], "headers": [],
        }

    # -------------------------------------------------------- timeline events

    def render(self, kind: str, event: w.Event) -> dict:
        person = self.world.people[event.person]
        anonymous = event.fault == "no_identity"
        contact = None if anonymous else str(person.index + 1)
        stamp = ZERO_DATE if event.fault == "bad_time" else None
        big = event.fault == "oversized"
        n = event.id
        if kind == PAGE_HIT:
            return self._page_hit(event, contact, stamp or _local(event.ts), big)
        if kind == FORM:
            fid, form, label = self._form(self._form_name(event))
            results = {"form_id": str(fid)}
            if not anonymous:
                results.update(email=self.address(person), firstname=person.first_name,
                               lastname=person.last_name, company=person.company)
            if big:
                results["message"] = _bulk()
            stamp = stamp or _local(event.ts)
            details = {
                "submission": {"id": n, "ipAddress": {"ip": _ip(n)}, "form": form, "dateSubmitted": stamp,
                               "referer": REFERER, "results": results},
                "form": form, "page": {},
            }
            return _event(FORM, f"form.submitted{n}", label, "Form submitted", stamp, contact, details)
        if kind == ASSET:
            aid, alias, label, url = self._static(ASSET, event.asset)
            asset = {"id": aid, "title": event.asset, "alias": alias, "description": _bulk() if big else None}
            details = {"asset": asset, "assetDownloadUrl": url}
            stamp = stamp or _utc(event.ts)  # this column's alias escapes the local-time conversion
            return _event(ASSET, f"asset.download{n}", label, "Asset downloaded", stamp, contact, details)
        if kind == EMAIL_READ:
            _, eid, _, _, _ = self._static(EMAIL_READ, event.asset)
            sent = event.ts - 3600 * (1 + n % 7) - 60 * (n % 60)
            stamp = stamp or _local(event.ts)
            opened = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.ts))
            opens = [{"datetime": opened, "useragent": USER_AGENTS[n % 3], "inBrowser": False}] * (900 if big else 1)
            tracking = f"{n:013x}"
            stat = {
                "id": str(n), "dateRead": stamp, "dateSent": _local(sent), "subject": event.asset, "isRead": "1",
                "isFailed": "0", "viewedInBrowser": "0", "retryCount": "0", "idHash": tracking, "openDetails": opens,
                "storedSubject": event.asset, "timeToRead": _duration(event.ts - sent), "emailId": eid,
                "emailName": event.asset, "listId": None, "listName": None,
            }
            label = {"label": event.asset, "href": f"{SITE_URL}/email/view/{tracking}", "isExternal": True}
            details = {"stat": stat, "type": "read"}
            return _event(EMAIL_READ, f"email.read{n}", label, "Email read", stamp, contact, details)
        if kind == DNC:
            _, eid, label, _, route = self._static(DNC, event.asset)
            reason = 2 if event.kind == w.EMAIL_BOUNCED else 1
            comments = BOUNCE_COMMENT if reason == 2 else "User unsubscribed."
            stamp = stamp or _local(event.ts)
            dnc = {
                "id": str(n), "channel": "email", "channelId": eid, "dateAdded": stamp, "reason": DNC_REASONS[reason],
                "comments": comments + (_bulk("\n") if big else ""), "itemName": event.asset, "itemRoute": route,
            }
            return _event(DNC, f"lead.donotcontact{n}", label, "Do not contact", stamp, contact, {"dnc": dnc})
        if kind == WEBINAR:
            key, slug, label = self._static(WEBINAR, event.asset)
            details = {"eventName": slug, "eventId": key, "eventDesc": event.asset,
                       "joinUrl": _bulk("https://global.gotowebinar.com/join/") if big else ""}
            stamp = stamp or _local(event.ts)
            return _event(WEBINAR, f"webinar.attended{n}", label, "Webinar attendance", stamp, contact, details)
        topic = "Discovery call"  # MEETING: the unknown-type damage
        details = {"eventName": "discovery-call", "eventId": str(900_000_000 + n), "eventDesc": topic, "joinUrl": ""}
        return _event(MEETING, f"meeting.attended{n}", f"Attended meeting - {topic}", "Meeting attendance",
                      stamp or _local(event.ts), contact, details)

    # -------------------------------------------------------- webhooks

    def webhook(self, event: w.Event) -> list[tuple[str, dict]]:
        """The webhook events an activity makes, (type, payload) each: the activity's own, and the points change
        it causes. None for a type Mautic has no webhook for, or a malformed event."""
        kind = KIND_TYPE[event.kind]
        if event.malformed or kind not in POINTS:
            return []
        person = self.world.people[event.person]
        cid, stamp, n = person.index + 1, _local(event.ts), event.id
        contact = self._webhook_contact(cid)
        if kind == FORM:
            fid, form, _ = self._form(self._form_name(event))
            results = {"form_id": str(fid), "email": self.address(person), "firstname": person.first_name,
                       "lastname": person.last_name, "company": person.company}
            submission = {"id": n, "ipAddress": {"ip": _ip(n), "id": n, "ipDetails": None},
                          "form": {**form, "category": None}, "lead": contact, "trackingId": f"{n:016x}",
                          "dateSubmitted": stamp, "referer": REFERER, "page": None, "results": results}
            own = (FORM_ON_SUBMIT, {"submission": submission, "timestamp": stamp})
        elif kind == PAGE_HIT:
            own = (PAGE_ON_HIT, {"hit": self._webhook_hit(event, stamp), "contact": contact, "timestamp": stamp})
        else:
            sent = event.ts - 3600 * (1 + n % 7)
            stat = {"id": n, "emailAddress": self.address(person), "ipAddress": {"ip": _ip(n), "id": n},
                    "dateSent": _local(sent), "isRead": True, "isFailed": False, "viewedInBrowser": False,
                    "dateRead": stamp, "trackingHash": f"{n:013x}", "retryCount": 0, "source": "campaign",
                    "sourceId": 1, "openCount": 1, "lastOpened": stamp, "email": self.email_entity(event.asset),
                    "lead": contact}
            own = (EMAIL_ON_OPEN, {"stat": stat, "timestamp": stamp})
        gained = HAND_RAISE_POINTS if event.kind in w.HAND_RAISES else POINTS[kind] + 2 * (event.kind == w.EMAIL_CLICKED)
        old = self._points.get(cid, 0)
        self._points[cid] = old + gained
        changed = {"contact": {**contact, "points": old + gained},
                   "points": {"old_points": old, "new_points": old + gained}, "timestamp": stamp}
        return [own, (POINTS_CHANGE, changed)]

    def _webhook_contact(self, cid: int) -> dict:
        """The contact as webhooks serialize it: grouped fields, without the API's `all`."""
        contact = self.contact(cid, False)
        fields = {group: entries for group, entries in contact["fields"].items() if group != "all"}
        return {**contact, "fields": fields, "points": self._points.get(cid, 0)}

    def _webhook_hit(self, event: w.Event, stamp: str) -> dict:
        n = event.id
        hit = {"id": n, "dateHit": stamp, "dateLeft": None, "page": None, "redirect": None, "email": None,
               "ipAddress": {"ip": _ip(n), "id": n}, "country": "", "region": "", "city": "", "isp": "",
               "organization": "", "code": 200, "referer": None, "url": None, "urlTitle": None,
               "userAgent": USER_AGENTS[n % 3], "remoteHost": None, "pageLanguage": "en", "source": None,
               "sourceId": None, "trackingId": f"{n:016x}"}
        if event.kind == w.EMAIL_CLICKED:  # a tracked link's redirect, with the e-mail as its source
            email = self.email_entity(event.asset)
            hit.update(url=CLICK_URL, urlTitle="Handoff", source="email", sourceId=email["id"], email=email)
        else:
            url, title, _, _ = self._static(PAGE_HIT, event.asset)
            hit.update(url=url, urlTitle=title)
        return hit

    def _page_hit(self, event: w.Event, contact: str | None, stamp: str, big: bool) -> dict:
        n = event.id
        device, os_name = DEVICES[n % 3]
        hit = {
            "hitId": str(n), "pageId": None, "userAgent": USER_AGENTS[n % 3], "dateHit": stamp, "dateLeft": None,
            "referer": _bulk(f"{catalog.SITE}/search?q=") if big else None, "source": None, "sourceId": None,
            "url": None, "urlTitle": None, "query": {}, "clientInfo": None, "device": device,
            "deviceOsName": os_name, "deviceBrand": "", "deviceModel": "",
        }
        if event.kind == w.EMAIL_CLICKED:  # a tracked link's redirect, recorded as a hit with the e-mail as source
            _, eid, _, route, _ = self._static(DNC, event.asset)
            hit.update(source="email", sourceId=eid, url=CLICK_URL, sourceName=event.asset, sourceRoute=route,
                       query={"ct": f"{n:013x}"})
            label = CLICK_LABEL
        else:
            url, title, label, query = self._static(PAGE_HIT, event.asset)
            hit.update(url=url, urlTitle=title, query=query)
        return _event(PAGE_HIT, str(n), label, "Page hit", stamp, contact, {"hit": hit})


def _event(kind: str, event_id: str, label, type_name: str, stamp: str, contact: str | None, details: dict) -> dict:
    return {"event": kind, "eventId": event_id, "eventLabel": label, "eventType": type_name, "timestamp": stamp,
            "contactId": contact, "details": details}


def _ip(n: int) -> str:
    return f"198.51.{n // 250 % 250}.{n % 250 + 1}"


def _duration(seconds: int) -> str:
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return "PT" + text + (f"{secs}S" if secs or not text else "")


def _page_title(path: str) -> str:
    words = " - ".join(part.replace("-", " ").title() for part in path.strip("/").split("/") if part)
    return f"{words} | Handoff" if words else "Handoff"


def _option_value(alias: str, label: str) -> str:
    return label.lower() if alias == "product_interest" else _slug(label, "_")


# (id, label, alias, type, group, is_fixed, select options); industry .. lead_source are this instance's custom fields
FIELDS = (
    (1, "Title", "title", "lookup", "core", True, None),
    (2, "First Name", "firstname", "text", "core", True, None),
    (3, "Last Name", "lastname", "text", "core", True, None),
    (4, "Company", "company", "text", "core", True, None),
    (5, "Position", "position", "text", "core", True, None),
    (6, "Email", "email", "email", "core", True, None),
    (7, "Mobile", "mobile", "tel", "core", False, None),
    (8, "Phone", "phone", "tel", "core", False, None),
    (9, "Points", "points", "number", "core", True, None),
    (13, "City", "city", "text", "core", False, None),
    (16, "Country", "country", "country", "core", False, None),
    (18, "Preferred Timezone", "timezone", "timezone", "core", False, None),
    (19, "Date Last Active", "last_active", "datetime", "core", False, None),
    (43, "Lead Source", "lead_source", "select", "core", False, catalog.CHANNELS),
    (44, "Product Interest", "product_interest", "select", "core", False, catalog.PRODUCTS),
    (26, "LinkedIn", "linkedin", "text", "social", False, None),
    (29, "Twitter", "twitter", "text", "social", False, None),
    (41, "Industry", "industry", "select", "professional", False, catalog.FIT_INDUSTRIES + catalog.OTHER_INDUSTRIES),
    (42, "Company Size", "company_size", "number", "professional", False, None),
)


FIELD_META = tuple(
    (
        alias,
        group,
        {"id": str(field_id), "label": label, "alias": alias, "type": kind, "group": group, "object": "lead",
         "is_fixed": "1" if fixed else "0",
         "properties": {"list": [{"label": o, "value": _option_value(alias, o)} for o in options]} if options else [],
         "default_value": None},
        {_option_value(alias, o): o for o in options} if options else None,
    )
    for field_id, label, alias, kind, group, fixed, options in FIELDS
)


# ---------------------------------------------------------------- the app

class MauticWebhooks:
    """The instance's webhook (all four event types subscribed) and the ids its events carry."""

    tool = "mautic"

    def __init__(self, instance: Instance, sender: WebhookSender | None):
        self.instance, self.sender = instance, sender

    def deliver(self, events: list[w.Event], on_result: Outcome | None = None, style: str | None = None) -> bool:
        items = [item for event in events if event.tool == self.tool for item in self.instance.webhook(event)]
        if self.sender is None or not items:
            return False
        # A hand-raise made now goes on its own (immediate mode); what the clock reveals goes in queue-mode batches.
        size = len(items) if len(events) == 1 else WEBHOOK_BATCH
        for start in range(0, len(items), size):
            batch: dict[str, list] = {}
            for kind, payload in items[start:start + size]:
                batch.setdefault(kind, []).append(payload)
            body = php_json(batch)
            self.sender.post(lambda attempt, body=body: body, on_result if start == 0 else None)
        return True

    def activity_id(self, event: w.Event) -> str:
        return f"{KIND_TYPE[event.kind]}{event.id}"

    def contact_id(self, person: w.Person) -> str:
        return str(person.index + 1)

    def address(self, person: w.Person) -> str:
        return self.instance.address(person)


def create_app(world: World, faults: RequestFaults, credentials: dict[str, str],
               webhooks: WebhookSender | None = None) -> Starlette:
    """The stand-in; with `webhooks`, a sender to the receiver that its webhooks go to."""
    instance = Instance(world)
    expected = f"{credentials['username']}:{credentials['password']}"
    hooks = MauticWebhooks(instance, webhooks)
    world.on_add(instance.index)
    if webhooks is not None:
        world.watch(hooks.deliver)
    control = WebhookControl(world, hooks)

    def guard(request: Request) -> Response | None:
        """Authentication, then Mautic's rate limiter, then the server-error switch."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return _json({"errors": [{"message": UNAUTHORIZED, "code": 401, "type": "access_denied"}]}, 401)
        try:
            given = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            given = ""
        if not secrets.compare_digest(given.encode(), expected.encode()):
            return _json({"errors": [{"message": BAD_CREDENTIALS, "code": 401, "type": "access_denied"}]}, 401)
        if faults.hit("rate_limit"):
            body = RATE_LIMITED
            headers = {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": str(int(time.time()) + 1), "Retry-After": "1"}
            return Response(body, status_code=429, media_type="text/html; charset=UTF-8", headers=headers)
        if faults.hit("server_error"):
            return _server_error()
        return None

    def api(handler):
        async def endpoint(request: Request) -> Response:
            await delay(faults)
            refused = guard(request)
            if refused is not None:
                return refused
            try:
                return handler(request, php_query(request))
            except (ValueError, TypeError, KeyError):  # what would be an uncaught PHP exception
                return _server_error()
        return endpoint

    def activity(request: Request, query: dict) -> Response:
        filters = query.get("filters") if "filters" in query else {}
        if not isinstance(filters, dict):
            raise ValueError("filters parameter must be an array")
        filters = dict(filters)
        for key in ("search", "includeEvents", "excludeEvents"):
            filters.setdefault(key, "" if key == "search" else [])
        include, exclude = _listed(filters["includeEvents"]), _listed(filters["excludeEvents"])
        filters["includeEvents"], filters["excludeEvents"] = include, exclude
        lo_ts = _php_datetime(filters["dateFrom"]) if filters.get("dateFrom") else None
        hi_ts = _php_datetime(filters["dateTo"]) if filters.get("dateTo") else None
        limit = _php_int(query.get("limit", 25), 25)
        page = _php_int(query.get("page", 1), 1)
        order = _listed(query.get("order")) or ["timestamp", "DESC"]
        direction = str(order[1]) if len(order) > 1 else ""
        if limit <= 0:
            raise ValueError("division by zero")  # getMaxPage() divides by the limit
        start = 0 if page <= 1 else (page - 1) * limit
        descending_rows = direction.upper() == "DESC"
        totals: list[int] = []
        picked: list[tuple[int, str, w.Event]] = []
        for kind in SERVED:
            if kind in exclude or (include and kind not in include):
                continue
            keys, events = instance.visible(kind)
            lo = bisect.bisect_left(keys, lo_ts) if lo_ts is not None else 0
            hi = bisect.bisect_right(keys, hi_ts) if hi_ts is not None else len(keys)
            hi = max(lo, hi)
            totals.append(hi - lo)
            if descending_rows:
                stop, begin = hi - start, max(lo, hi - start - limit)
                rows = range(stop - 1, begin - 1, -1) if stop > lo else ()
            else:
                rows = range(lo + start, min(hi, lo + start + limit))
            picked.extend((keys[i], kind, events[i]) for i in rows)
        picked.sort(key=lambda row: row[0])
        if direction == "DESC":
            picked.reverse()
        largest = max(totals, default=0)
        payload = {
            "events": [instance.render(kind, event) for _, kind, event in picked],
            "filters": filters,
            "order": order[:2],
            "types": TYPES,
            "total": sum(totals),
            "page": page,
            "limit": limit,
            "maxPages": math.ceil(largest / limit) if largest else 1,
        }
        return _json(payload)

    def contacts(request: Request, query: dict) -> Response:
        ids = _select(instance.contact_order, query, instance.people.__getitem__, _contact_value, _person_text,
                      instance.contact_position)
        start, limit = _php_int(query.get("start", 0), 0), _php_int(query.get("limit", 30), 30)
        chosen = ids[start:start + limit] if limit > 0 else ids[start:]
        minimal = str(query.get("minimal", "0")) not in ("0", "", "false")
        select = query.get("select")
        select = tuple(str(v) for v in (select.split(",") if isinstance(select, str) else _listed(select)) if v)
        found = {str(cid): instance.contact(cid, minimal, select) for cid in chosen}
        return _json({"total": str(len(ids)), "contacts": found})

    def contact(request: Request, query: dict) -> Response:
        cid = int(request.path_params["id"])
        if cid not in instance.people:
            return _error("Item was not found.", 404)
        return _json({"contact": instance.contact(cid, False)})

    def emails(request: Request, query: dict) -> Response:
        by_id = {eid: name for name, (eid, _) in instance.emails.items()}
        ids = _select(sorted(by_id), query, by_id.__getitem__, _email_value, str)
        start, limit = _php_int(query.get("start", 0), 0), _php_int(query.get("limit", 30), 30)
        chosen = ids[start:start + limit] if limit > 0 else ids[start:]
        return _json({"total": len(ids), "emails": [instance.email_entity(by_id[eid]) for eid in chosen]})

    async def not_found(request: Request) -> Response:
        await delay(faults)
        return _error(f'No route found for "{request.method} {request.url}"', 404)

    routes = [
        Route("/api/contacts/activity", api(activity), methods=["GET"]),
        Route("/api/contacts/{id:int}", api(contact), methods=["GET"]),
        Route("/api/contacts", api(contacts), methods=["GET"]),
        Route("/api/emails", api(emails), methods=["GET"]),
        *control_routes(world, faults),
        *control.routes(),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.webhooks = control
    return app



def _contact_value(person: w.Person, cid: int, column: str):
    if column in ("id", "l.id"):
        return cid
    if column in ("email", "l.email"):
        return person.email.lower()
    raise ValueError(f"unknown column {column}")


def _person_text(person: w.Person) -> str:
    return f"{person.email} {person.first_name} {person.last_name} {person.company}"


def _email_value(name: str, eid: int, column: str):
    if column in ("id", "e.id"):
        return eid
    if column in ("name", "e.name"):
        return name
    raise ValueError(f"unknown column {column}")


_COMPARE = {
    "eq": lambda a, b: a == b[0], "neq": lambda a, b: a != b[0], "lt": lambda a, b: a < b[0],
    "lte": lambda a, b: a <= b[0], "gt": lambda a, b: a > b[0], "gte": lambda a, b: a >= b[0],
    "in": lambda a, b: a in b, "notIn": lambda a, b: a not in b,
}


def _select(order: list[int], query: dict, entity, value, text, position: dict[int, int] | None = None) -> list[int]:
    """Ids matching `where[]` clauses and the `search` string (`ids:1,2`, `email:x` or free text), in list order.
    An id `in`/`eq` clause (or `ids:`) narrows the candidates first, as the database's primary key would."""
    clauses = []
    for clause in _listed(query.get("where")):
        if not isinstance(clause, dict) or clause.get("expr") not in _COMPARE:
            raise ValueError("unsupported where clause")
        column = str(clause.get("col") or clause.get("column"))
        raw = str(clause.get("val", clause.get("value", "")))
        parts = [p.strip() for p in raw.split(",")] if clause["expr"] in ("in", "notIn") else [raw]
        clauses.append((column, clause["expr"], parts))
    search = str(query.get("search", "") or "").strip()
    wanted: set[int] | None = None
    if search.startswith("ids:"):
        wanted = {int(p) for p in search[4:].split(",") if p.strip().isdigit()}
        search = ""
    elif search.startswith("email:"):
        search = search[6:]
    for column, expr, parts in clauses:
        if column.rpartition(".")[2] == "id" and expr in ("in", "eq"):
            ids = {int(p) for p in parts if p.lstrip("-").isdigit()}
            wanted = ids if wanted is None else wanted & ids
    if wanted is None and not clauses and not search:
        return order
    candidates = order
    if wanted is not None:
        position = position if position is not None else {key: n for n, key in enumerate(order)}
        candidates = sorted((key for key in wanted if key in position), key=position.__getitem__)
    picked = []
    for key in candidates:
        item = entity(key)
        ok = True
        for column, expr, parts in clauses:
            current = value(item, key, column)
            if isinstance(current, int):
                operands = [int(p) if p.lstrip("-").isdigit() else None for p in parts]
            else:
                current, operands = str(current).lower(), [p.lower() for p in parts]
            if not _COMPARE[expr](current, operands):
                ok = False
                break
        if ok and search and search.lower() not in text(item).lower():
            ok = False
        if ok:
            picked.append(key)
    return picked

