"""Work on a source in a child process, and the wire it talks to its parent over: the child's items, its
logs, its failure or its end. Parsing, normalizing and storing are CPU work; in a child per source they run
beside each other instead of taking turns under one interpreter lock. `pages_in_subprocess` fetches a
source's pages there; the ingest task runs a source's whole ingest there (tasks/ingest.py)."""

from __future__ import annotations

import logging
import multiprocessing
import queue
from dataclasses import fields
from datetime import datetime
from typing import Any, Callable, Iterator

from config.sources import SourceConfig
from connectors.http import Backoff, TransientError
from connectors.marketing.base import Page
from domain.activity import ActivityRecord, ActivityType, PersonRecord, Rejection

_ITEM, _LOG, _ERROR, _DONE = "item", "log", "error", "done"


def _to_wire(page: Page) -> tuple:
    """A page as plain tuples: pickling slotted dataclasses goes through Python code, tuples do not."""
    return (
        [(a.source, a.external_id, a.type.value, a.occurred_at, a.email, a.source_contact_id, a.raw_json, a.asset,
          a.campaign, a.properties or None) for a in page.activities],
        [tuple(getattr(p, f.name) for f in fields(PersonRecord)) for p in page.people],
        [(r.source, r.external_id, r.reason, r.raw_json) for r in page.rejected],
        page.fetched,
        page.checkpoint,
    )


def _from_wire(wire: tuple) -> Page:
    activities, people, rejected, fetched, checkpoint = wire
    return Page(
        activities=[ActivityRecord(s, e, ActivityType(t), o, m, c, r, a, g, p or {}) for s, e, t, o, m, c, r, a, g, p in activities],
        people=[PersonRecord(*values) for values in people],
        rejected=[Rejection(*values) for values in rejected],
        fetched=fetched,
        checkpoint=checkpoint,
    )


class _Forward(logging.Handler):
    """Send the child's log records to the parent, which logs them as if they were its own."""

    def __init__(self, channel):
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        self.channel.put((_LOG, (record.name, record.levelno, record.getMessage())))


def serve(channel, work: Callable[[Callable[[Any], None]], None]) -> None:
    """The child's side: forward Handoff's log records, run `work(send)`, then say it is done, or hand its
    error to the parent, which raises it."""
    handoff_log = logging.getLogger("handoff")
    handoff_log.addHandler(_Forward(channel))
    handoff_log.setLevel(logging.INFO)
    handoff_log.propagate = False
    try:
        work(lambda item: channel.put((_ITEM, item)))
        channel.put((_DONE, None))
    except BaseException as exc:  # handed to the parent, which raises it
        channel.put((_ERROR, exc))


def run_in_child(
    target: Callable[..., None], args: tuple, *, name: str, what: str, depth: int, log: Any = None
) -> Iterator[Any]:
    """The parent's side: start `target(channel, *args)` in a fresh process and yield each item it sends, at
    most `depth` ahead. Its errors are raised here and its log records logged here (to `log` when given, else
    to the logger of their own name); a child that dies without a word is a transient failure; stopping
    early ends it."""
    context = multiprocessing.get_context("spawn")
    channel: Any = context.Queue(maxsize=depth)
    child = context.Process(target=target, args=(channel, *args), name=name, daemon=True)
    child.start()
    try:
        while True:
            try:
                kind, value = channel.get(timeout=1.0)
            except queue.Empty:
                if not child.is_alive():
                    raise TransientError(f"{what} ended unexpectedly (exit code {child.exitcode})") from None
                continue
            if kind == _ITEM:
                yield value
            elif kind == _LOG:
                logger_name, level, message = value
                (log or logging.getLogger(logger_name)).log(level, message)
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        if child.is_alive():
            child.terminate()
        child.join(timeout=10)
        channel.close()
        channel.join_thread()


def _produce(channel, config: SourceConfig, secrets: dict[str, str], since, timeout, backoff) -> None:
    from connectors.marketing import build_source

    def work(send) -> None:
        source = build_source(config, secrets, timeout=timeout, backoff=backoff)
        try:
            for page in source.pages(since):
                send(_to_wire(page))
        finally:
            source.close()

    serve(channel, work)


def pages_in_subprocess(
    config: SourceConfig,
    secrets: dict[str, str],
    since: datetime | None,
    *,
    timeout: tuple[float, float],
    backoff: Backoff,
    depth: int = 8,
) -> Iterator[Page]:
    """The source's pages, produced `depth` ahead by a child process (see run_in_child)."""
    wires = run_in_child(_produce, (config, secrets, since, timeout, backoff), name=f"fetch-{config.name}",
                         what=f"{config.name}: the fetch process", depth=depth)
    try:
        for wire in wires:
            yield _from_wire(wire)
    finally:
        wires.close()
