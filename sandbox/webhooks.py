"""The stand-ins' webhooks: a sender that posts a tool's deliveries from threads of its own (the API handlers only
queue them), retrying like the tool with its schedule compressed to seconds: on a connection error, a 5xx or a
429, and on another 4xx only where the tool does (HubSpot's app webhooks); the delivery fault switches (twice,
late, wrong signature: one attempt signed wrong); and the control routes that make hand-raises and single
activities happen now, for the latency benchmark and the demo.

A stand-in plugs in with a `ToolHooks`: how it renders and posts its events, and the id both of its paths (webhook
and API) give an event.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol

import requests
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox import catalog
from sandbox import world as w
from sandbox.faults import RequestFaults

Signer = Callable[[bytes, str, str], dict[str, str]]  # (body, secret, url) -> headers
Outcome = Callable[[float, "int | None", int], None]  # (wall time posted, HTTP status or None, attempt)

# Kinds the control routes take, by the activity type a client knows them as, with their default asset.
ACTIVITIES = {
    "demo_request": (w.DEMO_REQUESTED, catalog.DEMO_FORM),
    "trial_signup": (w.TRIAL_STARTED, catalog.TRIAL_FORM),
    "contact_sales": (w.CONTACT_SALES, catalog.CONTACT_SALES_FORM),
    "newsletter_signup": (w.SUBSCRIBED, catalog.NEWSLETTER_FORM),
    "whitepaper_download": (w.WHITEPAPER_DOWNLOADED, catalog.WHITEPAPERS[0]),
    "webinar_registration": (w.WEBINAR_REGISTERED, catalog.WEBINARS[0]),
    "page_view": (w.PAGE_VISITED, "/pricing"),
    "email_open": (w.EMAIL_OPENED, catalog.EMAILS[0][1]),
    "email_click": (w.EMAIL_CLICKED, catalog.EMAILS[0][1]),
}
HAND_RAISES = ("demo_request", "trial_signup", "contact_sales")
STRONG_INDUSTRIES = ("Software", "Financial Services")  # with a fit title and size, grade A by the shipped rulebook


@dataclass(order=True)
class _Posting:
    due: float
    seq: int
    render: Callable[[int], bytes] = field(compare=False)  # attempt (0 first) -> body
    wrong_signature: bool = field(compare=False, default=False)
    on_result: Outcome | None = field(compare=False, default=None)
    retry_refusals: bool = field(compare=False, default=False)  # a 4xx is retried too
    attempt: int = field(compare=False, default=0)


class WebhookSender:
    """Posts to `url` from `workers` threads, each delivery signed as it leaves (a timestamp is the sending time)."""

    def __init__(self, url: str, sign: Signer, secret: str, faults: RequestFaults, retry_delays: tuple[float, ...],
                 *, workers: int = 4, timeout: tuple[float, float] = (3.0, 10.0)):
        self.url, self.retry_delays, self.timeout = url, retry_delays, timeout
        self._sign, self._secret, self._faults = sign, secret, faults
        self._queue: list[_Posting] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._busy = 0
        self._stopping = False
        self._session = requests.Session()
        self.stats = {"posted": 0, "retried": 0, "gave_up": 0, "connection_errors": 0}
        self.answers: dict[int, int] = {}
        self._threads = [threading.Thread(target=self._work, name=f"webhooks-{n}", daemon=True) for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def post(self, render: Callable[[int], bytes], on_result: Outcome | None = None, *,
             retry_refusals: bool = False) -> None:
        """Queue one delivery; the fault switches decide whether it goes late, twice or signed wrong."""
        faults = self._faults
        due = time.monotonic() + (faults.webhook_late_seconds if faults.hit("webhook_late") else 0.0)
        wrong = faults.hit("webhook_bad_signature")
        copies = 2 if faults.hit("webhook_twice") else 1
        with self._wake:
            for copy in range(copies):
                heapq.heappush(self._queue, _Posting(due, next(self._seq), render, wrong, on_result if not copy else None,
                                                     retry_refusals))
            self._wake.notify_all()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or in flight (retries included); False if that took longer than `timeout`."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def state(self) -> dict:
        with self._wake:
            queued = len(self._queue) + self._busy
        fired = {name: self._faults.fired(name) for name in ("webhook_twice", "webhook_late", "webhook_bad_signature")}
        return {"target": self.url, **self.stats, "queued": queued,
                "answers": {str(k): v for k, v in sorted(self.answers.items())}, "faults_fired": fired}

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._session.close()

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (not self._queue or self._queue[0].due > time.monotonic()):
                    self._wake.wait(max(0.001, self._queue[0].due - time.monotonic()) if self._queue else None)
                if self._stopping:
                    return
                posting = heapq.heappop(self._queue)
                self._busy += 1
            try:
                self._send(posting)
            finally:
                with self._wake:
                    self._busy -= 1
                    self._wake.notify_all()

    def _send(self, posting: _Posting) -> None:
        body = posting.render(posting.attempt)
        secret = self._secret + "-not-this-one" if posting.wrong_signature else self._secret
        headers = self._sign(body, secret, self.url)
        sent_at = time.time()
        try:
            status: int | None = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout).status_code
        except requests.RequestException:
            status = None
        with self._wake:
            self.stats["posted"] += 1
            if status is None:
                self.stats["connection_errors"] += 1
            else:
                self.answers[status] = self.answers.get(status, 0) + 1
        if posting.on_result is not None:
            posting.on_result(sent_at, status, posting.attempt)
        refused = status is not None and 400 <= status < 500 and status != 429
        if status is not None and (status < 400 or refused and not posting.retry_refusals):
            return  # delivered, or refused for good
        if posting.attempt >= len(self.retry_delays):
            with self._wake:
                self.stats["gave_up"] += 1
            return
        posting.due = time.monotonic() + self.retry_delays[posting.attempt]
        posting.attempt += 1
        posting.wrong_signature = False  # the fault spoilt that attempt's signature; a retry is signed afresh
        with self._wake:
            self.stats["retried"] += 1
            heapq.heappush(self._queue, posting)
            self._wake.notify_all()


class ToolHooks(Protocol):
    """What a stand-in gives the control routes."""

    tool: str
    sender: WebhookSender | None

    def deliver(self, events: list[w.Event], on_result: Outcome | None = None, style: str | None = None) -> bool:
        """Post the webhooks these events make; False when they make none (or no receiver is set)."""
        ...

    def activity_id(self, event: w.Event) -> str:
        """The id of the event on both of the tool's paths, webhook and API."""
        ...

    def contact_id(self, person: w.Person) -> str: ...

    def address(self, person: w.Person) -> str: ...


def wall_iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class HandRaise:
    """One hand-raise made now: who, the event's ids, when it happened in the tool (wall and world time) and when
    its webhook was first posted (None until then, or when no receiver is set), with the last answer."""

    event_id: int
    email: str
    contact_id: str
    activity_id: str
    kind: str
    created_at: str
    occurred_at: str
    posted_at: float | None = None
    posted_at_iso: str | None = None
    status: int | None = None
    attempts: int = 0

    def posted(self, sent_at: float, status: int | None, attempt: int) -> None:
        if self.posted_at is None:
            self.posted_at, self.posted_at_iso = sent_at, wall_iso(sent_at)
        self.status, self.attempts = status, attempt + 1


class WebhookControl:
    """The /_sandbox/webhooks routes of one stand-in."""

    def __init__(self, world: w.World, hooks: ToolHooks):
        self.world, self.hooks = world, hooks
        self.hand_raises: list[HandRaise] = []
        self.pending = 0
        self._used: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()
        if self.hooks.sender is not None:
            self.hooks.sender.stop()

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/webhooks", self._state, methods=["GET"]),
            Route("/_sandbox/webhooks/hand-raises", self._start_hand_raises, methods=["POST"]),
            Route("/_sandbox/webhooks/hand-raises", self._list_hand_raises, methods=["GET"]),
            Route("/_sandbox/webhooks/activity", self._activity, methods=["POST"]),
        ]

    # -- candidates --------------------------------------------------------------------------------------------

    def good_fits(self, count: int) -> list[w.Person]:
        """People of the tool who fit the ideal customer profile and have not raised a hand yet, the strongest
        fits first, each at most once per stand-in while any is left."""
        raised = {e.person for e in self.world.events if e.kind in w.HAND_RAISES}
        people = [p for p in self.world.tool_people(self.hooks.tool) if p.fits_icp and p.index not in raised]
        people.sort(key=lambda p: (p.industry not in STRONG_INDUSTRIES or "Manager" in p.title, p.index))
        with self._lock:
            fresh = [p for p in people if p.index not in self._used] or people
            chosen = [fresh[n % len(fresh)] for n in range(count)] if fresh else []
            self._used.update(p.index for p in chosen)
        return chosen

    # -- routes ------------------------------------------------------------------------------------------------

    async def _state(self, _: Request) -> JSONResponse:
        sender = self.hooks.sender
        return JSONResponse({"tool": self.hooks.tool, "sender": sender.state() if sender else None,
                             "hand_raises": len(self.hand_raises), "pending": self.pending})

    async def _start_hand_raises(self, request: Request) -> JSONResponse:
        try:
            body = await request.json()
            count, every = int(body.get("count", 1)), float(body.get("every_seconds", 0))
            kind, style = str(body.get("kind", "demo_request")), body.get("delivery")
            self._check_tool(body)
            if count < 1 or every < 0 or kind not in HAND_RAISES:
                raise ValueError(f"count >= 1, every_seconds >= 0 and kind one of {', '.join(HAND_RAISES)}")
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        people = self.good_fits(count)
        if not people:
            return JSONResponse({"error": f"no person of {self.hooks.tool} fits the profile"}, status_code=400)
        loop, start = asyncio.get_running_loop(), time.monotonic()
        with self._lock:
            self.pending += count
        threading.Thread(target=self._raise_hands, args=(loop, people, every, kind, style, start),
                         name=f"hand-raises-{self.hooks.tool}", daemon=True).start()
        return JSONResponse({"tool": self.hooks.tool, "scheduled": count, "every_seconds": every, "kind": kind,
                             "delivery": style, "receiver": self.hooks.sender.url if self.hooks.sender else None})

    async def _list_hand_raises(self, _: Request) -> JSONResponse:
        with self._lock:
            made = [asdict(h) for h in self.hand_raises]
        return JSONResponse({"tool": self.hooks.tool, "hand_raises": made, "pending": self.pending})

    async def _activity(self, request: Request) -> JSONResponse:
        try:
            body = await request.json()
            self._check_tool(body)
            kind, asset = ACTIVITIES[str(body.get("type"))]
            person = self._person(str(body.get("email", "")))
        except KeyError:
            return JSONResponse({"error": f"type must be one of {', '.join(ACTIVITIES)}"}, status_code=400)
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        campaign = body.get("campaign")
        asset = body.get("asset") or asset
        if kind in w.EMAIL_KINDS:
            if asset not in {name for _, name in catalog.EMAILS}:
                return JSONResponse({"error": f"asset must be one of the e-mails: {[n for _, n in catalog.EMAILS]}"},
                                    status_code=400)
            campaign = campaign or next(c for c, name in catalog.EMAILS if name == asset)
        elif kind == w.PAGE_VISITED and not str(asset).startswith("/"):
            return JSONResponse({"error": "a page_view's asset is a path, e.g. /pricing"}, status_code=400)
        event = self.world.add_event(person, self.hooks.tool, kind, asset, campaign, tell=False)
        posted = self.hooks.deliver([event], style=body.get("delivery"))
        answer = {"event_id": event.id, "activity_id": self.hooks.activity_id(event), "email": self.hooks.address(person),
                  "type": body.get("type"), "asset": asset, "campaign": campaign,
                  "occurred_at": event.occurred_at.isoformat(), "posted": posted}
        if not posted:
            answer["note"] = ("no receiver is set" if self.hooks.sender is None else
                              f"{self.hooks.tool} sends no webhook for this activity; the next poll reads it")
        return JSONResponse(answer)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _check_tool(self, body: dict) -> None:
        if body.get("tool") not in (None, self.hooks.tool):
            raise ValueError(f"this is the {self.hooks.tool} stand-in, not {body.get('tool')}")

    def _person(self, email: str) -> w.Person:
        wanted = email.strip().lower()
        for person in self.world.tool_people(self.hooks.tool):
            if person.email.lower() == wanted or self.hooks.address(person).lower() == wanted:
                return person
        raise ValueError(f"no person of {self.hooks.tool} has the address {email!r}")

    def _raise_hands(self, loop: asyncio.AbstractEventLoop, people: list[w.Person], every: float, kind: str,
                     style: str | None, start: float) -> None:
        """One hand-raise every `every` seconds, each made on the stand-in's own loop (its feeds live there)."""
        world_kind, form = ACTIVITIES[kind]
        for n, person in enumerate(people):
            if self._stop.wait(max(0.0, start + n * every - time.monotonic())):
                return
            try:
                asyncio.run_coroutine_threadsafe(self._raise_one(person, world_kind, form, kind, style), loop).result()
            except RuntimeError:  # the stand-in stopped
                return
            finally:
                with self._lock:
                    self.pending -= 1

    async def _raise_one(self, person: w.Person, world_kind: str, form: str, kind: str, style: str | None) -> None:
        event = self.world.add_event(person, self.hooks.tool, world_kind, form, tell=False)
        made = HandRaise(event.id, self.hooks.address(person), self.hooks.contact_id(person),
                         self.hooks.activity_id(event), kind, wall_iso(time.time()), event.occurred_at.isoformat())
        with self._lock:
            self.hand_raises.append(made)
        self.hooks.deliver([event], on_result=made.posted, style=style)
