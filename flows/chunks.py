"""Chunks of one run side by side: a bounded number in flight, their results taken in chunk order."""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator, TypeVar

from prefect.futures import PrefectFuture

R = TypeVar("R")


def in_chunk_order(submissions: Iterable[PrefectFuture[R]], side_by_side: int) -> Iterator[R]:
    """The result of each submitted task run, in the order submitted. `submissions` is drawn lazily (a generator
    that submits as it is drawn), so at most `side_by_side` run at once; a failed one raises here."""
    running: deque[PrefectFuture[R]] = deque()
    for future in submissions:
        running.append(future)
        if len(running) >= side_by_side:
            yield running.popleft().result()
    while running:
        yield running.popleft().result()
