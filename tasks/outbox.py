"""Lead events to Prefect from the outbox, at least once and confirmed: every run first asks the Prefect server
which of the events sent earlier it holds, then sends the events never sent and those sent a resend interval
ago that the server still lacks, under their stored ids (the server keeps one event per id, so a second send
adds nothing). Prefect's event queue drops an event it cannot deliver with only a log line; an event is
therefore taken as delivered when a run reads it back, not when it leaves the process."""

from __future__ import annotations

import contextvars
import threading
import time
from datetime import datetime, timedelta
from typing import Iterable
from uuid import UUID

import orjson
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.filters import EventFilter, EventIDFilter, EventOccurredFilter
from prefect.events.worker import EventsWorker, should_emit_events
from prefect.logging import get_run_logger
from pydantic import BaseModel

from config.settings import get_settings
from store import outbox
from store.engine import get_engine

# Ids asked about in one read: the server answers with the count it holds, so a batch it holds whole costs one call.
CONFIRM_BATCH = 500
# Events per page when a batch is held in part (the most the server's read API returns at once).
PAGE = 50
# After a burst: how often to ask whether the server holds it, and how long it may store none before the run
# goes on (the server's event persister writes every few seconds).
POLL_SECONDS = 0.5
STALL_SECONDS = 15.0
# How long a pump with nothing to send waits before it looks again
PUMP_IDLE_SECONDS = 0.5


class Delivery(BaseModel):
    """What a run's publishing did with the outbox."""

    sent: int = 0  # sent for the first time this run
    resent: int = 0  # sent again: the server did not hold them a resend interval after the last send
    confirmed: int = 0  # found on the server this run
    given_up: int = 0  # unconfirmed after the most sends allowed (all runs' count)
    # False once the server stored none of a burst this run: the rest were sent without waiting on each
    server_storing: bool = True

    def log_to(self, logger) -> None:
        """The one line a run logs about its lead events: at WARNING while some are given up."""
        (logger.warning if self.given_up else logger.info)(self.describe())

    def describe(self) -> str:
        if not (self.sent or self.resent or self.confirmed or self.given_up):
            return "lead events: none to send or confirm"
        text = (f"lead events: {self.sent} sent, {self.resent} sent again (Prefect did not hold them), "
                f"{self.confirmed} confirmed held by Prefect")
        if self.given_up:
            text += (f"; {self.given_up} never confirmed after the most sends allowed (HANDOFF_EVENT_MAX_SENDS), "
                     "kept in lead_event")
        return text


@task(cache_policy=NO_CACHE)
def publish_lead_events(now: datetime, so_far: Delivery | None = None) -> Delivery:
    """Confirm what Prefect holds, then send what is due, HANDOFF_EVENT_BURST at a time: after each burst the run
    waits until the server holds it (or stops storing more), since a server on its in-memory broker drops events
    that arrive faster than it stores them. A confirmation that cannot reach the server leaves the events as they
    were for the next run; it does not fail a run whose scoring is saved. `so_far`: what an EventPump of the same
    run did already (it confirmed the earlier events)."""
    sender = _Sender(now, so_far.model_copy() if so_far else Delivery())
    if so_far is None:
        sender.confirm_earlier()
    while sender.send_burst():
        pass
    return sender.counted()


class EventPump:
    """Lead events sent while a run is still scoring, from a thread of the run's own: the events its chunks write
    go out as the chunks commit, and the waits for the Prefect server to store each burst pass while the next
    chunks are scored, not after. `with EventPump(now) as pump: ...`, then publish_lead_events(now, pump.delivery)
    sends the rest. A failure here is logged and leaves the events to that last step and the next runs."""

    def __init__(self, now: datetime):
        self.delivery = Delivery()
        self._now = now
        self._stop = threading.Event()
        # The run's context goes with the thread: its events name the flow run, its warnings reach the run's log.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._pump,),
                                        name="lead-events", daemon=True)

    def __enter__(self) -> "EventPump":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _pump(self) -> None:
        try:
            sender = _Sender(self._now, self.delivery)
            sender.confirm_earlier()
            while not self._stop.is_set():
                if not sender.send_burst():
                    self._stop.wait(PUMP_IDLE_SECONDS)
        except Exception as exc:
            get_run_logger().warning("Sending lead events during the run stopped (%s: %s); the run's last step and "
                                     "the next runs send them", type(exc).__name__, exc)


class _Sender:
    """One run's sending: the events due, a burst at a time, each burst held by the server before the next."""

    def __init__(self, now: datetime, delivery: Delivery):
        settings = get_settings()
        self.engine = get_engine(settings.resolved_database_url())
        self.now, self.delivery = now, delivery
        self.resend_after, self.max_sends, self.burst = (settings.event_resend_after(), settings.event_max_sends,
                                                         settings.event_burst)
        self.emitting = should_emit_events()
        self.in_flight: list[dict] = []

    def confirm_earlier(self) -> None:
        if self.emitting:
            self.delivery.confirmed += _asking(lambda: _confirm(self.engine, self.now, self.resend_after,
                                                                self.max_sends))

    def send_burst(self) -> bool:
        """Send due events until a burst is out, then wait until the server holds it. False: none was due."""
        sent = False
        while len(self.in_flight) < self.burst:
            with self.engine.connect() as conn:
                due = outbox.events_to_send(conn, self.now, self.resend_after, self.max_sends,
                                            limit=min(1000, self.burst - len(self.in_flight)))
            if not due:
                break
            self._send(due)
            sent = True
        if len(self.in_flight) >= self.burst:
            if self.emitting and self.delivery.server_storing:
                held = _asking(lambda: _once_held(self.engine, self.in_flight, self.now))
                self.delivery.confirmed += held
                # A server that stored none of a burst is not storing events now: the rest of the run's events go
                # without waiting, and the next runs send again what it lacks.
                self.delivery.server_storing = held > 0
            self.in_flight = []
        return sent

    def _send(self, due: list[dict]) -> None:
        for event in due:
            payload = orjson.loads(event["payload"])
            emit_event(
                # a lead's own events are handoff.lead.<kind>; another room's name their room (sla.reminded)
                event=f"handoff.{event['kind']}" if "." in event["kind"] else f"handoff.lead.{event['kind']}",
                resource={"prefect.resource.id": f"handoff.lead.{event['lead_id']}",
                          "prefect.resource.name": f"lead {event['lead_id']}"},
                # An MQL's crossing is its count of handovers; a stage event's is its stage change's id (in the payload)
                payload={**payload, "crossing": event["crossing"]} if event["kind"] == "mql" else payload,
                id=UUID(event["event_id"]),
                occurred=event["occurred_at"],
            )
        if self.emitting:
            # emit_event only queues: a process that ended right after marking could take queued events with it.
            EventsWorker.instance().wait_until_empty()
        with self.engine.begin() as conn:
            outbox.mark_sent(conn, [event["id"] for event in due], self.now)
        resent = sum(1 for event in due if event["sent_at"] is not None)
        self.delivery.resent += resent
        self.delivery.sent += len(due) - resent
        self.in_flight += due

    def counted(self) -> Delivery:
        with self.engine.connect() as conn:
            self.delivery.given_up = outbox.events_given_up(conn, self.now, self.resend_after, self.max_sends)
        return self.delivery


def _asking(ask) -> int:
    """Events confirmed by `ask`, or none when the server cannot say: nothing is marked, nothing lost."""
    try:
        return ask()
    except Exception as exc:  # the server's read API down or refusing
        get_run_logger().warning("Could not ask Prefect which lead events it holds (%s: %s); the next run asks "
                                 "again", type(exc).__name__, exc)
        return 0


def _confirm(engine, now: datetime, resend_after: timedelta, max_sends: int) -> int:
    confirmed, after = 0, 0
    with get_client(sync_client=True) as client:
        while True:
            with engine.connect() as conn:
                sent = outbox.events_to_confirm(conn, now, resend_after, max_sends, after_id=after,
                                                limit=CONFIRM_BATCH)
            if not sent:
                return confirmed
            after = sent[-1]["id"]
            confirmed += _mark_held(engine, sent, _held_by_server(client, sent), now)


def _once_held(engine, events: list[dict], now: datetime) -> int:
    """Wait until the server holds these events just sent, or has stored none of them for STALL_SECONDS (it
    dropped them, or is down: the next runs send them again); mark those it holds."""
    held: set[str] = set()
    waiting = events
    stalled_at = time.monotonic() + STALL_SECONDS
    with get_client(sync_client=True) as client:
        while waiting and time.monotonic() < stalled_at:
            time.sleep(POLL_SECONDS)
            now_held = set().union(*(_held_by_server(client, waiting[i:i + CONFIRM_BATCH])
                                     for i in range(0, len(waiting), CONFIRM_BATCH)))
            if now_held:
                held |= now_held
                waiting = [event for event in waiting if event["event_id"] not in held]
                stalled_at = time.monotonic() + STALL_SECONDS
    return _mark_held(engine, events, held, now)


def _mark_held(engine, events: list[dict], held: set[str], now: datetime) -> int:
    if held:
        with engine.begin() as conn:
            outbox.mark_confirmed(conn, [event["id"] for event in events if event["event_id"] in held], now)
    return len(held)


def _held_by_server(client, events: list[dict]) -> set[str]:
    """Which of these events (ids as stored) the Prefect server holds: one count when it holds them all, else
    the pages of those it holds."""
    occurred = [event["occurred_at"] for event in events]
    ids = [UUID(event["event_id"]) for event in events]
    query = EventFilter(id=EventIDFilter(id=ids), occurred=EventOccurredFilter(
        since=min(occurred) - timedelta(seconds=1), until=max(occurred) + timedelta(seconds=1)))
    page = client.read_events(filter=query, limit=1)
    if page.total == len(ids):
        return {str(i) for i in ids}
    if page.total == 0:
        return set()
    page = client.read_events(filter=query, limit=PAGE)
    held = _ids(page.events)
    while page.next_page:
        page = client.read_events_page(page.next_page)
        held |= _ids(page.events)
    return held


def _ids(events: Iterable) -> set[str]:
    return {str(event.id) for event in events}
