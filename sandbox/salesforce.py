"""Salesforce stand-in: OAuth, REST (query, sObjects, composite collections, limits) and Bulk API 2.0 over one org.

What it reproduces, and where it was looked up (Salesforce REST API and Bulk API 2.0 developer guides, the OAuth
help pages, simple-salesforce 1.12 for how a client calls them, and error bodies as clients in the wild parse them):
- POST /services/oauth2/token, form-encoded: grant_type=client_credentials with client_id / client_secret in the
  form or as HTTP Basic (simple-salesforce sends Basic), answering access_token, signature (HMAC-SHA256 of id +
  issued_at with the secret, base64), scope, instance_url, id (<login>/id/<org id>/<user id>), token_type Bearer and
  issued_at (epoch ms); the JWT bearer grant (assertion: RS256, iss = client id, sub = username of a pre-authorized
  user, aud = this stand-in's URL or https://login.salesforce.com / https://test.salesforce.com, exp in the future,
  as a number or a numeric string). Errors 400 {"error", "error_description"}: invalid_client_id "client identifier
  invalid", invalid_client "invalid client credentials", invalid_grant "invalid assertion" / "audience is invalid" /
  "expired authorization code" / "user hasn't approved this consumer", unsupported_grant_type.
- Every API call: `Authorization: Bearer`; a missing, unknown, expired or revoked token is 401
  [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]. Each call after authentication
  counts against the daily allowance (`Sforce-Limit-Info: api-usage=N/M` on every response, `limits` resource);
  once spent, 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit exceeded.".
- /services/data/vNN.N/ (any version): query and queryAll (?q=, `Sforce-Query-Options: batchSize=N`, 200..2000,
  default 2000), nextRecordsUrl "/services/data/vNN.N/query/<01g locator>-<offset>" readable under query/ or
  queryAll/, ten open cursors per user, fifteen idle minutes; sobjects (describe global, describe, get with
  ?fields=, create 201 {id, success, errors}, update 204, delete 204, get and upsert by external id: 201 created /
  200 updated with {id, success, errors, created}); composite/sobjects POST / PATCH / DELETE and PATCH
  composite/sobjects/<Object>/<ExternalIdField> (up to 200 records, results in request order, allOrNone rolls back
  and marks the others ALL_OR_NONE_OPERATION_ROLLED_BACK); jobs/ingest (sandbox.salesforce_bulk); limits.
- `Sforce-Auto-Assign: FALSE` keeps the lead assignment rule from running on a create or update (REST default TRUE).
Fault switches (SalesforceFaults): expired session every N calls, the daily allowance, 403 concurrent-request limit
(rate_limit_every), 500 UNKNOWN_EXCEPTION / 503 SERVER_UNAVAILABLE alternately (server_error_every), per-record
UNABLE_TO_LOCK_ROW, FIELD_CUSTOM_VALIDATION_EXCEPTION on every N-th record of composite and bulk calls, slow responses,
a hold longer than a client's timeout (the call still runs afterwards, as a real org's does), and a write the org
commits whose connection is then dropped without a response.
Not reproduced: SOAP login, the username-password and refresh-token grants, relationship subqueries, aggregate
functions other than COUNT(), SOSL, the composite / batch / tree resources, Bulk API 2.0 query jobs and Bulk 1.0.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import hmac
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import soql
from sandbox.control import control_routes, delay
from sandbox.faults import RequestFaults
from sandbox.salesforce_bulk import BulkIngest, JobError
from sandbox.salesforce_org import BATCH_DEFAULT, BATCH_MIN, VERSIONS, Org, WriteContext
from sandbox.salesforce_people import WorkRates
from sandbox.salesforce_schema import RecordError, day_of, full_id
from sandbox.world import World

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PUBLIC_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
JWT_USERS = ("integration", "admin")  # users pre-authorized for the connected app
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
VALIDATION_MESSAGE = "Leads handed over by Handoff need a company name other than 'Unknown'."
MAX_RECORDS = 200

_clock: Callable[[], float] = time.monotonic  # session lifetimes; tests may replace it


@dataclass
class SalesforceFaults(RequestFaults):
    """Salesforce's own failure modes on top of the request-level switches (0 = never)."""

    daily_api_limit: int = 115_000  # Enterprise Edition: 100,000 plus 1,000 per licence, fifteen licences
    unable_to_lock_row_every: int = 0
    validation_error_every: int = 0
    timeout_every: int = 0
    timeout_hold_seconds: float = 30.0
    drop_after_commit_every: int = 0

    def hit(self, switch: str) -> bool:
        fires = super().hit(switch)
        if fires:
            self._note(f"{switch} fired")
        return fires

    def fired(self, switch: str) -> int:
        """How many times a switch fired, whatever it is set to now (`daily_api_limit`: calls refused)."""
        return self._counts.get(f"{switch} fired", 0)

    def refuse(self) -> None:
        self._note("daily_api_limit fired")

    def _note(self, key: str) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1


def new_credentials() -> dict[str, str]:
    """A connected app: consumer key and secret, and the key pair whose certificate it trusts for the JWT grant."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {
        "client_id": "3MVG9" + secrets.token_urlsafe(60).replace("-", "A").replace("_", "z")[:80],
        "client_secret": secrets.token_hex(32).upper(),
        "username": "handoff.integration@handoff-demo.example",
        "private_key_pem": private,
        "public_key_pem": public,
    }


def source_env(url: str, credentials: dict[str, str]) -> dict[str, str]:
    return {
        "HANDOFF_SALESFORCE_ENABLED": "true",
        "HANDOFF_SALESFORCE_LOGIN_URL": url,
        "HANDOFF_SALESFORCE_CLIENT_ID": credentials["client_id"],
        "HANDOFF_SALESFORCE_CLIENT_SECRET": credentials["client_secret"],
    }


# ---------------------------------------------------------------- the call log, sessions, the daily allowance

class CallLog:
    """What clients asked for, by kind of call, for tests and benchmarks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.calls, self.records, self.writes = Counter(), Counter(), 0

    def note(self, kind: str, write: bool) -> None:
        with self.lock:
            self.calls[kind] += 1
            self.writes += write

    def count(self, outcome: str, n: int = 1) -> None:
        with self.lock:
            self.records[outcome] += n

    def snapshot(self) -> dict:
        with self.lock:
            return {"calls": dict(self.calls), "total": sum(self.calls.values()), "writes": self.writes,
                    "records": dict(self.records)}


class Sessions:
    def __init__(self, faults: SalesforceFaults):
        self.faults, self.live, self.lock = faults, {}, threading.Lock()

    def issue(self, org_id: str, user: str) -> str:
        token = f"{org_id[:15]}!AQ" + secrets.token_urlsafe(72)
        with self.lock:
            self.live[token] = (user, _clock() + float(self.faults.token_ttl_seconds))
        return token

    def user(self, request: Request) -> str | None:
        """The user a bearer token runs as, or None (unknown, expired, or taken away by the expire switch)."""
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        with self.lock:
            found = self.live.get(token)
            if found is None:
                return None
            if _clock() >= found[1] or self.faults.hit("expire_token"):
                del self.live[token]
                return None
        return found[0]


class Allowance:
    """The daily API request allowance, counted per day of the world's clock."""

    def __init__(self, faults: SalesforceFaults, world: World):
        self.faults, self.world, self.day, self.used = faults, world, "", 0
        self.lock = threading.Lock()

    def spend(self) -> bool:
        with self.lock:
            today = day_of(self.world.clock)
            if today != self.day:
                self.day, self.used = today, 0
            if self.used >= self.faults.daily_api_limit:
                return False
            self.used += 1
            return True

    def header(self) -> str:
        return f"api-usage={self.used}/{self.faults.daily_api_limit}"


# ---------------------------------------------------------------- wire helpers

def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json;charset=UTF-8")


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return _json({"error": error, "error_description": description}, status)


def _failure(error: RecordError, status: int = 400) -> Response:
    return _json([error.as_rest()], status)


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

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"null")
        except orjson.JSONDecodeError as exc:
            raise RecordError("JSON_PARSER_ERROR", f"Unexpected character in the request body: {exc}") from None

    def context(self, batch: bool, record_fault: Callable) -> WriteContext:
        assign = self.headers.get("sforce-auto-assign", "TRUE").strip().upper() != "FALSE"
        return WriteContext(self.user, self.org.now, self.version, assign=assign,
                            record_fault=lambda record_id: record_fault(record_id, batch))


async def _drop(request: Request) -> None:
    """Close the client's connection without a response (the write behind it is already committed)."""
    cycle = getattr(request.receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0.05)  # let the server see the connection go before the app returns


# ---------------------------------------------------------------- the app

def create_app(world: World, faults: SalesforceFaults, credentials: dict[str, str],
               rates: WorkRates | None = None) -> Starlette:
    if not isinstance(faults, SalesforceFaults):
        raise TypeError("the Salesforce stand-in needs SalesforceFaults (its own switches extend RequestFaults)")
    org = Org(world, rates)
    log, sessions, allowance = CallLog(), Sessions(faults), Allowance(faults, world)
    public_key = credentials["public_key_pem"]
    server_errors = [0]

    def record_fault(record_id: str | None, batch: bool) -> RecordError | None:
        if faults.hit("unable_to_lock_row"):
            return RecordError("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"
                               + (f" or 1 records: {record_id}" if record_id else ""), [])
        if batch and faults.hit("validation_error"):
            return RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", VALIDATION_MESSAGE, [])
        return None

    bulk = BulkIngest(org, lambda record_id: record_fault(record_id, True))
    handlers = _Handlers(org, bulk, log, allowance, record_fault)

    async def token(request: Request) -> Response:
        await delay(faults)
        log.note("token", False)
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        grant = form.get("grant_type")
        if grant == "client_credentials":
            client_id, secret = form.get("client_id"), form.get("client_secret")
            auth = request.headers.get("authorization", "")
            if auth[:6].lower() == "basic ":
                client_id, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            if client_id != credentials["client_id"]:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if not secrets.compare_digest(str(secret or ""), credentials["client_secret"]):
                return _oauth_error("invalid_client", "invalid client credentials")
            user = org.user("integration")
        elif grant == JWT_GRANT:
            user_or_error = _jwt_user(form.get("assertion", ""), request)
            if isinstance(user_or_error, Response):
                return user_or_error
            user = user_or_error
        else:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        base = str(request.base_url).rstrip("/")
        issued = str(int(time.time() * 1000))
        identity = f"{base}/id/{org.org_id}/{user}"
        digest = hmac.new(credentials["client_secret"].encode(), (identity + issued).encode(), hashlib.sha256).digest()
        return _json({"access_token": sessions.issue(org.org_id, user), "signature": base64.b64encode(digest).decode(),
                      "scope": "api", "instance_url": base, "id": identity, "token_type": "Bearer", "issued_at": issued})

    def _jwt_user(assertion: str, request: Request) -> str | Response:
        try:
            claims = jwt.decode(assertion, public_key, algorithms=["RS256"],
                                options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                         "verify_nbf": False, "verify_iss": False})
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != credentials["client_id"]:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        host = request.headers.get("host", "")
        audiences = PUBLIC_AUDIENCES + (f"http://{host}", f"https://{host}")
        if str(claims.get("aud", "")).rstrip("/") not in audiences:
            return _oauth_error("invalid_grant", "audience is invalid")
        try:
            expires = float(claims.get("exp"))
        except (TypeError, ValueError):
            return _oauth_error("invalid_grant", "invalid assertion")
        if expires < time.time():
            return _oauth_error("invalid_grant", "expired authorization code")
        allowed = {org.staff[k]["username"]: org.staff[k]["id"] for k in JWT_USERS}
        if claims.get("sub") not in allowed:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        return allowed[claims["sub"]]

    async def versions(_: Request) -> Response:
        await delay(faults)
        return _json([{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in VERSIONS])

    async def data_api(request: Request) -> Response:
        await delay(faults)
        raw = request.scope.get("raw_path") or request.url.path.encode()
        match = re.match(r"^/services/data/v(\d+\.\d)(?:/(.*))?$", raw.decode("latin-1").split("?")[0])
        route = _route(request.method, match.group(2) or "") if match else None
        if route is None:
            return _json(NOT_FOUND, 404)
        kind, handler, params = route
        user = sessions.user(request)
        if user is None:
            return _json(SESSION_EXPIRED, 401)
        if not allowance.spend():
            faults.refuse()
            return _json([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 403)
        try:
            body = await request.body()
        except ClientDisconnect:
            return Response(status_code=400)
        write = request.method != "GET"
        log.note(kind, write)
        limit_info = {"Sforce-Limit-Info": allowance.header()}
        if faults.hit("rate_limit"):
            body = [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
            return _with(_json(body, 403), limit_info)
        if faults.hit("server_error"):
            server_errors[0] += 1
            return _with(_server_error(server_errors[0]), limit_info)
        if faults.hit("timeout"):
            await asyncio.sleep(faults.timeout_hold_seconds)
        call = Call(request.method, match.group(1), {k: unquote(v) for k, v in params.items()},
                    dict(request.query_params), request.headers, body, user, org)
        response = await run_in_threadpool(handlers.run, handler, call)
        if write and faults.hit("drop_after_commit"):
            await _drop(request)
        return _with(response, limit_info)

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            log.reset()
        return JSONResponse(log.snapshot())

    async def work_rates(request: Request) -> Response:
        if request.method == "POST":
            try:
                org.workforce.rates.update(**(await request.json()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"rates": org.workforce.rates.as_dict()})

    routes = [
        Route("/services/oauth2/token", token, methods=["POST"]),
        Route("/services/data", versions, methods=["GET"]),
        Route("/services/data/", versions, methods=["GET"]),
        Route("/services/data/{rest:path}", data_api, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        Route("/_sandbox/salesforce/calls", calls, methods=["GET", "DELETE"]),
        Route("/_sandbox/salesforce/rates", work_rates, methods=["GET", "POST"]),
        *control_routes(world, faults),
    ]
    app = Starlette(routes=routes)
    app.state.salesforce = org
    app.state.calls = log
    app.state.bulk = bulk
    return app


def _with(response: Response, headers: dict[str, str]) -> Response:
    for name, value in headers.items():
        response.headers[name] = value
    return response


def _server_error(n: int) -> Response:
    if n % 2:
        ref = f"{secrets.randbelow(10**9)}-{secrets.randbelow(10**5)} ({-secrets.randbelow(10**9)})"
        return _json([{"message": f"An unexpected error occurred. Please include this ErrorId if you contact "
                                  f"support: {ref}", "errorCode": "UNKNOWN_EXCEPTION"}], 500)
    return _json([{"message": "Server is unavailable", "errorCode": "SERVER_UNAVAILABLE"}], 503)


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
    ("GET", r"jobs/ingest/(?P<job>[A-Za-z0-9]{18})/(?P<results>(?i:successfulResults|failedResults|unprocessedrecords))",
     "bulk_results", "bulk_results"),
]
_COMPILED = [(method, re.compile(pattern + "/?$"), kind, name) for method, pattern, kind, name in _ROUTES]


def _route(method: str, path: str) -> tuple[str, str, dict] | None:
    for route_method, pattern, kind, name in _COMPILED:
        if route_method == method:
            match = pattern.match(path)
            if match:
                return kind, name, {k: v for k, v in match.groupdict().items() if v is not None}
    return None


class _Handlers:
    """The calls themselves, each run on a worker thread holding the org's lock after its people caught up."""

    def __init__(self, org: Org, bulk: BulkIngest, log: CallLog, allowance: Allowance, record_fault: Callable):
        self.org, self.bulk, self.log, self.allowance, self.record_fault = org, bulk, log, allowance, record_fault

    def run(self, name: str, call: Call) -> Response:
        with self.org.lock:
            self.org.catch_up()
            try:
                return getattr(self, name)(call)
            except RecordError as error:
                return _failure(error)
            except JobError as error:
                return _json([{"errorCode": error.code, "message": error.message}], error.status)
            except soql.SoqlError as error:
                return _json([{"message": error.message, "errorCode": error.code}], 400)

    def _sobject(self, call: Call):
        return self.org.sobject(call.params["obj"])

    # -- metadata and limits

    def resources(self, call: Call) -> Response:
        base = f"/services/data/v{call.version}"
        return _json({name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits", "composite", "jobs")})

    def limits(self, call: Call) -> Response:
        allowance, maximum = self.allowance, self.allowance.faults.daily_api_limit
        return _json({
            "DailyApiRequests": {"Max": maximum, "Remaining": max(0, maximum - allowance.used)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000 - self.bulk.batches_used},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024 - sum(len(s) for s in self.org.records.values()) // 500},
            "SingleEmail": {"Max": 5000, "Remaining": 5000},
        })

    def describe_global(self, call: Call) -> Response:
        return _json({"encoding": "UTF-8", "maxBatchSize": MAX_RECORDS,
                      "sobjects": [o.summary(call.version) for o in self.org.schema.values()]})

    def describe(self, call: Call) -> Response:
        sobject = self._sobject(call)
        return _json(sobject.describe(call.version)) if sobject else _json(NOT_FOUND, 404)

    def sobject_info(self, call: Call) -> Response:
        sobject = self._sobject(call)
        if sobject is None:
            return _json(NOT_FOUND, 404)
        recent = heapq.nlargest(3, self.org.records[sobject.name.lower()].values(), key=lambda r: r["LastModifiedDate"])
        return _json({"objectDescribe": sobject.summary(call.version),
                      "recentItems": [self.org.render_record(sobject, r, call.version, ["Id"]) for r in recent]})

    # -- queries

    def query(self, call: Call) -> Response:
        text = call.query.get("q")
        if not text:
            return _json([{"message": "A query string has to be specified", "errorCode": "MALFORMED_QUERY"}], 400)
        plan, rows = self.org.run_query(text, include_deleted=call.params.get("all") == "queryAll")
        cursor = self.org.open_cursor(plan, rows, call.user, self._batch(call))
        return _json(self.org.page(cursor, 0, cursor.batch, call.version))

    def query_more(self, call: Call) -> Response:
        cursor = self.org.cursor(call.params["locator"])
        if cursor is None:
            return _json([{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}], 400)
        size = self._batch(call) if "sforce-query-options" in call.headers else cursor.batch
        return _json(self.org.page(cursor, int(call.params["start"]), size, call.version))

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
            return _json(NOT_FOUND, 404)
        return self._render(call, sobject, record)

    def _render(self, call: Call, sobject, record: dict) -> Response:
        wanted = [f.strip() for f in call.query.get("fields", "").split(",") if f.strip()]
        unknown = [f for f in wanted if sobject.field(f) is None]
        if unknown:
            return _json([{"message": soql.NO_COLUMN.format(name=unknown[0], entity=sobject.name),
                           "errorCode": "INVALID_FIELD"}], 400)
        return _json(self.org.render_record(sobject, record, call.version, wanted or None))

    def get_by_external(self, call: Call) -> Response:
        sobject = self._sobject(call)
        f = sobject.field(call.params["field"]) if sobject else None
        if f is None or not f.external_id:
            return _json([{"errorCode": "NOT_FOUND", "message": "Provided external ID field does not exist or is not "
                                                                f"accessible: {call.params['field']}"}], 404)
        record_id = self.org.external.get((sobject.name, f.name), {}).get(call.params["key"].lower())
        return self._render(call, sobject, self.org.records[sobject.name.lower()][record_id]) if record_id else \
            _json(NOT_FOUND, 404)

    def create(self, call: Call) -> Response:
        sobject = self._sobject(call)
        if sobject is None:
            return _json(NOT_FOUND, 404)
        values = call.json()
        if not isinstance(values, dict):
            raise RecordError("JSON_PARSER_ERROR", "Cannot deserialize instance of an sObject from the request body")
        record = self.org.create(sobject, values, call.context(False, self.record_fault))
        self.log.count("created")
        return _json({"id": record["Id"], "success": True, "errors": []}, 201)

    def update(self, call: Call) -> Response:
        sobject, record = self._record(call)
        if record is None:
            return _json(NOT_FOUND, 404)
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
            return _json(NOT_FOUND, 404)
        try:
            self.org.delete(sobject, record["Id"], call.context(False, self.record_fault))
        except RecordError as error:
            return _failure(error, 404 if error.code == "ENTITY_IS_DELETED" else 400)
        self.log.count("deleted")
        return Response(status_code=204)

    def upsert(self, call: Call) -> Response:
        sobject = self._sobject(call)
        if sobject is None:
            return _json(NOT_FOUND, 404)
        values = call.json()
        if not isinstance(values, dict):
            raise RecordError("JSON_PARSER_ERROR", "Cannot deserialize instance of an sObject from the request body")
        try:
            record, created = self.org.upsert(sobject, call.params["field"], call.params["key"], values,
                                              call.context(False, self.record_fault))
        except RecordError as error:
            return _failure(error, 404 if error.code == "NOT_FOUND" else 400)
        self.log.count("created" if created else "updated")
        return _json({"id": record["Id"], "success": True, "errors": [], "created": created}, 201 if created else 200)

    # -- sObject collections

    def _collection(self, call: Call) -> tuple[list, bool]:
        body = call.json()
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise RecordError("JSON_PARSER_ERROR", "The request body must hold a records list")
        if len(records) > MAX_RECORDS:
            raise RecordError("EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_RECORDS} "
                                                   "records into this call")
        return records, bool(body.get("allOrNone", False))

    def _write_all(self, call: Call, records: list, all_or_none: bool, write: Callable) -> Response:
        """Write records in order; with allOrNone one failure rolls every change of the call back."""
        ctx = call.context(True, self.record_fault)
        if all_or_none:
            self.org.begin()
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
            self.org.end(rollback=failed)
        if all_or_none and failed:
            rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "fields": [],
                      "message": "Record rolled back because not all records were valid and the request was using "
                                 "AllOrNone header"}
            results = [r if not r["success"] else {**({"id": r["id"]} if call.method != "POST" else {}),
                                                   "success": False, "errors": [rolled]} for r in results]
        ok = sum(r["success"] for r in results)
        self.log.count({"POST": "created", "PATCH": "updated", "DELETE": "deleted"}[call.method], ok)
        self.log.count("failed", len(results) - ok)
        return _json(results)

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
            return _json(NOT_FOUND, 404)
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

    # -- Bulk API 2.0 ingest

    def bulk_create(self, call: Call) -> Response:
        body = call.json()
        return _json(self.bulk.create(body if isinstance(body, dict) else {}, call.user, call.version).info())

    def bulk_list(self, call: Call) -> Response:
        return _json({"done": True, "records": [j.info() for j in self.bulk.jobs.values()], "nextRecordsUrl": None})

    def bulk_upload(self, call: Call) -> Response:
        self.bulk.upload(call.params["job"], call.body)
        return Response(status_code=201)

    def bulk_state(self, call: Call) -> Response:
        body = call.json()
        return _json(self.bulk.set_state(call.params["job"], str((body or {}).get("state"))))

    def bulk_poll(self, call: Call) -> Response:
        return _json(self.bulk.job(call.params["job"]).info())

    def bulk_delete(self, call: Call) -> Response:
        self.bulk.delete(call.params["job"])
        return Response(status_code=204)

    def bulk_results(self, call: Call) -> Response:
        text = self.bulk.results(call.params["job"], call.params["results"])
        return Response(text.encode(), media_type="text/csv")
