"""A local stand-in for Marketo's REST API: OAuth identity, the paging-token activity feed, lead lookups and
Marketo's HTTP-200 error envelopes, rendered from the synthetic world.

Documented behaviour it reproduces (looked up in Adobe's Marketo developer docs, repository
AdobeDocs/marketo-developer.en, and the public material named below):
- Identity (help/rest-api/authentication.md): GET or POST /identity/oauth/token with grant_type=client_credentials,
  client_id, client_secret -> {"access_token": "<uuid>:<pod>", "token_type": "bearer", "expires_in": 3599,
  "scope": "<api user>"}. A new token lives 3600 s; asking again before it lapses returns the same token and its
  remaining lifespan. The token travels in an `Authorization: Bearer` header (the deprecated `access_token` query
  parameter is still accepted). A bad client id or secret gets HTTP 401 from Identity (help/rest-api/error-codes.md);
  the body is the OAuth 2.0 error object (RFC 6749 5.2) as Spring Security OAuth words it,
  {"error":"invalid_client","error_description":"Bad client credentials"}.
- Paging tokens (help/rest-api/paging-tokens.md): GET /rest/v1/activities/pagingtoken.json?sinceDatetime=<ISO 8601>
  -> {"requestId", "success": true, "nextPageToken"}. Tokens are base32 text of "<datetime>,<n>": the documented
  example token GIYDAOBNGEYS2MBWKQYDAORQGA5DAMBOGAYDAKZQGAYDALBQ decodes to "2008-11-06T00:00:00.000+0000,0".
- Get Lead Activities (help/rest-api/activities.md; Adobe KB ka-29362): GET /rest/v1/activities.json?nextPageToken=
  &activityTypeIds= (up to 10, comma list or repeated) &batchSize= (max and default 300). Each call walks up to
  batchSize activities of ALL types from the token's position and returns those of the requested types, so a page
  can hold fewer than 300, or none, with "moreResult": true; an empty page has no "result" member; nextPageToken
  is always returned; activities come oldest first. Record fields: id, marketoGUID, leadId, activityDate
  ("2023-01-16T23:32:19Z"), activityTypeId, campaignId, primaryAttributeValueId, primaryAttributeValue,
  attributes [{name, value}], an empty attribute being left out.
- Activity types (activities.md "Describe": {id, name, description, primaryAttribute, attributes}; ids and names as
  in Talend's Marketo component, MarketoRESTClient.getLocalActivityTypes; descriptions paraphrased): 1 Visit Webpage
  (primaryAttributeValue "host/path", attribute "Webpage URL" = the path, as in the docs' sample), 2 Fill Out Form
  (Webform ID; the value is the form name), 8 Email Bounced, 9 Unsubscribe Email, 10 Open Email, 11 Click Email
  (Mailing ID; the value is "<Program>.<Email>", as in the sample "RestAPITester.01_Mail" of
  kioy/MarketoExportActivities), 104 Change Status in Progression (Program ID; the value is the program name;
  attributes New Status, Old Status, New Status ID, Old Status ID, Reason, Success, Acquired By, Program Member ID,
  as in Adobe Experience Platform's Marketo field mappings). Webinar attendance is a program status change to
  "Attended".
- Leads (help/rest-api/leads.md, list-of-standard-fields.md): GET /rest/v1/leads.json?filterType=id&filterValues=
  (up to 300)&fields= (default id, email, updatedAt, createdAt, firstName, lastName; a null field is left out), also
  as POST with _method=GET and the query in a form body; GET /rest/v1/leads/describe.json with REST and SOAP names.
  Standard fields email, firstName, lastName, company, title, industry, numberOfEmployees, country, leadSource;
  product interest is the custom field productInterest.
- Errors (help/rest-api/error-codes.md, marketo-integration-best-practices.md): HTTP 200 with {"requestId",
  "success": false, "errors": [{"code": "602", "message": "Access token expired"}]}; 601 Access token invalid,
  602 Access token expired, 606 "Max rate limit '100' exceeded with in '20' secs" (100 calls per 20 s per
  instance), 607 Daily quota reached, 611 System error, 615 "Concurrent access limit '10' reached" (more than 10
  calls at once; the 606 and 615 texts as Azure Data Factory's Marketo connector docs quote them), 610 Requested
  resource not found, 701 "<field> cannot be blank", 704 Invalid date format, 1006 Field '<name>' not found; a
  failing gateway answers HTTP 502.

Fault switches: rate_limit -> 606, server_error -> alternately HTTP 502 and a 611 envelope, slow_ms -> delay,
expire_token_every / token_ttl_seconds -> 602, empty_page_every -> an empty page with moreResult true. Marketo's
own extra limits live on `app.state.marketo` (a MarketoState; also POST /_sandbox/marketo): `daily_quota` (607 once
that many REST calls were answered) and `concurrent_limit_every` (every N-th REST call answers 615; 615 also
answers an 11th concurrent call). Data faults: a duplicate is served again at the top of the next page (or twice
on the last one); a malformed record carries an activityTypeId that types.json does not list (it still travels in
the stream of the type it was stored as), or no leadId, or the zero date "0000-00-00T00:00:00Z", or a > 100 KB
attribute. Deliberate simplifications: the 100 calls / 20 s window is the rate_limit switch, not a clock; one
custom service (one set of credentials) per instance.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import catalog
from sandbox import world as w
from sandbox.control import control_routes, delay
from sandbox.faults import RequestFaults

TOOL = "marketo"
LEAD_ID_BASE = 100_000
MAX_BATCH = 300
MAX_TYPE_IDS = 10
MAX_FILTER_VALUES = 300
MAX_CONCURRENT = 10
UNKNOWN_TYPE_ID = 100_099  # looks like a custom activity type, but types.json does not describe it
ZERO_DATE = "0000-00-00T00:00:00Z"
OVERSIZED_VALUE = "utm_content=" + "x" * 110_000
HOST = catalog.SITE.split("://", 1)[1]
SCOPE = "apis@handoff-demo.example"

VISIT_WEBPAGE, FILL_OUT_FORM, EMAIL_BOUNCED, UNSUBSCRIBE_EMAIL = 1, 2, 8, 9
OPEN_EMAIL, CLICK_EMAIL, PROGRAM_STATUS = 10, 11, 104

_FORM_KINDS = (
    w.SUBSCRIBED, w.WHITEPAPER_DOWNLOADED, w.WEBINAR_REGISTERED, w.DEMO_REQUESTED, w.TRIAL_STARTED, w.CONTACT_SALES,
    w.FORM_FILLED,
)
NATIVE_TYPE = {
    w.PAGE_VISITED: VISIT_WEBPAGE,
    w.EMAIL_OPENED: OPEN_EMAIL,
    w.EMAIL_CLICKED: CLICK_EMAIL,
    w.EMAIL_BOUNCED: EMAIL_BOUNCED,
    w.UNSUBSCRIBED: UNSUBSCRIBE_EMAIL,
    w.WEBINAR_ATTENDED: PROGRAM_STATUS,
    **{kind: FILL_OUT_FORM for kind in _FORM_KINDS},
}
# Where a > 100 KB value would plausibly sit for each type.
OVERSIZED_ATTRIBUTE = {
    VISIT_WEBPAGE: "Query Parameters", FILL_OUT_FORM: "Form Fields", EMAIL_BOUNCED: "Details",
    UNSUBSCRIBE_EMAIL: "Query Parameters", OPEN_EMAIL: "User Agent", CLICK_EMAIL: "Link", PROGRAM_STATUS: "Reason",
}


def _attr(name: str, data_type: str) -> dict[str, str]:
    return {"name": name, "dataType": data_type}


_EMAIL_ATTRS = [_attr("Campaign Run ID", "integer"), _attr("Choice Number", "integer"), _attr("Step ID", "integer")]
ACTIVITY_TYPES: list[dict[str, Any]] = [
    {"id": VISIT_WEBPAGE, "name": "Visit Webpage", "description": "User visits a web page",
     "primaryAttribute": _attr("Webpage ID", "integer"),
     "attributes": [_attr("Client IP Address", "string"), _attr("Query Parameters", "string"),
                    _attr("Referrer URL", "string"), _attr("User Agent", "string"), _attr("Webpage URL", "string")]},
    {"id": FILL_OUT_FORM, "name": "Fill Out Form", "description": "User fills out and submits form on web page",
     "primaryAttribute": _attr("Webform ID", "integer"),
     "attributes": [_attr("Client IP Address", "string"), _attr("Form Fields", "text"),
                    _attr("Query Parameters", "string"),
                    _attr("Referrer URL", "string"), _attr("User Agent", "string"), _attr("Webpage ID", "integer")]},
    {"id": 3, "name": "Click Link", "description": "User clicks link on a page",
     "primaryAttribute": _attr("Link ID", "integer"),
     "attributes": [_attr("Client IP Address", "string"), _attr("Query Parameters", "string"),
                    _attr("Referrer URL", "string"), _attr("User Agent", "string"), _attr("Webpage ID", "integer")]},
    {"id": 6, "name": "Send Email", "description": "Send Marketo Email to a person",
     "primaryAttribute": _attr("Mailing ID", "integer"), "attributes": list(_EMAIL_ATTRS)},
    {"id": 7, "name": "Email Delivered", "description": "Marketo Email is delivered to a person",
     "primaryAttribute": _attr("Mailing ID", "integer"), "attributes": list(_EMAIL_ATTRS)},
    {"id": EMAIL_BOUNCED, "name": "Email Bounced", "description": "Marketo Email is bounced for a person",
     "primaryAttribute": _attr("Mailing ID", "integer"),
     "attributes": _EMAIL_ATTRS + [_attr("Category", "string"), _attr("Details", "string"), _attr("Email", "string"),
                                   _attr("Subcategory", "string")]},
    {"id": UNSUBSCRIBE_EMAIL, "name": "Unsubscribe Email", "description": "Person unsubscribes from Marketo Emails",
     "primaryAttribute": _attr("Mailing ID", "integer"),
     "attributes": [_attr("Campaign Run ID", "integer"), _attr("Client IP Address", "string"),
                    _attr("Query Parameters", "string"), _attr("Referrer URL", "string"),
                    _attr("User Agent", "string")]},
    {"id": OPEN_EMAIL, "name": "Open Email", "description": "User opens Marketo Email",
     "primaryAttribute": _attr("Mailing ID", "integer"),
     "attributes": _EMAIL_ATTRS + [_attr("Device", "string"), _attr("Is Mobile Device", "boolean"),
                                   _attr("Platform", "string"), _attr("User Agent", "string")]},
    {"id": CLICK_EMAIL, "name": "Click Email", "description": "User clicks on a link in a Marketo Email",
     "primaryAttribute": _attr("Mailing ID", "integer"),
     "attributes": _EMAIL_ATTRS + [_attr("Device", "string"), _attr("Is Mobile Device", "boolean"),
                                   _attr("Link", "string"),
                                   _attr("Platform", "string"), _attr("User Agent", "string")]},
    {"id": 12, "name": "New Lead", "description": "New person",
     "primaryAttribute": _attr("Lead ID", "integer"),
     "attributes": [_attr("Created Date", "date"), _attr("Form Name", "string"), _attr("Source Type", "string")]},
    {"id": 13, "name": "Change Data Value", "description": "Changed attribute value for a person",
     "primaryAttribute": _attr("Attribute Name", "integer"),
     "attributes": [_attr("New Value", "string"), _attr("Old Value", "string"), _attr("Reason", "string"),
                    _attr("Source", "string")]},
    {"id": 22, "name": "Change Score", "description": "Change a score value for a person",
     "primaryAttribute": _attr("Score Name", "integer"),
     "attributes": [_attr("Change Value", "string"), _attr("New Value", "integer"), _attr("Old Value", "integer"),
                    _attr("Reason", "string")]},
    {"id": 46, "name": "Interesting Moment", "description": "Interesting Moment",
     "primaryAttribute": _attr("Marketo Asset Name", "string"),
     "attributes": [_attr("Date", "datetime"), _attr("Description", "string"), _attr("Source", "string")]},
    {"id": PROGRAM_STATUS, "name": "Change Status in Progression", "description": "Change a person's program status",
     "primaryAttribute": _attr("Program ID", "integer"),
     "attributes": [_attr("Acquired By", "boolean"), _attr("New Status ID", "integer"), _attr("New Status", "string"),
                    _attr("Old Status ID", "integer"), _attr("Old Status", "string"),
                    _attr("Program Member ID", "integer"),
                    _attr("Reason", "string"), _attr("Success", "boolean")]},
]


def _field(fid: int, display: str, data_type: str, rest: str, soap: str | None, read_only: bool = False,
           length: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": fid, "displayName": display, "dataType": data_type}
    if length:
        entry["length"] = length
    entry["rest"] = {"name": rest, "readOnly": read_only}
    if soap:
        entry["soap"] = {"name": soap, "readOnly": read_only}
    return entry


LEAD_FIELDS: list[dict[str, Any]] = [
    _field(1, "Id", "integer", "id", "Id", read_only=True),
    _field(2, "Company Name", "string", "company", "Company", length=255),
    _field(3, "Email Address", "email", "email", "Email", length=255),
    _field(4, "First Name", "string", "firstName", "FirstName", length=255),
    _field(5, "Last Name", "string", "lastName", "LastName", length=255),
    _field(6, "Job Title", "string", "title", "Title", length=255),
    _field(7, "Industry", "string", "industry", "Industry", length=255),
    _field(8, "Num Employees", "integer", "numberOfEmployees", "NumberOfEmployees"),
    _field(9, "Country", "string", "country", "Country", length=255),
    _field(10, "Lead Source", "string", "leadSource", "LeadSource", length=255),
    _field(11, "Created At", "datetime", "createdAt", None, read_only=True),
    _field(12, "Updated At", "datetime", "updatedAt", None, read_only=True),
    _field(1001, "Product Interest", "string", "productInterest", "ProductInterest", length=255),
]
DEFAULT_LEAD_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")


def new_credentials() -> dict[str, str]:
    """A LaunchPoint custom service's client id (a UUID) and secret."""
    client_id = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    return {"client_id": client_id, "client_secret": secrets.token_urlsafe(24)}


def source_env(url: str, credentials: dict[str, str]) -> dict[str, str]:
    return {
        "HANDOFF_MARKETO_ENABLED": "true",
        "HANDOFF_MARKETO_BASE_URL": url,
        "HANDOFF_MARKETO_CLIENT_ID": credentials["client_id"],
        "HANDOFF_MARKETO_CLIENT_SECRET": credentials["client_secret"],
    }


# Attribute entries many records share (the JSON encoder does not mind shared objects).
_AGENTS = [{"name": "User Agent",
            "value": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/{v}.0 Safari/537.36"}
           for v in range(120, 129)]
_RUNS = [{"name": "Campaign Run ID", "value": 9000 + n} for n in range(97)]
_STEP = ({"name": "Choice Number", "value": 0}, {"name": "Step ID", "value": 1})
_BOUNCE = ({"name": "Category", "value": "1"}, {"name": "Details", "value": "550 5.1.1 User unknown"},
           {"name": "Subcategory", "value": "2003"})
_DEVICES = {
    False: ({"name": "Device", "value": "unknown"}, {"name": "Is Mobile Device", "value": False},
            {"name": "Platform", "value": "Windows"}),
    True: ({"name": "Device", "value": "iPhone"}, {"name": "Is Mobile Device", "value": True},
           {"name": "Platform", "value": "iOS"}),
}
_ATTENDED = ({"name": "Acquired By", "value": False}, {"name": "New Status ID", "value": 3},
             {"name": "New Status", "value": "Attended"}, {"name": "Old Status ID", "value": 2},
             {"name": "Old Status", "value": "Registered"}, {"name": "Success", "value": False})


def _ip(seed: int) -> str:
    return f"10.{seed % 250}.{seed // 250 % 250}.{seed % 7 + 2}"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class MarketoJSON(JSONResponse):
    media_type = "application/json;charset=UTF-8"


@dataclass
class MarketoState:
    """Marketo-only switches and counters, beside the shared RequestFaults; `clock` times access tokens."""

    daily_quota: int | None = None
    concurrent_limit_every: int = 0
    max_concurrent: int = MAX_CONCURRENT
    clock: Callable[[], float] = time.monotonic
    calls: int = 0
    in_flight: int = 0
    identity_calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    requests: deque[tuple[str, dict[str, str]]] = field(default_factory=lambda: deque(maxlen=10_000))
    tokens: dict[str, float] = field(default_factory=dict)
    current_token: str | None = None
    _request_seq: int = 0
    _concurrent_seq: int = 0

    def request_id(self) -> str:
        self._request_seq += 1
        return f"{self._request_seq:x}#{int(time.time() * 1000):x}"

    def settings(self) -> dict[str, Any]:
        return {"daily_quota": self.daily_quota, "concurrent_limit_every": self.concurrent_limit_every,
                "max_concurrent": self.max_concurrent, "calls": self.calls, "identity_calls": self.identity_calls,
                "errors": dict(self.errors)}


Static = tuple[int, dict[str, Any], tuple[dict[str, Any], ...]]  # type id, shared members, shared attributes


class MarketoInstance:
    """One Marketo subscription over the world: its leads, its activity log and its access tokens."""

    def __init__(self, world: w.World, faults: RequestFaults):
        self.world = world
        self.faults = faults
        self.state = MarketoState()
        # The whole activity log, oldest first, with not-yet-arrived (late) records kept in place but hidden.
        self.events = [e for e in world.events if e.tool == TOOL]
        self.ts = [e.ts for e in self.events]
        self.people = {LEAD_ID_BASE + p.index: p for p in world.tool_people(TOOL)}
        self._by_email: dict[str, int] | None = None
        self._ids: dict[tuple[str, str], int] = {}
        self._id_counts: dict[str, int] = {}
        self._statics: dict[tuple[str, str | None, str | None], Static] = {}
        self._seed_ids()

    # --- ids of Marketo assets (programs, mailings, forms, pages), stable for the life of the instance ---

    def _seed_ids(self) -> None:
        programs = list(dict.fromkeys([c for c, _ in catalog.EMAILS] + list(catalog.WEBINARS)))
        for name in programs:
            self.asset_id("program", name)
            self.asset_id("campaign", name)
        for campaign, name in catalog.EMAILS:
            self.asset_id("mailing", f"{campaign}.{name}")
        forms = [catalog.NEWSLETTER_FORM, catalog.DEMO_FORM, catalog.TRIAL_FORM, catalog.CONTACT_SALES_FORM]
        forms += [catalog.WHITEPAPER_FORM.format(t) for t in catalog.WHITEPAPERS]
        forms += [catalog.WEBINAR_FORM.format(t) for t in catalog.WEBINARS]
        for name in forms:
            self.asset_id("form", name)
        for page in catalog.AWARENESS_PAGES + catalog.CONSIDERATION_PAGES + catalog.DECISION_PAGES:
            self.asset_id("page", page)

    _ID_BASE = {"program": 1000, "campaign": 5000, "mailing": 2000, "form": 3000, "page": 4000}

    def asset_id(self, kind: str, name: str) -> int:
        key = (kind, name)
        found = self._ids.get(key)
        if found is None:
            count = self._id_counts[kind] = self._id_counts.get(kind, 0) + 1
            found = self._ids[key] = self._ID_BASE[kind] + count
        return found

    # --- activity records ---

    def _static(self, e: w.Event) -> Static:
        """What every record of one asset shares: type, primary attribute, campaign and constant attributes."""
        key = (e.kind, e.asset, e.campaign)
        found = self._statics.get(key)
        if found is not None:
            return found
        type_id, asset = NATIVE_TYPE[e.kind], e.asset or ""
        if type_id == VISIT_WEBPAGE:
            head = {"primaryAttributeValueId": self.asset_id("page", asset), "primaryAttributeValue": f"{HOST}{asset}"}
            shared: tuple[dict[str, Any], ...] = ({"name": "Webpage URL", "value": asset},)
        elif type_id == FILL_OUT_FORM:
            form = (catalog.WHITEPAPER_FORM.format(asset) if e.kind == w.WHITEPAPER_DOWNLOADED
                    else catalog.WEBINAR_FORM.format(asset) if e.kind == w.WEBINAR_REGISTERED else asset)
            form_id = self.asset_id("form", form)
            landing = f"/lp/{form_id}.html"
            head = {"primaryAttributeValueId": form_id, "primaryAttributeValue": form}
            shared = ({"name": "Referrer URL", "value": f"{catalog.SITE}{landing}"},
                      {"name": "Webpage ID", "value": self.asset_id("page", landing)})
        elif type_id == PROGRAM_STATUS:
            head = {"campaignId": self.asset_id("campaign", asset),
                    "primaryAttributeValueId": self.asset_id("program", asset), "primaryAttributeValue": asset}
            reason = f"Changed by Smart Campaign {asset}.Attended action Change Program Status"
            shared = ({"name": "Reason", "value": reason},)
        else:
            program = e.campaign or ""
            mailing = f"{program}.{asset}"
            head = {"campaignId": self.asset_id("campaign", program),
                    "primaryAttributeValueId": self.asset_id("mailing", mailing), "primaryAttributeValue": mailing}
            shared = ({"name": "Link", "value": f"{catalog.SITE}/product?utm_campaign={program}"},)
        found = self._statics[key] = (type_id, head, shared)
        return found

    def render(self, e: w.Event) -> dict[str, Any]:
        type_id, head, shared = self._static(e)
        seed = e.id
        record: dict[str, Any] = {"id": seed, "marketoGUID": str(seed), "leadId": LEAD_ID_BASE + e.person,
                                  "activityDate": _iso(e.ts), "activityTypeId": type_id, **head}
        agent = _AGENTS[seed % len(_AGENTS)]
        if type_id == VISIT_WEBPAGE:
            attributes = [{"name": "Client IP Address", "value": _ip(seed)}, agent, shared[0]]
        elif type_id == FILL_OUT_FORM:
            attributes = [{"name": "Client IP Address", "value": _ip(seed)}, shared[0], agent, shared[1]]
        elif type_id == PROGRAM_STATUS:
            member = {"name": "Program Member ID", "value": head["primaryAttributeValueId"] * 100_000 + e.person}
            attributes = [*_ATTENDED[:5], member, shared[0], _ATTENDED[5]]
        else:  # the four e-mail activities
            run = _RUNS[seed % len(_RUNS)]
            if type_id == EMAIL_BOUNCED:
                address = {"name": "Email", "value": self.world.email_in(self.world.people[e.person], TOOL)}
                attributes = [run, *_STEP, *_BOUNCE[:2], address, _BOUNCE[2]]
            elif type_id == UNSUBSCRIBE_EMAIL:
                attributes = [run, {"name": "Client IP Address", "value": _ip(seed)}, agent]
            else:
                device = _DEVICES[seed % 3 == 0]
                link = (shared[0],) if type_id == CLICK_EMAIL else ()
                attributes = [run, *_STEP, *device, *link, agent]
        fault = e.fault
        if fault is not None and fault != w.DUPLICATE:
            if fault == "unknown_type":
                record["activityTypeId"] = UNKNOWN_TYPE_ID
            elif fault == "no_identity":
                del record["leadId"]
            elif fault == "bad_time":
                record["activityDate"] = ZERO_DATE
            elif fault == "oversized":
                attributes.append({"name": OVERSIZED_ATTRIBUTE[type_id], "value": OVERSIZED_VALUE})
        record["attributes"] = attributes
        return record

    # --- paging tokens: base32 of "<datetime>,<n>[,<replay>]", n = records at that second already passed ---

    def token_at(self, position: int, replay: list[int] = ()) -> str:
        if self.ts:
            moment = self.ts[min(position, len(self.ts) - 1)]
            offset = position - bisect.bisect_left(self.ts, moment)
        else:
            moment, offset = 0, 0
        text = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(moment)) + f",{offset}"
        if replay:
            text += "," + ";".join(map(str, replay))
        return base64.b32encode(text.encode()).decode()

    def date_token(self, moment: datetime) -> str:
        utc = moment.astimezone(timezone.utc)
        text = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000,0"
        return base64.b32encode(text.encode()).decode()

    def read_token(self, token: str) -> tuple[int, list[int]] | None:
        try:
            text = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
            parts = text.split(",")
            moment = datetime.strptime(parts[0], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
            position = bisect.bisect_left(self.ts, moment) + int(parts[1])
            replay = [int(i) for i in parts[2].split(";")] if len(parts) > 2 and parts[2] else []
        except (binascii.Error, UnicodeDecodeError, ValueError, IndexError):
            return None
        if not 0 <= position <= len(self.events) or any(not 0 <= i < len(self.events) for i in replay):
            return None
        return position, replay

    def activities_page(
        self, position: int, replay: list[int], wanted: set[int], batch: int
    ) -> tuple[list[dict[str, Any]], int, list[int], bool]:
        """Walk up to `batch` visible activities of all types from `position`; keep the wanted types."""
        events, clock = self.events, self.world.clock
        limit = bisect.bisect_right(self.ts, clock)  # nothing after the clock exists yet
        result = [self.render(events[i]) for i in replay]
        budget = batch - len(replay)
        duplicates: list[int] = []
        scanned = 0
        while position < limit and scanned < budget:
            event = events[position]
            position += 1
            if event.available_ts > clock:
                continue  # a late arrival: not in Marketo yet
            scanned += 1
            if NATIVE_TYPE[event.kind] in wanted:
                result.append(self.render(event))
                if event.fault == w.DUPLICATE:
                    duplicates.append(position - 1)
        more = position < limit
        if not more and duplicates:
            result += [self.render(events[i]) for i in duplicates]
            duplicates = []
        return result, position, duplicates, more

    # --- leads ---

    def lead(self, lead_id: int, fields: list[str]) -> dict[str, Any]:
        person = self.people[lead_id]
        created = _iso(self.world.first_seen(person, TOOL).timestamp())
        values = {
            "id": lead_id, "email": self.world.email_in(person, TOOL), "firstName": person.first_name,
            "lastName": person.last_name, "company": person.company, "title": person.title, "industry": person.industry,
            "numberOfEmployees": person.company_size, "country": person.country, "leadSource": person.channel,
            "productInterest": person.product_interest, "createdAt": created, "updatedAt": created,
        }
        record = {"id": lead_id}  # the id comes back whatever the fields asked for
        record.update((name, values[name]) for name in fields if values.get(name) is not None)
        return record

    def lead_by_email(self, email: str) -> int | None:
        if self._by_email is None:
            self._by_email = {self.world.email_in(p, TOOL).lower(): lid for lid, p in self.people.items()}
        return self._by_email.get(email.strip().lower())

    # --- tokens ---

    def issue_token(self) -> tuple[str, float]:
        state, now = self.state, self.state.clock()
        token = state.current_token
        if token is not None and state.tokens.get(token, 0) - now >= 1:
            return token, state.tokens[token] - now
        if token is not None:
            state.tokens.pop(token, None)
        token = f"{uuid.uuid4()}:ab"
        ttl = float(self.faults.token_ttl_seconds)
        state.tokens[token] = now + ttl
        state.current_token = token
        return token, ttl


def _blank(name: str) -> tuple[str, str]:
    return "701", f"{name} cannot be blank"


def create_app(world: w.World, faults: RequestFaults, credentials: dict[str, str]) -> Starlette:
    marketo = MarketoInstance(world, faults)
    state = marketo.state

    def error(code: str, message: str) -> Response:
        state.errors[code] = state.errors.get(code, 0) + 1
        errors = [{"code": code, "message": message}]
        return MarketoJSON({"requestId": state.request_id(), "success": False, "errors": errors})

    def server_error() -> Response:
        if faults.fired("server_error") % 2:
            state.errors["502"] = state.errors.get("502", 0) + 1
            page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return Response(page, status_code=502, media_type="text/html")
        return error("611", "System error")

    async def params_of(request: Request) -> dict[str, str]:
        # A repeated parameter (activityTypeIds=1&activityTypeIds=12) reads as one comma list.
        query = request.query_params
        params = {key: ",".join(query.getlist(key)) for key in query.keys()}
        form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        if request.method == "POST" and form:
            params.update(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        return params

    async def identity(request: Request) -> Response:
        await delay(faults)
        if faults.hit("server_error"):
            return server_error()
        params = await params_of(request)
        state.identity_calls += 1
        if params.get("grant_type") != "client_credentials":
            refusal = {"error": "unsupported_grant_type",
                       "error_description": f"Unsupported grant type: {params.get('grant_type')}"}
            return JSONResponse(refusal, status_code=400)
        presented = (params.get("client_id"), params.get("client_secret"))
        if presented != (credentials["client_id"], credentials["client_secret"]):
            refusal = {"error": "invalid_client", "error_description": "Bad client credentials"}
            return JSONResponse(refusal, status_code=401)
        token, remaining = marketo.issue_token()
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": int(remaining),
                             "scope": SCOPE})

    def rest(handler: Callable[[dict[str, str]], tuple[str, str] | dict[str, Any]]):
        """Marketo's gate in front of every REST call: auth, rate and quota limits, then the handler."""

        async def endpoint(request: Request) -> Response:
            state.in_flight += 1
            try:
                await delay(faults)
                if faults.hit("server_error"):
                    return server_error()
                header = request.headers.get("authorization", "")
                bearer = header[:7].lower() == "bearer "
                token = header[7:].strip() if bearer else request.query_params.get("access_token")
                expires = state.tokens.get(token) if token else None
                if expires is None:
                    return error("601", "Access token invalid")
                if state.clock() >= expires or faults.hit("expire_token"):
                    state.tokens.pop(token, None)
                    return error("602", "Access token expired")
                if faults.hit("rate_limit"):
                    return error("606", "Max rate limit '100' exceeded with in '20' secs")
                state._concurrent_seq += 1
                every = state.concurrent_limit_every
                if state.in_flight > state.max_concurrent or (every > 0 and state._concurrent_seq % every == 0):
                    return error("615", "Concurrent access limit '10' reached")
                if state.daily_quota is not None and state.calls >= state.daily_quota:
                    return error("607", "Daily quota reached")
                state.calls += 1
                params = await params_of(request)
                if request.method == "POST" and params.get("_method", "").upper() != "GET":
                    return error("605", "HTTP Method not supported")
                state.requests.append((request.url.path, {k: v for k, v in params.items() if k != "access_token"}))
                answer = handler(params)
                if isinstance(answer, tuple):
                    return error(*answer)
                return MarketoJSON({"requestId": state.request_id(), **answer})
            finally:
                state.in_flight -= 1

        return endpoint

    def activity_types(_: dict[str, str]):
        return {"result": ACTIVITY_TYPES, "success": True}

    def paging_token(params: dict[str, str]):
        since = params.get("sinceDatetime", "").strip()
        if not since:
            return _blank("sinceDatetime")
        try:
            moment = datetime.fromisoformat(since[:-1] + "+00:00" if since.endswith("Z") else since)
        except ValueError:
            return "704", "Invalid date format"
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return {"success": True, "nextPageToken": marketo.date_token(moment)}

    def activities(params: dict[str, str]):
        token = params.get("nextPageToken", "")
        if not token:
            return _blank("nextPageToken")
        type_ids = [v for v in params.get("activityTypeIds", "").split(",") if v.strip()]
        if not type_ids:
            return _blank("activityTypeIds")
        try:
            wanted = {int(v) for v in type_ids}
            batch = int(params.get("batchSize") or MAX_BATCH)
        except ValueError:
            return "1001", "Invalid value. Required of type 'Integer'"
        if len(wanted) > MAX_TYPE_IDS:
            return "1003", f"Too many activity type ids (max {MAX_TYPE_IDS})"
        cursor = marketo.read_token(token)
        if cursor is None:
            return "1001", f"Invalid value '{token}'. Required of type 'nextPageToken'"
        if faults.hit("empty_page"):
            return {"success": True, "nextPageToken": token, "moreResult": True}
        result, position, replay, more = marketo.activities_page(*cursor, wanted, max(1, min(MAX_BATCH, batch)))
        body: dict[str, Any] = {"result": result} if result else {}
        body.update(success=True, nextPageToken=marketo.token_at(position, replay), moreResult=more)
        return body

    def leads(params: dict[str, str]):
        filter_type = params.get("filterType", "").strip()
        if not filter_type:
            return _blank("filterType")
        values = [v.strip() for v in params.get("filterValues", "").split(",") if v.strip()]
        if not values:
            return _blank("filterValues")
        if len(values) > MAX_FILTER_VALUES:
            return "1003", f"Too many filter values (max {MAX_FILTER_VALUES})"
        fields = [f.strip() for f in params.get("fields", "").split(",") if f.strip()] or list(DEFAULT_LEAD_FIELDS)
        known = {f["rest"]["name"] for f in LEAD_FIELDS}
        for name in fields:
            if name not in known:
                return "1006", f"Field '{name}' not found"
        if filter_type == "id":
            ids = sorted({int(v) for v in values if v.isdigit()})
        elif filter_type == "email":
            ids = sorted({lid for v in values if (lid := marketo.lead_by_email(v)) is not None})
        else:
            return "1011", f"Field '{filter_type}' not supported"
        return {"result": [marketo.lead(i, fields) for i in ids if i in marketo.people], "success": True}

    def describe(_: dict[str, str]):
        return {"result": LEAD_FIELDS, "success": True}

    async def unknown_resource(_: Request) -> Response:
        return error("610", "Requested resource not found")

    async def marketo_settings(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            for name in ("daily_quota", "concurrent_limit_every", "max_concurrent"):
                if name in body:
                    setattr(state, name, None if body[name] is None else int(body[name]))
        return JSONResponse(state.settings())

    routes = [
        Route("/identity/oauth/token", identity, methods=["GET", "POST"]),
        Route("/rest/v1/activities/types.json", rest(activity_types), methods=["GET"]),
        Route("/rest/v1/activities/pagingtoken.json", rest(paging_token), methods=["GET"]),
        Route("/rest/v1/activities.json", rest(activities), methods=["GET"]),
        Route("/rest/v1/leads.json", rest(leads), methods=["GET", "POST"]),
        Route("/rest/v1/leads/describe.json", rest(describe), methods=["GET"]),
        Route("/_sandbox/marketo", marketo_settings, methods=["GET", "POST"]),
        *control_routes(world, faults),
        Route("/rest/{rest:path}", unknown_resource, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.marketo = state
    app.state.instance = marketo
    return app
