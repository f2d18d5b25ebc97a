"""What every marketing-tool connector yields, and the pieces they share."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator, NamedTuple, Protocol, TypeVar, runtime_checkable

from domain.activity import ActivityRecord, PersonRecord, Rejection

T = TypeVar("T")


@dataclass
class Page:
    """One unit of fetched work, written in one transaction.

    `fetched` counts the raw records the API returned (activities only, duplicates and bad ones included).
    `checkpoint` is the watermark that is safe to store once this page and every earlier one are committed:
    the newest activity time so far for APIs that return activities oldest first, None until the last page
    for APIs that do not.
    """

    activities: list[ActivityRecord] = field(default_factory=list)
    people: list[PersonRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    fetched: int = 0
    checkpoint: datetime | None = None


class MarketingSource(Protocol):
    name: str

    def pages(self, since: datetime | None) -> Iterator[Page]:
        """Activities that occurred at or after `since` (everything when None), as a stream of pages."""
        ...

    def close(self) -> None: ...


class FileRead(NamedTuple):
    """A file read to its end: its path, and its size and modification time before the read."""

    path: str
    size: int
    mtime_ns: int
    lines: int


@runtime_checkable
class FileSource(MarketingSource, Protocol):
    """A source that reads files: told which files were read before (path -> (size, mtime_ns)), it skips those
    still the same, and lists in `completed` the files it read to the end."""

    completed: list[FileRead]
    skipped: int

    def skip_unchanged(self, known: dict[str, tuple[int, int]]) -> None: ...


@runtime_checkable
class SplittableSource(MarketingSource, Protocol):
    """A source whose API can start its feed at any time and returns activities oldest first (Marketo's paging
    tokens): a long backfill can then be read as disjoint time windows side by side."""

    def pages(self, since: datetime | None, until: datetime | None = None) -> Iterator[Page]:
        """As MarketingSource.pages, but only activities before `until` (all of them when None)."""
        ...

    def first_activity_at(self, since: datetime | None) -> datetime | None:
        """The time of the first activity at or after `since`; None when there is none."""
        ...


def newest(current: datetime | None, records: list[ActivityRecord]) -> datetime | None:
    """The latest occurred_at among `records` and `current`."""
    for record in records:
        if current is None or record.occurred_at > current:
            current = record.occurred_at
    return current


_DONE = object()


def prefetch(iterator: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run `iterator` in a thread, `depth` items ahead, so fetching the next page overlaps storing this one.

    Exceptions from the producer are re-raised in the consumer; when the consumer stops early, the producer
    is told to stop and its iterator is closed.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterator:
                if not put((item, None)):
                    break
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((_DONE, exc))
            return
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)
