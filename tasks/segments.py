"""A segment of scored leads as people read it: a Markdown table, CSV for a list import or a spreadsheet, and
the rows of the lead-segment flow's table artifact. Free of Prefect: the CLI renders with it too."""

from __future__ import annotations

import csv
import io

from domain.rules import points_text
from domain.segments import Segment
from store.reports import SegmentLead
from tasks.markdown import cell, shown


def segment_markdown(matching: int, leads: list[SegmentLead], segment: Segment, all_of_them: str) -> str:
    """The segment as a table, highest score first, with how many leads match and how many are shown;
    `all_of_them` says how to list every match when only some are shown."""
    lines = [segment_heading(matching, len(leads), segment, all_of_them)]
    if leads:
        lines += ["", "| e-mail | name | company | stage | score | fit | cold | in this stage since | handed over |",
                  "|---|---|---|---|---:|---|---|---|---|"]
        lines += [f"| {cell(lead.email) or f'(lead {lead.lead_id}, no e-mail)'} | {cell(_name(lead))} | "
                  f"{cell(lead.company)} | {lead.stage} | {points_text(lead.score)} | {lead.fit_grade} | "
                  f"{'cold' if lead.cold else ''} | {lead.stage_changed_at:%Y-%m-%d %H:%M} | "
                  f"{f'{lead.qualified_at:%Y-%m-%d %H:%M}' if lead.qualified_at else ''} |" for lead in leads]
    return "\n".join(lines) + "\n"


def segment_heading(matching: int, shown: int, segment: Segment, all_of_them: str) -> str:
    """`**12** leads in stage mql, highest score first; the first 10 shown (all_of_them).`"""
    more = f"; the first {shown} shown ({all_of_them})" if shown < matching else ""
    order = ", highest score first" if shown else ""
    return f"**{matching}** lead{'' if matching == 1 else 's'} {segment.described}{order}{more}."


CSV_COLUMNS = ("email", "first_name", "last_name", "company", "stage", "score", "fit_grade", "cold",
               "stage_changed_at", "handed_over_at", "lead_id")


def segment_rows(leads: list[SegmentLead]) -> list[dict[str, str | int]]:
    """The leads as rows of CSV_COLUMNS: times ISO-8601 UTC, scores in points, and text a spreadsheet would
    run as a formula (form fields people typed) quoted with an apostrophe, so that a pasted or imported list
    cannot run one."""
    return [{"email": spreadsheet_text(lead.email), "first_name": spreadsheet_text(lead.first_name),
             "last_name": spreadsheet_text(lead.last_name), "company": spreadsheet_text(lead.company),
             "stage": lead.stage, "score": points_text(lead.score),
             "fit_grade": lead.fit_grade, "cold": "true" if lead.cold else "false",
             "stage_changed_at": lead.stage_changed_at.isoformat(),
             "handed_over_at": lead.qualified_at.isoformat() if lead.qualified_at else "", "lead_id": lead.lead_id}
            for lead in leads]


def segment_csv(leads: list[SegmentLead], for_terminal: bool = False) -> str:
    """The leads as CSV with a header (segment_rows), for a list import into the marketing tool (csv_text)."""
    return csv_text(segment_rows(leads), CSV_COLUMNS, for_terminal)


def csv_text(rows: list[dict], columns: tuple[str, ...], for_terminal: bool = False) -> str:
    """Rows as CSV with a header: rows end in CRLF (RFC 4180), so that a carriage return inside a field is quoted,
    not read as the end of a row. For a terminal, the fields' control characters are written out
    (tasks.markdown.shown)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows([{k: shown(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
                     if for_terminal else rows)
    return out.getvalue()


def _name(lead: SegmentLead) -> str:
    return " ".join(part for part in (lead.first_name, lead.last_name) if part)


# A spreadsheet reads a cell that starts with one of these as a formula: text from a web form must not run as one
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: str | None) -> str:
    """Text as a spreadsheet cell shows it, never runs it: one that would start a formula is quoted."""
    value = value or ""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value
