"""Large pushes as Bulk API 2.0 ingest jobs: one job per object and operation (updates by Id, creates upserted by
Handoff's key), each created, uploaded and closed, all polled together with a growing wait, and every result row
mapped back to its write. A group too small for a job goes in one sObject Collections call instead.

Bulk API 2.0 runs no assignment rule unless a job names one, and these jobs name none.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from connectors.crm.salesforce_records import error_result
from connectors.crm.salesforce_session import StopSync
from connectors.http import ConnectorError, PermanentError, TransientError
from domain.activity import normalize_email
from domain.crm import CrmObject, Outcome, WriteResult

if TYPE_CHECKING:
    from connectors.crm.salesforce import Ready, SalesforceClient

log = logging.getLogger("handoff.crm.salesforce")

SMALL_GROUP = 200  # a group one sObject Collections call takes goes that way: a job costs more calls
MAX_JOB_BYTES = 90 * 1024 * 1024  # Bulk API 2.0 takes up to 100 MB of CSV a job
DONE = ("JobComplete", "Failed", "Aborted")


@dataclass
class Job:
    object: str
    operation: str  # update (by Id) or upsert (by Handoff's key)
    items: list  # Ready tuples, in upload order
    match: str  # the uploaded column a result row is matched on
    id: str | None = None
    info: dict = field(default_factory=dict)
    problem: ConnectorError | None = None


class BulkWriter:
    def __init__(self, client: "SalesforceClient"):
        self.client = client
        self.key = client.config.fields["key"]

    def write(self, ready: Sequence["Ready"], results: list) -> None:
        groups: dict[tuple[str, str], list] = defaultdict(list)
        for item in ready:
            groups[(item[1].object.value, "upsert" if item[1].creates else "update")].append(item)
        jobs: list[Job] = []
        for (obj, operation), items in groups.items():
            if len(items) <= SMALL_GROUP:
                self.client.write_collections(items, results)
                continue
            for part in self._parts(items):
                jobs.append(Job(obj, operation, part, "Id" if operation == "update" else self.key))
        for job in jobs:
            self._start(job)
        self._wait([job for job in jobs if job.problem is None])
        duplicates: list[tuple[int, Any]] = []
        for job in jobs:
            self._collect(job, results, duplicates)
        self._link_duplicates(duplicates, results)

    def _assignment_rule(self) -> str | None:
        """The org's active lead assignment rule, which a job names to run it (none: the leads stay Handoff's)."""
        records = self.client.call("query", lambda sf: sf.query(
            "SELECT Id FROM AssignmentRule WHERE SobjectType = 'Lead' AND Active = true LIMIT 1")).get("records") or []
        return records[0].get("Id") if records else None

    @staticmethod
    def _parts(items: list) -> list[list]:
        """The group cut where its CSV would pass a job's size limit."""
        parts, current, size = [], [], 0
        for item in items:
            cost = sum(len(str(v)) + 3 for v in item[2].values()) + 40
            if current and size + cost > MAX_JOB_BYTES:
                parts.append(current)
                current, size = [], 0
            current.append(item)
            size += cost
        return parts + ([current] if current else [])

    # -- a job's life --------------------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        """Create, upload, close. A failed upload aborts its job (nothing of an open job is processed) and the data
        goes to a new job, never twice into the same one."""
        client = self.client
        spec = {"object": job.object, "operation": job.operation, "contentType": "CSV", "lineEnding": "LF",
                "columnDelimiter": "COMMA", **({"externalIdFieldName": self.key} if job.operation == "upsert" else {})}
        if job.operation == "upsert" and job.object == "Lead" and client.config.push.new_leads_owner == "crm_rule":
            rule = self._assignment_rule()
            if rule:  # a job runs the rule only when it names it
                spec["assignmentRuleId"] = rule
        data = self._csv(job)
        for attempt in range(1, client.backoff.max_attempts + 1):
            job.id, job.problem = None, None
            try:
                job.id = (client.call("bulk", lambda sf: sf.restful("jobs/ingest", method="POST", json=spec))
                          or {}).get("id")
                if not job.id:
                    raise TransientError("salesforce bulk: a new job was answered without its id")
                client.call("bulk", lambda sf: client.raw(sf, "PUT", f"jobs/ingest/{job.id}/batches", data=data,
                                                           headers={"Content-Type": "text/csv"}), repeatable=False)
                break
            except StopSync:
                raise
            except ConnectorError as exc:
                job.problem = exc
                self._abort(job)
                if isinstance(exc, PermanentError) or attempt == client.backoff.max_attempts:
                    return
                client.sleep(client.backoff.wait(attempt, None))
        try:
            job.info = client.call("bulk", lambda sf: sf.restful(f"jobs/ingest/{job.id}", method="PATCH",
                                                                 json={"state": "UploadComplete"}))
        except StopSync:
            raise
        except PermanentError as exc:
            if "INVALIDJOBSTATE" not in str(exc):  # else a close whose answer was lost had closed it already
                job.problem = exc
        except TransientError as exc:
            job.problem = exc
            self._abort(job)

    def _abort(self, job: Job) -> None:
        if job.id is None:
            return
        try:
            self.client.call("bulk", lambda sf: sf.restful(f"jobs/ingest/{job.id}", method="PATCH",
                                                           json={"state": "Aborted"}), repeatable=False)
        except StopSync:
            raise
        except ConnectorError:
            pass  # an open job nobody closes is never processed, and the org deletes it in a week

    def _csv(self, job: Job) -> bytes:
        columns: dict[str, None] = {job.match: None}
        for _, write, values in job.items:
            columns.update(dict.fromkeys(values))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for _, write, values in job.items:
            row = {**values, "Id": write.crm_id} if job.operation == "update" else values
            writer.writerow([_cell(row.get(name)) for name in columns])
        return out.getvalue().encode()

    def _wait(self, jobs: list[Job]) -> None:
        """Poll the jobs until each is done, the wait doubling from a start that grows with the rows sent."""
        client = self.client
        waiting = list(jobs)
        rows = sum(len(job.items) for job in jobs)
        delay, waited = max(client.bulk_poll_seconds, min(30.0, rows / 20_000)), 0.0
        while waiting and waited < client.bulk_wait_seconds:
            client.sleep(delay)
            waited += delay
            for job in list(waiting):
                try:
                    job.info = client.call("bulk", lambda sf: sf.restful(f"jobs/ingest/{job.id}"))
                except StopSync:
                    raise
                except ConnectorError as exc:
                    job.problem = exc
                    waiting.remove(job)
                    continue
                if job.info.get("state") in DONE:
                    waiting.remove(job)
            delay = min(30.0, delay * 2)
        for job in waiting:
            job.problem = TransientError(f"salesforce bulk job {job.id}: still {job.info.get('state')} after "
                                         f"{waited:.0f}s; its records are settled next run")

    # -- results -------------------------------------------------------------------------------------------

    def _rows(self, job: Job, kind: str) -> list[dict]:
        response = self.client.call("bulk", lambda sf: self.client.raw(sf, "GET", f"jobs/ingest/{job.id}/{kind}"))
        return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))

    def _collect(self, job: Job, results: list, duplicates: list) -> None:
        info, state = job.info, job.info.get("state")
        if job.problem is not None or state not in DONE:
            problem = job.problem or TransientError(f"salesforce bulk job {job.id}: {state}")
            outcome = Outcome.FAILED if isinstance(problem, PermanentError) else Outcome.TRANSIENT
            for index, write, _ in job.items:
                results[index] = WriteResult(write.lead_id, outcome, write.crm_id, "BULK_JOB_FAILED", str(problem))
            return
        try:
            failed = self._rows(job, "failedResults") if int(info.get("numberRecordsFailed") or 0) else []
            whole = int(info.get("numberRecordsProcessed") or 0) >= len(job.items) and state == "JobComplete"
            succeeded = None if whole and job.operation == "update" else self._rows(job, "successfulResults")
        except StopSync:
            raise
        except ConnectorError as exc:
            for index, write, _ in job.items:
                results[index] = WriteResult(write.lead_id, Outcome.TRANSIENT, write.crm_id, "BULK_RESULTS_LOST",
                                             f"{exc}; the job {job.id} ran, its results could not be read")
            return
        # Ids are matched as they are (a 15-character id is case-sensitive), Handoff's keys without case
        same = (lambda value: value) if job.operation == "update" else str.lower
        waiting: dict[str, deque] = defaultdict(deque)
        for item in job.items:
            waiting[same(item[1].crm_id if job.operation == "update" else item[1].key)].append(item)

        def take(row: dict):
            queue = waiting.get(same(str(row.get(job.match, ""))))
            return queue.popleft() if queue else None

        for row in failed:
            item = take(row)
            if item is None:
                continue
            code, _, rest = str(row.get("sf__Error", "")).partition(":")
            message = rest.rsplit(":", 1)[0] if rest.endswith("--") else rest
            result = error_result(item[1], code or "UNKNOWN", message.strip())
            if code == "DUPLICATES_DETECTED":
                duplicates.append((item[0], item[1]))
            results[item[0]] = result
        for row in succeeded or []:
            item = take(row)
            if item is not None:
                outcome = Outcome.CREATED if item[1].creates else Outcome.WRITTEN
                results[item[0]] = WriteResult(item[1].lead_id, outcome, row.get("sf__Id") or item[1].crm_id)
        for queue in waiting.values():
            for index, write, _ in queue:
                if succeeded is None:
                    results[index] = WriteResult(write.lead_id, Outcome.WRITTEN, write.crm_id)
                else:
                    results[index] = WriteResult(write.lead_id, Outcome.TRANSIENT, write.crm_id, "UNPROCESSED",
                                                 f"the bulk job {job.id} ended {state} before this record")

    def _link_duplicates(self, duplicates: list, results: list) -> None:
        """A bulk duplicate error does not name the record it matched: find it by the lead's e-mail."""
        emails = {normalize_email(write.values.get("email")): index for index, write in duplicates
                  if normalize_email(write.values.get("email"))}
        if not emails:
            return
        try:
            people = self.client.find_people(emails=list(emails))
        except StopSync:
            raise
        except ConnectorError:
            return
        for person in sorted(people, key=lambda p: (p.object is not CrmObject.CONTACT, p.converted)):
            index = emails.pop(normalize_email(person.email) or "", None)
            if index is not None:
                old = results[index]
                results[index] = WriteResult(old.lead_id, Outcome.DUPLICATE, person.crm_id, old.error_code, old.message,
                                             object=person.object)


def _cell(value: Any) -> str:
    """A value as a Bulk API CSV cell (an empty cell leaves the field as it is)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
