"""Marketo REST client: an OAuth client-credentials token, the paging-token activity feed (oldest first) and
batched lead lookups, normalized into Handoff's activities and people."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import orjson
import requests

from config.sources import SourceConfig
from connectors.http import Backoff, HttpClient, PermanentError, TokenExpired, TransientError, retry_after_seconds
from connectors.marketing.base import Page, newest, prefetch
from connectors.records import Unreadable, convert_guarded, loads_page, reject_unreadable
from domain.activity import (
    ActivityRecord, ActivityType, PersonRecord, Rejection, build_activity, dump_raw, employee_count, normalize_email,
    parse_instant,
)

MAX_BATCH = 300  # activities per page and lead ids per lookup
MAX_TYPE_IDS = 10
RATE_WINDOW_SECONDS = 20.0  # 606: at most 100 calls in any 20 s
RENEW_MARGIN_SECONDS = 60.0
MAX_STALLED_PAGES = 1000  # empty pages that hand back the same token before we call the feed stuck

VISIT_WEBPAGE = "Visit Webpage"
FILL_OUT_FORM = "Fill Out Form"
PROGRAM_STATUS = "Change Status in Progression"
EMAIL_TYPES = {
    "Open Email": ActivityType.EMAIL_OPEN,
    "Click Email": ActivityType.EMAIL_CLICK,
    "Email Bounced": ActivityType.EMAIL_BOUNCE,
    "Unsubscribe Email": ActivityType.UNSUBSCRIBE,
}
KNOWN_TYPES = (VISIT_WEBPAGE, FILL_OUT_FORM, PROGRAM_STATUS, *EMAIL_TYPES)

TOKEN_CODES = {"601", "602"}
RETRY_CODES = {"500", "502", "604", "608", "611", "614", "615", "713", "719"}

# Marketo lead field (REST name) -> PersonRecord field; product interest is a custom field named in the options.
LEAD_FIELDS = {
    "firstName": "first_name", "lastName": "last_name", "company": "company", "title": "title",
    "industry": "industry", "numberOfEmployees": "company_size", "country": "country",
    "leadSource": "lead_source_channel",
}


def _attribute(record: dict[str, Any], name: str) -> Any:
    for attribute in record.get("attributes") or ():
        if attribute.get("name") == name:
            return attribute.get("value")
    return None


def _whole_seconds(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


def _record_time(record: Any) -> datetime | None:
    return parse_instant(record.get("activityDate")) if isinstance(record, dict) else None


def _first_at_or_after(records: list[Any], until: datetime) -> int | None:
    """The index of the first record dated at or after `until`; a record without a readable date does not cut."""
    for index, record in enumerate(records):
        moment = _record_time(record)
        if moment is not None and moment >= until:
            return index
    return None


def _envelope_error(where: str, code: str, message: str) -> Exception:
    """Marketo's response-level error codes (HTTP 200, success false) as Handoff's error kinds."""
    if code in TOKEN_CODES:
        return TokenExpired(f"{where}: access token refused ({code} {message})")
    if code == "606":
        return TransientError(f"{where}: rate limited ({code} {message})", retry_after=RATE_WINDOW_SECONDS)
    if code in RETRY_CODES:
        return TransientError(f"{where}: {code} {message}")
    if code == "607":
        return PermanentError(f"{where}: daily API quota reached (607); Marketo resets it at midnight US Central time")
    return PermanentError(f"{where}: Marketo error {code}: {message}")


class MarketoSource:
    """One Marketo instance. The activity feed is read from a date-based paging token; Marketo returns activities
    oldest first, so every page carries the newest time seen so far as its checkpoint."""

    def __init__(
        self,
        config: SourceConfig,
        secrets: dict[str, str],
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        backoff: Backoff = Backoff(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not config.base_url:
            raise PermanentError(f"{config.name}: base_url is required")
        missing = [key for key in ("client_id", "client_secret") if not (secrets or {}).get(key)]
        if missing:
            raise PermanentError(f"{config.name}: missing Marketo credentials: {', '.join(missing)}")
        self.name = config.name
        self.__client_id = secrets["client_id"]
        self.__client_secret = secrets["client_secret"]
        self._base_url = config.base_url
        self._timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._http = HttpClient(
            config.name, config.base_url, timeout=timeout, backoff=backoff, sleep=sleep,
            authorize=self._authorize, reauthorize=self._drop_token,
        )
        self._forms = config.form_rules()
        self.batch_size = min(MAX_BATCH, config.page_size or MAX_BATCH)
        options = config.options
        self._product_field = str(options.get("product_interest_field", "productInterest"))
        self._attended = frozenset(options.get("attended_statuses", ("Attended", "Attended On-demand")))
        self._backfill_since = str(options.get("backfill_since", "1970-01-01T00:00:00Z"))
        self._pages_ahead = int(options.get("pages_ahead", 3))  # 0: fetch and look up in one thread, in turn
        self._types: dict[int, str] | None = None
        self._fields: str | None = None
        self._people: dict[Any, PersonRecord | None] = {}

    # --- the feed ---

    def pages(self, since: datetime | None, until: datetime | None = None) -> Iterator[Page]:
        """Activities from `since` on, oldest first; with `until`, only those before it: the feed is cut at the
        first record dated at or after `until`, which is where a paging token for `until` starts."""
        types = self._activity_types()
        latest: datetime | None = None
        # The feed is fetched a few pages ahead in its own thread, so lead lookups overlap the next fetch.
        feed = self._feed_since(since)
        for records in prefetch(feed, depth=self._pages_ahead) if self._pages_ahead else feed:
            cut = _first_at_or_after(records, until) if until else None
            page = self._page(records if cut is None else records[:cut], types)
            latest = newest(latest, page.activities)
            page.checkpoint = latest
            yield page
            if cut is not None:
                return

    def first_activity_at(self, since: datetime | None) -> datetime | None:
        """When the first activity at or after `since` happened (None when there is none): where a backfill's
        data really begins, so that splitting it by time gives windows of similar size."""
        feed = self._feed_since(since)
        try:
            for records in feed:
                first = _first_at_or_after(records, _EARLIEST)
                if first is not None:
                    return _record_time(records[first])
        finally:
            feed.close()
        return None

    def _feed_since(self, since: datetime | None) -> Iterator[list[Any]]:
        """The feed of the activity types Handoff reads, from a paging token for `since` (or the backfill start)."""
        start = _whole_seconds(since) if since else self._backfill_since
        token = self._get("/rest/v1/activities/pagingtoken.json", {"sinceDatetime": start}).get("nextPageToken")
        if not token:
            raise PermanentError(f"{self.name}: the paging token response has no nextPageToken")
        return self._feed(token, ",".join(str(i) for i in sorted(self._activity_types())))

    def _feed(self, token: str, type_ids: str) -> Iterator[list[Any]]:
        """The records of each non-empty page of the activity feed, and of its last page."""
        stalled = 0
        while True:
            body, records = self._get_records(
                "/rest/v1/activities.json",
                {"nextPageToken": token, "activityTypeIds": type_ids, "batchSize": self.batch_size},
            )
            more = bool(body.get("moreResult"))
            next_token = body.get("nextPageToken") or token
            stalled = stalled + 1 if not records and next_token == token else 0
            if stalled >= MAX_STALLED_PAGES:
                raise TransientError(f"{self.name}: the activity feed returned {stalled} empty pages without moving on")
            token = next_token
            if records or not more:
                yield records
            if not more:
                return

    def _page(self, records: list[Any], types: dict[int, str]) -> Page:
        page = Page(fetched=len(records))
        page.people, page.rejected = self._lookup_leads({r["leadId"] for r in records
                                                         if isinstance(r, dict) and type(r.get("leadId")) is int})
        for record in records:
            if isinstance(record, Unreadable):
                page.rejected.append(reject_unreadable(self.name, record))
                continue
            raw = dump_raw(record)
            if not isinstance(record, dict):
                page.rejected.append(Rejection(self.name, None, "an activity must be a JSON object", raw))
                continue
            result = convert_guarded(self.name, lambda r: self._activity(r, raw, types), record)
            if result is None:
                page.fetched -= 1
            elif type(result) is ActivityRecord:
                page.activities.append(result)
            else:
                page.rejected.append(result)
        return page

    def _activity(self, record: dict[str, Any], raw: str, types: dict[int, str]) -> ActivityRecord | Rejection | None:
        """One activity, or None for a program status change that is not attendance (nothing to score)."""
        type_id = record.get("activityTypeId")
        native = types.get(type_id)
        value = record.get("primaryAttributeValue")
        asset = campaign = None
        if native is None:
            kind: Any = f"activityTypeId {type_id!r}, not in types.json"
        elif native in EMAIL_TYPES:
            kind = EMAIL_TYPES[native]
            program, dot, email_name = (value or "").partition(".")  # Marketo names program e-mails "Program.Email"
            asset, campaign = (email_name, program) if dot else (value, None)
        elif native == VISIT_WEBPAGE:
            kind = ActivityType.PAGE_VIEW
            asset = _attribute(record, "Webpage URL")
            if not asset and value:
                slash = value.find("/")
                asset = value[slash:] if slash >= 0 else "/"
        elif native == FILL_OUT_FORM:
            kind, asset = self._forms.classify(value or "")
        else:
            if _attribute(record, "New Status") not in self._attended:
                return None
            kind, asset = ActivityType.WEBINAR_ATTENDED, value
        lead_id = record.get("leadId")
        person = self._people.get(lead_id)
        return build_activity(
            source=self.name,
            external_id=record.get("marketoGUID") or record.get("id"),
            type_name=kind,
            occurred_at=record.get("activityDate"),
            raw=raw,
            email=person.email if person is not None else None,
            source_contact_id=lead_id,
            asset=asset,
            campaign=campaign,
        )

    # --- reference data and people ---

    def _activity_types(self) -> dict[int, str]:
        """Type ids by name from types.json: ids are looked up, not assumed."""
        if self._types is None:
            listed = self._get("/rest/v1/activities/types.json").get("result") or []
            self._types = {t["id"]: t["name"] for t in listed if isinstance(t, dict) and t.get("name") in KNOWN_TYPES}
            if not self._types:
                raise PermanentError(f"{self.name}: types.json lists none of the activity types Handoff reads")
            if len(self._types) > MAX_TYPE_IDS:
                raise PermanentError(f"{self.name}: more than {MAX_TYPE_IDS} activity types to request")
        return self._types

    def _lead_fields(self) -> str:
        """The lead fields to request: those of ours that describe.json says this instance has."""
        if self._fields is None:
            described = self._get("/rest/v1/leads/describe.json").get("result") or []
            rest = [f.get("rest") for f in described if isinstance(f, dict)]
            available = {r.get("name") for r in rest if isinstance(r, dict)}
            wanted = ["id", "email", *LEAD_FIELDS, self._product_field]
            self._fields = ",".join(name for name in wanted if name in available or name in ("id", "email"))
        return self._fields

    def _lookup_leads(self, lead_ids: set[Any]) -> tuple[list[PersonRecord], list[Rejection]]:
        """People not seen yet in this run, fetched up to 300 ids a call, and the lead records that could not be
        read; the cache also answers each activity's e-mail."""
        todo = sorted(i for i in lead_ids if isinstance(i, int) and i not in self._people)
        found: list[PersonRecord] = []
        refused: list[Rejection] = []
        for start in range(0, len(todo), MAX_BATCH):
            chunk = todo[start:start + MAX_BATCH]
            params = {"filterType": "id", "filterValues": ",".join(map(str, chunk)), "fields": self._lead_fields()}
            for lead in self._get("/rest/v1/leads.json", params).get("result") or []:
                person = convert_guarded(self.name, self._person, lead)
                if isinstance(person, Rejection):
                    refused.append(person)
                    continue
                self._people[lead.get("id")] = person
                found.append(person)
            for lead_id in chunk:
                self._people.setdefault(lead_id, None)
        return found, refused

    def _person(self, lead: dict[str, Any]) -> PersonRecord:
        fields = {ours: lead.get(theirs) for theirs, ours in LEAD_FIELDS.items()}
        fields["company_size"] = employee_count(fields["company_size"])
        return PersonRecord(
            source=self.name,
            source_contact_id=str(lead.get("id")),
            email=normalize_email(lead.get("email")),
            product_interest=lead.get(self._product_field),
            **fields,
            raw=dump_raw(lead),
        )

    # --- HTTP, tokens and Marketo's envelopes ---

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._get_records(path, params)[0]

    def _get_records(self, path: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Any]]:
        """The envelope and its `result` items; parsed once, inside the retry loop."""
        response = self._http.request("GET", path, params=params, check=self._check)
        body = response.marketo_body  # type: ignore[attr-defined]
        return body, body.get("result") or []

    def _check(self, response: requests.Response) -> None:
        if response.status_code != 200:
            return  # Marketo's own signals come in 200 envelopes; the rest is the generic status mapping's
        where = f"{self.name} GET {urlsplit(response.url).path}"
        try:
            envelope = loads_page(response.content, "result")
        except orjson.JSONDecodeError:
            envelope = None
        if not isinstance(envelope, dict):
            raise TransientError(f"{where}: the response is not a JSON object (HTTP {response.status_code})")
        if envelope.get("success") is False:
            errors = envelope.get("errors")
            first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
            raise _envelope_error(where, str(first.get("code", "")), str(first.get("message", ""))[:200])
        response.marketo_body = envelope  # type: ignore[attr-defined]  # read by _get_records

    def _authorize(self, headers: dict[str, str]) -> None:
        if self._token is None or self._clock() >= self._renew_at:
            self._fetch_token()
        headers["Authorization"] = f"Bearer {self._token}"

    def _drop_token(self) -> None:
        self._token = None

    def _fetch_token(self) -> None:
        """Client-credentials grant, sent as a form body so the secret never sits in a URL. Runs inside the
        HttpClient's attempt, so a transient failure here is retried with the request that needed the token."""
        where = f"{self.name} POST /identity/oauth/token"
        form = {"grant_type": "client_credentials", "client_id": self.__client_id,
                "client_secret": self.__client_secret}
        url = f"{self._base_url}/identity/oauth/token"
        try:
            response = self._http.session.post(url, data=form, timeout=self._timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{where}: {type(exc).__name__}") from None
        status = response.status_code
        if status in (400, 401, 403):
            reason = ""
            try:
                reason = str(response.json().get("error", ""))[:80]
            except (ValueError, AttributeError):
                pass
            raise PermanentError(f"{where}: the client id / secret were refused (HTTP {status} {reason})".rstrip())
        if status in (408, 429) or status >= 500:
            asked = retry_after_seconds(response.headers.get("Retry-After"))
            raise TransientError(f"{where}: HTTP {status}", retry_after=asked)
        if status >= 300:
            raise PermanentError(f"{where}: HTTP {status}")
        try:
            body = response.json()
            token, lifespan = body["access_token"], float(body.get("expires_in") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TransientError(f"{where}: no access token in the response") from None
        now = self._clock()
        # Identity hands back the same token until it lapses: then use it to the end rather than asking again.
        margin = 0.0 if token == self._token else min(RENEW_MARGIN_SECONDS, lifespan / 2)
        self._token, self._renew_at = token, now + lifespan - margin

    def close(self) -> None:
        self._http.close()
