"""Plain-text views of the store for people at a terminal."""

from __future__ import annotations

import csv
import io

from config.settings import get_settings
from domain.rules import points_text
from store.engine import get_engine
from store.reports import SegmentLead, store_figures


def lead_overview() -> str:
    figures = store_figures(get_engine(get_settings().resolved_database_url()))
    lines = [
        f"**{figures.leads}** leads, **{figures.leads_in_several_sources}** of them known to more than one source "
        "(one lead per person, matched by normalized e-mail).",
        "",
        "| activity type | count |",
        "|---|---:|",
        *[f"| {kind} | {n} |" for kind, n in figures.activities_by_type],
        "",
        "| source | activities | quarantined |",
        "|---|---:|---:|",
    ]
    quarantined = dict(figures.quarantined_by_source)
    sources = sorted(set(dict(figures.activities_by_source)) | set(quarantined))
    activities = dict(figures.activities_by_source)
    lines += [f"| {s} | {activities.get(s, 0)} | {quarantined.get(s, 0)} |" for s in sources]
    return "\n".join(lines) + "\n"


STAGE_ORDER = ("subscriber", "lead", "mql", "sql", "opportunity", "customer", "recycled", "disqualified")


def funnel_overview() -> str:
    """Leads per lifecycle stage, with each funnel stage's share of the one before."""
    from store.scoring import stage_counts

    engine = get_engine(get_settings().resolved_database_url())
    with engine.connect() as conn:
        counts = stage_counts(conn)
    lines = ["| stage | leads | of the stage before |", "|---|---:|---:|"]
    previous = None
    for stage in STAGE_ORDER:
        n = counts.get(stage, 0)
        funnel = stage in STAGE_ORDER[:6]
        share = f"{100 * n / previous:.0f}%" if funnel and previous else ""
        lines.append(f"| {stage} | {n} | {share} |")
        if funnel:
            previous = n or previous
    return "\n".join(lines) + "\n"


def _name(lead: SegmentLead) -> str:
    return " ".join(part for part in (lead.first_name, lead.last_name) if part)


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "/").replace("\n", " ")


def segment_markdown(matching: int, leads: list[SegmentLead], described: str) -> str:
    """A segment as a table, highest score first, with how many leads match and how many are shown."""
    shown = f"; the first {len(leads)} shown (`--limit 0` lists all)" if len(leads) < matching else ""
    order = ", highest score first" if leads else ""
    lines = [f"**{matching}** lead{'' if matching == 1 else 's'} {described}{order}{shown}."]
    if leads:
        lines += ["", "| e-mail | name | company | stage | score | fit | cold | in this stage since | handed over |",
                  "|---|---|---|---|---:|---|---|---|---|"]
        lines += [f"| {_cell(lead.email) or f'(lead {lead.lead_id}, no e-mail)'} | {_cell(_name(lead))} | "
                  f"{_cell(lead.company)} | {lead.stage} | {points_text(lead.score)} | {lead.fit_grade} | "
                  f"{'cold' if lead.cold else ''} | {lead.stage_changed_at:%Y-%m-%d %H:%M} | "
                  f"{f'{lead.qualified_at:%Y-%m-%d %H:%M}' if lead.qualified_at else ''} |" for lead in leads]
    return "\n".join(lines) + "\n"


# A spreadsheet reads a cell that starts with one of these as a formula: text from a web form must not run as one
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | None) -> str:
    value = value or ""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def segment_csv(leads: list[SegmentLead]) -> str:
    """A segment as CSV with a header, for a list import into the marketing tool or a spreadsheet. Times are
    ISO-8601 UTC; scores in points; text that a spreadsheet would run as a formula is quoted with an apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "first_name", "last_name", "company", "stage", "score", "fit_grade", "cold",
                     "stage_changed_at", "handed_over_at", "lead_id"])
    for lead in leads:
        writer.writerow([_text(lead.email), _text(lead.first_name), _text(lead.last_name), _text(lead.company),
                         lead.stage, points_text(lead.score), lead.fit_grade, "true" if lead.cold else "false",
                         lead.stage_changed_at.isoformat(),
                         lead.qualified_at.isoformat() if lead.qualified_at else "", lead.lead_id])
    return out.getvalue()
