"""Bulk API 2.0 ingest jobs for the Salesforce stand-in: create, upload CSV, close, poll, and the three result files.

A closed job is processed on a worker thread in chunks of rows, each under the org's lock, through the same checks
as REST writes (assignment rules only when the job names an assignmentRuleId, as in Bulk API 2.0). States go
Open -> UploadComplete -> InProgress -> JobComplete, or Failed when the CSV names a field the object lacks.
Result files carry sf__Id / sf__Created (successful) or sf__Id / sf__Error ("CODE:message:fields --") before the
uploaded columns.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from sandbox.salesforce_org import Org, WriteContext
from sandbox.salesforce_schema import RecordError, SObject, make_id, render_datetime

OPERATIONS = ("insert", "update", "upsert", "delete")
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
CHUNK = 2000  # rows written per hold of the org's lock, so other calls interleave with a big job


class JobError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class IngestJob:
    id: str
    sobject: SObject
    operation: str
    external_id: str | None
    delimiter: str
    line_ending: str
    assignment_rule: str | None
    created_by: str
    created_at: int
    version: str
    state: str = "Open"
    header: list[str] = field(default_factory=list)
    header_line: str = ""
    rows: list[list[str]] = field(default_factory=list)
    succeeded: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    failed: list[tuple[str, str, list[str]]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    error_message: str | None = None
    modstamp: int = 0
    processing_ms: int = 0

    def info(self) -> dict:
        body = {
            "id": self.id, "operation": self.operation, "object": self.sobject.name, "createdById": self.created_by,
            "createdDate": render_datetime(self.created_at),
            "systemModstamp": render_datetime(self.modstamp or self.created_at),
            "state": self.state, "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(self.version),
            "jobType": "V2Ingest", "contentUrl": f"services/data/v{self.version}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending, "columnDelimiter": _delimiter_name(self.delimiter),
            "numberRecordsProcessed": len(self.succeeded) + len(self.failed), "numberRecordsFailed": len(self.failed),
            "retries": 0, "totalProcessingTime": self.processing_ms, "apiActiveProcessingTime": self.processing_ms,
            "apexProcessingTime": 0,
        }
        if self.external_id:
            body["externalIdFieldName"] = self.external_id
        if self.assignment_rule:
            body["assignmentRuleId"] = self.assignment_rule
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body


def _delimiter_name(char: str) -> str:
    return next(name for name, c in DELIMITERS.items() if c == char)


def sf_error(error: RecordError) -> str:
    return f"{error.code}:{error.message}:{','.join(error.fields)} --"


class BulkIngest:
    def __init__(self, org: Org, record_fault: Callable[[str | None], RecordError | None]):
        self.org, self.record_fault = org, record_fault
        self.jobs: dict[str, IngestJob] = {}
        self.counter = 0
        self.batches_used = 0

    def create(self, body: dict, user: str, version: str) -> IngestJob:
        sobject = self.org.sobject(str(body.get("object") or ""))
        operation = body.get("operation")
        if sobject is None:
            raise JobError(400, "INVALIDJOB", f"InvalidJob : Unable to find object: {body.get('object')}")
        if operation not in OPERATIONS:
            raise JobError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        external = body.get("externalIdFieldName")
        if operation == "upsert":
            f = sobject.field(external or "")
            if f is None or not (f.external_id or f.name == "Id"):
                raise JobError(400, "INVALIDJOB", f"InvalidJob : External ID was blank for {sobject.name}. "
                                                  "An External ID must be specified for upsert.")
            external = f.name
        delimiter = DELIMITERS.get(str(body.get("columnDelimiter") or "COMMA"))
        if delimiter is None or str(body.get("contentType") or "CSV") != "CSV":
            raise JobError(400, "INVALIDJOB", "InvalidJob : Invalid column delimiter or content type")
        self.counter += 1
        job = IngestJob(make_id("750", self.counter), sobject, operation, external if operation == "upsert" else None,
                        delimiter, str(body.get("lineEnding") or "LF"), body.get("assignmentRuleId"), user,
                        self.org.now, version)
        self.jobs[job.id] = job
        return job

    def job(self, job_id: str) -> IngestJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def upload(self, job_id: str, data: bytes) -> None:
        job = self.job(job_id)
        if job.state != "Open":
            raise JobError(409, "INVALIDJOBSTATE", f"Job is not in an open state: {job.state}")
        text = data.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=job.delimiter)
        rows = [row for row in reader if row]
        if not rows:
            raise JobError(400, "INVALIDJOB", "InvalidBatch : Empty batch")
        if job.header and rows[0] != job.header:
            raise JobError(400, "INVALIDJOB", "InvalidBatch : The header of every upload must be the same")
        job.header, job.header_line = rows[0], text.splitlines()[0]
        job.rows.extend(rows[1:])

    def set_state(self, job_id: str, state: str) -> dict:
        """The job's new state as the answer shows it (processing starts once the upload is complete)."""
        job = self.job(job_id)
        if state == "Aborted" and job.state in ("Open", "UploadComplete", "InProgress"):
            if job.state != "InProgress":  # a job under way leaves its unwritten rows itself
                job.unprocessed = list(job.rows)
            job.state = "Aborted"
            return job.info()
        if state == "UploadComplete" and job.state == "Open":
            job.state = "UploadComplete"
            job.modstamp = self.org.now
            answer = job.info()
            threading.Thread(target=self._process, args=(job,), daemon=True, name=f"bulk-{job.id}").start()
            return answer
        raise JobError(400, "INVALIDJOBSTATE", f"Invalid state transition from {job.state} to {state}")

    def delete(self, job_id: str) -> None:
        job = self.job(job_id)
        if job.state in ("UploadComplete", "InProgress"):
            raise JobError(400, "INVALIDJOBSTATE", f"Cannot delete a job in state {job.state}")
        del self.jobs[job_id]

    def _process(self, job: IngestJob) -> None:
        began = time.monotonic()
        if job.state == "Aborted":
            return
        fields, problem = self._columns(job)
        if problem:
            job.state, job.error_message, job.unprocessed = "Failed", problem, list(job.rows)
            return
        job.state = "InProgress"
        self.batches_used += max(1, -(-len(job.rows) // 10_000))
        for start in range(0, len(job.rows), CHUNK):
            if job.state == "Aborted":
                job.unprocessed = job.rows[start:]
                return
            with self.org.lock:
                self.org.catch_up()
                ctx = WriteContext(job.created_by, self.org.now, job.version, assign=bool(job.assignment_rule),
                                   from_text=True, record_fault=self.record_fault)
                for row in job.rows[start:start + CHUNK]:
                    self._row(job, fields, row, ctx)
        job.processing_ms = int((time.monotonic() - began) * 1000)
        job.modstamp = self.org.now
        job.state = "JobComplete"

    def _columns(self, job: IngestJob) -> tuple[list[str], str | None]:
        fields = []
        for name in job.header:
            f = job.sobject.field(name.strip())
            if f is None:
                return [], f"InvalidBatch : Field name not found : {name}"
            fields.append(f.name)
        needed = "Id" if job.operation in ("update", "delete") else job.external_id
        if needed and needed not in fields:
            return [], f"InvalidBatch : Field name not found : {needed}"
        return fields, None

    def _row(self, job: IngestJob, fields: list[str], row: list[str], ctx: WriteContext) -> None:
        values = dict(zip(fields, row + [""] * (len(fields) - len(row))))
        org, sobject = self.org, job.sobject
        try:
            if job.operation == "insert":
                record, created = org.create(sobject, values, ctx), True
            elif job.operation == "upsert":
                key = values.pop(job.external_id)
                record, created = org.upsert(sobject, job.external_id, key, values, ctx)
            elif job.operation == "update":
                record, created = org.update(sobject, values.pop("Id"), values, ctx), False
            else:
                record, created = org.delete(sobject, values["Id"], ctx), False
        except RecordError as error:
            record_id = values.get("Id", "") if job.operation in ("update", "delete") else ""
            job.failed.append((record_id, sf_error(error), row))
            return
        job.succeeded.append((record["Id"], created, row))

    def results(self, job_id: str, kind: str) -> str:
        job = self.job(job_id)
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        kind = kind.lower()
        if kind == "successfulresults":
            out.write('"sf__Id","sf__Created",' + job.header_line + "\n")
            for record_id, created, row in job.succeeded:
                writer.writerow([record_id, "true" if created else "false", *row])
        elif kind == "failedresults":
            out.write('"sf__Id","sf__Error",' + job.header_line + "\n")
            for record_id, error, row in job.failed:
                writer.writerow([record_id, error, *row])
        elif kind == "unprocessedrecords":
            out.write(job.header_line + "\n")
            for row in job.unprocessed:
                writer.writerow(row)
        else:
            raise JobError(404, "NOT_FOUND", "The requested resource does not exist")
        return out.getvalue()
