"""A rep's out-of-office calendar feed, read over HTTP: the iCalendar text, or a clear error.

A feed's address is often its only secret (a calendar's private address carries its token in the path), so
messages name the host alone and plain http:// is read from this machine only."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import requests

from connectors.http import ConnectorError, is_loopback

MAX_FEED_BYTES = 5_000_000  # a year of a busy calendar is well under 1 MB


def feed_host(url: str) -> str:
    """What may be said of a feed's address: its host."""
    return urlsplit(url).hostname or "an unreadable address"


def feed_url(url: str) -> str:
    """The address to GET: webcal:// is https://; plain http:// only to this machine."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in ("webcal", "webcals"):
        parts, scheme = parts._replace(scheme="https"), "https"
    if scheme == "http" and not is_loopback(parts.hostname):
        raise ConnectorError(f"calendar feed at {feed_host(url)}: plain http:// is read from this machine only; "
                             "use https:// (or webcal://)")
    if scheme != "https" and scheme != "http" or not parts.hostname:
        raise ConnectorError(f"calendar feed at {feed_host(url)}: not an https:// or webcal:// address")
    return urlunsplit(parts)


def read_feed(url: str, *, timeout: float = 10, max_bytes: int = MAX_FEED_BYTES,
              session: requests.Session | None = None) -> str:
    """The feed's iCalendar text. Raises ConnectorError naming the host and what went wrong."""
    where = f"calendar feed at {feed_host(url)}"
    get = (session or requests).get
    try:
        with get(feed_url(url), timeout=timeout, stream=True, headers={"Accept": "text/calendar"}) as response:
            if response.status_code != 200:
                raise ConnectorError(f"{where}: HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) > max_bytes:
                    raise ConnectorError(f"{where}: larger than {max_bytes:,} bytes")
    except requests.RequestException as exc:
        raise ConnectorError(f"{where}: {type(exc).__name__}") from None
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConnectorError(f"{where}: not UTF-8 text") from None
    if "BEGIN:VCALENDAR" not in text.upper():
        raise ConnectorError(f"{where}: not an iCalendar feed (no BEGIN:VCALENDAR)")
    return text
