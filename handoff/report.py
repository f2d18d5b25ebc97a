"""Plain-text views of the store for people at a terminal."""

from __future__ import annotations

from config.settings import get_settings
from store.engine import get_engine
from store.reports import store_figures


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
