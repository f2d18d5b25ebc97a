"""One source's ingest, batch by batch, free of Prefect: the ingest task runs it, in a child process of its own
by default, and a child that need not import Prefect starts in a second instead of three."""

from __future__ import annotations

import contextvars
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Iterable, Iterator

from pydantic import BaseModel

from config.settings import Settings
from config.sources import SourceConfig
from connectors.http import Backoff, ConnectorError, PermanentError, TransientError
from connectors.marketing import build_source
from connectors.marketing.base import FileSource, Page, SplittableSource, prefetch
from connectors.marketing.worker import run_in_child, serve
from domain.activity import screen, screen_people
from store.engine import get_engine
from store.ingest import advance_watermark, get_watermark, read_files, record_files, write_batch


class SourceSummary(BaseModel):
    """What one source's ingest did; `fetched` = new + duplicate + quarantined."""

    source: str
    status: str = "ok"
    fetched: int = 0
    new: int = 0
    duplicate: int = 0
    quarantined: int = 0
    leads_created: int = 0
    batches: int = 0
    since: datetime | None = None
    watermark: datetime | None = None
    seconds: float = 0.0
    error: str | None = None
    windows: int = 1  # time windows read side by side


def merge_pages(pages: Iterable[Page], size: int) -> Iterator[Page]:
    """Group consecutive pages into batches of about `size` records; a batch keeps its last checkpoint."""
    batch = Page()
    for page in pages:
        batch.activities += page.activities
        batch.people += page.people
        batch.rejected += page.rejected
        batch.fetched += page.fetched
        batch.checkpoint = page.checkpoint or batch.checkpoint
        if len(batch.activities) + len(batch.rejected) >= size:
            yield batch
            batch = Page()
    if batch.fetched or batch.people or batch.rejected or batch.checkpoint:
        yield batch


def _http_options(settings: Settings) -> dict:
    return {
        "timeout": (settings.http_connect_timeout, settings.http_read_timeout),
        "backoff": Backoff(base=settings.http_backoff_base, cap=settings.http_backoff_cap,
                           max_attempts=settings.http_max_attempts, max_asked=settings.http_max_retry_after),
    }


Window = tuple[datetime | None, datetime | None]


def plan_windows(since: datetime | None, first: datetime | None, now: datetime, parts: int, shortest: timedelta) -> list[Window]:
    """Split the read from `since` (whose first activity is at `first`) up to `now` into at most `parts` windows
    [start, until) of equal time span, none shorter than `shortest`; the last one is open-ended, so whatever is
    dated later still has a window. Cuts fall on whole seconds, where a paging token can start."""
    if first is None or parts < 2 or now <= first:
        return [(since, None)]
    count = min(parts, int((now - first) / shortest))
    if count < 2:
        return [(since, None)]
    step = (now - first) / count
    cuts = [(first + step * k).replace(microsecond=0) for k in range(1, count)]
    starts = [since, *cuts]
    return list(zip(starts, [*cuts, None]))


def ingest_source_once(
    config: SourceConfig,
    secrets: dict[str, str],
    *,
    now: datetime,
    run_id: str | None,
    settings: Settings,
    since: datetime | None = None,
    log=None,
) -> SourceSummary:
    """Pull one source from its watermark (less the overlap window) or from `since`, committing batch by batch.

    A failure part-way leaves every committed batch and its watermark in place, so the next attempt resumes
    there; the upsert keys make the overlap harmless. A permanent failure ends the source with status
    "failed" and the counts of what was committed; a transient one that outlived its retries is raised.

    With `fetch_in_subprocess` (the default) all of it, fetching, normalizing and writing, runs in a child
    process of its own, so the sources of one run use every core instead of sharing one interpreter lock;
    the child's logs come back to `log`, its failures are raised here. A long read of a source that can start
    its feed at any time is split into time windows, each in a child of its own (see `_ingest_windows`).
    """
    if not settings.fetch_in_subprocess:
        return _ingest(config, secrets, now=now, run_id=run_id, settings=settings, since=since, log=log)
    if settings.ingest_windows > 1:
        stored = get_watermark(get_engine(settings.resolved_database_url()), config.name)
        start = since if since is not None or stored is None else stored - timedelta(minutes=config.overlap_minutes)
        windows = _windows(config, secrets, start, now=now, settings=settings)
        if len(windows) > 1:
            return _ingest_windows(config, secrets, windows, stored, now=now, run_id=run_id, settings=settings, log=log)
    return _ingest_child(config, secrets, since, None, True, now=now, run_id=run_id, settings=settings, log=log)


def _windows(config: SourceConfig, secrets: dict[str, str], start: datetime | None, *, now: datetime,
             settings: Settings) -> list[Window]:
    """The time windows to read side by side: one, unless the source can split its feed by time and the read
    is long. The source is asked where its data really begins, so a backfill from 1970 is split where the
    activities are; if it cannot say (or fails to), the read is not split and fails, if it must, as usual."""
    parts = settings.ingest_windows
    shortest = timedelta(hours=settings.ingest_window_min_hours)
    if start is not None and now - start < 2 * shortest:
        return [(start, None)]  # an incremental run: too short to split, so no API call is spent asking
    source = build_source(config, secrets, **_http_options(settings))
    try:
        if not isinstance(source, SplittableSource):
            return [(start, None)]
        first = source.first_activity_at(start)
    except ConnectorError:
        return [(start, None)]
    finally:
        source.close()
    return plan_windows(start, first, now, parts, shortest)


def _ingest_windows(config: SourceConfig, secrets: dict[str, str], windows: list[Window], stored: datetime | None, *,
                    now: datetime, run_id: str | None, settings: Settings, log) -> SourceSummary:
    """Read disjoint time windows side by side, each in a child of its own, and add up what they did.

    Only the first window moves the watermark as its batches commit: everything before its checkpoint is then
    stored. The later windows' data is committed as they go, but their newest time becomes the watermark only
    once every window has finished; a run stopped before that resumes from the first window's progress and
    reads the later windows again, which the upsert keys make harmless."""
    started = time.perf_counter()
    if log:
        log.info("%s: reading from %s as %d time windows side by side, cut at %s", config.name, windows[0][0] or "the start",
                 len(windows), ", ".join(str(until) for _, until in windows[:-1]))
    with ThreadPoolExecutor(max_workers=len(windows), thread_name_prefix=f"ingest-{config.name}") as pool:
        # Each window's thread runs in a copy of this context: Prefect keeps its settings (which API the run's
        # log lines go to) and its run context in context variables, which a bare thread starts without.
        futures = [pool.submit(contextvars.copy_context().run, _ingest_child, config, secrets, start, until, n == 0,
                               now=now, run_id=run_id, settings=settings, log=log)
                   for n, (start, until) in enumerate(windows)]
        wait(futures)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    parts = [f.result() for f in futures]
    summary = SourceSummary(source=config.name, since=windows[0][0], watermark=stored, windows=len(windows))
    for part in parts:
        summary.fetched += part.fetched
        summary.new += part.new
        summary.quarantined += part.quarantined
        summary.leads_created += part.leads_created
        summary.batches += part.batches
    failed = [part for part in parts if part.status != "ok"]
    engine = get_engine(settings.resolved_database_url())
    if failed:
        summary.status, summary.error = failed[0].status, failed[0].error
    else:
        newest = max((part.watermark for part in parts if part.watermark), default=None)
        if newest is not None:
            advance_watermark(engine, config.name, newest, now, run_id)
    summary.watermark = get_watermark(engine, config.name)
    summary.duplicate = summary.fetched - summary.new - summary.quarantined
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _ingest_child(config: SourceConfig, secrets: dict[str, str], since: datetime | None, until: datetime | None,
                  moves_watermark: bool, *, now: datetime, run_id: str | None, settings: Settings, log) -> SourceSummary:
    args = (config, secrets, now, run_id, settings, since, until, moves_watermark)
    window = "" if until is None and moves_watermark else f" (window from {since or 'the start'})"
    results = run_in_child(_ingest_in_child, args, name=f"ingest-{config.name}",
                           what=f"{config.name}: the ingest process{window}", depth=16, log=log)
    try:
        summaries = list(results)
    finally:
        results.close()
    return SourceSummary.model_validate(summaries[-1])


def _ingest_in_child(channel, config, secrets, now, run_id, settings, since, until, moves_watermark) -> None:
    parent = os.getppid()

    def work(send) -> None:
        # A child whose parent is gone (killed, cancelled) stops before its next batch: a later run must not
        # find an orphan still writing beside it.
        summary = _ingest(config, secrets, now=now, run_id=run_id, settings=settings, since=since, until=until,
                          moves_watermark=moves_watermark, log=logging.getLogger("handoff.ingest"),
                          orphaned=lambda: os.getppid() != parent)
        send(summary.model_dump())

    serve(channel, work)


def _ingest(
    config: SourceConfig,
    secrets: dict[str, str],
    *,
    now: datetime,
    run_id: str | None,
    settings: Settings,
    since: datetime | None,
    log,
    until: datetime | None = None,
    moves_watermark: bool = True,
    orphaned=lambda: False,
) -> SourceSummary:
    """Read from `since` (or the watermark less the overlap) up to `until` (or the end), batch by batch. A batch
    carries its checkpoint to the watermark only when `moves_watermark`; either way the summary's watermark
    is the newest checkpoint reached."""
    engine = get_engine(settings.resolved_database_url())
    started = time.perf_counter()
    watermark = get_watermark(engine, config.name)
    backfill = since is not None
    if since is None and watermark is not None:
        since = watermark - timedelta(minutes=config.overlap_minutes)
    summary = SourceSummary(source=config.name, since=since, watermark=watermark)
    tolerance = timedelta(minutes=settings.future_tolerance_minutes)
    source = pages = None
    try:
        source = build_source(config, secrets, **_http_options(settings))
        files = source if isinstance(source, FileSource) else None
        if files is not None and not backfill:  # a backfill re-reads every file
            files.skip_unchanged(read_files(engine, config.name))
        # Fetched in a thread of its own, a few pages ahead, so fetching overlaps writing.
        pages = prefetch(source.pages(since) if until is None else source.pages(since, until))
        for batch in merge_pages(pages, settings.batch_size):
            if orphaned():
                raise TransientError(f"{config.name}: the run that started this ingest is gone; stopping")
            # A record dated in the future is quarantined below; it must not drag the watermark past the clock.
            checkpoint = min(batch.checkpoint, now) if batch.checkpoint else None
            accepted, late_rejects = screen(
                batch.activities, now=now, max_payload_bytes=settings.max_payload_bytes, future_tolerance=tolerance
            )
            people, refused_people = screen_people(batch.people)
            counts = write_batch(
                engine,
                source=config.name,
                activities=accepted,
                people=people,
                rejections=batch.rejected + late_rejects + refused_people,
                checkpoint=checkpoint if moves_watermark else None,
                now=now,
                run_id=run_id,
                raw_cap=settings.max_payload_bytes,
            )
            summary.batches += 1
            summary.fetched += batch.fetched
            summary.new += counts.new
            summary.quarantined += counts.quarantined
            summary.leads_created += counts.leads_created
            if checkpoint and (summary.watermark is None or checkpoint > summary.watermark):
                summary.watermark = checkpoint
            if log:
                log.info("%s: batch %d committed (%d fetched, %d new)", config.name, summary.batches, batch.fetched, counts.new)
        if files is not None:
            # Every line of these files is committed now: the next run need not read them again unchanged.
            record_files(engine, config.name, files.completed, now, run_id)
            if log and files.skipped:
                log.info("%s: %d files unchanged since they were read, not read again", config.name, files.skipped)
    except PermanentError as exc:
        summary.status, summary.error = "failed", str(exc)
    finally:
        if pages is not None:
            pages.close()
        if source is not None:
            source.close()
        summary.duplicate = summary.fetched - summary.new - summary.quarantined
        summary.seconds = round(time.perf_counter() - started, 3)
    return summary
