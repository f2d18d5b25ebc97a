"""The lead-segment flow: `handoff leads` for people who work in the Prefect UI, as a table artifact."""

from __future__ import annotations

from prefect import flow
from prefect.logging import get_run_logger
from pydantic import BaseModel

from config.settings import get_settings
from domain.segments import SegmentRefused, segment_of
from store.engine import get_engine
from store.reports import lead_segment
from tasks.reporting import publish_segment
from tasks.store import check_database


# The most leads one table artifact holds: the Prefect API stores an artifact as one JSON document and the UI
# draws it whole.
MOST_SHOWN = 10_000


class SegmentSummary(BaseModel):
    artifact: str
    matching: int
    shown: int
    heading: str


@flow(name="lead-segment",
      description="Scored leads by stage, fit grade, cold flag and least score, highest score first, as a table.")
def segment_leads(stages: list[str] | None = None, fits: list[str] | None = None, cold: bool = False,
                  min_score: float | None = None, limit: int = 500) -> SegmentSummary:
    """The scored leads in any of `stages` (subscriber, lead, mql, sql, opportunity, customer, recycled,
    disqualified), of any of `fits` (A-D), only those flagged cold (engaged once, decayed since: the nurture
    list) when `cold`, scoring at least `min_score` points; an empty filter lets every lead through. Published as
    the table artifact `lead-segment-<filters>`, the first `limit` leads (at most 10,000), with the columns of
    `handoff leads --csv`. Read only. Filters that cannot be applied fail the run, each named, before any read."""
    problems = []
    try:
        segment = segment_of(stages or [], fits or [], cold, min_score)
    except SegmentRefused as refused:
        problems = refused.problems
    if not 1 <= limit <= MOST_SHOWN:
        problems.append(("limit", f"from 1 to {MOST_SHOWN:,} (every lead of a larger segment: handoff leads --csv)"))
    if problems:
        raise SegmentRefused(problems)
    check_database()
    matching, leads = lead_segment(get_engine(get_settings().resolved_database_url()), stages=segment.stages,
                                   grades=segment.grades, cold=segment.cold, min_score=segment.min_score,
                                   limit=limit)
    heading = publish_segment(matching, leads, segment, f"up to {MOST_SHOWN:,} with the limit; every one with "
                                                        "`handoff leads --csv`")
    get_run_logger().info("%s", heading.replace("**", ""))
    return SegmentSummary(artifact=f"lead-segment-{segment.key}", matching=matching, shown=len(leads), heading=heading)
