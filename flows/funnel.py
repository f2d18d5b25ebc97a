"""The funnel-report flow: the funnel both teams agreed on, month by month against the targets (config/funnel.yaml),
as a table artifact and a page with its chart. Daily for the configured months; on demand for any period."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from config.funnel import load_funnel
from config.settings import get_settings
from config.teams import load_teams
from domain.funnel import FunnelReport
from domain.lifecycle import Stage
from store.engine import get_engine
from tasks.funnel import publish_funnel, read_funnel
from tasks.store import check_database


class FunnelSummary(BaseModel):
    start: datetime
    end: datetime
    months: list[str]
    leads: int
    customers: int
    markdown: str


@task(cache_policy=NO_CACHE)
def count_funnel(start: str | None, end: str | None, by: str | None, now: datetime) -> FunnelReport:
    settings = get_settings()
    return read_funnel(get_engine(settings.resolved_database_url()), load_funnel(settings.funnel_file),
                       load_teams(settings.teams_file), now, start, end, by)


@flow(name="funnel-report",
      description="The funnel against the targets: leads, MQLs, SQLs, opportunities and customers per month, the "
                  "conversions, time to customer, time to first contact and SLA compliance.")
def funnel_report(start: str | None = None, end: str | None = None,
                  by: Literal["source", "channel", "campaign"] | None = None,
                  now: datetime | None = None) -> FunnelSummary:
    """From `start` to `end`, each a month (2026-01) or a day (2026-01-15); by default the months of
    config/funnel.yaml up to now. `by` adds each source, channel or campaign (of the lead's first touch) month by
    month. Published as the table artifact funnel-report and the page funnel-report-page with its chart. Read only."""
    check_database()
    now = now or datetime.now(timezone.utc)
    report = count_funnel(start, end, by, now)
    markdown = publish_funnel(report)
    leads, customers = report.whole.entered[Stage.LEAD], report.whole.entered[Stage.CUSTOMER]
    get_run_logger().info("Funnel %s: %s leads, %s customers", report.period.label(), leads, customers)
    return FunnelSummary(start=report.period.start, end=report.period.end, months=report.period.months, leads=leads,
                         customers=customers, markdown=markdown)
