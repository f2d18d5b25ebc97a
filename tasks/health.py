"""The health check's facts gathered (store, sources file, rulebook) and its report, for the CLI
(`handoff status`) and the health-check flow's artifact."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic_core import to_jsonable_python

from config.loading import ConfigError
from config.rulebook import load_rulebook
from config.settings import Settings, get_settings
from config.sources import load_sources
from domain.health import Finding, HealthFacts, HealthPolicy, RulebookFacts, ago, assess
from store import health as store
from store import outbox
from store.engine import get_engine
from store.migrate import current, head
from store.reports import lead_count
from tasks.markdown import cell

def policy_of(settings: Settings) -> HealthPolicy:
    return HealthPolicy(scoring_lag=timedelta(minutes=settings.health_scoring_lag_minutes),
                        decay_every=timedelta(hours=settings.decay_every_hours),
                        ingest_lag=timedelta(minutes=settings.health_ingest_lag_minutes))


def gather_facts(now: datetime, settings: Settings | None = None) -> HealthFacts:
    """Everything the health check judges, read at `now`. A database this code cannot read yet (never migrated,
    or behind) gives its revision and nothing more."""
    settings = settings or get_settings()
    url = settings.resolved_database_url()
    schema, schema_head = current(url), head()
    if schema != schema_head:
        return HealthFacts(now=now, schema=schema, schema_head=schema_head)
    enabled, sources_problem = [], None
    try:
        enabled = [source.name for source in load_sources(settings.sources_file)]
    except ConfigError as error:
        sources_problem = str(error)
    configured, rulebook_problem = None, None
    try:
        configured = load_rulebook(settings.rulebook_dir).digest
    except ConfigError as error:
        rulebook_problem = str(error)
    resend = (now, settings.event_resend_after(), settings.event_max_sends)
    with get_engine(url).connect() as conn:
        sources = store.source_facts(conn, now, enabled)
        in_force = store.version_in_force(conn)
        waiting, oldest_mark = store.scoring_backlog(conn)
        events = {state: sum(kinds.values()) for state, kinds in outbox.outbox_states(conn, *resend).items()}
        oldest_unsent = outbox.oldest_waiting(conn)
        queues = store.open_queues(conn)
        leads = lead_count(conn)
    version_id, digest, since, scored_at, decayed_at = in_force or (None, None, None, None, None)
    return HealthFacts(
        now=now, schema=schema, schema_head=schema_head, sources=tuple(sources), sources_problem=sources_problem,
        leads=leads, rulebook=RulebookFacts(version_id=version_id, digest=digest, since=since,
                                            configured_digest=configured, configured_problem=rulebook_problem),
        scored_at=scored_at, decayed_at=decayed_at, waiting=waiting, oldest_mark=oldest_mark, events=events,
        oldest_unsent=oldest_unsent, queues=tuple(queues))


def _when(now: datetime, moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC ({ago(now, moment)})"


def headline(findings: list[Finding]) -> str:
    problems = sum(f.level == "problem" for f in findings)
    if not problems:
        return "All clear: ingest, scoring and the lead events are keeping up."
    return f"{problems} problem{'' if problems == 1 else 's'} to look at."


def health_markdown(facts: HealthFacts, findings: list[Finding]) -> str:
    now = facts.now
    lines = [f"# Handoff health at {now:%Y-%m-%d %H:%M:%S} UTC", "", f"**{headline(findings)}**", ""]
    if findings:
        lines += ["| | area | finding |", "|---|---|---|"]
        lines += [f"| {'PROBLEM' if f.level == 'problem' else 'note'} | {f.area} | {cell(f.text)} |" for f in findings]
        lines.append("")
    if facts.schema != facts.schema_head:
        return "\n".join(lines)
    lines += ["## Ingest", ""]
    if facts.sources:
        lines += ["| source | enabled | watermark | last read finished | last read failed | quarantined, last 24 h |",
                  "|---|---|---|---|---|---:|"]
        lines += [f"| {s.name} | {'yes' if s.enabled else 'no'} | {_when(now, s.watermark)} | {_when(now, s.read_at)} | "
                  f"{_when(now, s.failed_at)}{': ' + cell(s.error) if s.failing else ''} | {s.quarantined_today} |"
                  for s in facts.sources]
    else:
        lines.append("No source is enabled in the sources file, and none was read before.")
    r = facts.rulebook
    in_force = f"version {r.version_id} (`{r.digest[:12]}`), since {_when(now, r.since)}" if r.digest else "none yet"
    configured = ("does not load" if r.configured_problem else "the same" if r.configured_digest == r.digest
                  else f"`{r.configured_digest[:12]}`: the next scoring run "
                       f"{'rescores every lead with it' if r.digest else 'scores with it'}")
    waiting = f"{facts.waiting:,}" + (f" (the longest marked {ago(now, facts.oldest_mark)})" if facts.waiting else "")
    lines += ["", "## Scoring", "", "| | |", "|---|---|",
              f"| leads | {facts.leads:,} |",
              f"| rulebook in force | {in_force} |",
              f"| configured rulebook | {configured} |",
              f"| last scoring run | {_when(now, facts.scored_at)} |",
              f"| last pass re-decaying every lead | {_when(now, facts.decayed_at)} |",
              f"| leads waiting to be scored | {waiting} |"]
    lines += ["", "## Lead events", "", "| " + " | ".join(outbox.STATES) + " |", "|" + "---:|" * len(outbox.STATES),
              "| " + " | ".join(f"{facts.events.get(state, 0):,}" for state in outbox.STATES) + " |"]
    if facts.queues:
        lines += ["", "## Queued for the next rooms", "", "| queue | open | oldest |", "|---|---:|---|"]
        lines += [f"| {q.queue} | {q.open:,} | {_when(now, q.oldest)} |" for q in facts.queues]
    return "\n".join(lines) + "\n"


def health_json(facts: HealthFacts, findings: list[Finding]) -> dict:
    """The same report for machines: findings, and the facts they were judged on (times in ISO-8601)."""
    return {"healthy": not any(f.level == "problem" for f in findings),
            "findings": to_jsonable_python(findings), "facts": to_jsonable_python(facts)}


@task(cache_policy=NO_CACHE)
def check_health(now: datetime) -> tuple[HealthFacts, list[Finding]]:
    facts = gather_facts(now)
    return facts, assess(facts, policy_of(get_settings()))


@task(cache_policy=NO_CACHE)
def publish_health(facts: HealthFacts, findings: list[Finding]) -> str:
    markdown = health_markdown(facts, findings)
    create_markdown_artifact(key="handoff-health", markdown=markdown, description=headline(findings))
    return markdown
