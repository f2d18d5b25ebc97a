"""Mautic connector: the all-contacts activity feed (GET /api/contacts/activity) over HTTP basic auth, with the
contacts' firmographics and the e-mails' campaigns looked up in batches and cached for the run.

Paging facts it relies on (see sandbox/mautic.py for the sources): `limit` applies per event type and each type
is paged by offset, so a page is not globally ordered: a page's checkpoint is the time up to which every type is
complete, not its newest event. Asking oldest first (order[]=timestamp,ASC) with a fixed dateFrom keeps earlier
offsets stable while new events arrive (a late event that lands mid-feed can only repeat a boundary row, which
the store de-duplicates, and the overlap window of the next run picks it up).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

import orjson
import requests

from config.sources import SourceConfig
from connectors.http import Backoff, HttpClient, PermanentError, TransientError, retry_after_seconds
from connectors.marketing.base import Page, newest, prefetch
from connectors.records import Unreadable, convert_guarded, loads_page, reject_unreadable
from domain.activity import (
    ActivityRecord,
    ActivityType,
    PersonRecord,
    Rejection,
    build_activity,
    dump_raw,
    employee_count,
    normalize_email,
    parse_instant,
)

_loads = orjson.loads  # parses pages several times faster than the standard library


_dumps = dump_raw


DEFAULT_PAGE_SIZE = 200  # events per type per page
LOOKUP_BATCH = 200  # ids per contacts / e-mails lookup, keeps the URL short
# Timeline types that are no lead activity; asked to be left out, so anything else unknown is quarantined.
IGNORED_TYPES = (
    "email.sent", "email.failed", "email.replied", "campaign.event", "campaign.event.scheduled", "campaign_membership",
    "segment_membership", "message.queue", "dynamic.content.sent", "lead.utmtagsadded", "lead.imported",
    "lead.ipadded", "point.gained", "stage.changed", "page.videohit", "sms.sent", "sms.failed", "sms_reply",
    "focus.on_view", "focus.on_click", "integration_sync_issues",
)
# PersonRecord field -> contact field alias; a source may override them in options.contact_fields.
CONTACT_FIELDS = {
    "first_name": "firstname", "last_name": "lastname", "company": "company", "title": "position",
    "industry": "industry", "company_size": "company_size", "country": "country",
    "product_interest": "product_interest", "lead_source_channel": "lead_source",
}
DNC_TYPES = {  # DncReasonHelper's en_US texts
    "Contact unsubscribed from this channel.": ActivityType.UNSUBSCRIBE,
    "Communication bounced for this channel.": ActivityType.EMAIL_BOUNCE,
}
NOT_AN_ACTIVITY = ("Contact was manually set as do not contact for this channel.", "Contact is contactable.")
_SKIP = object()
_ALL = object()


class MauticSource:
    def __init__(
        self,
        config: SourceConfig,
        secrets: dict[str, str],
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        backoff: Backoff = Backoff(),
        sleep=time.sleep,
    ):
        self.name = config.name
        if not config.base_url:
            raise PermanentError(f"{self.name}: no base_url")
        missing = [key for key in ("username", "password") if not secrets.get(key)]
        if missing:
            raise PermanentError(f"{self.name}: missing credentials: {', '.join(missing)}")
        session = requests.Session()
        session.auth = (secrets["username"], secrets["password"])
        self._http = HttpClient(self.name, config.base_url, timeout=timeout, backoff=backoff, session=session,
                                sleep=sleep)
        self._forms = config.form_rules()
        self._page_size = config.page_size or DEFAULT_PAGE_SIZE
        self._fields = {**CONTACT_FIELDS, **(config.options.get("contact_fields") or {})}
        self._select = ["email", *sorted(set(self._fields.values()))]  # Mautic 4+ sends only these fields
        self._people: dict[str, PersonRecord | None] = {}
        self._emails: dict[str, tuple[str | None, str | None]] = {}
        self._paths: dict[str, str] = {}

    def pages(self, since: datetime | None) -> Iterator[Page]:
        self._people.clear()
        params: dict[str, Any] = {
            "limit": self._page_size,
            "order[0]": "timestamp",
            "order[1]": "ASC",
            "filters[excludeEvents][]": list(IGNORED_TYPES),
        }
        if since is not None:  # whole seconds rounded up, with an offset: a bare date is the instance's local time
            since = since.astimezone(timezone.utc) if since.tzinfo else since.replace(tzinfo=timezone.utc)
            if since.microsecond:
                since += timedelta(microseconds=1_000_000 - since.microsecond)
            params["filters[dateFrom]"] = since.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        latest = checkpoint = None
        # Pages are fetched ahead in their own thread, so contact and e-mail lookups overlap the next fetch.
        for number, data, events, last in prefetch(self._feed(params), depth=3):
            page, reached = self._page(events, _as_int(data.get("limit"), self._page_size))
            latest = newest(latest, page.activities)
            reached = latest if last or reached is _ALL else reached
            if reached is not None and (checkpoint is None or reached > checkpoint):
                checkpoint = reached
            page.checkpoint = checkpoint
            yield page

    def _feed(self, params: dict[str, Any]) -> Iterator[tuple[int, dict, list, bool]]:
        number = 1
        while True:
            data = self._get("/api/contacts/activity", {**params, "page": number}, records="events")
            events = data.get("events") or []
            if not isinstance(events, list):
                raise PermanentError(f"{self.name}: /api/contacts/activity: `events` is not a list")
            last = not events or number >= _as_int(data.get("maxPages"), 1)
            yield number, data, events, last
            if last:
                return
            number += 1

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ one page

    def _page(self, events: list, limit: int) -> tuple[Page, Any]:
        """The page's records, and how far the feed is complete: each event type is read oldest first, so a type
        that filled its `limit` is complete up to the second before its newest event here and one that did not is
        complete; the feed is complete up to the earliest of those times (_ALL when every type is done)."""
        page = Page(fetched=len(events))
        for odd in (e for e in events if not isinstance(e, dict)):
            page.rejected.append(reject_unreadable(self.name, odd) if isinstance(odd, Unreadable) else
                                 Rejection(self.name, None, "activity event is not a JSON object", _dumps(odd)))
        events = [e for e in events if isinstance(e, dict)]
        contacts = {str(e.get("contactId")) for e in events if e.get("contactId") not in (None, "")}
        page.people, refused = self._lookup_people(contacts)
        page.rejected += refused
        self._lookup_emails({eid for e in events if (eid := _email_id(e))})
        rows: Counter = Counter()
        reached: dict[Any, datetime | None] = {}
        for event in events:
            kind = event.get("event")
            kind = kind if isinstance(kind, str) or kind is None else repr(kind)  # a hostile type is a key too
            rows[kind] += 1
            record = convert_guarded(self.name, self._activity, event)
            if isinstance(record, ActivityRecord):
                page.activities.append(record)
                moment = record.occurred_at
            else:
                if isinstance(record, Rejection):
                    page.rejected.append(record)
                moment = parse_instant(event.get("timestamp"))
            if moment is not None and (reached.get(kind) is None or moment > reached[kind]):
                reached[kind] = moment
            else:
                reached.setdefault(kind, None)
        busy = [reached[kind] for kind, count in rows.items() if count >= limit]
        if not busy:
            return page, _ALL
        # the next page may hold more events of that very second
        return page, None if None in busy else min(busy) - timedelta(seconds=1)

    def _activity(self, event: dict):
        kind = event.get("event")
        details = event.get("details")
        details = details if isinstance(details, dict) else {}
        mapped = self._classify(kind, details, event.get("eventLabel"))
        if mapped is _SKIP:
            return _SKIP
        type_name, asset, campaign = mapped
        contact = event.get("contactId")
        contact = None if contact in (None, "") else str(contact)
        person = self._people.get(contact) if contact else None
        external = event.get("eventId")
        if external not in (None, "") and isinstance(kind, str) and not str(external).startswith(kind):
            external = f"{kind}{external}"  # page hits are numbered by hit id alone
        return build_activity(
            source=self.name,
            external_id=external,
            type_name=type_name,
            occurred_at=event.get("timestamp"),
            raw=_dumps(event),
            email=person.email if person else None,
            source_contact_id=contact,
            asset=asset,
            campaign=campaign,
        )

    def _classify(self, kind: Any, details: dict, label: Any):
        """(canonical type name, asset, campaign) for a native event; an unmapped type passes its own name on."""
        if kind == "page.hit":
            hit = _dict(details.get("hit"))
            if hit.get("source") == "email":
                name, campaign = self._emails.get(str(hit.get("sourceId")), (None, None))
                return ActivityType.EMAIL_CLICK.value, hit.get("sourceName") or name, campaign
            return ActivityType.PAGE_VIEW.value, self._path(hit.get("url") or _href(label)), None
        if kind == "form.submitted":
            name = _dict(details.get("form")).get("name") or _label(label)
            if not name:
                return "form.submitted without a form name", None, None
            activity, asset = self._forms.classify(name)
            return activity.value, asset, None
        if kind == "asset.download":
            title = _dict(details.get("asset")).get("title") or _label(label)
            return ActivityType.WHITEPAPER_DOWNLOAD.value, title, None
        if kind == "email.read":
            stat = _dict(details.get("stat"))
            name, campaign = self._emails.get(str(stat.get("emailId") or stat.get("email_id")), (None, None))
            name = stat.get("emailName") or stat.get("email_name") or name or _label(label)
            return ActivityType.EMAIL_OPEN.value, name, campaign
        if kind == "lead.donotcontact":
            dnc = _dict(details.get("dnc"))
            reason = dnc.get("reason")
            if dnc.get("channel") != "email" or reason in NOT_AN_ACTIVITY:
                return _SKIP
            activity = DNC_TYPES.get(reason)
            if activity is None:
                return f"lead.donotcontact with reason {reason!r}", None, None
            name, campaign = self._emails.get(str(dnc.get("channelId") or dnc.get("channel_id")), (None, None))
            return activity.value, dnc.get("itemName") or name, campaign
        if kind in ("webinar.attended", "webinar.registered"):
            activity = ActivityType.WEBINAR_ATTENDED if kind.endswith("attended") else ActivityType.WEBINAR_REGISTRATION
            return activity.value, details.get("eventDesc") or _label(label), None
        return kind, None, None

    def _path(self, url: Any) -> str | None:
        if not isinstance(url, str) or not url:
            return None
        path = self._paths.get(url)
        if path is None:
            path = urlsplit(url).path or "/"
            if len(self._paths) < 10_000:
                self._paths[url] = path
        return path

    # ------------------------------------------------------------ lookups

    def _lookup_people(self, ids: Iterable[str]) -> tuple[list[PersonRecord], list[Rejection]]:
        """PersonRecords for contacts not seen yet this run, fetched `LOOKUP_BATCH` at a time, and the contact
        records that could not be read."""
        missing = sorted((cid for cid in ids if cid not in self._people and cid.isdigit()), key=int)
        found: list[PersonRecord] = []
        refused: list[Rejection] = []
        for chunk in _chunks(missing, LOOKUP_BATCH):
            data = self._get("/api/contacts", {**_where_ids(chunk, minimal=1), "select[]": self._select},
                             records="contacts")
            for contact in _items(data.get("contacts")):
                person = convert_guarded(self.name, self._person, contact)
                if isinstance(person, Rejection):
                    refused.append(person)
                elif person is not None:
                    self._people[person.source_contact_id] = person
                    found.append(person)
            for cid in chunk:
                self._people.setdefault(cid, None)
        return found, refused

    def _person(self, contact: Any) -> PersonRecord | None:
        return contact_person(self.name, contact, self._fields)

    def _lookup_emails(self, ids: Iterable[str]) -> None:
        """E-mail name and campaign (utmTags.utmCampaign, else its category) for e-mails not seen yet."""
        missing = sorted((eid for eid in ids if eid not in self._emails and eid.isdigit()), key=int)
        for chunk in _chunks(missing, LOOKUP_BATCH):
            data = self._get("/api/emails", _where_ids(chunk), records="emails")
            for email in _items(data.get("emails")):
                if isinstance(email, dict) and email.get("id") not in (None, ""):
                    utm, category = _dict(email.get("utmTags")), _dict(email.get("category"))
                    self._emails[str(email["id"])] = (email.get("name"), utm.get("utmCampaign") or category.get("title"))
            for eid in chunk:
                self._emails.setdefault(eid, (None, None))

    def _get(self, path: str, params: dict[str, Any], records: str = "") -> dict:
        """The response's JSON; a page whose `records` do not all parse is read record by record."""
        parsed: dict[str, Any] = {}

        def check(response: requests.Response) -> None:
            _refusals(self.name, response)
            if response.status_code >= 400:
                return
            try:
                data = loads_page(response.content, records) if records else _loads(response.content)
            except ValueError:
                raise TransientError(f"{self.name} GET {path}: the response is not JSON") from None
            if not isinstance(data, dict):
                raise PermanentError(f"{self.name} GET {path}: unexpected response {type(data).__name__}")
            if data.get("errors"):
                raise PermanentError(f"{self.name} GET {path}: {_problem(data)}")
            parsed["data"] = data

        self._http.request("GET", path, params=params, check=check)
        return parsed["data"]


# ---------------------------------------------------------------- helpers

def contact_person(source: str, contact: Any, fields: dict[str, str]) -> PersonRecord | None:
    """A Mautic contact as the API and webhooks serialize it (grouped fields, and `all` when the API adds it) as a
    PersonRecord; `fields` maps PersonRecord fields to contact field aliases."""
    if not isinstance(contact, dict) or contact.get("id") in (None, ""):
        return None
    grouped = _dict(contact.get("fields"))
    values: dict[str, Any] = dict(_dict(grouped.get("all")))
    for group, entries in grouped.items():
        if group == "all" or not isinstance(entries, dict):
            continue
        for alias, entry in entries.items():
            if isinstance(entry, dict):  # a select's label rather than its stored value
                shown = entry.get("normalizedValue")
                values[alias] = shown if shown not in (None, "") else entry.get("value")
    picked = {}
    for name, alias in fields.items():
        value = values.get(alias)
        if value in (None, ""):
            continue
        if name == "company_size":
            value = employee_count(value)
        elif name == "country":
            value = COUNTRY_CODES.get(str(value), str(value))
        else:
            value = str(value)
        picked[name] = value
    return PersonRecord(source, str(contact["id"]), normalize_email(values.get("email")), **picked,
                        raw=_dumps(contact))


def _refusals(service: str, response: requests.Response) -> None:
    """What the generic status mapping would misread on Mautic: a 401 is bad basic-auth credentials (permanent,
    not an expired token), and the API rate limiter's reset time stands in for a missing Retry-After."""
    where = f"{service} {response.request.method} {urlsplit(response.url).path}"
    if response.status_code == 401:
        try:
            detail = _problem(response.json())
        except ValueError:
            detail = "unauthorized"
        raise PermanentError(f"{where}: credentials refused (401): {detail}")
    if response.status_code == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        reset = response.headers.get("X-RateLimit-Reset", "")
        if wait is None and reset.isdigit():
            wait = max(0, int(reset) - int(time.time()))
        raise TransientError(f"{where}: rate limited (429)", retry_after=wait)


def _problem(data: Any) -> str:
    errors = data.get("errors") if isinstance(data, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    message = str(first.get("message") or data)[:300]
    kind = first.get("type")
    return f"{message} ({kind})" if kind else message


def _email_id(event: dict) -> str | None:
    details = _dict(event.get("details"))
    kind = event.get("event")
    if kind == "email.read":
        stat = _dict(details.get("stat"))
        value = stat.get("emailId") or stat.get("email_id")
    elif kind == "page.hit":
        hit = _dict(details.get("hit"))
        value = hit.get("sourceId") if hit.get("source") == "email" else None
    elif kind == "lead.donotcontact":
        dnc = _dict(details.get("dnc"))
        value = (dnc.get("channelId") or dnc.get("channel_id")) if dnc.get("channel") == "email" else None
    else:
        return None
    return None if value in (None, "") else str(value)


def _where_ids(ids: list[str], **extra: Any) -> dict[str, Any]:
    return {"where[0][col]": "id", "where[0][expr]": "in", "where[0][val]": ",".join(ids), "limit": len(ids), **extra}


def _items(collection: Any) -> list:
    """Entities of a list response: an object keyed by id (contacts) or a JSON list (e-mails, empty results)."""
    if isinstance(collection, dict):
        return list(collection.values())
    return collection if isinstance(collection, list) else []


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _label(label: Any) -> str | None:
    return label.get("label") if isinstance(label, dict) else label if isinstance(label, str) else None


def _href(label: Any) -> str | None:
    return label.get("href") if isinstance(label, dict) else None


def _as_int(value: Any, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


# Mautic stores countries by the names in CoreBundle/Assets/json/countries.json; other sources use ISO codes.
_COUNTRIES = (
    "AF:Afghanistan|AX:Åland Islands|AL:Albania|DZ:Algeria|AD:Andorra|AO:Angola|AI:Anguilla|AQ:Antarctica|"
    "AG:Antigua and Barbuda|AR:Argentina|AM:Armenia|AW:Aruba|AU:Australia|AT:Austria|AZ:Azerbaijan|BS:Bahamas|"
    "BH:Bahrain|BD:Bangladesh|BB:Barbados|BY:Belarus|BE:Belgium|BZ:Belize|BJ:Benin|BM:Bermuda|BT:Bhutan|"
    "BO:Bolivia|BQ:Bonaire, Saint Eustatius and Saba|BA:Bosnia and Herzegovina|BW:Botswana|BV:Bouvet Island|"
    "BR:Brazil|BN:Brunei|BG:Bulgaria|BF:Burkina Faso|BI:Burundi|CV:Cape Verde|KH:Cambodia|CM:Cameroon|CA:Canada|"
    "KY:Cayman Islands|CF:Central African Republic|TD:Chad|CL:Chile|CN:China|CO:Colombia|KM:Comoros|"
    "CK:Cook Islands|CR:Costa Rica|HR:Croatia|CU:Cuba|CW:Curaçao|CY:Cyprus|CZ:Czech Republic|DK:Denmark|"
    "DJ:Djibouti|DM:Dominica|DO:Dominican Republic|CD:Democratic Republic of the Congo|TL:East Timor|EC:Ecuador|"
    "EG:Egypt|SV:El Salvador|GQ:Equatorial Guinea|ER:Eritrea|EE:Estonia|SZ:Eswatini|ET:Ethiopia|"
    "FK:Falkland Islands|FJ:Fiji|FI:Finland|FR:France|GF:French Guiana|PF:French Polynesia|GA:Gabon|GM:Gambia|"
    "GE:Georgia|DE:Germany|GH:Ghana|GI:Gibraltar|GR:Greece|GL:Greenland|GD:Grenada|GP:Guadeloupe|GU:Guam|"
    "GT:Guatemala|GG:Guernsey|GN:Guinea|GW:Guinea Bissau|GY:Guyana|HT:Haiti|HM:Heard Island and McDonald Islands|"
    "VA:Holy See|HN:Honduras|HK:Hong Kong|HU:Hungary|IS:Iceland|IN:India|ID:Indonesia|IR:Iran|IQ:Iraq|IE:Ireland|"
    "IL:Israel|IM:Isle of Man|IT:Italy|CI:Ivory Coast|JM:Jamaica|JP:Japan|JE:Jersey|JO:Jordan|KZ:Kazakhstan|"
    "KE:Kenya|KI:Kiribati|XK:Kosovo|KW:Kuwait|KG:Kyrgyzstan|LA:Laos|LV:Latvia|LB:Lebanon|LS:Lesotho|LR:Liberia|"
    "LY:Libya|LI:Liechtenstein|LT:Lithuania|LU:Luxembourg|MO:Macao|MK:Macedonia|MG:Madagascar|MW:Malawi|"
    "MY:Malaysia|MV:Maldives|ML:Mali|MT:Malta|MH:Marshall Islands|MQ:Martinique|MR:Mauritania|MU:Mauritius|"
    "YT:Mayotte|MX:Mexico|FM:Micronesia|MD:Moldova|MC:Monaco|MN:Mongolia|ME:Montenegro|MS:Montserrat|MA:Morocco|"
    "MZ:Mozambique|MM:Myanmar|NA:Namibia|NR:Nauru|NP:Nepal|NL:Netherlands|NC:New Caledonia|NZ:New Zealand|"
    "NI:Nicaragua|NE:Niger|NG:Nigeria|NU:Niue|KP:North Korea|MP:Northern Mariana Islands|NO:Norway|OM:Oman|"
    "PK:Pakistan|PW:Palau|PS:Palestine|PA:Panama|PG:Papua New Guinea|PY:Paraguay|PE:Peru|PH:Philippines|"
    "PN:Pitcairn|PL:Poland|PT:Portugal|PR:Puerto Rico|QA:Qatar|CG:Republic of the Congo|RE:Réunion|RO:Romania|"
    "RU:Russia|RW:Rwanda|BL:Saint Barthelemy|SH:Saint Helena, Ascension and Tristan da Cunha|"
    "KN:Saint Kitts and Nevis|LC:Saint Lucia|MF:Saint Martin|PM:Saint Pierre and Miquelon|"
    "VC:Saint Vincent and the Grenadines|WS:Samoa|SM:San Marino|ST:Sao Tome and Principe|SA:Saudi Arabia|"
    "SN:Senegal|RS:Serbia|SC:Seychelles|SL:Sierra Leone|SG:Singapore|SK:Slovakia|SI:Slovenia|SB:Solomon Islands|"
    "SO:Somalia|ZA:South Africa|GS:South Georgia and the South Sandwich Islands|KR:South Korea|SS:South Sudan|"
    "ES:Spain|LK:Sri Lanka|SJ:Svalbard and Jan Mayen|SD:Sudan|SR:Suriname|SE:Sweden|CH:Switzerland|SY:Syria|"
    "PF:Tahiti|TW:Taiwan|TJ:Tajikistan|TZ:Tanzania|TH:Thailand|TG:Togo|TK:Tokelau|TO:Tonga|"
    "TT:Trinidad and Tobago|TN:Tunisia|TR:Türkiye|TM:Turkmenistan|TC:Turks and Caicos Islands|TV:Tuvalu|"
    "GB:United Kingdom|US:United States|UG:Uganda|UA:Ukraine|AE:United Arab Emirates|UY:Uruguay|UZ:Uzbekistan|"
    "VU:Vanuatu|VE:Venezuela|VN:Vietnam|VG:Virgin Islands (British)|VI:Virgin Islands (U.S.)|"
    "WF:Wallis and Futuna|EH:Western Sahara|YE:Yemen|ZM:Zambia|ZW:Zimbabwe|"
)
COUNTRY_CODES = {name: code for code, name in (pair.split(":", 1) for pair in _COUNTRIES.rstrip("|").split("|"))}
