"""Signing in to Salesforce and the HTTP session every call goes through: the OAuth grants, plain http only to
this machine, a timeout on every request, calls counted by kind, the org's API usage read from every answer, and
the Salesforce errors sorted into the project's kinds (transient, permanent, expired token)."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import jwt
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce.exceptions import SalesforceError

from config.crm import Connection
from connectors.http import (
    Backoff, ConnectorError, PermanentError, TokenExpired, TransientError, is_loopback, retry_after_seconds,
)
from domain.crm import ApiUsage

log = logging.getLogger("handoff.crm.salesforce")

TOKEN_PATH = "/services/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME = 170  # seconds: Salesforce refuses an assertion that expires more than three minutes ahead
_LIMIT_INFO = re.compile(r"(?<![\w-])api-usage=(\d+)/(\d+)")  # not per-app-api-usage
SETTINGS = {"login_url": "HANDOFF_SALESFORCE_LOGIN_URL", "instance_url": "HANDOFF_SALESFORCE_INSTANCE_URL",
            "private_key_file": "HANDOFF_SALESFORCE_PRIVATE_KEY_FILE"}


class StopSync(PermanentError):
    """Nothing more can be done this run: the org's daily allowance is spent, or the credentials are refused."""


# ---------------------------------------------------------------- where a token may go

def http_date(value: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(value).astimezone(timezone.utc) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def checked_url(url: str | None, setting: str) -> str:
    """The URL without its trailing slash, if a token may be sent there: https anywhere, plain http only to this
    machine (127.0.0.0/8, ::1, localhost)."""
    parts = urlsplit(url or "")
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname:
        if is_loopback(parts.hostname):
            return url.rstrip("/")
        raise PermanentError(f"salesforce: {setting} is plain http:// to {parts.hostname}, which is not this machine: "
                             "a token is never sent in clear; use https://")
    raise PermanentError(f"salesforce: {setting} is not an https:// URL")


class _PlainToLoopback(HTTPAdapter):
    """simple-salesforce builds https:// URLs only: this sends the ones for one loopback host over plain http."""

    def send(self, request, **kwargs):
        request.url = "http://" + request.url[len("https://"):]
        return super().send(request, **kwargs)


# ---------------------------------------------------------------- the session

def call_kind(method: str, url: str) -> str:
    """The kind of API call a request is, as `calls` counts them."""
    path = urlsplit(url).path
    if path.endswith(TOKEN_PATH):
        return "token"
    match = re.search(r"/services/data/v[\d.]+/?(.*)$", path)
    rest = (match.group(1) if match else "").strip("/")
    if rest == "composite":
        return "composite"
    if rest.startswith("composite/sobjects"):
        return "collections"
    if re.match(r"(query|queryAll)/.", rest):
        return "query_more"
    if rest in ("query", "queryAll"):
        return "query"
    if rest.startswith("jobs/ingest"):
        return "bulk"
    return rest.split("/", 1)[0] or "other"


class ApiSession(requests.Session):
    """Every request gets the timeout unless it names one, is counted by kind, and its answer's Sforce-Limit-Info
    and Retry-After are kept."""

    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout
        self.calls: Counter[str] = Counter()
        self.usage: ApiUsage | None = None
        self.retry_after: float | None = None
        self.answered_at: datetime | None = None  # the org's clock (its Date header) at the last answer
        self.trust_env = False  # proxies are read once per host (route), not from the environment on every request
        self.headers["User-Agent"] = "handoff/0.1"

    def request(self, method, url, *args, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        self.calls[call_kind(method, url)] += 1
        self.retry_after = None
        response = super().request(method, url, *args, **kwargs)
        info = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if info:
            self.usage = ApiUsage(int(info.group(1)), int(info.group(2)))
        self.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        self.answered_at = http_date(response.headers.get("Date"))
        return response

    def route(self, url: str) -> None:
        """Reach this host as it asks: a loopback http:// host gets simple-salesforce's https:// requests over http;
        any other host its proxies from the environment."""
        parts = urlsplit(url)
        if parts.scheme == "http":
            self.mount(f"https://{parts.netloc}/", _PlainToLoopback())
        else:
            self.proxies.update(requests.utils.get_environ_proxies(url))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                self.verify = bundle


# ---------------------------------------------------------------- signing in

@dataclass(frozen=True)
class Grant:
    instance_url: str
    access_token: str
    renewable: bool  # a grant can be asked again; a token given as a setting cannot


def sign_in(session: ApiSession, connection: Connection, secrets: Mapping[str, str], *, backoff: Backoff,
            sleep: Callable[[float], None]) -> Grant:
    """A session from whichever credentials are set: client credentials, then the JWT bearer grant, then a token
    given as it is."""
    creds = {key: value for key, value in secrets.items() if value}
    if {"client_id", "client_secret"} <= set(creds):
        form = {"grant_type": "client_credentials", "client_id": creds["client_id"],
                "client_secret": creds["client_secret"]}
    elif {"client_id", "username", "private_key_file"} <= set(creds):
        login = checked_url(connection.login_url, SETTINGS["login_url"])
        form = {"grant_type": JWT_GRANT, "assertion": _assertion(creds, login)}
    elif "access_token" in creds:
        instance = creds.get("instance_url") or connection.instance_url
        if not instance:
            raise StopSync(f"salesforce: an access token needs {SETTINGS['instance_url']} (the org's own URL)")
        return Grant(checked_url(instance, SETTINGS["instance_url"]), creds["access_token"], renewable=False)
    else:
        raise StopSync("salesforce: no credentials: set HANDOFF_SALESFORCE_CLIENT_ID with _CLIENT_SECRET, or with "
                       "_USERNAME and _PRIVATE_KEY_FILE, or _INSTANCE_URL with _ACCESS_TOKEN")
    login = checked_url(connection.login_url, SETTINGS["login_url"])
    session.route(login)
    body = _token(session, login + TOKEN_PATH, form, backoff, sleep, creds)
    token, instance = body.get("access_token"), body.get("instance_url")
    if not isinstance(token, str) or not isinstance(instance, str):
        raise PermanentError("salesforce: the token endpoint answered without an access_token and instance_url")
    return Grant(checked_url(instance, "the instance_url the token endpoint answered"), token, renewable=True)


def _assertion(creds: Mapping[str, str], audience: str) -> str:
    setting = SETTINGS["private_key_file"]
    try:
        key = Path(creds["private_key_file"]).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise StopSync(f"salesforce: the private key file {setting} names cannot be read "
                       f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    claims = {"iss": creds["client_id"], "sub": creds["username"], "aud": _audience(audience),
              "exp": int(time.time()) + JWT_LIFETIME}
    try:
        return jwt.encode(claims, key, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError):
        raise StopSync(f"salesforce: the file {setting} names is not an RSA private key in PEM form") from None


def _audience(login: str) -> str:
    """The JWT's audience: the login URL, except that Salesforce takes only its public login hosts as the audience
    for an org's My Domain (test.salesforce.com for a sandbox's)."""
    host = (urlsplit(login).hostname or "").lower()
    if host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host.endswith(".my.salesforce.com"):
        return "https://login.salesforce.com"
    return login


def _token(session: ApiSession, url: str, form: dict, backoff: Backoff, sleep: Callable[[float], None],
           creds: Mapping[str, str]) -> dict:
    """The token endpoint's answer; refused credentials are permanent, an unreachable endpoint transient."""
    for attempt in range(1, backoff.max_attempts + 1):
        try:
            response = session.post(url, data=form, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            problem: ConnectorError = TransientError(f"salesforce sign-in: {type(exc).__name__}")
        else:
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    problem = TransientError("salesforce sign-in: an answer that is not JSON")
            elif response.status_code in (400, 401, 403):
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                error = body.get("error", "refused") if isinstance(body, dict) else "refused"
                description = body.get("error_description", "") if isinstance(body, dict) else ""
                raise StopSync(redact(f"salesforce: sign-in refused ({error}: {description})", creds))
            elif response.status_code >= 500 or response.status_code == 429:
                problem = TransientError(f"salesforce sign-in: HTTP {response.status_code}")
            else:
                raise PermanentError(f"salesforce sign-in: HTTP {response.status_code}")
        if attempt == backoff.max_attempts:
            break
        log.warning("%s; retry %d", problem, attempt)
        sleep(backoff.wait(attempt, session.retry_after))
    raise TransientError(f"{problem} (gave up after {backoff.max_attempts} attempts)")


# ---------------------------------------------------------------- errors

def redact(text: str, secrets: Mapping[str, str] | Any) -> str:
    """The text with every credential in it blanked (a message must never carry one)."""
    for value in (secrets.values() if isinstance(secrets, Mapping) else secrets):
        if isinstance(value, str) and len(value) >= 6:
            text = text.replace(value, "***")
    return text


def first_error(content: Any) -> tuple[str, str]:
    """Salesforce's (errorCode, message) from an error body: [{"errorCode", "message"}]."""
    if isinstance(content, (bytes, str)):
        try:
            content = json.loads(content)
        except ValueError:
            return "", str(content)[:200]
    if isinstance(content, list) and content and isinstance(content[0], dict):
        content = content[0]
    if isinstance(content, dict):
        return str(content.get("errorCode") or content.get("statusCode") or ""), str(content.get("message") or "")
    return "", ""


def sorted_error(exc: BaseException, what: str, timeout: float) -> ConnectorError:
    """A failed call as the project's kind of error; the message names the call, never a credential."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, SalesforceError):
        status = exc.status
        code, message = first_error(exc.content)
        said = f"salesforce {what}: HTTP {status} {code}: {message[:300]}".rstrip(": ")
        if status == 401:
            return TokenExpired(said)
        if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            if "concurrent" in message.lower():  # ConcurrentPerOrgLongTxn: too many long calls at once, not the day's
                return TransientError(said)
            return StopSync(f"salesforce {what}: the org's daily API allowance is spent (REQUEST_LIMIT_EXCEEDED: "
                            f"{message}); nothing more is sent until it renews")
        if status >= 500 or status in (408, 429):
            return TransientError(said)
        return PermanentError(said)
    if isinstance(exc, requests.Timeout):
        return TransientError(f"salesforce {what}: no answer within {timeout:g}s")
    if isinstance(exc, requests.RequestException):
        return TransientError(f"salesforce {what}: the connection failed before an answer ({type(exc).__name__})")
    if isinstance(exc, ValueError):
        return TransientError(f"salesforce {what}: an answer that is not JSON")
    raise exc
