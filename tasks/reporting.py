"""Run summaries as Prefect artifacts: what ops engineers read after each run."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from config.settings import get_settings
from domain.rules import points_text
from domain.segments import Segment
from store.engine import get_engine
from store.ingest import quarantine_reasons
from store.reports import SegmentLead
from tasks.explain import explanation_markdown
from tasks.ingest import SourceSummary
from tasks.markdown import cell
from tasks.segments import segment_heading, segment_rows
from tasks.stages import StageMoves


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def ingest_markdown(now: datetime, sources: Sequence[SourceSummary], reasons: list[tuple[str, str, int]]) -> str:
    lines = [
        f"# Ingest at {_when(now)}",
        "",
        "| source | status | fetched | new | duplicate | quarantined | new leads | watermark | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for s in sources:
        status = s.status if not s.error else f"{s.status}: {s.error}"
        lines.append(
            f"| {s.source} | {cell(status)} | {s.fetched} | {s.new} | {s.duplicate} | {s.quarantined} "
            f"| {s.leads_created} | {_when(s.watermark)} | {s.seconds:.1f} |"
        )
    total = lambda field: sum(getattr(s, field) for s in sources)  # noqa: E731
    lines.append(
        f"| **total** | | {total('fetched')} | {total('new')} | {total('duplicate')} | {total('quarantined')} "
        f"| {total('leads_created')} | | |"
    )
    if reasons:
        lines += ["", "## Quarantined this run", "", "| source | reason | records |", "|---|---|---:|"]
        lines += [f"| {source} | {cell(reason)} | {n} |" for source, reason, n in reasons]
    return "\n".join(lines) + "\n"


@task(cache_policy=NO_CACHE)
def publish_ingest_summary(now: datetime, sources: list[SourceSummary], run_id: str | None) -> str:
    reasons = quarantine_reasons(get_engine(get_settings().resolved_database_url()), run_id) if run_id else []
    markdown = ingest_markdown(now, sources, reasons)
    create_markdown_artifact(key="ingest-summary", markdown=markdown, description="Activities ingested per source")
    return markdown


def score_markdown(summary: dict, limit: int = 25) -> str:
    outcome, events = summary["outcome"], summary["events"]
    mode = summary["mode"] + (f" ({summary['reason']})" if summary.get("reason") else "")
    changed_stage = sum(outcome["stage_changes"].values())
    lines = [
        f"# Scoring at {_when(_instant(summary['now']))}: {mode}",
        "",
        f"Rulebook version {summary['version_id']} (`{summary['rulebook_digest'][:12]}`)",
        "",
        "| leads scored | score changed | stage changes | new MQLs | cold | ledger rows rebuilt | events sent "
        "| events confirmed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {outcome['leads']} | {outcome['score_changed']} | {changed_stage} | {len(outcome['new_mqls'])} | "
        f"{outcome['cold']} | {outcome['ledger_rows']} | {events['sent'] + events['resent']} | "
        f"{events['confirmed']} |",
    ]
    if events["given_up"]:
        lines += ["", f"{events['given_up']} lead events were never found on the Prefect server after the most sends "
                      "allowed; they stay in the outbox (`lead_event`)."]
    if outcome.get("merged_away"):
        lines += ["", f"{outcome['merged_away']} leads were merged into others since they were last scored: their "
                      "activities now count for the lead that remains, which stands where the furthest of its records stood."]
        if outcome.get("queue_moved"):
            lines[-1] += (f" {outcome['queue_moved']} open routing and CRM-sync rows moved with that stage to the lead"
                          " that remains.")
        if outcome.get("queue_closed"):
            lines[-1] += f" {outcome['queue_closed']} other open rows were closed as merged."
    if outcome.get("routing_withdrawn"):
        lines += ["", f"{outcome['routing_withdrawn']} open routing rows were withdrawn: their leads were disqualified "
                      "before a rep was assigned."]
    if outcome["stage_changes"]:
        lines += ["", "## Stage changes", "", "| change | leads |", "|---|---:|"]
        ranked = sorted(outcome["stage_changes"].items(), key=lambda item: (-item[1], item[0]))
        lines += [f"| {kind} | {n} |" for kind, n in ranked]
    if outcome["new_mqls"]:
        lines += ["", "## New MQLs", "", "| lead | e-mail | score | fit | why | top reasons |", "|---:|---|---:|---|---|---|"]
        for mql in outcome["new_mqls"][:limit]:
            reasons = cell("; ".join(mql["top_reasons"]))
            lines.append(f"| {mql['lead_id']} | {cell(mql['email']) or '—'} | {mql['score']} | {mql['fit_grade']} | "
                         f"{cell(mql['reason'])} | {reasons} |")
        if len(outcome["new_mqls"]) > limit:
            lines.append(f"| … | {len(outcome['new_mqls']) - limit} more | | | | |")
    return "\n".join(lines) + "\n"


def _instant(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


@task(cache_policy=NO_CACHE)
def publish_score_summary(summary: dict) -> str:
    markdown = score_markdown(summary)
    create_markdown_artifact(key="score-summary", markdown=markdown, description="Scores, stage changes and new MQLs")
    return markdown


def moves_markdown(moves: StageMoves) -> str:
    n = len(moves.moved)
    lines = [f"# {n} lead{'' if n == 1 else 's'} moved to {moves.to_stage}", "",
             f"{moves.routing_withdrawn} open routing rows withdrawn.", "",
             "| lead | e-mail | from | to | reason |", "|---:|---|---|---|---|"]
    lines += [f"| {m.lead_id} | {cell(m.email)} | {m.from_stage} | {m.to_stage} | {cell(m.reason)} |"
              for m in moves.moved]
    return "\n".join(lines) + "\n"


@task(cache_policy=NO_CACHE)
def publish_move_summary(moves: StageMoves) -> str:
    markdown = moves_markdown(moves)
    create_markdown_artifact(key="stage-moves", markdown=markdown, description="Leads moved by hand, with the reasons")
    return markdown


def publish_explanation(data: dict) -> str:
    """One lead's explanation (tasks.explain.explain_lead) as the artifact `lead-<id>-explanation`."""
    markdown = explanation_markdown(data)
    create_markdown_artifact(key=f"lead-{data['lead_id']}-explanation", markdown=markdown,
                             description=f"{data['email']}: score, fit and stages explained")
    return markdown


def publish_segment(matching: int, leads: list[SegmentLead], segment: Segment, all_of_them: str) -> str:
    """A segment as the table artifact `lead-segment-<filters>` (its versions: the same segment over time), the
    columns of `handoff leads --csv`; described by how many leads match and how many are shown."""
    heading = segment_heading(matching, len(leads), segment, all_of_them)
    create_table_artifact(key=f"lead-segment-{segment.key}", table=segment_rows(leads), description=heading)
    return heading


_STAGE_ORDER = ("subscriber", "lead", "mql", "sql", "opportunity", "customer", "recycled", "disqualified")
_EXAMPLE_TITLES = (
    ("handed_over_only_with_draft", "Handed to sales only with the draft", "highest draft score first"),
    ("handed_over_only_in_force", "Handed to sales only with the rulebook in force", "highest score first"),
    ("disqualified_only_with_draft", "Disqualified only with the draft", "highest draft score first"),
    ("largest_score_changes", "Largest score changes", "largest change first"),
)


def impact_markdown(summary: dict) -> str:
    """The rulebook-impact run as its artifact: what changed in the rules, then the leads under both rulebooks."""
    outcome, version = summary["outcome"], summary["in_force_version"]
    old, new = outcome["in_force"], outcome["draft"]
    lines = [f"# Rulebook impact at {_when(_instant(summary['now']))}", "",
             f"The draft {summary['draft_source']} (`{summary['draft_digest'][:12]}`) beside "
             + (f"the rulebook in force, version {version} (`{summary['in_force_digest'][:12]}`)." if version else
                "no rulebook in force: no lead has been scored yet, so this is what the first scoring run will do.")
             + " Nothing was saved: each lead is worked out from its activity log as a scoring pass at this moment"
               " would, under either rulebook.", ""]
    if version and summary["draft_digest"] == summary["in_force_digest"]:
        return "\n".join(lines + ["The draft is the rulebook in force: nothing would change."]) + "\n"
    if version:
        lines += ["## What changed in the rules", ""]
        lines += [f"- {change}" for change in summary["changes"]] or [
            "Only the order of entries: the draft scores alike, but it is a new version all the same (the next"
            " scheduled run rescores every lead with it)."]
        lines.append("")
    diff = (lambda a, b: f"{b - a:+,}") if old else (lambda a, b: "")
    get = lambda side, key: side[key] if side else 0  # noqa: E731
    lines += [f"## {outcome['leads']:,} lead{'' if outcome['leads'] == 1 else 's'}", "", "| | rulebook in force | draft | difference |", "|---|---:|---:|---:|"]
    rows = [("handed to sales by this pass (new MQLs)", "handovers"), ("scores at or above the readiness threshold",
                                                                       "at_threshold"), ("cold", "cold")]
    for label, key in rows:
        a, b = get(old, key), new[key]
        lines.append(f"| {label} | {f'{a:,}' if old else '—'} | {b:,} | {diff(a, b)} |")
    for grade in "ABCD":
        a, b = (old["grades"].get(grade, 0) if old else 0), new["grades"].get(grade, 0)
        lines.append(f"| fit {grade} | {f'{a:,}' if old else '—'} | {b:,} | {diff(a, b)} |")
    if old:
        lines += ["", f"Scores: {outcome['score_up']:,} up, {outcome['score_down']:,} down, the rest unchanged. "
                      f"Fit grade changed for {outcome['fit_grade_changed']:,}; {outcome['stage_differs']:,} would "
                      "stand in another stage than the rulebook in force leaves them."]
    stages = sorted(set(new["stages"]) | set(old["stages"] if old else ()), key=_STAGE_ORDER.index)
    lines += ["", "## Where the leads would stand", "", "| stage | rulebook in force | draft | difference |",
              "|---|---:|---:|---:|"]
    for stage in stages:
        a, b = (old["stages"].get(stage, 0) if old else 0), new["stages"].get(stage, 0)
        lines.append(f"| {stage} | {f'{a:,}' if old else '—'} | {b:,} | {diff(a, b)} |")
    kinds = sorted(set(new["stage_changes"]) | set(old["stage_changes"] if old else ()))
    if kinds:
        lines += ["", "## Stage changes this pass would make", "", "| change | rulebook in force | draft |", "|---|---:|---:|"]
        for kind in kinds:
            a = f"{old['stage_changes'].get(kind, 0):,}" if old else "—"
            lines.append(f"| {kind} | {a} | {new['stage_changes'].get(kind, 0):,} |")
    for name, title, order in _EXAMPLE_TITLES:
        found = outcome[name]
        if not found:
            continue
        total = outcome["counts"][name]
        title = title if old else "Handed to sales by this pass"  # with nothing in force, only handovers are listed
        lines += ["", f"## {title}: {total:,}" + (f" ({len(found)} shown, {order})" if total > len(found) else ""), "",
                  "| lead | e-mail | score | fit | stage | why (draft) |", "|---:|---|---:|---|---|---|"]
        for lead in found:
            lines.append(f"| {lead['lead_id']} | {cell(lead['email']) or '—'} | {_both(lead, 'score', points_text)} | "
                         f"{_both(lead, 'fit')} | {_both(lead, 'stage')} | {cell(lead['why']) or '—'} |")
    return "\n".join(lines) + "\n"


def _both(lead: dict, field: str, show=str) -> str:
    """'before -> after' when the rulebooks differ on this field, else the one value."""
    before, after = lead[f"{field}_in_force"], lead[f"{field}_draft"]
    if before is None or before == after:
        return show(after)
    return f"{show(before)} -> {show(after)}"


@task(cache_policy=NO_CACHE)
def publish_impact_summary(summary: dict) -> str:
    markdown = impact_markdown(summary)
    create_markdown_artifact(key="rulebook-impact", markdown=markdown,
                             description="A rulebook change previewed: every lead under the draft and the rulebook in force")
    return markdown
