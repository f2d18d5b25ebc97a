"""Work on a source in a child process, and what the child tells its parent: its items, its logs, its failure
or its end. Parsing, normalizing and storing are CPU work; in a child per source they run beside each other
instead of taking turns under one interpreter lock. The ingest task runs each source's whole ingest in one
(tasks/source_ingest.py)."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import pickle
import queue
from typing import Any, Callable, Iterator

from connectors.http import TransientError

_ITEM, _LOG, _ERROR, _DONE = "item", "log", "error", "done"

# Container objects allocated (net of those freed) before the cycle collector's youngest generation is
# scanned; Python's default is 700. See _quiet_collector.
CHILD_GC_THRESHOLD = 50_000


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
    _quiet_collector()
    try:
        work(lambda item: channel.put((_ITEM, item)))
        channel.put((_DONE, None))
    except BaseException as exc:  # handed to the parent, which raises it
        try:
            pickle.dumps(exc)
        except Exception:  # an error that cannot cross to the parent still says what it was
            exc = TransientError(f"{type(exc).__name__}: {exc}")
        channel.put((_ERROR, exc))


def _quiet_collector() -> None:
    """Let the child's batch work run without the cycle collector stepping in every few hundred objects.

    A batch allocates hundreds of thousands of short-lived objects (parsed pages, records, rows) that reference
    counting frees; with the default threshold the collector still ran thousands of times per source and, as
    survivors aged, kept rescanning the modules the child imported: about 30% of an ingest child's CPU time in
    the 1M-activity benchmark. What is imported by now lives as long as the child, so it is frozen out of every
    scan; a much larger first threshold leaves collections for real cyclic garbage, which stays a few MB."""
    gc.freeze()
    gc.set_threshold(CHILD_GC_THRESHOLD)


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
