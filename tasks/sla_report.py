"""The SLA's measures as markdown (the SLA flow's artifact and `handoff report sla`): time to first contact (median
and 90th percentile, in business and calendar hours), the share contacted within the window, breaches,
reassignments and recycles, overall, per team and per rep; and the SLA run's summary."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from domain.sla import timer_from_json
from domain.sla_measures import SlaMeasures, sla_report
from domain.teams import SalesTeams
from store import routing as store
from tasks.markdown import cell
from tasks.sla import SlaSummary


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} h"


def _row(m: SlaMeasures) -> str:
    share = "—" if m.share_in_time is None else f"{m.share_in_time:.0%}"
    return (f"| {cell(m.who)} | {m.handed_over} | {m.contacted} | {share} | {_hours(m.median_business_hours)} | "
            f"{_hours(m.p90_business_hours)} | {_hours(m.median_calendar_hours)} | {_hours(m.p90_calendar_hours)} | "
            f"{m.breaches} | {m.reassignments} | "
            f"{m.recycled} | {m.running} |")


HEAD = ["| | handed over | contacted | in time | median (business) | 90th pct (business) | median (calendar) | "
        "90th pct (calendar) | breaches | reassigned | recycled | running |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]


def sla_measures_markdown(engine, teams: SalesTeams, now: datetime, days: int | None = 30) -> str:
    since = now - timedelta(days=days) if days else None
    with engine.connect() as conn:
        timers = [timer_from_json(t) for t in store.timers_opened_since(conn, since)]
    window = f"the last {days} days" if days else "all time"
    if not timers:
        return f"No lead was handed to a rep in {window}.\n"
    report = sla_report(timers, teams, now)
    lines = [f"Leads handed to reps in {window}, as at {now:%Y-%m-%d %H:%M} UTC; time to first contact counted from "
             "handoff.", "", *HEAD, _row(report.overall), "", "**By team**", "", *HEAD,
             *[_row(m) for m in report.by_team.values()], "", "**By rep**", "", *HEAD,
             *[_row(m) for m in report.by_rep.values()]]
    return "\n".join(lines) + "\n"


def sla_run_markdown(summary: SlaSummary) -> str:
    lines = [f"# SLA at {summary.now:%Y-%m-%d %H:%M:%S} UTC", "",
             f"{summary.looked_at} running timers had a step to look at.", ""]
    if summary.steps:
        lines += ["| step | timers |", "|---|---:|", *[f"| {kind} | {n} |" for kind, n in summary.steps.items()]]
        if summary.escalated:
            lines += ["", f"{summary.escalated} breaches escalated to the rep's manager."]
    if summary.reassigned_leads:
        lines += ["", f"Reassigned (never back to a rep who let them lapse): leads {_list(summary.reassigned_leads)}."]
    if summary.recycled_leads:
        lines += ["", f"Recycled to marketing nurture: leads {_list(summary.recycled_leads)}."]
    if summary.moved_by_another_run:
        lines += ["", f"{summary.moved_by_another_run} timers were moved by another run first: left to it."]
    if summary.refused:
        lines += ["", "Recycles the lifecycle did not allow:", *[f"- {cell(r)}" for r in summary.refused[:20]]]
    return "\n".join(lines) + "\n"


def _list(ids: list[int], shown: int = 20) -> str:
    text = ", ".join(map(str, ids[:shown]))
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


@task(cache_policy=NO_CACHE)
def publish_sla_summary(summary: SlaSummary, measures: str) -> str:
    markdown = sla_run_markdown(summary) + "\n## Measures\n\n" + measures
    create_markdown_artifact(key="sla", markdown=markdown, description="SLA steps taken and the response measures")
    return markdown
