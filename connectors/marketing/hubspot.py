"""HubSpot client: marketing e-mail events and contact web events (page views, form submissions, webinar
attendance), normalized into activities, with the contacts' firmographics looked up in batches.

Feeds: GET /email/public/v1/events (reverse-chronological, offset/hasMore) and GET /events/v3/events, one
eventType at a time (oldest first, paging.next.after). Because the e-mail feed is newest first, no page but the
last carries a checkpoint. Per run, reference data is read once (marketing e-mails for names and campaigns, forms
for names, event types for the webinar event) and contacts only for the ids and addresses the new events name.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

import orjson
import requests

from config.sources import SourceConfig
from connectors.http import Backoff, HttpClient, PermanentError, TokenExpired, TransientError, retry_after_seconds
from connectors.marketing.base import Page, newest
from connectors.records import convert_guarded, loads_page
from domain.activity import (
    ActivityRecord, ActivityType, PersonRecord, Rejection, build_activity, dump_raw, employee_count, normalize_email,
)

_loads = orjson.loads  # several times faster than json for pages of 1,000 records
_raw = dump_raw


DEFAULT_BASE_URL = "https://api.hubapi.com"
MAX_EVENTS_PAGE = 1000  # the e-mail events API's documented maximum; the events API is paged the same way
BATCH_READ = 100  # CRM batch read inputs per request
CONTACT_PROPERTIES = [
    "email", "firstname", "lastname", "company", "jobtitle", "industry", "numberofemployees", "country",
    "hs_analytics_source", "lead_source", "product_interest",
]
EMAIL_TYPES = {
    "OPEN": ActivityType.EMAIL_OPEN.value,
    "CLICK": ActivityType.EMAIL_CLICK.value,
    "BOUNCE": ActivityType.EMAIL_BOUNCE.value,
    "STATUSCHANGE": ActivityType.UNSUBSCRIBE.value,
}
# Documented e-mail event types that are not marketing activities (delivery bookkeeping): skipped, not counted.
EMAIL_TYPES_IGNORED = frozenset(
    {"SENT", "DROPPED", "PROCESSED", "DELIVERED", "DEFERRED", "PRINT", "FORWARD", "SPAMREPORT", "UNBOUNCE",
     "SUGGESTEDBYUSER"}
)
PAGE_VIEW_EVENT = "e_visited_page"
FORM_EVENT = "e_submitted_form"
WEBINAR_SUFFIX = "_webinar_attended"  # the custom behavioral event pe{portalId}_webinar_attended
CHANNELS = {  # hs_analytics_source values, when a portal has no lead_source property
    "PAID_SEARCH": "Paid Search", "ORGANIC_SEARCH": "Organic Search", "REFERRALS": "Referral",
    "SOCIAL_MEDIA": "Social", "PAID_SOCIAL": "Social", "EMAIL_MARKETING": "Email", "DIRECT_TRAFFIC": "Direct",
    "OFFLINE": "Offline", "OTHER_CAMPAIGNS": "Other Campaigns",
}


class HubSpotSource:
    """One run's reader of a HubSpot portal; `secrets` holds access_token or client_id/client_secret/refresh_token."""

    def __init__(
        self,
        config: SourceConfig,
        secrets: dict[str, str],
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        backoff: Backoff = Backoff(),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = config.name
        self._config = config
        self._creds = {key: value for key, value in secrets.items() if value}
        self._private = "access_token" in self._creds
        self._oauth = all(key in self._creds for key in ("client_id", "client_secret", "refresh_token"))
        self._sleep = sleep
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._fresh_token = False
        self._http = HttpClient(
            "hubspot",
            config.base_url or DEFAULT_BASE_URL,
            timeout=timeout,
            backoff=backoff,
            sleep=sleep,
            authorize=self._authorize,
            reauthorize=self._reauthorize,
        )
        self._page_size = min(config.page_size or MAX_EVENTS_PAGE, MAX_EVENTS_PAGE)
        self._form_types = config.form_rules()
        self._contacts: dict[str, PersonRecord] = {}
        self._email_contact: dict[str, str | None] = {}  # lower-cased address -> contact id (None: no contact)
        self._people_sent: set[str] = set()
        self._refused_people: list[Rejection] = []  # contact records that could not be read, for the next page
        self._paths: dict[str, str] = {}
        self._emails: dict[str, tuple[str | None, str | None]] = {}
        self._forms: dict[str, str] = {}
        self._webinar_types: set[str] = set()

    def close(self) -> None:
        self._http.close()

    # -- the run --------------------------------------------------------------------------------------------

    def pages(self, since: datetime | None) -> Iterator[Page]:
        if not (self._private or self._oauth):
            raise PermanentError("hubspot: no credentials (set access_token, or client_id, client_secret and refresh_token)")
        self._load_reference_data()
        feeds: list[Iterable[Page]] = [self._email_pages(since), self._web_pages(PAGE_VIEW_EVENT, since),
                                       self._web_pages(FORM_EVENT, since)]
        feeds += [self._web_pages(event_type, since) for event_type in sorted(self._webinar_types)]
        held: Page | None = None
        latest: datetime | None = None
        for feed in feeds:
            for page in feed:
                latest = newest(latest, page.activities)
                if held is not None:
                    yield held
                held = page
        last = held or Page()
        last.checkpoint = latest  # safe only once every feed has been read to its end
        yield last

    def _load_reference_data(self) -> None:
        for email in self._paged("/marketing/v3/emails", {"limit": 100, "marketingCampaignNames": "true"}):
            for campaign_id in [*(email.get("allEmailCampaignIds") or []), email.get("primaryEmailCampaignId")]:
                if campaign_id:
                    self._emails[str(campaign_id)] = (email.get("name"), email.get("campaignName"))
        for form in self._paged("/marketing/v3/forms", {"limit": 100}):
            self._forms[str(form.get("id"))] = form.get("name") or ""
        wanted = self._config.options.get("webinar_event")
        types = self._json("GET", "/events/v3/events/event-types").get("eventTypes") or []
        self._webinar_types = {t for t in types if t == wanted or (not wanted and t.endswith(WEBINAR_SUFFIX))}

    def _paged(self, path: str, params: dict[str, Any]) -> Iterator[dict]:
        params = dict(params)
        while True:
            data = self._json("GET", path, params=params)
            yield from data.get("results") or []
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return
            params["after"] = after

    # -- marketing e-mail events ------------------------------------------------------------------------------

    def _email_pages(self, since: datetime | None) -> Iterator[Page]:
        params: dict[str, Any] = {"limit": self._page_size}
        if since is not None:
            params["startTimestamp"] = int(since.timestamp() * 1000)
        while True:
            data = self._json("GET", "/email/public/v1/events", params=params, records="events")
            # A record that is not an object stays, to be quarantined by _page
            records = [r for r in data.get("events") or () if not isinstance(r, dict) or (
                r.get("type") not in EMAIL_TYPES_IGNORED and (r.get("type") != "STATUSCHANGE" or _unsubscribed(r)))]
            self._look_up_addresses({r["recipient"].lower() for r in records
                                     if isinstance(r, dict) and isinstance(r.get("recipient"), str)})
            yield self._page(records, self._email_activity)
            if not data.get("hasMore") or not data.get("offset"):
                return
            params["offset"] = data["offset"]

    def _page(self, records: list, convert: Callable[[dict], ActivityRecord | Rejection]) -> Page:
        """One page of a feed: each record converted, with the people first met on it."""
        page = Page(fetched=len(records), rejected=self._refused_people)
        self._refused_people = []
        contacts = []
        for record in records:
            result = convert_guarded(self.name, convert, record)
            if isinstance(result, ActivityRecord):
                page.activities.append(result)
                if result.source_contact_id:
                    contacts.append(result.source_contact_id)
            else:
                page.rejected.append(result)
        page.people = self._new_people(contacts)
        return page

    def _email_activity(self, record: dict) -> ActivityRecord | Rejection:
        native = record.get("type")
        recipient = record.get("recipient")
        contact = self._email_contact.get(recipient.lower()) if isinstance(recipient, str) else None
        name, campaign = self._emails.get(str(record.get("emailCampaignId")), (None, None))
        return build_activity(
            source=self.name,
            external_id=record.get("id"),
            type_name=EMAIL_TYPES.get(native, native),
            occurred_at=record.get("created"),
            raw=_raw(record),
            email=recipient,
            source_contact_id=contact,
            asset=name,
            campaign=campaign,
        )

    # -- web events of contacts ----------------------------------------------------------------------------------

    def _web_pages(self, event_type: str, since: datetime | None) -> Iterator[Page]:
        params: dict[str, Any] = {"objectType": "contact", "eventType": event_type, "limit": self._page_size}
        if since is not None:  # occurredAfter is exclusive; a millisecond earlier makes `since` inclusive
            params["occurredAfter"] = _iso_ms(since - timedelta(milliseconds=1))
        while True:
            data = self._json("GET", "/events/v3/events", params=params)
            records = data.get("results") or []
            self._look_up_ids({str(r["objectId"]) for r in records
                               if isinstance(r, dict) and r.get("objectId") not in (None, "")})
            yield self._page(records, self._web_activity)
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return
            params["after"] = after

    def _web_activity(self, record: dict) -> ActivityRecord | Rejection:
        native = record.get("eventType")
        properties = record.get("properties") or {}
        asset: str | None = None
        if native == PAGE_VIEW_EVENT:
            kind = ActivityType.PAGE_VIEW.value
            asset = self._path(properties.get("hs_url"))
        elif native == FORM_EVENT:
            form_id = properties.get("hs_form_id")
            name = self._forms.get(form_id) or properties.get("hs_title") or form_id or ""
            form_kind, asset = self._form_types.classify(name)
            kind = form_kind.value
        elif native in self._webinar_types:
            kind = ActivityType.WEBINAR_ATTENDED.value
            asset = properties.get("webinar_name")
        else:
            kind = native
        object_id = record.get("objectId")
        contact_id = None if object_id in (None, "") else str(object_id)
        person = self._contacts.get(contact_id) if contact_id else None
        return build_activity(
            source=self.name,
            external_id=record.get("id"),
            type_name=kind,
            occurred_at=record.get("occurredAt"),
            raw=_raw(record),
            email=person.email if person else None,
            source_contact_id=contact_id,
            asset=asset,
        )

    def _path(self, url: Any) -> str | None:
        if not isinstance(url, str):
            return None
        path = self._paths.get(url)
        if path is None:
            path = urlsplit(url).path or "/"
            if len(self._paths) < 10_000:
                self._paths[url] = path
        return path

    # -- contacts --------------------------------------------------------------------------------------------------

    def _look_up_ids(self, ids: set[str]) -> None:
        self._batch_read(sorted(i for i in ids if i not in self._contacts), by_email=False)

    def _look_up_addresses(self, addresses: set[str]) -> None:
        self._batch_read(sorted(a for a in addresses if a not in self._email_contact), by_email=True)

    def _batch_read(self, keys: list[str], *, by_email: bool) -> None:
        for start in range(0, len(keys), BATCH_READ):
            chunk = keys[start:start + BATCH_READ]
            body: dict[str, Any] = {"properties": CONTACT_PROPERTIES, "propertiesWithHistory": [],
                                    "inputs": [{"id": key} for key in chunk]}
            if by_email:
                body["idProperty"] = "email"
                for key in chunk:
                    self._email_contact[key] = None  # stays None for an address with no contact
            for contact in self._json("POST", "/crm/v3/objects/contacts/batch/read", json=body).get("results") or []:
                person = convert_guarded(self.name, self._person, contact)
                if isinstance(person, Rejection):
                    self._refused_people.append(person)  # quarantined with the next page
                    continue
                self._contacts[person.source_contact_id] = person
                address = (contact.get("properties") or {}).get("email")
                if isinstance(address, str):
                    self._email_contact[address.lower()] = person.source_contact_id

    def _person(self, contact: dict) -> PersonRecord:
        return contact_person(self.name, contact)

    def _new_people(self, contact_ids: list[str]) -> list[PersonRecord]:
        """Each contact's firmographics once per run, on the first page that names them."""
        people = []
        for contact_id in contact_ids:
            if contact_id not in self._people_sent and contact_id in self._contacts:
                self._people_sent.add(contact_id)
                people.append(self._contacts[contact_id])
        return people

    # -- HTTP: auth, limits, errors ------------------------------------------------------------------------------

    def _json(self, method: str, path: str, records: str = "results", **kwargs: Any) -> dict:
        """The response's JSON; a page whose `records` do not all parse is read record by record."""
        response = self._http.request(method, path, check=self._check, **kwargs)
        try:
            data = loads_page(response.content, records)
        except ValueError:
            raise TransientError(f"hubspot {method} {path}: response is not JSON") from None
        return data if isinstance(data, dict) else {}

    def _authorize(self, headers: dict[str, str]) -> None:
        if self._private:
            headers["Authorization"] = f"Bearer {self._creds['access_token']}"
            return
        if self._token is None or time.monotonic() >= self._token_renew_at:
            self._refresh_token()
        headers["Authorization"] = f"Bearer {self._token}"

    def _reauthorize(self) -> None:
        self._token = None  # the next attempt refreshes before it is sent

    def _refresh_token(self) -> None:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._creds["client_id"],
            "client_secret": self._creds["client_secret"],
            "refresh_token": self._creds["refresh_token"],
        }
        response = self._http.request("POST", "/oauth/v1/token", data=form, authenticated=False)
        try:
            grant = _loads(response.content)
            token, lifetime = grant["access_token"], float(grant.get("expires_in") or 0)
        except (ValueError, KeyError, TypeError):
            raise PermanentError("hubspot POST /oauth/v1/token: no access token in the response") from None
        if grant.get("refresh_token"):
            self._creds["refresh_token"] = grant["refresh_token"]
        self._token = token
        # HubSpot asks clients to renew from expires_in rather than wait for a 401
        self._token_renew_at = time.monotonic() + lifetime - min(60.0, lifetime / 10)
        self._fresh_token = True

    def _check(self, response: requests.Response) -> None:
        """HubSpot's own 401 and 429 signals; on success, note that the token works and pause when the burst
        budget is spent."""
        if response.status_code in (401, 429):
            self._refuse(response)
        if response.status_code >= 400:
            return
        self._fresh_token = False
        if response.headers.get("X-HubSpot-RateLimit-Remaining") == "0":
            self._sleep(_interval(response))

    def _refuse(self, response: requests.Response) -> None:
        """Raise for a 401 or 429 by what HubSpot's body says: policy, expiry, or a refused token."""
        status = response.status_code
        where = f"hubspot {response.request.method} {urlsplit(response.url).path}"
        body = _body(response)
        if status == 429:
            policy = str(body.get("policyName") or "RATE_LIMIT")
            if policy == "DAILY":
                raise PermanentError(f"{where}: the portal's daily API limit is used up (429 {policy})")
            wait = retry_after_seconds(response.headers.get("Retry-After")) or _interval(response)
            raise TransientError(f"{where}: rate limited (429 {policy})", retry_after=wait)
        category = str(body.get("category") or "UNAUTHORIZED")
        if self._private:
            raise PermanentError(f"{where}: the private-app access token was refused (401 {category})")
        if category == "EXPIRED_AUTHENTICATION" or not self._fresh_token:
            raise TokenExpired(f"{where}: access token refused (401 {category})")
        raise PermanentError(f"{where}: a freshly issued access token was refused (401 {category})")


def contact_person(source: str, contact: dict) -> PersonRecord:
    """A contact as the CRM API gives it ({id, properties}) as a PersonRecord."""
    p = contact.get("properties") or {}
    channel = p.get("hs_analytics_source")
    return PersonRecord(
        source=source,
        source_contact_id=str(contact.get("id")),
        email=normalize_email(p.get("email")),
        first_name=p.get("firstname") or None,
        last_name=p.get("lastname") or None,
        company=p.get("company") or None,
        title=p.get("jobtitle") or None,
        industry=p.get("industry") or None,
        company_size=employee_count(p.get("numberofemployees")),
        country=p.get("country") or None,
        product_interest=p.get("product_interest") or None,
        lead_source_channel=p.get("lead_source") or CHANNELS.get(channel, channel) or None,
        raw=_raw(contact),
    )


def _body(response: requests.Response) -> dict:
    try:
        data = _loads(response.content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _interval(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds") or 10_000) / 1000)
    except ValueError:
        return 10.0


def _unsubscribed(record: dict) -> bool:
    if record.get("portalSubscriptionStatus") == "UNSUBSCRIBED":
        return True
    return any(isinstance(s, dict) and s.get("status") == "UNSUBSCRIBED" for s in record.get("subscriptions") or ())


def _iso_ms(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
