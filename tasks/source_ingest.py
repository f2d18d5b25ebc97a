"""One source's ingest, batch by batch, free of Prefect: the ingest task runs it, in a child process of its own
by default, and a child that need not import Prefect starts in a second instead of three."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta
from typing import Iterable, Iterator

from pydantic import BaseModel

from config.settings import Settings
from config.sources import SourceConfig
from connectors.http import Backoff, PermanentError, TransientError
from connectors.marketing import build_source
from connectors.marketing.base import Page, prefetch
from connectors.marketing.worker import run_in_child, serve
from domain.activity import screen
from store.engine import get_engine
from store.ingest import get_watermark, write_batch


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


def _pages_in_thread(config: SourceConfig, secrets: dict[str, str], since: datetime | None, *, timeout, backoff):
    source = build_source(config, secrets, timeout=timeout, backoff=backoff)
    try:
        yield from prefetch(source.pages(since))
    finally:
        source.close()


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
    the child's logs come back to `log`, its failures are raised here.
    """
    if not settings.fetch_in_subprocess:
        return _ingest(config, secrets, now=now, run_id=run_id, settings=settings, since=since, log=log)
    results = run_in_child(_ingest_in_child, (config, secrets, now, run_id, settings, since), name=f"ingest-{config.name}",
                           what=f"{config.name}: the ingest process", depth=16, log=log)
    try:
        summaries = list(results)
    finally:
        results.close()
    return SourceSummary.model_validate(summaries[-1])


def _ingest_in_child(channel, config, secrets, now, run_id, settings, since) -> None:
    parent = os.getppid()

    def work(send) -> None:
        # A child whose parent is gone (killed, cancelled) stops before its next batch: a later run must not
        # find an orphan still writing beside it.
        summary = _ingest(config, secrets, now=now, run_id=run_id, settings=settings, since=since,
                          log=logging.getLogger("handoff.ingest"), orphaned=lambda: os.getppid() != parent)
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
    orphaned=lambda: False,
) -> SourceSummary:
    engine = get_engine(settings.resolved_database_url())
    started = time.perf_counter()
    watermark = get_watermark(engine, config.name)
    if since is None and watermark is not None:
        since = watermark - timedelta(minutes=config.overlap_minutes)
    summary = SourceSummary(source=config.name, since=since, watermark=watermark)
    timeout = (settings.http_connect_timeout, settings.http_read_timeout)
    backoff = Backoff(
        base=settings.http_backoff_base,
        cap=settings.http_backoff_cap,
        max_attempts=settings.http_max_attempts,
        max_asked=settings.http_max_retry_after,
    )
    tolerance = timedelta(minutes=settings.future_tolerance_minutes)
    pages = _pages_in_thread(config, secrets, since, timeout=timeout, backoff=backoff)
    try:
        for batch in merge_pages(pages, settings.batch_size):
            if orphaned():
                raise TransientError(f"{config.name}: the run that started this ingest is gone; stopping")
            # A record dated in the future is quarantined below; it must not drag the watermark past the clock.
            checkpoint = min(batch.checkpoint, now) if batch.checkpoint else None
            accepted, late_rejects = screen(
                batch.activities, now=now, max_payload_bytes=settings.max_payload_bytes, future_tolerance=tolerance
            )
            counts = write_batch(
                engine,
                source=config.name,
                activities=accepted,
                people=batch.people,
                rejections=batch.rejected + late_rejects,
                checkpoint=checkpoint,
                now=now,
                run_id=run_id,
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
    except PermanentError as exc:
        summary.status, summary.error = "failed", str(exc)
    finally:
        pages.close()
        summary.duplicate = summary.fetched - summary.new - summary.quarantined
        summary.seconds = round(time.perf_counter() - started, 3)
    return summary
