"""One HTTP client for every edge: timeouts, retries with backoff that honours the API's own limit signals,
re-authentication on an expired token, and error messages that never carry credentials."""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

log = logging.getLogger("handoff.http")


class _RedactQueryStrings(logging.Filter):
    """urllib3 logs each request's full URL at DEBUG; query strings can carry credentials (OAuth token
    endpoints take client secrets as parameters), so they are cut from those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.split("?", 1)[0] + "?<redacted>" if isinstance(arg, str) and "?" in arg else arg for arg in record.args
            )
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactQueryStrings())


class ConnectorError(Exception):
    """An edge failed; the message names the service and path, never a credential."""


class PermanentError(ConnectorError):
    """Retrying will not help (bad credentials, exhausted quota, a 4xx): the source stops for this run."""


class TransientError(ConnectorError):
    """Worth retrying; `retry_after` is the wait the service asked for, if it said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class TokenExpired(TransientError):
    """The access token is no longer accepted: get a new one and repeat the request."""


def is_loopback(host: str | None) -> bool:
    """This machine (127.0.0.0/8, ::1, localhost): the only place plain http:// may carry a credential."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


# The jitter's own generator: drawing from the module-level one would move the random state of everything else
# in the process (a test framework replaying examples from it, say) whenever a request is retried.
_JITTER = random.Random()


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped at `cap`; a wait the API asks for (Retry-After, a rate
    limit window) wins when longer, up to `max_asked` so a bogus header cannot stall a run for hours."""

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int = 6
    max_asked: float = 300.0

    def wait(self, attempt: int, asked: float | None) -> float:
        jittered = _JITTER.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return max(jittered, min(asked or 0.0, self.max_asked))


Check = Callable[[requests.Response], None]


class HttpClient:
    """`check` sees every response first and raises TransientError / TokenExpired / PermanentError for the
    service's own signals (errors in 200 envelopes, a 401 that means bad credentials, a rate-limit policy);
    what it lets through gets the generic status mapping. `authorize` adds credentials to a request's
    headers and `reauthorize` is called once a token is refused."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        backoff: Backoff = Backoff(),
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        authorize: Callable[[dict[str, str]], None] | None = None,
        reauthorize: Callable[[], None] | None = None,
    ):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.backoff = backoff
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "handoff/0.1")
        if self.session.trust_env:
            # requests re-reads proxy and CA settings from the environment on every request (a scan of
            # os.environ each time); read them once here instead, so they still apply.
            self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                self.session.verify = bundle
            self.session.trust_env = False
        self.sleep = sleep
        self.authorize = authorize
        self.reauthorize = reauthorize
        self.retries = 0

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        check: Check | None = None,
        authenticated: bool = True,
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        where = f"{self.service} {method} {urlsplit(url).path}"

        def attempt() -> requests.Response:
            request_headers = dict(headers or {})
            if authenticated and self.authorize:
                self.authorize(request_headers)
            try:
                response = self.session.request(
                    method, url, params=params, json=json, data=data, headers=request_headers, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"{where}: {type(exc).__name__}") from None
            if check:
                check(response)
            self._check_status(response, where)
            return response

        def before_sleep(state: RetryCallState) -> None:
            self.retries += 1
            exc = state.outcome.exception()
            if isinstance(exc, TokenExpired) and self.reauthorize:
                self.reauthorize()
            log.warning("%s; retry %d in %.1fs", exc, state.attempt_number, state.upcoming_sleep)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception()
            if isinstance(exc, TokenExpired):
                return 0.0
            return self.backoff.wait(state.attempt_number, getattr(exc, "retry_after", None))

        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.backoff.max_attempts),
            wait=wait,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except TransientError as exc:
            raise TransientError(f"{exc} (gave up after {self.backoff.max_attempts} attempts)") from None

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def _check_status(self, response: requests.Response, where: str) -> None:
        status = response.status_code
        if status < 400:
            return
        asked = retry_after_seconds(response.headers.get("Retry-After"))
        if status == 429:
            raise TransientError(f"{where}: rate limited (429)", retry_after=asked)
        if status in (500, 502, 503, 504, 408):
            raise TransientError(f"{where}: server error {status}", retry_after=asked)
        if status == 401:
            raise TokenExpired(f"{where}: unauthorized (401)")
        raise PermanentError(f"{where}: HTTP {status}: {_snippet(response)}")


def _snippet(response: requests.Response, limit: int = 300) -> str:
    text = response.text or ""
    return text[:limit] + ("..." if len(text) > limit else "")
