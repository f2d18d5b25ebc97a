"""The funnel report as people read it: worked out from the store (domain/funnel.py's rules), a page of the months
against the targets, rows for a table or CSV, and the flow's artifacts with the chart embedded as a data: URI."""

from __future__ import annotations

import base64
from datetime import datetime

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from config.funnel import FunnelConfig
from domain.funnel import (FUNNEL_STAGES, STAGE_NAMES, STEPS, WHOLE_PERIOD, FunnelReport, FunnelRow, Judged,
                           against_targets, funnel_report, reporting_period)
from domain.sla import timer_from_json
from domain.teams import SalesTeams
from store.funnel import first_stage_change, funnel_facts
from tasks.funnel_chart import funnel_chart, month_name
from tasks.markdown import cell
from tasks.segments import csv_text, spreadsheet_text


def read_funnel(engine, config: FunnelConfig, teams: SalesTeams, now: datetime, start: str | None = None,
                end: str | None = None, by: str | None = None) -> FunnelReport:
    """The funnel from `start` to `end` (months or days; by default the configured months up to `now`, from the
    first stage change on), per group of `by` (source, channel or campaign) too when given."""
    with engine.connect() as conn:
        period = reporting_period(start, end, now, config.zone, config.months, first_stage_change(conn))
        facts = funnel_facts(conn, period.start, period.end)
    handed_over = [(person, timer_from_json(timer)) for person, timer in facts.handed_over]
    return funnel_report(facts.moves, facts.attribution, handed_over, teams, period, now, config.targets, by)


# ------------------------------------------------------------------------------------------ the page

def _column(row: FunnelRow) -> str:
    return "the period" if row.month == WHOLE_PERIOD else month_name(row.month) + (" (to date)" if row.partial else "")


def _shown(value: float | None, kind: str) -> str:
    if value is None:
        return "—"
    return {"count": f"{value:,.0f}", "share": f"{value:.0%}", "days": f"{value:.0f} d", "hours": f"{value:.1f} h"}[kind]


def _judged(j: Judged) -> str:
    mark = {True: " ✓", False: " ✗", None: ""}[j.met]
    return _shown(j.actual, j.kind) + mark


def funnel_markdown(report: FunnelReport, chart: bytes | None = None) -> str:
    """The months side by side against the targets (✓ met, ✗ missed, nothing: not judged yet), the period beside
    them, the chart when given (a PNG, embedded), and the groups of `report.by`."""
    months, whole, targets = report.months, report.whole, report.targets
    lines = [f"# Funnel, {report.period.label()}", "",
             f"As at {report.now:%Y-%m-%d %H:%M} UTC, months in {report.period.zone}. A stage counts the leads that "
             "entered it in the month (a lead back from recycling counts again; a skipped stage counts as passed); a "
             "conversion is the share of the month's entrants that reached the next stage by now. Rules: "
             "docs/funnel.md.", ""]
    if chart is not None:
        lines += [f"![Funnel against targets, {report.period.label()}](data:image/png;base64,"
                  f"{base64.b64encode(chart).decode()})", ""]
    judged = [against_targets(row, targets) for row in months]
    columns = (*months, whole) if len(months) > 1 else months  # one month is its period
    lines += ["| | target | " + " | ".join(_column(r) for r in columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for index, overall in enumerate(against_targets(whole, targets)):  # the period: no monthly target to judge by
        cells = [_judged(row[index]) for row in judged] + [_shown(overall.actual, overall.kind)] * (len(months) > 1)
        lines.append(f"| {overall.measure} | {_shown(overall.target, overall.kind)} | " + " | ".join(cells) + " |")
    context = [("handed over to reps", lambda r: _shown(r.sla.handed_over if r.sla else 0, "count")),
               ("time to first contact, median", lambda r: _shown(r.sla.median_business_hours if r.sla else None,
                                                                  "hours")),
               ("lead → customer, median", lambda r: _shown(r.median_days_to_customer, "days"))]
    for name, show in context:
        lines.append(f"| {name} | | " + " | ".join(show(r) for r in columns) + " |")
    note = ("Times to first contact are in business hours (the owner's working time, as the SLA counts it); "
            "contacted within the SLA is of the leads whose outcome is known (contacted, or past due).")
    if report.skipped_stages:
        note += (f" {report.skipped_stages} of the period's stage entries were stages passed by a skip (an MQL "
                 "straight to opportunity counts as an SQL too).")
    lines += ["", note]
    if report.by:
        lines += ["", f"## By {report.by} (of the lead's first touch)" if report.by != "channel" else
                  "## By channel (the lead's source channel)", "", *_group_table(report)]
    return "\n".join(lines) + "\n"


def _group_table(report: FunnelReport) -> list[str]:
    heads = [STAGE_NAMES[s] for s in FUNNEL_STAGES] + [f"{STAGE_NAMES[a]} → {STAGE_NAMES[b]}" for a, b in STEPS]
    lines = [f"| month | {report.by} | " + " | ".join(heads) + " | lead → customer | first contact, 90th pct | "
             "in time |", "|---|---|" + "---:|" * (len(heads) + 3)]
    for row in report.groups:
        counts = [f"{row.entered[s]:,}" for s in FUNNEL_STAGES]
        shares = [_shown(row.conversion(a), "share") for a, _ in STEPS]
        sla = row.sla
        lines.append(f"| {_column(row)} | {cell(row.group)} | " + " | ".join(counts + shares) + " | "
                     f"{_shown(row.average_days_to_customer, 'days')} | "
                     f"{_shown(sla.p90_business_hours if sla else None, 'hours')} | "
                     f"{_shown(sla.share_in_time if sla else None, 'share')} |")
    return lines


# ------------------------------------------------------------------------------------------ rows and CSV

def csv_columns(by: str | None) -> tuple[str, ...]:
    stages = tuple(STAGE_NAMES[s].lower() for s in FUNNEL_STAGES)
    steps = tuple(f"{a.value}_to_{b.value}_pct" for a, b in STEPS)
    return ("month", *((by,) if by else ()), "to_date", *stages, *steps, "lead_to_customer_days_avg",
            "lead_to_customer_days_median", "handed_over", "first_contact_median_hours", "first_contact_p90_hours",
            "contacted_in_time_pct")


def funnel_rows(report: FunnelReport) -> list[dict]:
    """A row per month and one for the period ('all'), of every lead or, with `by`, of each group: the columns of
    csv_columns, shares in percent, times rounded."""
    rows = report.groups if report.by else (*report.months, report.whole)
    return [_row(row, report.by) for row in rows]


def _row(row: FunnelRow, by: str | None) -> dict:
    sla = row.sla
    values = [row.month, *((spreadsheet_text(row.group),) if by else ()), "true" if row.partial else "false",
              *(row.entered[s] for s in FUNNEL_STAGES), *(_percent(row.conversion(a)) for a, _ in STEPS),
              _round(row.average_days_to_customer), _round(row.median_days_to_customer),
              sla.handed_over if sla else 0, _round(sla.median_business_hours if sla else None),
              _round(sla.p90_business_hours if sla else None), _percent(sla.share_in_time if sla else None)]
    return dict(zip(csv_columns(by), values))


def targets_row(report: FunnelReport) -> dict:
    """The targets in the rows' columns, for the table artifact's first row."""
    t = report.targets
    row = {name: None for name in csv_columns(report.by)}
    row.update({"month": "target", **{STAGE_NAMES[s].lower(): t.per_month[s] for s in FUNNEL_STAGES},
                **{f"{a.value}_to_{b.value}_pct": _percent(t.conversion(a)) for a, b in STEPS},
                "lead_to_customer_days_avg": t.lead_to_customer_days, "first_contact_p90_hours": t.first_contact_hours,
                "contacted_in_time_pct": _percent(t.contacted_in_time)})
    return row


def funnel_csv(report: FunnelReport, for_terminal: bool = False) -> str:
    return csv_text(funnel_rows(report), csv_columns(report.by), for_terminal)


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ------------------------------------------------------------------------------------------ the artifacts

@task(cache_policy=NO_CACHE)
def publish_funnel(report: FunnelReport) -> str:
    """The table artifact `funnel-report` (the targets, then a row per month and the period) and the markdown
    artifact `funnel-report-page` with the chart."""
    description = f"The funnel against the targets, {report.period.label()}"
    create_table_artifact(key="funnel-report", table=[targets_row(report), *funnel_rows(report)],
                          description=description)
    markdown = funnel_markdown(report, funnel_chart(report))
    create_markdown_artifact(key="funnel-report-page", markdown=markdown, description=description)
    return markdown
