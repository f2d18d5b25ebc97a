"""The CRM connector for Salesforce, on simple-salesforce: pull what changed since each kind's watermark in few
calls (first pages in composite calls, then query_more), find people, read back Handoff's fields, and write records
in sObject Collections calls of 200 (or Bulk API 2.0 jobs above the configured size) with a result for each.

Retries only where a repeat cannot duplicate: reads, updates by Id, upserts by Handoff's key; a create whose
answer was lost is looked up by its key before it is sent again. Writes send `Sforce-Auto-Assign: FALSE`, but
for the Leads Handoff creates when the org's assignment rule assigns new leads (`push.new_leads_owner`).
"""

from __future__ import annotations

import logging
import time
from datetime import timezone
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import urlencode, urlsplit

from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql, quote_soql_value
from simple_salesforce.util import exception_handler

from config.crm import CrmConfig
from connectors.crm.base import PULLED
from connectors.crm.salesforce_records import (
    ID, Stream, Unwritable, handoff_values, read_page, record_result, record_values, streams,
)
from connectors.crm.salesforce_session import (
    ApiSession, Grant, StopSync, first_error, redact, sign_in, sorted_error,
)
from connectors.http import Backoff, ConnectorError, PermanentError, TokenExpired, TransientError
from domain.activity import text_problem
from domain.crm import (
    HANDOFF_FIELDS, ApiUsage, CrmChanges, CrmObject, CrmPerson, CrmWrite, Outcome, WriteResult,
)

log = logging.getLogger("handoff.crm.salesforce")
T = TypeVar("T")

COLLECTION_SIZE = 200  # records an sObject Collections call takes
COMPOSITE_QUERIES = 5  # query subrequests a composite call may hold (of its 25)
PAGE_SIZE = 2000  # Salesforce's largest query page
MAX_SOQL = 8000  # characters of one query built here (Salesforce takes 100,000; a GET's URI 16,384 bytes)
LONGEST_VALUE = 4000  # Salesforce's limit for one string in a WHERE clause: a longer value can match nothing
NO_ASSIGN = {"Sforce-Auto-Assign": "FALSE"}  # Handoff's writes never re-run the lead assignment rule ...
ASSIGN = {"Sforce-Auto-Assign": "TRUE"}  # ... but for a Lead it creates in an org whose rule assigns new leads
Ready = tuple[int, CrmWrite, dict]  # a write's place in the input, the write, its record as sent


class SalesforceClient:
    """One run's connection to a Salesforce org. `secrets`: client_id + client_secret, or client_id + username +
    private_key_file, or access_token (with connection.instance_url)."""

    name = "salesforce"

    def __init__(self, config: CrmConfig, secrets: dict[str, str], *, backoff: Backoff = Backoff(),
                 sleep: Callable[[float], None] = time.sleep, page_size: int = PAGE_SIZE,
                 bulk_poll_seconds: float = 1.0, bulk_wait_seconds: float = 900.0):
        self.config = config
        self.backoff, self.sleep = backoff, sleep
        self._secrets = {key: str(value) for key, value in secrets.items() if value}
        self._session = ApiSession(config.connection.timeout_seconds)
        self._sf: Salesforce | None = None
        self._grant: Grant | None = None
        self._page_size = max(200, min(PAGE_SIZE, page_size))
        self._streams = {s.kind: s for s in streams(config)}
        self.bulk_poll_seconds, self.bulk_wait_seconds = bulk_poll_seconds, bulk_wait_seconds
        self.queried_at: dict[str, Any] = {}  # the org's clock when each query's first page was answered

    # -- the session ---------------------------------------------------------------------------------------

    def authenticate(self) -> None:
        grant = sign_in(self._session, self.config.connection, self._secrets, backoff=self.backoff, sleep=self.sleep)
        self._session.route(grant.instance_url)
        self._sf = Salesforce(instance=urlsplit(grant.instance_url).netloc, session_id=grant.access_token,
                              session=self._session, version=self.config.connection.api_version)
        self._grant = grant

    @property
    def usage(self) -> ApiUsage | None:
        return self._session.usage

    @property
    def calls(self) -> Mapping[str, int]:
        return dict(self._session.calls)

    @property
    def instance_url(self) -> str | None:
        """The org's own URL, which record links start with (known once signed in)."""
        return self._grant.instance_url if self._grant else None

    def close(self) -> None:
        self._session.close()

    def _api(self) -> Salesforce:
        if self._sf is None:
            self.authenticate()
        return self._sf

    def call(self, what: str, send: Callable[[Salesforce], T], *, repeatable: bool = True) -> T:
        """`send(sf)`, retried with backoff on a transient failure when a repeat cannot duplicate anything; an
        expired session is renewed once and the call repeated (the org refused it before doing anything)."""
        renewed, attempt = False, 0
        while True:
            attempt += 1
            try:
                return send(self._api())
            except (SalesforceError, ConnectorError, OSError, ValueError) as exc:
                error = sorted_error(exc, what, self.config.connection.timeout_seconds)
            if isinstance(error, TokenExpired):
                if renewed or not (self._grant and self._grant.renewable):
                    raise StopSync(self._clean(f"{error}: the session was refused and cannot be renewed here "
                                               "(a new access token is needed)")) from None
                self.authenticate()
                renewed, attempt = True, attempt - 1
                continue
            if isinstance(error, PermanentError):
                raise type(error)(self._clean(str(error))) from None
            if not repeatable or attempt >= self.backoff.max_attempts:
                note = "" if not repeatable else f" (gave up after {attempt} attempts)"
                raise TransientError(self._clean(f"{error}{note}")) from None
            log.warning("%s; retry %d", self._clean(str(error)), attempt)
            self.sleep(self.backoff.wait(attempt, self._session.retry_after))

    def raw(self, sf: Salesforce, method: str, path: str, *, data: Any = None, headers: dict | None = None):
        """A call whose body is not JSON (CSV to and from Bulk API 2.0), through the same session and errors."""
        response = sf.session.request(method, sf.base_url + path, data=data, headers={**sf.headers, **(headers or {})})
        if response.status_code >= 300:
            exception_handler(response, path)
        return response

    def _clean(self, text: str) -> str:
        token = [self._grant.access_token] if self._grant else []
        return redact(text, [*self._secrets.values(), *token])

    # -- queries -------------------------------------------------------------------------------------------

    def _query_headers(self) -> dict[str, str]:
        return {"Sforce-Query-Options": f"batchSize={self._page_size}"} if self._page_size < PAGE_SIZE else {}

    def pages(self, queries: Sequence[tuple[str, str]], *, deleted: bool = False) -> Iterator[tuple[str, list]]:
        """(name, records) for every page of each named query: first pages in composite calls of up to five
        queries, later pages with query_more."""
        headers = self._query_headers()
        for start in range(0, len(queries), COMPOSITE_QUERIES):
            group = list(queries[start:start + COMPOSITE_QUERIES])
            if len(group) == 1:
                name, soql = group[0]
                firsts = {name: self.call("query", lambda sf: sf.query(soql, include_deleted=deleted, headers=headers))}
            else:
                firsts = self.call("composite", lambda sf: self._first_pages(sf, group, deleted, headers))
            for name, _ in group:
                page = firsts[name]
                while True:
                    records = page.get("records") if isinstance(page, dict) else None
                    if not isinstance(records, list):
                        raise TransientError(f"salesforce query of {name}: an answer without records")
                    yield name, records
                    following = page.get("nextRecordsUrl")
                    if page.get("done", True) or not following:
                        break
                    page = self.call("query_more", lambda sf: sf.query_more(following, identifier_is_url=True,
                                                                             headers=headers))

    def _first_pages(self, sf: Salesforce, group: list[tuple[str, str]], deleted: bool, headers: dict) -> dict:
        resource = "queryAll" if deleted else "query"
        version = self.config.connection.api_version
        subrequests = [{"method": "GET", "url": f"/services/data/v{version}/{resource}?{urlencode({'q': soql})}",
                        "referenceId": name, **({"httpHeaders": headers} if headers else {})} for name, soql in group]
        answer = sf.restful("composite", method="POST", json={"allOrNone": False, "compositeRequest": subrequests})
        if self._session.answered_at is not None:
            self.queried_at.update({name: self._session.answered_at for name, _ in group})
        results = {r.get("referenceId"): r for r in (answer or {}).get("compositeResponse") or [] if isinstance(r, dict)}
        bodies = {}
        for name, _ in group:
            result = results.get(name) or next(iter(results.values()), {})
            status = result.get("httpStatusCode")
            code, message = first_error(result.get("body"))
            if not isinstance(status, int) or status >= 500:
                raise TransientError(f"salesforce query of {name}: HTTP {status} {code}: {message}")
            if status >= 400:
                raise PermanentError(f"salesforce query of {name}: HTTP {status} {code}: {message}")
            bodies[name] = result.get("body")
        return bodies

    @staticmethod
    def in_lists(head: str, criteria: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
        """`head (f1 IN (...) OR f2 IN (...))` queries holding every value once, each under MAX_SOQL characters;
        every value goes through format_soql."""
        base = len(head) + 8
        queries, current, size = [], {}, base

        def emit() -> None:
            terms = [format_soql("{field:literal} IN {values}", field=field, values=values)
                     for field, values in current.items()]
            queries.append(f"{head} ({' OR '.join(terms)})")

        for field, values in criteria:
            for value in values:
                cost = len(quote_soql_value(value)) + 1 + (0 if field in current else len(field) + 12)
                if current and size + cost > MAX_SOQL:
                    emit()
                    current, size = {}, base
                    cost += len(field) + 12
                current.setdefault(field, []).append(value)
                size += cost
        if current:
            emit()
        return queries

    # -- pull ----------------------------------------------------------------------------------------------

    def pull(self, since: Mapping[str, Any]) -> CrmChanges:
        changes = CrmChanges()
        self.queried_at = changes.queried_at
        queries = [(kind, self._changed_since(self._streams[kind], since.get(kind))) for kind in PULLED]
        for kind, records in self.pages(queries, deleted=True):
            stream = self._streams[kind]
            taken, refused, newest = read_page(stream, records)
            getattr(changes, stream.into).extend(taken)
            changes.refused.extend(refused)
            if newest is not None and (kind not in changes.newest or newest > changes.newest[kind]):
                changes.newest[kind] = newest
        return changes

    @staticmethod
    def _changed_since(stream: Stream, since) -> str:
        head = format_soql("SELECT {fields:literal} FROM {object:literal}", fields=", ".join(stream.fields),
                           object=stream.object)
        if since is None:
            return f"{head} ORDER BY SystemModstamp, Id"
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        return head + format_soql(" WHERE SystemModstamp >= {} ORDER BY SystemModstamp, Id", since)

    # -- people --------------------------------------------------------------------------------------------

    def find_people(self, keys: Sequence[str] = (), emails: Sequence[str] = (), ids: Sequence[str] = ()
                    ) -> list[CrmPerson]:
        keys, emails = _values(keys), _values(emails)
        ids = [i for i in _values(ids) if ID.match(i)]
        if not (keys or emails or ids):
            return []
        key = self.config.fields["key"]
        queries = []
        for kind in ("leads", "contacts"):
            stream = self._streams[kind]
            head = format_soql("SELECT {fields:literal} FROM {object:literal} WHERE IsDeleted = false AND",
                               fields=", ".join(stream.fields), object=stream.object)
            for n, soql in enumerate(self.in_lists(head, [(key, keys), ("Email", emails), ("Id", ids)])):
                queries.append((f"{kind}_{n}", soql))
        found: dict[str, CrmPerson] = {}
        for name, records in self.pages(queries):
            people, refused, _ = read_page(self._streams[name.split("_")[0]], records)
            for kind, reason, _ in refused:
                log.warning("a %s record found could not be read: %s", kind, reason)
            for person in people:
                found.setdefault(person.crm_id, person)
        return list(found.values())

    def read_handoff_values(self, object: CrmObject, ids: Sequence[str]) -> dict[str, dict]:
        ids = [i for i in _values(ids) if ID.match(i)]
        fields = ["Id", "OwnerId"] + [self.config.fields[n] for n in HANDOFF_FIELDS if n in self.config.fields]
        head = format_soql("SELECT {fields:literal} FROM {object:literal} WHERE", fields=", ".join(fields),
                           object=CrmObject(object).value)
        asked: dict[str, list[str]] = {}
        for record_id in ids:  # answered under the id as asked, 15 or 18 characters
            asked.setdefault(record_id[:15], []).append(record_id)
        values: dict[str, dict] = {}
        queries = [(f"values_{n}", soql) for n, soql in enumerate(self.in_lists(head, [("Id", ids)]))]
        for _, records in self.pages(queries):
            for record in records:
                if isinstance(record, dict) and isinstance(record.get("Id"), str):
                    for record_id in asked.get(record["Id"][:15], [record["Id"]]):
                        values[record_id] = handoff_values(record, self.config)
        return values

    def queue_ids(self, names: Sequence[str]) -> dict[str, str]:
        head = "SELECT Id, Name FROM Group WHERE Type = 'Queue' AND"
        queries = [(f"queues_{n}", soql) for n, soql in enumerate(self.in_lists(head, [("Name", _values(names))]))]
        found: dict[str, str] = {}
        for _, records in self.pages(queries):
            for record in records:
                if isinstance(record, dict) and isinstance(record.get("Name"), str):
                    found[record["Name"]] = record.get("Id")
        return found

    def ids_by_key(self, object: str, keys: Sequence[str]) -> dict[str, str]:
        """Live records carrying these keys (compared without case, as Salesforce compares them): key -> id."""
        key = self.config.fields["key"]
        head = format_soql("SELECT Id, {key:literal} FROM {object:literal} WHERE", key=key, object=object)
        queries = [(f"keys_{n}", soql) for n, soql in enumerate(self.in_lists(head, [(key, _values(keys))]))]
        found = {}
        for _, records in self.pages(queries):
            for record in records:
                if isinstance(record, dict) and isinstance(record.get(key), str):
                    found[record[key].lower()] = record.get("Id")
        return found

    # -- write ---------------------------------------------------------------------------------------------

    def write(self, writes: Sequence[CrmWrite]) -> list[WriteResult]:
        writes = list(writes)
        results: list[WriteResult | None] = [None] * len(writes)
        ready: list[Ready] = []
        for index, write in enumerate(writes):
            try:
                ready.append((index, write, record_values(write, self.config)))
            except Unwritable as exc:
                results[index] = WriteResult(write.lead_id, Outcome.FAILED, write.crm_id, "INVALID_VALUE", str(exc))
        if len(writes) > self.config.push.bulk_above:
            from connectors.crm.salesforce_bulk import BulkWriter
            BulkWriter(self).write(ready, results)
        else:
            self.write_collections(ready, results)
        return [r or WriteResult(w.lead_id, Outcome.TRANSIENT, w.crm_id, "NO_RESULT", "no answer for this record")
                for r, w in zip(results, writes)]

    def write_collections(self, ready: Sequence[Ready], results: list) -> None:
        """Updates by Id (any object) and creates upserted by Handoff's key (one object a call), 200 a call."""
        updates = [item for item in ready if not item[1].creates]
        for start in range(0, len(updates), COLLECTION_SIZE):
            self._update(updates[start:start + COLLECTION_SIZE], results)
        for obj in CrmObject:
            creates = [item for item in ready if item[1].creates and item[1].object is obj]
            for start in range(0, len(creates), COLLECTION_SIZE):
                self._create(obj.value, creates[start:start + COLLECTION_SIZE], results)

    def _update(self, chunk: Sequence[Ready], results: list) -> None:
        body = {"allOrNone": False, "records": [{"attributes": {"type": w.object.value}, "Id": w.crm_id, **values}
                                                for _, w, values in chunk]}
        try:
            answer = self.call("update", lambda sf: sf.restful("composite/sobjects", method="PATCH", json=body,
                                                               headers=NO_ASSIGN))
        except StopSync:
            raise
        except ConnectorError as exc:
            self._whole(chunk, results, exc)
            return
        self._answers(chunk, answer, results)

    def _create(self, obj: str, chunk: Sequence[Ready], results: list) -> None:
        """Upsert by Handoff's key, so a repeat of a create cannot make a second record; still, when an answer is
        lost the records are looked up by key first and only the ones not found are sent again."""
        path = f"composite/sobjects/{obj}/{self.config.fields['key']}"
        headers = ASSIGN if obj == "Lead" and self.config.push.new_leads_owner == "crm_rule" else NO_ASSIGN
        pending, lost = list(chunk), None
        for attempt in range(1, self.backoff.max_attempts + 1):
            body = {"allOrNone": False, "records": [{"attributes": {"type": obj}, **values} for _, _, values in pending]}
            try:
                answer = self.call("create", lambda sf: sf.restful(path, method="PATCH", json=body, headers=headers),
                                   repeatable=False)
            except StopSync:
                raise
            except PermanentError as exc:
                self._whole(pending, results, exc)
                return
            except TransientError as exc:
                lost = exc
            else:
                self._answers(pending, answer, results)
                return
            try:
                found = self.ids_by_key(obj, [w.key for _, w, _ in pending])
            except StopSync:
                raise
            except ConnectorError:
                break
            for index, write, _ in pending:
                if write.key.lower() in found:
                    results[index] = WriteResult(write.lead_id, Outcome.CREATED, found[write.key.lower()],
                                                 message="the answer was lost; found by its key")
            pending = [item for item in pending if item[1].key.lower() not in found]
            if not pending:
                return
            if attempt < self.backoff.max_attempts:
                self.sleep(self.backoff.wait(attempt, None))
        for index, write, _ in pending:
            results[index] = WriteResult(write.lead_id, Outcome.TRANSIENT, None, "ANSWER_LOST",
                                         f"{lost}; not found by its key, to be sent again next run")

    @staticmethod
    def _whole(chunk: Sequence[Ready], results: list, exc: ConnectorError) -> None:
        """A call that failed as a whole: transient ones are tried again next run, permanent ones dead-lettered."""
        outcome = Outcome.TRANSIENT if isinstance(exc, TransientError) else Outcome.FAILED
        code = "CALL_FAILED" if outcome is Outcome.TRANSIENT else "CALL_REFUSED"
        for index, write, _ in chunk:
            results[index] = WriteResult(write.lead_id, outcome, write.crm_id, code, str(exc))

    def _answers(self, chunk: Sequence[Ready], answer: Any, results: list) -> None:
        answers = answer if isinstance(answer, list) else []
        for n, (index, write, _) in enumerate(chunk):
            item = answers[n] if n < len(answers) else None
            results[index] = record_result(write, item)


def _values(values: Sequence[Any]) -> list[str]:
    """Distinct non-blank text values a query can carry (a value Salesforce could not hold matches nothing)."""
    seen: dict[str, None] = {}
    for value in values or ():
        if isinstance(value, str) and value.strip() and len(value) <= LONGEST_VALUE and not text_problem(value):
            seen.setdefault(value.strip(), None)
    return list(seen)
