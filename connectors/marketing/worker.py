"""A source's pages fetched in a child process: parsing and normalizing are CPU work, and in a child they run
beside the database writes of the parent instead of taking turns with them under one interpreter lock."""

from __future__ import annotations

import logging
import multiprocessing
import queue
from dataclasses import fields
from datetime import datetime
from typing import Any, Iterator

from config.sources import SourceConfig
from connectors.http import Backoff, TransientError
from connectors.marketing.base import Page
from domain.activity import ActivityRecord, ActivityType, PersonRecord, Rejection

_PAGE, _LOG, _ERROR, _DONE = "page", "log", "error", "done"


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


def _produce(channel, config: SourceConfig, secrets: dict[str, str], since, timeout, backoff) -> None:
    from connectors.marketing import build_source

    handoff_log = logging.getLogger("handoff")
    handoff_log.addHandler(_Forward(channel))
    handoff_log.setLevel(logging.INFO)
    handoff_log.propagate = False
    source = None
    try:
        source = build_source(config, secrets, timeout=timeout, backoff=backoff)
        for page in source.pages(since):
            channel.put((_PAGE, _to_wire(page)))
        channel.put((_DONE, None))
    except BaseException as exc:  # handed to the parent, which raises it
        channel.put((_ERROR, exc))
    finally:
        if source is not None:
            source.close()


def pages_in_subprocess(
    config: SourceConfig,
    secrets: dict[str, str],
    since: datetime | None,
    *,
    timeout: tuple[float, float],
    backoff: Backoff,
    depth: int = 8,
) -> Iterator[Page]:
    """The source's pages, produced `depth` ahead by a child process. The child's errors are raised here, its
    logs are logged here; a child that dies without a word is a transient failure; stopping early ends it."""
    context = multiprocessing.get_context("spawn")
    channel: Any = context.Queue(maxsize=depth)
    child = context.Process(
        target=_produce, args=(channel, config, secrets, since, timeout, backoff), name=f"fetch-{config.name}", daemon=True
    )
    child.start()
    try:
        while True:
            try:
                kind, value = channel.get(timeout=1.0)
            except queue.Empty:
                if not child.is_alive():
                    raise TransientError(f"{config.name}: the fetch process ended unexpectedly (exit code {child.exitcode})") from None
                continue
            if kind == _PAGE:
                yield _from_wire(value)
            elif kind == _LOG:
                name, level, message = value
                logging.getLogger(name).log(level, message)
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

