"""The ingest flow: pull new activities from every enabled marketing source into the store."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, task
from prefect.runtime import flow_run
from pydantic import BaseModel

from config.settings import get_settings
from config.sources import SourceConfig, load_sources
from tasks.ingest import SourceSummary, failed_source, ingest_source, record_source_reads
from tasks.reporting import publish_ingest_summary
from tasks.store import check_database


class IngestSummary(BaseModel):
    now: datetime
    run_id: str | None
    sources: list[SourceSummary]
    markdown: str = ""

    @property
    def failed(self) -> list[SourceSummary]:
        return [s for s in self.sources if s.status != "ok"]


class IngestFailed(RuntimeError):
    """Some sources failed; every other source was still ingested. Carries the run summary."""

    def __init__(self, summary: IngestSummary):
        names = ", ".join(f"{s.source} ({s.error})" for s in summary.failed)
        super().__init__(f"{len(summary.failed)} of {len(summary.sources)} sources failed: {names}")
        self.summary = summary


@task
def enabled_sources(names: list[str] | None) -> list[SourceConfig]:
    sources = load_sources(get_settings().sources_file)
    if names:
        unknown = set(names) - {s.name for s in sources}
        if unknown:
            raise ValueError(f"not enabled in {get_settings().sources_file}: {sorted(unknown)}")
        sources = [s for s in sources if s.name in names]
    return sources


@flow(name="ingest", description="Pull marketing activities since each source's watermark, exactly once.")
def ingest(sources: list[str] | None = None, since: datetime | None = None, now: datetime | None = None) -> IngestSummary:
    """`sources` limits the run to some sources; `since` re-reads from a time (a backfill) instead of the
    watermark; `now` fixes the run's clock (defaults to the start of the run)."""
    now = now or datetime.now(timezone.utc)
    run_id = flow_run.get_id()
    check_database()
    configs = enabled_sources(sources)
    delays = get_settings().ingest_retry_delays
    attempt = ingest_source.with_options(retries=len(delays), retry_delay_seconds=delays or 0)
    futures = [(config, attempt.submit(config, now, run_id, since)) for config in configs]
    results: list[SourceSummary] = []
    for config, future in futures:
        try:
            results.append(future.result())
        except Exception as exc:  # noqa: BLE001 - one source's failure must not hide the others' summaries
            first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            results.append(failed_source(config, f"{type(exc).__name__}: {first_line}"))
    record_source_reads(results, now, run_id)
    summary = IngestSummary(now=now, run_id=run_id, sources=results)
    summary.markdown = publish_ingest_summary(now, results, run_id)
    if summary.failed:
        raise IngestFailed(summary)
    return summary
