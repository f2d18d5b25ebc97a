"""Ingest tasks: stream one source's pages since its watermark into the store, batch by batch."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger

from config.settings import get_settings
from config.sources import SourceConfig
from connectors.http import ConnectorError
from store.engine import get_engine
from store.ingest import get_watermark, record_read
from tasks.secrets import resolve_secrets
from tasks.source_ingest import SourceSummary, ingest_source_once, merge_pages

__all__ = ["SourceSummary", "failed_source", "ingest_source", "ingest_source_once", "merge_pages"]


@task(retries=2, retry_delay_seconds=[10, 60], task_run_name="ingest-{config.name}", cache_policy=NO_CACHE)
def ingest_source(config: SourceConfig, now: datetime, run_id: str | None = None, since: datetime | None = None) -> SourceSummary:
    """Retried on transient failure (resuming from the committed watermark); a permanent failure (bad
    credentials, exhausted quota, missing files) is reported, raises an event to alert on, and is not retried."""
    log = get_run_logger()
    try:
        secrets = resolve_secrets(config)
    except (KeyError, ValueError) as exc:
        summary = SourceSummary(source=config.name, status="failed", error=f"credentials: {exc}")
    else:
        try:
            summary = ingest_source_once(config, secrets, now=now, run_id=run_id, settings=get_settings(), since=since, log=log)
        except ConnectorError as exc:
            log.warning("%s: %s", config.name, exc)
            raise
    if summary.status == "failed":
        log.error("%s: permanent failure, not retrying: %s", config.name, summary.error)
        emit_event(
            event="handoff.ingest.source-failed",
            resource={"prefect.resource.id": f"handoff.source.{config.name}", "prefect.resource.name": config.name},
            payload={"error": summary.error, "run_id": run_id},
        )
    return summary


@task(cache_policy=NO_CACHE)
def record_source_reads(sources: list[SourceSummary], now: datetime, run_id: str | None) -> None:
    """How each source's read ended this run, after its retries (for the health check): finished, or failed
    with its error."""
    engine = get_engine(get_settings().resolved_database_url())
    for summary in sources:
        error = None if summary.status == "ok" else (summary.error or summary.status)
        record_read(engine, summary.source, now, run_id, error)


@task(cache_policy=NO_CACHE, task_run_name="failed-{config.name}")
def failed_source(config: SourceConfig, error: str) -> SourceSummary:
    """A source whose read raised after its retries: the error, and the watermark its committed batches reached
    (each batch commits with its watermark, so the next run resumes there)."""
    engine = get_engine(get_settings().resolved_database_url())
    return SourceSummary(source=config.name, status="error", error=error, watermark=get_watermark(engine, config.name))
