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
  200 updated with {id, success, errors, created}, ?updateOnly=true); composite/sobjects POST / PATCH / DELETE and PATCH
  composite/sobjects/<Object>/<ExternalIdField> (up to 200 records, results in request order, allOrNone rolls back
  and marks the others ALL_OR_NONE_OPERATION_ROLLED_BACK); the composite resource (POST composite: compositeRequest
  of up to 25 subrequests, at most 5 of them queries or sObject Collections calls, else one LIMIT_EXCEEDED answer;
  referenceId and @{ref.field} references; httpHeaders per subrequest; allOrNone rolls back and answers the others
  400 PROCESSING_HALTED; compositeResponse of {body, httpHeaders, httpStatusCode, referenceId}; one API call, and
  a write only if a subrequest writes); jobs/ingest (sandbox.salesforce_bulk); limits.
- `Sforce-Auto-Assign: FALSE` keeps the lead assignment rule from running on a create or update (REST default TRUE).
Fault switches (SalesforceFaults): expired session every N calls, the daily allowance, 403 concurrent-request limit
(rate_limit_every), 500 UNKNOWN_EXCEPTION / 503 SERVER_UNAVAILABLE alternately (server_error_every), per-record
UNABLE_TO_LOCK_ROW, FIELD_CUSTOM_VALIDATION_EXCEPTION on every N-th record of composite and bulk calls, slow responses,
a hold longer than a client's timeout (the call still runs afterwards, as a real org's does), and a write the org
commits whose connection is then dropped without a response. (empty_page_every has no Salesforce meaning here.)
Not reproduced: SOAP login, the username-password and refresh-token grants, relationship subqueries, aggregate
functions other than COUNT(), SOSL, the composite batch / tree / graph resources, sObject getUpdated / getDeleted,
Bulk API 2.0 query jobs, Bulk 1.0, relationship columns (Owner.Username) in bulk CSVs, record types, field history.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate
from typing import Callable
from urllib.parse import parse_qs, unquote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.control import control_routes, delay
from sandbox.faults import RequestFaults
from sandbox.salesforce_bulk import BulkIngest
from sandbox.salesforce_org import VERSIONS, Org
from sandbox.salesforce_people import WorkRates
from sandbox.salesforce_rest import NOT_FOUND, Call, Handlers, json_response, reads_only, route_of
from sandbox.salesforce_schema import RecordError, day_of
from sandbox.world import World

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PUBLIC_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
JWT_USERS = ("integration", "admin")  # users pre-authorized for the connected app
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
VALIDATION_MESSAGE = "Leads handed over by Handoff need a company name other than 'Unknown'."

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

def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


async def _drop(request: Request) -> None:
    """Close the client's connection without a response (the write behind it is already committed)."""
    cycle = getattr(request.receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0.05)  # let the server see the connection go before the app returns


class OAuth:
    """The token endpoint: the client-credentials and JWT bearer grants of one connected app."""

    def __init__(self, org: Org, credentials: dict[str, str], sessions: Sessions):
        self.org, self.credentials, self.sessions = org, credentials, sessions

    def token(self, fields: dict[str, list[str]], request: Request) -> Response:
        form = {k: v[-1] for k, v in fields.items()}
        grant = form.get("grant_type")
        if grant == "client_credentials":
            user = self.client_credentials(form, request.headers.get("authorization", ""))
        elif grant == JWT_GRANT:
            user = self.jwt_bearer(form.get("assertion", ""), request.headers.get("host", ""))
        else:
            user = _oauth_error("unsupported_grant_type", "grant type not supported")
        if isinstance(user, Response):
            return user
        base = str(request.base_url).rstrip("/")
        issued = str(int(time.time() * 1000))
        identity = f"{base}/id/{self.org.org_id}/{user}"
        secret = self.credentials["client_secret"].encode()
        signature = base64.b64encode(hmac.new(secret, (identity + issued).encode(), hashlib.sha256).digest()).decode()
        return json_response({"access_token": self.sessions.issue(self.org.org_id, user), "signature": signature,
                              "scope": "api", "instance_url": base, "id": identity, "token_type": "Bearer",
                              "issued_at": issued})

    def client_credentials(self, form: dict, authorization: str) -> str | Response:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization[:6].lower() == "basic ":  # simple-salesforce sends the key and secret this way
            try:
                client_id, _, secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return _oauth_error("invalid_client", "invalid client credentials")
        if client_id != self.credentials["client_id"]:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if not secrets.compare_digest(str(secret or ""), self.credentials["client_secret"]):
            return _oauth_error("invalid_client", "invalid client credentials")
        return self.org.user("integration")

    def jwt_bearer(self, assertion: str, host: str) -> str | Response:
        try:
            claims = jwt.decode(assertion, self.credentials["public_key_pem"], algorithms=["RS256"],
                                options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                         "verify_nbf": False, "verify_iss": False})
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.credentials["client_id"]:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if str(claims.get("aud", "")).rstrip("/") not in PUBLIC_AUDIENCES + (f"http://{host}", f"https://{host}"):
            return _oauth_error("invalid_grant", "audience is invalid")
        try:
            expires = float(claims.get("exp"))  # simple-salesforce sends it as a numeric string
        except (TypeError, ValueError):
            return _oauth_error("invalid_grant", "invalid assertion")
        if expires < time.time():
            return _oauth_error("invalid_grant", "expired authorization code")
        allowed = {self.org.staff[k]["username"]: self.org.staff[k]["id"] for k in JWT_USERS}
        if claims.get("sub") not in allowed:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        return allowed[claims["sub"]]


# ---------------------------------------------------------------- the app

def create_app(world: World, faults: SalesforceFaults, credentials: dict[str, str],
               rates: WorkRates | None = None) -> Starlette:
    if not isinstance(faults, SalesforceFaults):
        raise TypeError("the Salesforce stand-in needs SalesforceFaults (its own switches extend RequestFaults)")
    org = Org(world, rates)
    log, sessions, allowance = CallLog(), Sessions(faults), Allowance(faults, world)
    oauth = OAuth(org, credentials, sessions)
    server_errors = [0]

    def record_fault(record_id: str | None, batch: bool) -> RecordError | None:
        if faults.hit("unable_to_lock_row"):
            return RecordError("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"
                               + (f" or 1 records: {record_id}" if record_id else ""), [])
        if batch and faults.hit("validation_error"):
            return RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", VALIDATION_MESSAGE, [])
        return None

    bulk = BulkIngest(org, lambda record_id: record_fault(record_id, True))
    handlers = Handlers(org, bulk, log, allowance, record_fault)

    async def token(request: Request) -> Response:
        await delay(faults)
        log.note("token", False)
        return oauth.token(parse_qs((await request.body()).decode(), keep_blank_values=True), request)

    async def versions(_: Request) -> Response:
        await delay(faults)
        return json_response([{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in VERSIONS])

    async def data_api(request: Request) -> Response:
        await delay(faults)
        raw = request.scope.get("raw_path") or request.url.path.encode()
        match = re.match(r"^/services/data/v(\d+\.\d)(?:/(.*))?$", raw.decode("latin-1").split("?")[0])
        route = route_of(request.method, match.group(2) or "") if match else None
        if route is None:
            return json_response(NOT_FOUND, 404)
        kind, handler, params = route
        user = sessions.user(request)
        if user is None:
            return json_response(SESSION_EXPIRED, 401)
        if not allowance.spend():
            faults.refuse()
            refused = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
            return _with(json_response(refused, 403), {"Sforce-Limit-Info": allowance.header()})
        try:
            body = await request.body()
        except ClientDisconnect:
            return Response(status_code=400)
        write = request.method != "GET" and not (kind == "composite" and reads_only(body))
        log.note(kind, write)
        limit_info = {"Sforce-Limit-Info": allowance.header()}
        if faults.hit("rate_limit"):
            refused = [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
            return _with(json_response(refused, 403), limit_info)
        if faults.hit("server_error"):
            server_errors[0] += 1
            return _with(_server_error(server_errors[0]), limit_info)
        if faults.hit("timeout"):
            await asyncio.sleep(faults.timeout_hold_seconds)
        call = Call(request.method, match.group(1), {k: unquote(v) for k, v in params.items()},
                    dict(request.query_params), request.headers, body, user, org)
        response = await run_in_threadpool(handlers.run, handler, call)
        if write and response.status_code < 300 and faults.hit("drop_after_commit"):
            await _drop(request)
        return _with(response, limit_info)

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            log.reset()
        jobs = list(bulk.jobs.values())
        summary = {"jobs": len(jobs), "processed": sum(len(j.succeeded) + len(j.failed) for j in jobs),
                   "failed": sum(len(j.failed) for j in jobs)}
        return JSONResponse({**log.snapshot(), "bulk": summary})

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
    app = Starlette(routes=routes, middleware=[Middleware(OrgDate, org=org)])
    app.state.salesforce = org
    app.state.calls = log
    app.state.bulk = bulk
    return app


class OrgDate:
    """Every answer's Date header on the org's clock, as a real org's is on its own (a client may take it as the
    time its query ran); the server's wall-clock Date is switched off."""

    def __init__(self, app, org: Org):
        self.app, self.org = app, org

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def dated(message):
            if message["type"] == "http.response.start":
                date = formatdate(self.org.now, usegmt=True).encode()
                message["headers"] = [*(h for h in message.get("headers", []) if h[0].lower() != b"date"),
                                      (b"date", date)]
            await send(message)

        await self.app(scope, receive, dated)


def _with(response: Response, headers: dict[str, str]) -> Response:
    for name, value in headers.items():
        response.headers[name] = value
    return response


def _server_error(n: int) -> Response:
    if n % 2:
        ref = f"{secrets.randbelow(10**9)}-{secrets.randbelow(10**5)} ({-secrets.randbelow(10**9)})"
        return json_response([{"message": f"An unexpected error occurred. Please include this ErrorId if you contact "
                                  f"support: {ref}", "errorCode": "UNKNOWN_EXCEPTION"}], 500)
    return json_response([{"message": "Server is unavailable", "errorCode": "SERVER_UNAVAILABLE"}], 503)
