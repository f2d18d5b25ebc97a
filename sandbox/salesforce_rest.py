"""The Salesforce stand-in's REST and Bulk API 2.0 calls: routing inside /services/data/vNN.N/ and the handlers.

Each handler runs on a worker thread holding the org's lock, after the org's people caught up with the clock.
"""

from __future__ import annotations

import heapq
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.datastructures import Headers
from starlette.responses import Response

from sandbox import soql
from sandbox.salesforce_bulk import BulkIngest, JobError
from sandbox.salesforce_org import BATCH_DEFAULT, BATCH_MIN, Org, WriteContext
from sandbox.salesforce_schema import RecordError, full_id

logger = logging.getLogger(__name__)
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
MAX_RECORDS = 200


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json;charset=UTF-8")


def _failure(error: RecordError, status: int = 400) -> Response:
    return json_response([error.as_rest()], status)


@dataclass
class Call:
    method: str
    version: str
    params: dict[str, str]
    query: dict[str, str]
    headers: Any
    body: bytes
    user: str
    org: Org
    all_or_none: bool = False  # inside a composite call with allOrNone, which makes its collections all-or-none

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"null")
        except orjson.JSONDecodeError as exc:
            raise RecordError("JSON_PARSER_ERROR", f"Unexpected character in the request body: {exc}") from None

    def context(self, batch: bool, record_fault: Callable) -> WriteContext:
        assign = self.headers.get("sforce-auto-assign", "TRUE").strip().upper() != "FALSE"
        return WriteContext(self.user, self.org.now, self.version, assign=assign,
                            record_fault=lambda record_id: record_fault(record_id, batch))


# ---------------------------------------------------------------- routing inside /services/data/vNN.N/

_OBJ, _ID, _ANY = r"(?P<obj>[A-Za-z0-9_]+)", r"(?P<id>[A-Za-z0-9]{15,18})", r"(?P<key>[^/]+)"
_ROUTES = [
    ("GET", r"", "resources", "resources"),
    ("GET", r"limits", "limits", "limits"),
    ("GET", r"(?P<all>query|queryAll)", "query", "query"),
    ("GET", r"(?:query|queryAll)/(?P<locator>[A-Za-z0-9]{18})-(?P<start>\d+)", "query_more", "query_more"),
    ("GET", r"sobjects", "describe_global", "describe_global"),
    ("GET", rf"sobjects/{_OBJ}/describe", "describe", "describe"),
    ("GET", rf"sobjects/{_OBJ}", "sobject_info", "sobject_info"),
    ("POST", rf"sobjects/{_OBJ}", "sobject_create", "create"),
    ("GET", rf"sobjects/{_OBJ}/{_ID}", "sobject_get", "get"),
    ("PATCH", rf"sobjects/{_OBJ}/{_ID}", "sobject_update", "update"),
    ("DELETE", rf"sobjects/{_OBJ}/{_ID}", "sobject_delete", "delete"),
    ("GET", rf"sobjects/{_OBJ}/(?P<field>[A-Za-z0-9_]+)/{_ANY}", "sobject_get", "get_by_external"),
    ("PATCH", rf"sobjects/{_OBJ}/(?P<field>[A-Za-z0-9_]+)/{_ANY}", "sobject_upsert", "upsert"),
    ("POST", r"composite", "composite", "composite"),
    ("POST", r"composite/sobjects", "composite_create", "composite_create"),
    ("PATCH", r"composite/sobjects", "composite_update", "composite_update"),
    ("DELETE", r"composite/sobjects", "composite_delete", "composite_delete"),
    ("PATCH", rf"composite/sobjects/{_OBJ}/(?P<field>[A-Za-z0-9_]+)", "composite_upsert", "composite_upsert"),
    ("POST", r"jobs/ingest", "bulk_create_job", "bulk_create"),
    ("GET", r"jobs/ingest", "bulk_list_jobs", "bulk_list"),
    ("PUT", r"jobs/ingest/(?P<job>[A-Za-z0-9]{18})/batches", "bulk_upload", "bulk_upload"),
    ("PATCH", r"jobs/ingest/(?P<job>[A-Za-z0-9]{18})", "bulk_set_state", "bulk_state"),
    ("GET", r"jobs/ingest/(?P<job>[A-Za-z0-9]{18})", "bulk_poll", "bulk_poll"),
    ("DELETE", r"jobs/ingest/(?P<job>[A-Za-z0-9]{18})", "bulk_delete_job", "bulk_delete"),
    ("GET", r"jobs/ingest/(?P<job>[A-Za-z0-9]{18})/(?P<results>(?i:successfulResults|failedResults|"
            r"unprocessedrecords))", "bulk_results", "bulk_results"),
]
_COMPILED = [(method, re.compile(pattern + "/?$"), kind, name) for method, pattern, kind, name in _ROUTES]


def route_of(method: str, path: str) -> tuple[str, str, dict] | None:
    for route_method, pattern, kind, name in _COMPILED:
        if route_method == method:
            match = pattern.match(path)
            if match:
                return kind, name, {k: v for k, v in match.groupdict().items() if v is not None}
    return None


def _rolled_back(result: dict, method: str, error: dict) -> dict:
    """A record the call had written, once allOrNone took it back: new records lose their ids."""
    keep_id = method != "POST" and not result.get("created")
    return {**({"id": result["id"]} if keep_id else {}), "success": False, "errors": [error]}


class Handlers:
    """The calls themselves, each run on a worker thread holding the org's lock after its people caught up."""

    def __init__(self, org: Org, bulk: BulkIngest, log, allowance, record_fault: Callable):
        self.org, self.bulk, self.log, self.allowance, self.record_fault = org, bulk, log, allowance, record_fault

    def run(self, name: str, call: Call) -> Response:
        with self.org.lock:
            self.org.catch_up()
            try:
                return getattr(self, name)(call)
            except RecordError as error:
                return _failure(error)
            except JobError as error:
                return json_response([{"errorCode": error.code, "message": error.message}], error.status)
            except soql.SoqlError as error:
                return json_response([{"message": error.message, "errorCode": error.code}], 400)
            except Exception:  # a stand-in bug answers as Salesforce's own do, and is logged
                logger.exception("Salesforce stand-in failed on %s", name)
                if self.org.journal is not None:
                    self.org.end(rollback=True)
                unknown = [{"message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"}]
                return json_response(unknown, 500)

    def _sobject(self, call: Call):
        return self.org.sobject(call.params["obj"])

    # -- metadata and limits

    def resources(self, call: Call) -> Response:
        base = f"/services/data/v{call.version}"
        names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
        return json_response({name: f"{base}/{name}" for name in names})

    def limits(self, call: Call) -> Response:
        allowance, maximum = self.allowance, self.allowance.faults.daily_api_limit
        return json_response({
            "DailyApiRequests": {"Max": maximum, "Remaining": max(0, maximum - allowance.used)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000 - self.bulk.batches_used},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024 - sum(len(s) for s in self.org.records.values()) // 500},
            "SingleEmail": {"Max": 5000, "Remaining": 5000},
        })

    def describe_global(self, call: Call) -> Response:
        return json_response({"encoding": "UTF-8", "maxBatchSize": MAX_RECORDS,
                      "sobjects": [o.summary(call.version) for o in self.org.schema.values()]})

    def describe(self, call: Call) -> Response:
        sobject = self._sobject(call)
        return json_response(sobject.describe(call.version)) if sobject else json_response(NOT_FOUND, 404)

    def sobject_info(self, call: Call) -> Response:
        sobject = self._sobject(call)
        if sobject is None:
            return json_response(NOT_FOUND, 404)
        recent = heapq.nlargest(3, self.org.records[sobject.name.lower()].values(), key=lambda r: r["LastModifiedDate"])
        return json_response({"objectDescribe": sobject.summary(call.version),
                      "recentItems": [self.org.render_record(sobject, r, call.version, ["Id"]) for r in recent]})

    # -- queries

    def query(self, call: Call) -> Response:
        text = call.query.get("q")
        if not text:
            raise soql.SoqlError("MALFORMED_QUERY", "A query string has to be specified")
        plan, rows = self.org.run_query(text, include_deleted=call.params.get("all") == "queryAll")
        cursor = self.org.open_cursor(plan, rows, call.user, self._batch(call))
        return json_response(self.org.page(cursor, 0, cursor.batch, call.version))

    def query_more(self, call: Call) -> Response:
        cursor = self.org.cursor(call.params["locator"])
        if cursor is None:
            return json_response([{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}], 400)
        size = self._batch(call) if "sforce-query-options" in call.headers else cursor.batch
        return json_response(self.org.page(cursor, int(call.params["start"]), size, call.version))

    @staticmethod
    def _batch(call: Call) -> int:
        match = re.search(r"batchSize\s*=\s*(\d+)", call.headers.get("sforce-query-options", ""), re.I)
        return min(BATCH_DEFAULT, max(BATCH_MIN, int(match.group(1)))) if match else BATCH_DEFAULT

    # -- single records

    def _record(self, call: Call):
        sobject = self._sobject(call)
        record_id = full_id(call.params.get("id", ""))
        record = self.org.records[sobject.name.lower()].get(record_id) if sobject and record_id else None
        return sobject, record

    def get(self, call: Call) -> Response:
        sobject, record = self._record(call)
        if record is None or record["IsDeleted"]:
            return json_response(NOT_FOUND, 404)
        return self._render(call, sobject, record)

    def _render(self, call: Call, sobject, record: dict) -> Response:
        wanted = [f.strip() for f in call.query.get("fields", "").split(",") if f.strip()]
        unknown = [f for f in wanted if sobject.field(f) is None]
        if unknown:
            return json_response([{"message": soql.NO_COLUMN.format(name=unknown[0], entity=sobject.name),
                           "errorCode": "INVALID_FIELD"}], 400)
        return json_response(self.org.render_record(sobject, record, call.version, wanted or None))

    def get_by_external(self, call: Call) -> Response:
        sobject = self._sobject(call)
        f = sobject.field(call.params["field"]) if sobject else None
        if f is None or not f.external_id:
            message = f"Provided external ID field does not exist or is not accessible: {call.params['field']}"
            return json_response([{"errorCode": "NOT_FOUND", "message": message}], 404)
        record_id = self.org.external.get((sobject.name, f.name), {}).get(call.params["key"].lower())
        return self._render(call, sobject, self.org.records[sobject.name.lower()][record_id]) if record_id else \
            json_response(NOT_FOUND, 404)

    def create(self, call: Call) -> Response:
        sobject = self._sobject(call)
        if sobject is None:
            return json_response(NOT_FOUND, 404)
        values = call.json()
        if not isinstance(values, dict):
            raise RecordError("JSON_PARSER_ERROR", "Cannot deserialize instance of an sObject from the request body")
        record = self.org.create(sobject, values, call.context(False, self.record_fault))
        self.log.count("created")
        return json_response({"id": record["Id"], "success": True, "errors": []}, 201)

    def update(self, call: Call) -> Response:
        sobject, record = self._record(call)
        if record is None:
            return json_response(NOT_FOUND, 404)
        values = call.json()
        if not isinstance(values, dict):
            raise RecordError("JSON_PARSER_ERROR", "Cannot deserialize instance of an sObject from the request body")
        try:
            self.org.update(sobject, record["Id"], values, call.context(False, self.record_fault))
        except RecordError as error:
            return _failure(error, 404 if error.code == "ENTITY_IS_DELETED" else 400)
        self.log.count("updated")
        return Response(status_code=204)

    def delete(self, call: Call) -> Response:
        sobject, record = self._record(call)
        if record is None:
            return json_response(NOT_FOUND, 404)
        try:
            self.org.delete(sobject, record["Id"], call.context(False, self.record_fault))
        except RecordError as error:
            return _failure(error, 404 if error.code == "ENTITY_IS_DELETED" else 400)
        self.log.count("deleted")
        return Response(status_code=204)

    def upsert(self, call: Call) -> Response:
        sobject = self._sobject(call)
        if sobject is None:
            return json_response(NOT_FOUND, 404)
        values = call.json()
        if not isinstance(values, dict):
            raise RecordError("JSON_PARSER_ERROR", "Cannot deserialize instance of an sObject from the request body")
        f = sobject.field(call.params["field"])
        known = f is not None and call.params["key"].lower() in self.org.external.get((sobject.name, f.name), {})
        if call.query.get("updateOnly", "").lower() == "true" and not known:
            return json_response(NOT_FOUND, 404)
        try:
            record, created = self.org.upsert(sobject, call.params["field"], call.params["key"], values,
                                              call.context(False, self.record_fault))
        except RecordError as error:
            return _failure(error, 404 if error.code == "NOT_FOUND" else 400)
        self.log.count("created" if created else "updated")
        body = {"id": record["Id"], "success": True, "errors": [], "created": created}
        return json_response(body, 201 if created else 200)

    # -- sObject collections

    def _collection(self, call: Call) -> tuple[list, bool]:
        body = call.json()
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise RecordError("JSON_PARSER_ERROR", "The request body must hold a records list")
        if len(records) > MAX_RECORDS:
            raise RecordError("EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_RECORDS} "
                                                   "records into this call")
        return records, bool(body.get("allOrNone", False)) or call.all_or_none

    def _write_all(self, call: Call, records: list, all_or_none: bool, write: Callable) -> Response:
        """Write records in order; with allOrNone one failure rolls every change of the call back."""
        ctx = call.context(True, self.record_fault)
        mark = self.org.begin() if all_or_none else 0
        results = []
        for item in records:
            try:
                result = write(item if isinstance(item, dict) else {}, ctx)
            except RecordError as error:
                record_id = item.get("Id") if isinstance(item, dict) and call.method != "POST" else None
                result = {"id": record_id, "success": False, "errors": [error.as_error()]}
                if record_id is None:
                    del result["id"]
            results.append(result)
        failed = any(not r["success"] for r in results)
        if all_or_none:
            self.org.end(rollback=failed, mark=mark)
        if all_or_none and failed:
            rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "fields": [],
                      "message": "Record rolled back because not all records were valid and the request was using "
                                 "AllOrNone header"}
            results = [r if not r["success"] else _rolled_back(r, call.method, rolled) for r in results]
        for r in results:
            outcome = {"POST": "created", "PATCH": "updated", "DELETE": "deleted"}[call.method]
            self.log.count(("created" if r.get("created") else outcome) if r["success"] else "failed")
        return json_response(results)

    def _typed(self, item: dict):
        kind = (item.get("attributes") or {}).get("type", "")
        sobject = self.org.sobject(kind) if kind else None
        if sobject is None:
            raise RecordError("INVALID_TYPE", f"sObject type '{kind}' is not supported.")
        return sobject

    def composite_create(self, call: Call) -> Response:
        records, all_or_none = self._collection(call)

        def write(item: dict, ctx: WriteContext) -> dict:
            sobject = self._typed(item)
            if "Id" in item:
                raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            return {"id": self.org.create(sobject, item, ctx)["Id"], "success": True, "errors": []}
        return self._write_all(call, records, all_or_none, write)

    def composite_update(self, call: Call) -> Response:
        records, all_or_none = self._collection(call)

        def write(item: dict, ctx: WriteContext) -> dict:
            sobject = self._typed(item)
            if not item.get("Id"):
                raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", [])
            record = self.org.update(sobject, str(item["Id"]), item, ctx)
            return {"id": record["Id"], "success": True, "errors": []}
        return self._write_all(call, records, all_or_none, write)

    def composite_upsert(self, call: Call) -> Response:
        records, all_or_none = self._collection(call)
        sobject = self._sobject(call)
        if sobject is None:
            return json_response(NOT_FOUND, 404)
        f = sobject.field(call.params["field"])
        if f is None or not f.external_id:
            raise RecordError("INVALID_FIELD", f"Field name provided, {call.params['field']} is not an External ID "
                                               f"or indexed field for {sobject.name}")

        def write(item: dict, ctx: WriteContext) -> dict:
            key = item.get(f.name)
            if not key:
                raise RecordError("MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
            record, created = self.org.upsert(sobject, f.name, str(key), item, ctx)
            return {"id": record["Id"], "success": True, "errors": [], "created": created}
        return self._write_all(call, records, all_or_none, write)

    def composite_delete(self, call: Call) -> Response:
        ids = [i for i in call.query.get("ids", "").split(",") if i]
        if len(ids) > MAX_RECORDS:
            raise RecordError("EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_RECORDS} "
                                                   "records into this call")
        all_or_none = call.query.get("allOrNone", "false").lower() == "true"

        def write(item: dict, ctx: WriteContext) -> dict:
            found = self.org.find(full_id(item["Id"]) or "")
            if found is None:
                raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            record = self.org.delete(self.org.sobject(found[0]), item["Id"], ctx)
            return {"id": record["Id"], "success": True, "errors": []}
        return self._write_all(call, [{"Id": i} for i in ids], all_or_none, write)

    # -- the composite resource

    def composite(self, call: Call) -> Response:
        """Subrequests run in order as one API call; a later one may name an earlier one's answer as
        @{referenceId.field}; with allOrNone one failure rolls every change back and halts the others."""
        body = call.json()
        subrequests = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subrequests, list) or not subrequests:
            raise RecordError("JSON_PARSER_ERROR", "The request body must hold a compositeRequest list")
        if len(subrequests) > MAX_SUBREQUESTS:
            return _limit_exceeded(f"The request can’t contain more than {MAX_SUBREQUESTS} operations.")
        plans = [_subrequest(sub) for sub in subrequests]
        references = [plan["referenceId"] for plan in plans]
        repeated = sorted({r for r in references if references.count(r) > 1})
        if repeated:
            raise RecordError("INVALID_INPUT", f"Duplicate referenceId provided in the request: {repeated[0]}")
        if sum(bool(_HEAVY.search(plan["url"].split("?")[0])) for plan in plans) > MAX_HEAVY:
            return _limit_exceeded(f"The request can’t contain more than {MAX_HEAVY} query or sObject Collections "
                                   "operations.")
        all_or_none = body.get("allOrNone") is True
        mark = self.org.begin() if all_or_none else 0
        answers, outputs, failing = [], {}, set()
        for plan in plans:
            reference = plan["referenceId"]
            if failing and all_or_none:
                answers.append(_sub_answer(reference, 400, HALTED))
                continue
            try:
                url, payload = _resolve(plan["url"], outputs), _resolve(plan.get("body"), outputs)
            except KeyError as missing:
                failing.add(reference)
                answers.append(_sub_answer(reference, 400, [{
                    "errorCode": "PROCESSING_HALTED",
                    "message": f"Invalid reference specified. No value for {missing.args[0]} found in a prior "
                               "subrequest."}]))
                continue
            status, result = self._subcall(call, plan, str(url), payload, all_or_none)
            answers.append(_sub_answer(reference, status, result))
            if status < 300:
                outputs[reference] = result
            if status >= 400 or (all_or_none and isinstance(result, list) and
                                  any(isinstance(r, dict) and r.get("success") is False for r in result)):
                failing.add(reference)
        if all_or_none:
            self.org.end(rollback=bool(failing), mark=mark)
            if failing:
                answers = [a if a["referenceId"] in failing else _sub_answer(a["referenceId"], 400, HALTED)
                           for a in answers]
        return json_response({"compositeResponse": answers})

    def _subcall(self, call: Call, plan: dict, url: str, payload, all_or_none: bool) -> tuple[int, object]:
        path, _, query = url.partition("?")
        match = re.match(r"^/services/data/v(\d+\.\d)/(.*)$", path)
        route = route_of(plan["method"], match.group(2)) if match else None
        if route is None:
            return 404, NOT_FOUND
        kind, name, params = route
        if kind not in _IN_COMPOSITE:
            return 400, [{"errorCode": "INVALID_INPUT", "message": f"{match.group(2)} is not supported in a "
                                                                   "composite request"}]
        headers = Headers(headers={k.lower(): str(v) for k, v in (plan.get("httpHeaders") or {}).items()})
        sub = Call(plan["method"], match.group(1), {k: unquote(v) for k, v in params.items()},
                   dict(parse_qsl(query, keep_blank_values=True)), headers,
                   b"" if payload is None else orjson.dumps(payload), call.user, self.org, all_or_none)
        response = self.run(name, sub)
        return response.status_code, orjson.loads(response.body) if response.body else None

    # -- Bulk API 2.0 ingest

    def bulk_create(self, call: Call) -> Response:
        body = call.json()
        return json_response(self.bulk.create(body if isinstance(body, dict) else {}, call.user, call.version).info())

    def bulk_list(self, call: Call) -> Response:
        jobs = [j.info() for j in self.bulk.jobs.values()]
        return json_response({"done": True, "records": jobs, "nextRecordsUrl": None})

    def bulk_upload(self, call: Call) -> Response:
        self.bulk.upload(call.params["job"], call.body)
        return Response(status_code=201)

    def bulk_state(self, call: Call) -> Response:
        body = call.json()
        return json_response(self.bulk.set_state(call.params["job"], str((body or {}).get("state"))))

    def bulk_poll(self, call: Call) -> Response:
        return json_response(self.bulk.job(call.params["job"]).info())

    def bulk_delete(self, call: Call) -> Response:
        self.bulk.delete(call.params["job"])
        return Response(status_code=204)

    def bulk_results(self, call: Call) -> Response:
        text = self.bulk.results(call.params["job"], call.params["results"])
        return Response(text.encode(), media_type="text/csv")


# ---------------------------------------------------------------- the composite resource's rules

MAX_SUBREQUESTS = 25
MAX_HEAVY = 5  # of them, queries and sObject Collections calls
_HEAVY = re.compile(r"/(?:query|queryAll)(?:/|$)|/composite/sobjects(?:/|$)")
_IN_COMPOSITE = {"query", "query_more", "describe", "sobject_info", "sobject_create", "sobject_get", "sobject_update",
                 "sobject_delete", "sobject_upsert", "composite_create", "composite_update", "composite_delete",
                 "composite_upsert"}  # the kinds of call a subrequest may be
_INHERITED = {"accept", "authorization", "content-type"}  # a subrequest takes these from the composite call
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
HALTED = [{"errorCode": "PROCESSING_HALTED",
           "message": "The transaction was rolled back since another operation in the same transaction failed."}]


def reads_only(body: bytes) -> bool:
    """Whether a composite request only reads (its call is then no write in the call log)."""
    try:
        subrequests = orjson.loads(body or b"null").get("compositeRequest")
        return all(sub.get("method") == "GET" for sub in subrequests)
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return False


def _limit_exceeded(message: str) -> Response:
    """How Salesforce refuses a composite request over its limits: one answer, no subrequest run."""
    return json_response({"compositeResponse": [{"body": [{"errorCode": "LIMIT_EXCEEDED", "message": message}],
                                                 "httpHeaders": {}, "httpStatusCode": 400, "referenceId": None}]})


def _subrequest(sub) -> dict:
    """A subrequest as given, checked for what every one needs (a malformed one refuses the whole request)."""
    if not isinstance(sub, dict):
        raise RecordError("JSON_PARSER_ERROR", "Each subrequest must be a JSON object")
    missing = [k for k in ("method", "url", "referenceId") if not isinstance(sub.get(k), str) or not sub.get(k)]
    if missing:
        raise RecordError("JSON_PARSER_ERROR", f"Required fields are missing: {missing}")
    if sub["method"] not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        raise RecordError("INVALID_INPUT", f"Invalid HTTP method: {sub['method']}")
    if not re.fullmatch(r"[A-Za-z0-9_]+", sub["referenceId"]):
        raise RecordError("INVALID_INPUT", f"Invalid referenceId: {sub['referenceId']}")
    headers = sub.get("httpHeaders") or {}
    if not isinstance(headers, dict) or {str(k).lower() for k in headers} & _INHERITED:
        raise RecordError("INVALID_INPUT", "A subrequest's httpHeaders cannot set Accept, Authorization or "
                                           "Content-Type")
    return sub


def _sub_answer(reference: str, status: int, body) -> dict:
    return {"body": body, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference}


def _resolve(value, outputs: dict):
    """@{referenceId.field[0].field} in a subrequest's url or body, from the answers before it; a value that is
    a reference alone keeps its type. KeyError names a reference with no value."""
    if isinstance(value, dict):
        return {k: _resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    if not isinstance(value, str) or "@{" not in value:
        return value

    def lookup(match: re.Match):
        found = outputs[match.group(1)] if match.group(1) in outputs else None
        if found is None:
            raise KeyError(match.group(0)[2:-1])
        for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", match.group(2)):
            try:
                found = found[step[0]] if step[0] else found[int(step[1])]
            except (KeyError, IndexError, TypeError):
                raise KeyError(match.group(0)[2:-1]) from None
        return found

    whole = _REFERENCE.fullmatch(value)
    if whole:
        return lookup(whole)
    return _REFERENCE.sub(lambda m: str(lookup(m)), value)
