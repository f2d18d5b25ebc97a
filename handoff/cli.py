"""The `handoff` command: run flows, start the stand-ins, migrate the database, run the demo."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console, RenderableType, RenderHook
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text
from typer.core import TyperGroup

from tasks.markdown import shown


class Terminal(Console):
    """A console that shows the control characters of what it prints instead of obeying them (lead text reaches
    it in tables, reasons and payloads) and reads no text as rich markup: a message styles itself with `style=`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=False, **kwargs)
        self.push_render_hook(_Shown())

    def render_str(self, text: str, **kwargs) -> Text:
        # before rich, which would drop a carriage return, a backspace or a BEL without a trace
        return super().render_str(shown(text), **kwargs)

    def print(self, *objects, **kwargs) -> None:
        super().print(*(_markdown(o) if isinstance(o, Markdown) else o for o in objects), **kwargs)


def _markdown(page: Markdown) -> Markdown:
    """The page with its controls shown before rich parses it, and no link of it made a terminal hyperlink."""
    if shown(page.markup) != page.markup:
        page = Markdown(shown(page.markup))
    page.hyperlinks = False
    return page


class _Shown(RenderHook):
    """The last guard: text that reached rich by another way still has its controls shown when it is written."""

    def process_renderables(self, renderables: list[RenderableType]) -> list[RenderableType]:
        return [_ShownRenderable(renderable) for renderable in renderables]


class _ShownRenderable:
    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options):
        for segment in console.render(self.renderable, options):
            yield segment if segment.control else Segment(shown(segment.text), segment.style)


# Exit codes: 2 for a usage error, which only a change to what a person typed or set can mend (an option, a
# HANDOFF_* setting, the database URL and what it names, a sources file or rulebook a run needs, a port taken);
# 1 when the work itself failed or found a problem (a database that does not answer or lacks the schema, a lead
# not found, a failed run, a check that finds the rulebook broken).
_REFUSALS = {
    "config.loading.ConfigError": 2,
    "config.settings.InvalidSetting": 2,
    "store.engine.DatabaseUrlError": 2,
    "sandbox.server.CannotListen": 2,
    "store.engine.DatabaseUnavailable": 1,
    "store.migrate.SchemaOutOfDate": 1,
    "tasks.explain.LeadNotFound": 1,
    "tasks.stages.MoveRefused": 1,
    "flows.crm_sync.ResyncRefused": 1,
    "tasks.routing.AssignRefused": 1,
}
_HINTS = {
    "config.settings.InvalidSetting": "Set it to a value it takes, or unset it for the default.",
    "store.engine.DatabaseUrlError": "Check HANDOFF_DATABASE_URL (unset, it is a SQLite file in HANDOFF_HOME).",
    "store.engine.DatabaseUnavailable": "Check HANDOFF_DATABASE_URL, or start the database, and run the command again.",
    "sandbox.server.CannotListen": "Choose another --port (0 takes any free ports) or --host, or stop what holds it.",
}


def _raised(exc: BaseException, where: str) -> bool:
    """Whether `exc` is the exception class at `where` (module.Class); a module not imported raised nothing."""
    module, _, name = where.rpartition(".")
    kind = getattr(sys.modules.get(module), name, None)
    return isinstance(kind, type) and isinstance(exc, kind)


class _Handoff(TyperGroup):
    """The one place an error becomes what a person reads: a refusal of _REFUSALS its message (and what to do)
    with its exit code; anything else one line and the advice to rerun with --debug, which shows the traceback."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own: usage errors and exits
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            code, lines = _told(exc)
            for line in lines:
                errors.print(line, soft_wrap=True)
            raise typer.Exit(code) from None


def _told(exc: Exception) -> tuple[int, list[str]]:
    from store.engine import connection_problem

    url = _configured_url()
    exc = (connection_problem(exc, url) if url else None) or exc
    for where, code in _REFUSALS.items():
        if _raised(exc, where):
            return code, [f"Error: {exc}"] + ([_HINTS[where]] if where in _HINTS else [])
    first = (str(exc).strip().splitlines() or [""])[0]
    return 1, [f"Error: {type(exc).__name__}: {_unsecret(first)}",
               "Rerun with --debug (handoff --debug ...) to see the full traceback."]


def _configured_url() -> str | None:
    try:
        return _settings().resolved_database_url()
    except Exception:  # noqa: BLE001 - the settings may be what went wrong
        return None


def _unsecret(text: str) -> str:
    """`text` without the configured database password, should an unexpected error quote it."""
    from sqlalchemy.engine import make_url

    try:
        password = make_url(_configured_url() or "").password
    except Exception:  # noqa: BLE001 - no URL, no password to hide
        return text
    return text.replace(str(password), "***") if password else text


app = typer.Typer(help="Handoff: move leads from marketing to sales, exactly once.", no_args_is_help=True,
                  cls=_Handoff, pretty_exceptions_show_locals=False)
run_app = typer.Typer(help="Run a flow once, now, against the configured Prefect API.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
rules_app = typer.Typer(help="The scoring rulebook (config/scoring.yaml and config/scoring.csv).", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(db_app, name="db")
app.add_typer(rules_app, name="rules")
lead_app = typer.Typer(help="Leads, one person at a time: move a stage, or give one to a rep, by hand.",
                       no_args_is_help=True)
app.add_typer(lead_app, name="lead")
events_app = typer.Typer(help="The lead events sent to Prefect (handoff.lead.mql, ...): what the outbox holds.")
app.add_typer(events_app, name="events")
quarantine_app = typer.Typer(help="Records ingest could not accept, each kept whole with its reason.")
app.add_typer(quarantine_app, name="quarantine")
teams_app = typer.Typer(help="The sales organisation: teams, reps and calendars (config/teams.yaml), the routing rules "
                             "(config/routing.yaml) and the SLA (config/sla.yaml).", no_args_is_help=True)
app.add_typer(teams_app, name="teams")
report_app = typer.Typer(help="Reports both teams read.", no_args_is_help=True)
app.add_typer(report_app, name="report")
prefect_app = typer.Typer(help="The Prefect server Handoff's deployments run on.", no_args_is_help=True)
app.add_typer(prefect_app, name="prefect")
crm_app = typer.Typer(help="The two-way sync with the CRM (config/crm.yaml): run it, resync leads, failed writes.",
                      no_args_is_help=True)
app.add_typer(crm_app, name="crm")
# Wide enough for the run-summary tables when the output is a pipe or a CI log.
console = Terminal() if sys.stdout.isatty() else Terminal(width=160)
errors = Terminal(stderr=True) if sys.stderr.isatty() else Terminal(stderr=True, width=160)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="On an error, show its full traceback.")) -> None:
    pass


def _settings():
    from config.settings import get_settings

    return get_settings()


def _database_url() -> str:
    """The configured database's URL. The default home is made here, on purpose: a SQLite URL set by hand must
    name a directory that exists (store.engine refuses it otherwise), rather than one made somewhere unexpected."""
    settings = _settings()
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    return settings.resolved_database_url()


def _instant(value: Optional[str], option: str) -> Optional[datetime]:
    if value is None:
        return None
    from domain.activity import parse_instant

    moment = parse_instant(value)
    if moment is None:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint=option)
    return moment


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database at HANDOFF_DATABASE_URL to the latest schema."""
    from store.engine import masked
    from store.migrate import current, upgrade

    url = _database_url()
    upgrade(url)
    console.print(f"database {masked(url)} is at revision {current(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision."""
    from store.migrate import current, head

    found = current(_database_url())
    console.print(f"revision {found or 'none'} (latest {head()})")


def _require_schema() -> None:
    """Refuse, with the fix, a database never migrated or behind the schema this version needs."""
    from store.migrate import require_head

    require_head(_database_url())


@contextmanager
def _prefect() -> Iterator[str]:
    """The Prefect API the flows of a command run against, once the database is known to hold the schema this
    version needs: one never migrated, or behind, is refused with the fix before any server starts."""
    from handoff.prefect_server import prefect_api

    _require_schema()
    with prefect_api(_settings().home / "prefect") as api_url:
        yield api_url


def _print_ingest(summary) -> None:
    console.print(Markdown(summary.markdown))


@run_app.command("ingest")
def run_ingest(
    source: list[str] = typer.Option(None, "--source", "-s", help="Only these sources (repeatable)."),
    since: Optional[str] = typer.Option(None, help="Re-read from this time instead of the watermark (backfill)."),
    now: Optional[str] = typer.Option(None, help="The run's clock (ISO-8601); default: now."),
) -> None:
    """Pull new activities from every enabled source once."""
    since_at, now_at = _instant(since, "--since"), _instant(now, "--now")  # a bad time fails before any server starts
    _check_sources(source or [])
    from flows.ingest import IngestFailed, ingest

    with _prefect():
        try:
            summary = ingest(sources=source or None, since=since_at, now=now_at)
        except IngestFailed as failed:
            _print_ingest(failed.summary)
            console.print(str(failed), style="red")
            raise typer.Exit(1) from None
    _print_ingest(summary)


def _check_sources(names: list[str]) -> None:
    """The sources file loads and names every source asked for, before any server starts."""
    from config.sources import load_sources

    path = _settings().sources_file
    enabled = [config.name for config in load_sources(path)]
    unknown = [name for name in names if name not in enabled]
    if unknown:
        there = ", ".join(enabled) if enabled else "none (each is enabled in the file, or by its HANDOFF_*_ENABLED)"
        raise typer.BadParameter(f"{unknown[0]!r} is not an enabled source of {path}; enabled: {there}",
                                 param_hint="--source")


def _run_scoring(flow_call) -> None:
    from config.rulebook import load_rulebook

    load_rulebook(_settings().rulebook_dir)  # a rulebook that does not load is refused before any server starts
    with _prefect():
        summary = flow_call()
    console.print(Markdown(summary.markdown))


@run_app.command("score")
def run_score(now: Optional[str] = typer.Option(None, help="The run's clock (ISO-8601); default: now.")) -> None:
    """Score and qualify the leads touched since the last run (and re-decay everyone when it is due)."""
    from flows.score import score_and_qualify

    at = _instant(now, "--now")
    _run_scoring(lambda: score_and_qualify(now=at))


@run_app.command("route")
def run_route(now: Optional[str] = typer.Option(None, help="The run's clock (ISO-8601); default: now.")) -> None:
    """Give each sales-ready lead waiting for an owner its rep by the routing rules, write the owners to the CRM
    and tell the reps (the route-leads flow)."""
    from flows.routing import route_leads

    at = _instant(now, "--now")
    _routing_rules()
    with _prefect():
        summary = route_leads(now=at)
    console.print(Markdown(summary.markdown))


@run_app.command("sla")
def run_sla_flow(now: Optional[str] = typer.Option(None, help="The run's clock (ISO-8601); default: now.")) -> None:
    """Remind, escalate, reassign and recycle the leads nobody contacted in time (the sla flow)."""
    from flows.sla import sla_check

    at = _instant(now, "--now")
    _routing_rules()
    with _prefect():
        summary = sla_check(now=at)
    console.print(Markdown(summary.markdown))


def _routing_rules():
    """The teams, routing and SLA files, refused with every problem before any server starts."""
    from tasks.routing import load_rules

    return load_rules(_settings())


@run_app.command("rescore")
def run_rescore(
    reason: str = typer.Option(..., help="Why: recorded with the run (e.g. 'pricing page now worth 20%')."),
    now: Optional[str] = typer.Option(None, help="The run's clock (ISO-8601); default: now."),
) -> None:
    """Recompute every lead from the activity log with the current rulebook."""
    from flows.score import rescore

    at = _instant(now, "--now")
    if not reason.strip():
        raise typer.BadParameter("say why the leads are rescored", param_hint="--reason")
    _run_scoring(lambda: rescore(reason=reason, now=at))


@lead_app.command("move")
def lead_move(
    emails: list[str] = typer.Argument(..., metavar="EMAIL", help="The leads' e-mail addresses."),
    to: str = typer.Option(..., "--to", help="recycled, disqualified, sql, opportunity or customer."),
    reason: str = typer.Option(..., help="Why: recorded on each stage change (e.g. 'no answer after five calls')."),
    by: Optional[str] = typer.Option(None, help="Who asked, recorded with the reason."),
    now: Optional[str] = typer.Option(None, help="The run's clock (ISO-8601); default: now."),
) -> None:
    """Recycle or disqualify leads, or record a sales stage: all of them, or none when any move is refused."""
    from typing import get_args

    from flows.stages import Target, move_lead_stage
    from tasks.reporting import moves_markdown

    if to not in get_args(Target):
        raise typer.BadParameter(f"one of {', '.join(get_args(Target))}, not {to!r}", param_hint="--to")
    at = _instant(now, "--now")
    with _prefect():
        moves = move_lead_stage(emails=emails, to=to, reason=reason, requested_by=by, now=at)
    console.print(Markdown(moves_markdown(moves)))


@lead_app.command("assign")
def lead_assign(
    email: str = typer.Argument(..., metavar="EMAIL", help="The lead's e-mail address."),
    to: str = typer.Option(..., "--to", help="The rep's e-mail (an active CRM user)."),
    reason: str = typer.Option(..., help="Why: recorded on the assignment (e.g. 'met her at the summit')."),
    by: Optional[str] = typer.Option(None, help="Who asked, recorded with the reason."),
    now: Optional[str] = typer.Option(None, help="The run's clock (ISO-8601); default: now."),
) -> None:
    """Give a lead to a rep by hand: logged and timed like a routing decision, the CRM and the rep told (the
    assign-lead flow)."""
    from flows.routing import assign_lead

    at = _instant(now, "--now")
    _routing_rules()
    with _prefect():
        routed = assign_lead(email=email, to=to, reason=reason, requested_by=by, now=at)
    console.print(f"{routed.email} goes to {routed.owner}" + (f"; contact due {routed.due}" if routed.due else "") + ".")


@teams_app.command("check")
def teams_check(at: Optional[str] = typer.Option(None, "--at", help="Say who is away at this time (ISO-8601)."),
                ) -> None:
    """Validate config/teams.yaml, config/routing.yaml and config/sla.yaml (every problem with its file and line)
    and print the teams, reps, routing rules and SLA policies they define."""
    from config.routing import describe_routing
    from config.sla import describe_sla
    from config.teams import describe_teams
    from store.migrate import current, head
    from tasks.calendar_feeds import current_reads, feed_absences, feed_reads_markdown

    moment = _instant(at, "--at")
    rules = _routing_rules()
    teams, feeds = rules.teams, ""
    if any(rep.ooo_calendar_url for rep in teams.reps):
        if current(_database_url()) == head():
            with _engine().connect() as conn:
                reads = current_reads(conn, teams)
            teams, feeds = teams.with_absences(feed_absences(reads)), feed_reads_markdown(reads)
        else:
            feeds = "The reps' calendar feeds are shown once the database is set up (`handoff db upgrade`).\n"
    console.print(Markdown(describe_teams(teams, at=moment)))
    if feeds:
        console.print(Markdown(feeds))
    console.print(Markdown(describe_routing(rules.routing, teams)))
    console.print(Markdown(describe_sla(rules.sla)))


@report_app.command("sla")
def report_sla(days: int = typer.Option(30, min=0, help="Leads handed over in the last DAYS days (0: all time)."),
               now: Optional[str] = typer.Option(None, help="As at this time (ISO-8601); default: now.")) -> None:
    """The response SLA's measures: time to first contact (median, 90th percentile; business and calendar hours),
    the share contacted in time, breaches, reassignments and recycles; overall, per team, per rep."""
    from tasks.sla_report import sla_measures_markdown

    at = _instant(now, "--now") or datetime.now(timezone.utc)
    rules = _routing_rules()
    _require_schema()
    console.print(Markdown(sla_measures_markdown(_engine(), rules.teams, at, days or None)))


@report_app.command("funnel")
def report_funnel(
    start: Optional[str] = typer.Option(None, "--from", help="The first month (2026-01) or day (2026-01-15); default: "
                                        "the months of config/funnel.yaml up to now."),
    end: Optional[str] = typer.Option(None, "--to", help="The last month or day, included; default: now."),
    by: Optional[str] = typer.Option(None, "--by", help="Also each source, channel or campaign (of the leads' first "
                                     "touch), month by month."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV on standard output instead of the table: a row per month "
                                "and the period (per group with --by)."),
    csv_file: Optional[Path] = typer.Option(None, "--csv-file", metavar="FILE", help="Write that CSV into FILE too."),
    chart: Optional[Path] = typer.Option(None, "--chart", metavar="FILE.png", help="Draw the chart into FILE.png."),
    now: Optional[str] = typer.Option(None, help="As at this time (ISO-8601); default: now."),
) -> None:
    """The funnel both teams agreed on, month by month against the targets (config/funnel.yaml): leads, MQLs, SQLs,
    opportunities and customers entering each stage, the conversions, lead to customer, time to first contact and
    SLA compliance. The counting rules: docs/funnel.md."""
    from domain.funnel import DIMENSIONS, PeriodRefused
    from handoff.report import funnel_of
    from tasks.funnel import funnel_csv, funnel_markdown
    from tasks.funnel_chart import funnel_chart

    if by is not None and by not in DIMENSIONS:
        raise typer.BadParameter(f"one of {', '.join(DIMENSIONS)}, not {by!r}", param_hint="--by")
    at = _instant(now, "--now") or datetime.now(timezone.utc)
    _require_schema()
    try:
        report = funnel_of(_engine(), at, start, end, by)
    except PeriodRefused as refused:
        raise typer.BadParameter(str(refused), param_hint="--from/--to") from None
    if chart is not None:
        chart.write_bytes(funnel_chart(report))
    if csv_file is not None:
        csv_file.write_text(funnel_csv(report), newline="")
    if as_csv:
        sys.stdout.write(funnel_csv(report, for_terminal=_to_terminal(sys.stdout)))
        return
    console.print(Markdown(funnel_markdown(report)))


@rules_app.command("check")
def rules_check() -> None:
    """Validate the rulebook and print the model it defines."""
    from rich.table import Table

    from config.loading import ConfigError
    from config.rulebook import load_rulebook
    from domain.impact import decay_text, disqualifier_text, grades_text
    from domain.rules import points_text

    try:
        rulebook = load_rulebook(_settings().rulebook_dir)
    except ConfigError as exc:  # what the check finds, not a mistake in using it
        console.print(str(exc), style="red")
        raise typer.Exit(1) from None
    table = Table(title=f"Scoring rules (readiness threshold {points_text(rulebook.readiness_threshold)})")
    for column in ("action", "stage", "readiness %", "points", "cap", "repeat"):
        table.add_column(column, justify="right" if column in ("readiness %", "points", "cap") else "left")
    for rule in rulebook.rules:
        table.add_row(rule.action, rule.stage.value, str(rule.readiness_pct), points_text(rule.points),
                      points_text(rule.cap) if rule.cap is not None else "—", str(rule.repeat))
    console.print(table)
    console.print(f"Decay: {decay_text(rulebook.decay)}")
    fit = Table(title="Fit (ideal customer profile)")
    for column in ("field", "match", "points"):
        fit.add_column(column)
    for rule in rulebook.fit.rules:
        for value, points in rule.values:
            fit.add_row(rule.field, f"= {value}", points_text(points))
        for low, high, points in rule.ranges:
            fit.add_row(rule.field, f"{'' if low is None else low}..{'' if high is None else high}", points_text(points))
        for words, points in rule.keywords:
            fit.add_row(rule.field, "has " + " / ".join(words), points_text(points))
    console.print(fit)
    console.print(f"Grades: {grades_text(rulebook.fit.grade_thresholds)}, else D")
    for rule in rulebook.fit.disqualifiers:
        console.print(f"Disqualifier: {rule.reason}: {disqualifier_text(rule)}")
    q = rulebook.qualification
    console.print(
        f"MQL: score >= {points_text(rulebook.readiness_threshold)} with fit >= {q.min_fit_grade}, or at once on "
        f"{', '.join(sorted(k.value for k in q.hand_raisers))} with fit >= {q.hand_raise_min_fit_grade}; "
        f"re-arms below {points_text(q.rearm_below)}; cold below {points_text(q.cold_below)} after "
        f"{points_text(q.cold_engaged_at)}"
    )
    console.print(Text.assemble(("The rulebook is valid", "green"), f" (version digest {rulebook.digest[:12]})"))


@rules_app.command("impact")
def rules_impact(
    rules_dir: Optional[Path] = typer.Option(None, "--rules-dir", help="The draft's directory (scoring.yaml and "
                                             "scoring.csv); default: the configured rulebook."),
    now: Optional[str] = typer.Option(None, help="The moment to work the leads out at (ISO-8601); default: now."),
    examples: int = typer.Option(10, min=0, help="Leads listed per kind of difference."),
) -> None:
    """Preview a rulebook change before it goes live: every lead under the draft beside the rulebook in force, and
    what changed in the rules. Saves nothing (the rulebook-impact flow)."""
    from config.loading import ConfigError
    from config.rulebook import load_rulebook
    from flows.impact import rulebook_impact

    at = _instant(now, "--now")
    try:  # a draft that does not load is what the preview finds, before any server starts: its file and line
        load_rulebook(rules_dir or _settings().rulebook_dir)
    except ConfigError as exc:
        console.print(str(exc), style="red")
        raise typer.Exit(1) from None
    with _prefect():
        summary = rulebook_impact(rules_dir=str(rules_dir) if rules_dir else None, now=at, examples=examples)
    console.print(Markdown(summary.markdown))


@app.command()
def explain(email: str, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Explain a lead's score point by point, its fit grade and its lifecycle stages."""
    import json

    from tasks.explain import explain_lead, explanation_markdown

    data = explain_lead(_engine(), email)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        console.print(Markdown(explanation_markdown(data)))


@app.command("leads")
def list_leads(
    stage: list[str] = typer.Option(None, "--stage", help="Only leads in this stage (repeatable): subscriber, lead, "
                                                          "mql, sql, opportunity, customer, recycled, disqualified."),
    fit: list[str] = typer.Option(None, "--fit", help="Only leads of this fit grade (repeatable): A, B, C or D."),
    cold: bool = typer.Option(False, "--cold", help="Only leads flagged cold: engaged once, decayed since (nurture)."),
    min_score: Optional[str] = typer.Option(None, "--min-score", help="Only leads scoring at least this many points."),
    limit: Optional[int] = typer.Option(None, help="List at most this many; 0 lists all "
                                                   "(default: 50, all with --csv)."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV on standard output, for a list import or a spreadsheet."),
) -> None:
    """List scored leads by stage, fit grade, cold flag and score, highest score first: a segment to look at,
    or the cold leads to hand to nurture (`--cold --csv > nurture.csv`)."""
    from domain.segments import SegmentRefused, segment_of
    from store.reports import lead_segment
    from tasks.segments import segment_csv, segment_markdown

    try:
        segment = segment_of(stage or [], fit or [], cold, min_score)
    except SegmentRefused as refused:
        name, problem = refused.problems[0]
        raise typer.BadParameter(problem, param_hint=f"--{name}")
    if limit is not None and limit < 0:
        raise typer.BadParameter("0 or more", param_hint="--limit")
    _require_schema()
    shown = limit if limit else (None if limit == 0 or as_csv else 50)
    matching, leads = lead_segment(_engine(), stages=segment.stages, grades=segment.grades, cold=segment.cold,
                                   min_score=segment.min_score, limit=shown)
    if as_csv:
        # Into a file, the CSV keeps the text as the tools sent it (a list import must match the leads; segment_csv
        # keeps a spreadsheet from running it as a formula); into a terminal it is a view, shown like any other.
        sys.stdout.write(segment_csv(leads, for_terminal=_to_terminal(sys.stdout)))
        return
    console.print(Markdown(segment_markdown(matching, leads, segment, "`--limit 0` lists all")))


@app.command()
def stages() -> None:
    """Leads now at each lifecycle stage (conversions between stages: `handoff report funnel`)."""
    from handoff.report import stage_overview

    _require_schema()
    console.print(Markdown(stage_overview()))


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output: the findings and the facts."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when there is a problem (for a monitor or a cron job)."),
    now: Optional[str] = typer.Option(None, help="Judge as at this time (ISO-8601); default: now."),
) -> None:
    """Is the line moving? Each source's watermark and quarantine, the rulebook in force, the leads waiting to be
    scored, the lead events by state, the open queues, the CRM sync, routing, the SLA timers and the notifications;
    and the problems among them (scoring behind, decay overdue, lead events given up or unsent, no CRM pull
    finishing, CRM writes given up, leads waiting for an owner, the SLA flow behind, notifications given up or
    unsent, a rep's calendar feed failing, a config file that does not load, a schema behind)."""
    import json

    from domain.health import assess
    from tasks.health import gather_facts, health_json, health_markdown, policy_of

    at = _instant(now, "--now") or datetime.now(timezone.utc)
    _database_url()
    facts = gather_facts(at, _settings())
    findings = assess(facts, policy_of(_settings()))
    if as_json:
        sys.stdout.write(json.dumps(health_json(facts, findings), indent=2) + "\n")
    else:
        console.print(Markdown(health_markdown(facts, findings)))
    if check and any(f.level == "problem" for f in findings):
        raise typer.Exit(1)


@events_app.callback(invoke_without_command=True)
def events(ctx: typer.Context) -> None:
    """How many lead events are waiting, sent, confirmed held by Prefect, or given up, by kind; and the first
    events given up."""
    if ctx.invoked_subcommand:
        return
    from handoff.report import outbox_overview

    _require_schema()
    console.print(Markdown(outbox_overview(_engine(), datetime.now(timezone.utc))))


@events_app.command("retry")
def events_retry() -> None:
    """Send the given-up lead events again: the next score run (or stage move) sends them under their ids."""
    from store.outbox import send_given_up_again

    _require_schema()
    settings = _settings()
    with _engine().begin() as conn:
        again = send_given_up_again(conn, datetime.now(timezone.utc), settings.event_resend_after(),
                                    settings.event_max_sends)
    console.print(f"{again} given-up lead event{'' if again == 1 else 's'} will be sent again by the next run.")


@quarantine_app.callback(invoke_without_command=True)
def quarantine(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(None, help="Only this source's records."),
    since: Optional[str] = typer.Option(None, help="Only records quarantined at or after this time (ISO-8601)."),
    limit: int = typer.Option(20, min=0, help="How many of the latest records to list."),
) -> None:
    """The quarantined records by source and kind of reason (reasons that differ only in a quoted value or a
    number count as one), with the first and last of each, then the latest records. `handoff quarantine show ID`
    prints one whole."""
    if ctx.invoked_subcommand:
        return
    from handoff.report import quarantine_overview

    at = _instant(since, "--since")
    _require_schema()
    console.print(Markdown(quarantine_overview(_engine(), source=source, since=at, limit=limit)))


@quarantine_app.command("show")
def quarantine_show(record_id: int = typer.Argument(..., metavar="ID", help="The record's id (`handoff quarantine`).")
                    ) -> None:
    """One quarantined record: its source, external id, reason, when and by which run, and the raw payload as
    it arrived (JSON pretty-printed when it is JSON)."""
    import json

    from store.reports import quarantined_record

    _require_schema()
    record = quarantined_record(_engine(), record_id)
    if record is None:
        console.print(f"No quarantined record has id {record_id}.", style="red")
        raise typer.Exit(1)
    for name in ("id", "source", "external_id", "reason", "quarantined_at", "run_id"):
        console.print(f"{name}: {record[name] if record[name] is not None else '—'}", markup=False, highlight=False)
    size, kept = record["raw_size"], record["raw_bytes"]
    try:
        raw = json.dumps(json.loads(record["raw"]), indent=2, ensure_ascii=False) if kept is None else record["raw"]
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes: as it arrived
        raw = record["raw"]
    if kept is not None:  # the payload was not text, held a NUL, or was cut at the cap: shown with escapes
        console.print(f"raw: {len(kept):,} of {size:,} bytes kept, shown with escapes (\\xNN for a byte that is not "
                      "text)", markup=False)
    else:
        console.print("raw:" if size is None else f"raw: {size:,} bytes", markup=False)
    console.print(raw, markup=False, highlight=False, soft_wrap=True)


@prefect_app.command("setup")
def prefect_setup(pool: str = typer.Option("handoff", help="The work pool the deployments run in.")) -> None:
    """Set up the Prefect server at PREFECT_API_URL so a killed run ends Crashed and its schedule goes on: the work
    pool (a process pool, made if missing) gives runs a heartbeat every HANDOFF_HEARTBEAT_SECONDS, and an
    automation crashes a deployment run silent for HANDOFF_ZOMBIE_AFTER_SECONDS. Idempotent: run it again after
    recreating the pool."""
    from handoff.automations import AUTOMATION_NAME, ensure_zombie_detection

    applied = ensure_zombie_detection(work_pool=pool)
    console.print(f"Work pool {pool!r}: runs heartbeat every {applied.heartbeat_seconds} s. Automation "
                  f"{AUTOMATION_NAME!r}: a deployment run silent for {applied.zombie_after_seconds} s is marked Crashed.")


@crm_app.command("sync")
def crm_sync(now: Optional[str] = typer.Option(None, help="The run's clock (ISO-8601); default: now.")) -> None:
    """Run the crm-sync flow once: pull what sales did, then push score, fit and stage."""
    from flows.crm_sync import crm_sync as sync

    at = _instant(now, "--now")
    _crm_config()
    with _prefect():
        summary = sync(now=at)
    console.print(Markdown(summary.markdown))


@crm_app.command("resync")
def crm_resync(emails: list[str] = typer.Argument(..., metavar="EMAIL", help="The leads' e-mail addresses.")) -> None:
    """Pull and push these leads' CRM records now, whatever changed (the resync-leads flow)."""
    from flows.crm_sync import resync_leads

    _crm_config()
    with _prefect():
        summary = resync_leads(emails=emails)
    console.print(Markdown(summary.markdown))


@crm_app.command("failures")
def crm_failures(limit: int = typer.Option(50, min=0, help="List at most this many (0: all).")) -> None:
    """The records the sync gave up writing (an error that will not pass on its own), newest first, with the
    CRM's error; `handoff crm retry` writes them again."""
    from handoff.report import crm_failures_overview

    _require_schema()
    console.print(Markdown(crm_failures_overview(_engine(), limit or None)))


@crm_app.command("retry")
def crm_retry(emails: list[str] = typer.Argument(None, metavar="[EMAIL]...",
                                                 help="Only these leads (default: every dead-lettered record).")) -> None:
    """Give dead-lettered records their attempts back: the next crm-sync run writes them again."""
    from store import crm as crm_store
    from store.scoring import leads_by_email

    _require_schema()
    with _engine().begin() as conn:
        lead_ids = None
        if emails:
            found = leads_by_email(conn, [e.strip().lower() for e in emails])
            unknown = [e for e in emails if e.strip().lower() not in found]
            if unknown:
                raise typer.BadParameter(f"no lead has {', '.join(unknown)}", param_hint="EMAIL")
            lead_ids = sorted(set(found.values()))
        again = crm_store.requeue(conn, lead_ids)
    console.print(f"{again} dead-lettered record{'' if again == 1 else 's'} will be written again by the next "
                  "crm-sync run.")


def _crm_config():
    """The sync's configuration, refused before any server starts when it does not load or the sync is off."""
    from config.crm import load_crm_config

    config = load_crm_config(_settings().crm_file)
    if not config.enabled:
        console.print("The CRM sync is off: set HANDOFF_SALESFORCE_ENABLED=true and its connection (config/crm.yaml).",
                      style="red")
        raise typer.Exit(2)
    return config


def _engine():
    from store.engine import get_engine

    return get_engine(_database_url())


def _to_terminal(stream) -> bool:
    return stream.isatty()


def _parse_faults(values: list[str]):
    from sandbox.faults import RequestFaults
    from sandbox.salesforce import SalesforceFaults

    faults: dict[str, RequestFaults] = {}
    for value in values or []:
        try:
            target, amount = value.split("=", 1)
            tool, switch = target.split(".", 1)
            kind = SalesforceFaults if tool == "salesforce" else RequestFaults
            faults.setdefault(tool, kind()).update(**{switch: amount})
        except ValueError as exc:
            raise typer.BadParameter(f"{value!r}: expected TOOL.SWITCH=VALUE ({exc})", param_hint="--fault") from None
    return faults


@app.command()
def serve(
    port: Optional[int] = typer.Option(None, help="The webhook receiver's port; default HANDOFF_WEBHOOK_PORT."),
    schedules: bool = typer.Option(True, "--schedules/--no-schedules",
                                   help="--no-schedules: only the webhook receiver, when the deployments run on a "
                                        "work pool's workers."),
    deployments: Optional[Path] = typer.Option(None, help="Another deployments file (default: the project's "
                                                          "deployments.yaml)."),
) -> None:
    """Run every deployment of deployments.yaml on its schedule and triggers, and the webhook receiver
    (POST /webhooks/SOURCE) whose leads are scored, routed and synced at once, in this one process, until
    Ctrl-C."""
    from handoff.serve import serve as serve_all

    settings = _settings()
    if port is not None:
        settings = settings.model_copy(update={"webhook_port": port})
    with _prefect():
        if deployments:
            serve_all(settings, deployments.resolve(), schedules=schedules)
        else:
            serve_all(settings, schedules=schedules)


@app.command()
def sandbox(
    seed: int = typer.Option(7, help="World seed: the same seed gives the same people and activities."),
    people: int = typer.Option(2_000, min=1, help="People in the world."),
    activities: int = typer.Option(20_000, min=1, help="Activities across all tools (at least one per person)."),
    weeks: int = typer.Option(8, min=1, help="Weeks of history."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8701, min=0, max=65533,
                             help="Marketo's port; HubSpot and Mautic take the next two (0: any free ports)."),
    malformed_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of records served malformed (0 to 1)."),
    duplicate_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of records served twice (0 to 1)."),
    late_rate: float = typer.Option(0.0, min=0.0, max=1.0,
                                    help="Share of activities that show up hours late (0 to 1)."),
    fault: list[str] = typer.Option(None, help="Request fault, e.g. marketo.rate_limit_every=10 (repeatable)."),
    export: Optional[Path] = typer.Option(None, help="Also write a JSON Lines export (badge scans) here."),
    tool: list[str] = typer.Option(None, help="Serve only this tool (repeatable). Processes started with the same "
                                              "seed, size and --end serve one world between them."),
    end: Optional[str] = typer.Option(None, help="The world's last moment (ISO-8601); default: this hour."),
    crm: bool = typer.Option(True, "--crm/--no-crm", help="Also serve the Salesforce stand-in (on the port after "
                                                          "Mautic's), with the world's reps at work in it."),
    webhooks: Optional[str] = typer.Option(None, "--webhooks", metavar="URL",
                                           help="Post Mautic's and HubSpot's webhooks to URL/<tool>, signed as the "
                                                "tools sign them, e.g. http://127.0.0.1:8765/webhooks."),
) -> None:
    """Start the Marketo, HubSpot and Mautic stand-ins (and Salesforce's) and print how to point Handoff at them,
    until stopped."""
    from sandbox.exports import write_badge_scans
    from sandbox.stack import start_sandbox
    from sandbox.world import TOOLS, WorldSpec, generate

    _enough_activities(people, activities)
    tools = tuple(dict.fromkeys(tool or TOOLS))
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        raise typer.BadParameter(f"unknown tool {unknown[0]!r}: one of {', '.join(TOOLS)}", param_hint="--tool")
    world_end = _instant(end, "--end") or datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    spec = WorldSpec(seed=seed, people=people, activities=activities, weeks=weeks, end=world_end,
                     malformed_rate=malformed_rate, duplicate_rate=duplicate_rate, late_rate=late_rate)
    world = generate(spec)
    ports = {name: (port + TOOLS.index(name) if port else 0) for name in tools}
    ports["salesforce"] = port + len(TOOLS) if port else 0
    box = start_sandbox(world=world, faults=_parse_faults(fault), ports=ports, tools=tools, host=host, crm=crm,
                        webhooks_to=webhooks)
    env = dict(box.env)
    if crm:  # the JWT bearer grant's key pair: the private key goes to a file, as an admin would hand it over
        key_file = _settings().home / "sandbox-salesforce-key.pem"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(box.credentials["salesforce"]["private_key_pem"])
        key_file.chmod(0o600)
    if export:
        write_badge_scans(world, export)
        env.update({"HANDOFF_JSONL_ENABLED": "true", "HANDOFF_JSONL_PATH": str(export.resolve())})
    console.print(f"Stand-ins over {people} people and {len(world.events)} activities (seed {seed})", style="bold")
    for name in box.servers:
        console.print(f"  {name:10} {box.url(name)}")
    console.print("\nPoint Handoff at them (sandbox credentials, valid until this process stops):")
    for name, value in env.items():
        print(f"export {name}={value}")
    if crm:
        console.print("\nOr sign in to Salesforce with the JWT bearer grant instead of the client secret:")
        print(f"export HANDOFF_SALESFORCE_USERNAME={box.credentials['salesforce']['username']}")
        print(f"export HANDOFF_SALESFORCE_PRIVATE_KEY_FILE={key_file.resolve()}")
        print("unset HANDOFF_SALESFORCE_CLIENT_SECRET")
    if webhooks and box.webhooks:
        console.print(f"\nWebhooks go to {webhooks.rstrip('/')}/<tool>; hand-raises now: POST "
                      f"<tool URL>/_sandbox/webhooks/hand-raises (docs/webhooks.md).")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    console.print("\nServing; Ctrl-C to stop.")
    stopped.wait()
    box.stop()


def _enough_activities(people: int, activities: int) -> None:
    if activities < people:
        raise typer.BadParameter(f"at least one per person: {people} or more, not {activities}",
                                 param_hint="--activities")


@app.command()
def demo(
    people: int = typer.Option(2_000, min=1, help="People in the demo world."),
    activities: int = typer.Option(20_000, min=1, help="Activities in the demo world (at least one per person)."),
    seed: int = typer.Option(7),
) -> None:
    """The story end to end on the embedded default: the stand-ins (faults switched on) ingested three times into
    a fresh SQLite database (the second finds nothing new, the third the late arrivals), leads scored and
    qualified, a few explained, and the health check."""
    from handoff.demo import run_demo

    _enough_activities(people, activities)
    raise typer.Exit(run_demo(console, people=people, activities=activities, seed=seed))


if __name__ == "__main__":
    app()
