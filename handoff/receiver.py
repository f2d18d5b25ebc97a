"""The webhook receiver: POST /webhooks/<source> takes a marketing tool's own webhook, verified the way the tool
signs it (connectors.webhooks), stores its records through the same path as polling (same keys, same
quarantine) and commits them before it answers, so the tool's own retry is the only retry needed. The leads it
touched go to the hand-off-now flow at once; a lead the flow never got to keeps its mark for the scheduled runs.

A refused request (bad signature or token, stale, too big, not the tool's format) gets a 4xx and is stored
nowhere: one log line, counted. A database that cannot take the records gets a 503, so the tool sends again."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import Counter
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from config.settings import Settings
from config.sources import SourceConfig
from connectors.webhooks import Refused, WebhookReader, webhook_reader
from store.ingest import write_batch

log = logging.getLogger("handoff.webhooks")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def readers_for(sources: Iterable[SourceConfig], secrets_of: Callable[[SourceConfig], Mapping[str, str]]
                ) -> dict[str, WebhookReader]:
    """The enabled sources that take webhooks (a secret or token configured), by name."""
    readers = {}
    for source in sources:
        reader = webhook_reader(source, secrets_of(source))
        if reader is not None:
            readers[source.name] = reader
    return readers


class HandOffNow:
    """Runs the hand-off-now flow for the leads webhooks touched, one run at a time: leads that arrive while a run
    is going wait for the next run, together. Stopping lets the run in flight finish; leads still waiting keep
    their marks, which the scheduled runs take."""

    def __init__(self, run: Callable[[list[int]], object]):
        self._run = run
        self._waiting: set[int] = set()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._running = False
        self.runs = 0
        self.failures = 0

    def start(self) -> "HandOffNow":
        # The runs see the starter's context: Prefect's settings set there (its API URL) rather than a
        # throwaway server of their own.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,),
                                        name="hand-off-now", daemon=True)
        self._thread.start()
        return self

    def add(self, lead_ids: Iterable[int]) -> None:
        with self._wake:
            self._waiting.update(lead_ids)
            self._wake.notify()

    def stop(self, timeout: float | None = None) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        return bool(self._waiting) or self._running

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                leads, self._waiting = sorted(self._waiting), set()
                self._running = True
            try:
                self._run(leads)
                self.runs += 1
            except Exception:  # noqa: BLE001 - the marks stay: the scheduled runs take these leads
                self.failures += 1
                log.exception("hand-off-now failed for %d leads; the scheduled runs take them", len(leads))
            finally:
                self._running = False


class Receiver:
    def __init__(self, engine, readers: Mapping[str, WebhookReader], *, max_bytes: int,
                 public_url: str | None = None, clock: Clock = utc_now,
                 touched: Callable[[frozenset[int]], None] = lambda leads: None):
        self.engine, self.readers, self.max_bytes = engine, dict(readers), max_bytes
        self.public_url = public_url.rstrip("/") if public_url else None
        self.clock, self.touched = clock, touched
        self.wall: Clock = utc_now  # a signature's freshness is judged on this machine's clock, whatever `clock` says
        self.answers: Counter[tuple[str, int]] = Counter()  # (source, status) -> requests

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/webhooks/{source}", self.receive, methods=["POST"]),
                                 Route("/healthz", self.health, methods=["GET"])])

    async def health(self, _: Request) -> JSONResponse:
        answers: dict[str, dict[str, int]] = {}
        for (source, status), n in sorted(self.answers.items()):
            answers.setdefault(source, {})[str(status)] = n
        return JSONResponse({"sources": sorted(self.readers), "answers": answers})

    async def receive(self, request: Request) -> JSONResponse:
        name = request.path_params["source"]
        reader = self.readers.get(name)
        if reader is None:
            return self._refuse(name[:40], 404, "no source of that name takes webhooks")
        body = await self._body(request)
        if body is None:
            return self._refuse(name, 413, f"body over {self.max_bytes} bytes")
        now = self.clock()
        try:
            delivery = reader.read(request.method, self._url(request), request.headers, body, now,
                                   received_at=self.wall())
        except Refused as refused:
            return self._refuse(name, refused.status, refused.reason)
        try:
            counts = await run_in_threadpool(
                write_batch, self.engine, source=name, activities=delivery.activities, people=delivery.people,
                rejections=delivery.rejections, checkpoint=None, now=now, run_id=None, durable=True)
        except Exception as exc:  # noqa: BLE001 - nothing stored: the tool sends it again
            self.answers[(name, 503)] += 1
            log.error("webhook from %s not stored (%s): answered 503 so the tool sends it again", name,
                      type(exc).__name__)
            return JSONResponse({"error": "the database cannot take it now; send it again later"}, status_code=503,
                                headers={"Retry-After": "30"})
        self.answers[(name, 200)] += 1
        if counts.leads:
            self.touched(counts.leads)
        return JSONResponse({"stored": counts.new, "quarantined": counts.quarantined})

    async def _body(self, request: Request) -> bytes | None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return None
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_bytes:
                    return None
                chunks.append(chunk)
        except ClientDisconnect:
            return b""
        return b"".join(chunks)

    def _url(self, request: Request) -> str:
        """The URL as the tool posted to it (HubSpot signs it): the public address when a proxy stands between."""
        if not self.public_url:
            return str(request.url)
        query = f"?{request.url.query}" if request.url.query else ""
        return f"{self.public_url}{request.url.path}{query}"

    def _refuse(self, source: str, status: int, reason: str) -> JSONResponse:
        self.answers[(source, status)] += 1
        refused = sum(n for (s, code), n in self.answers.items() if s == source and code >= 400)
        log.warning("webhook for %s refused, %d: %s (%d refused so far)", source, status, reason, refused)
        return JSONResponse({"error": reason}, status_code=status)


def receiver_from(settings: Settings, engine, sources: Iterable[SourceConfig],
                  secrets_of: Callable[[SourceConfig], Mapping[str, str]], *, clock: Clock = utc_now,
                  touched: Callable[[frozenset[int]], None] = lambda leads: None) -> Receiver:
    return Receiver(engine, readers_for(sources, secrets_of), max_bytes=settings.webhook_max_bytes,
                    public_url=settings.webhook_public_url, clock=clock, touched=touched)
