"""The health-check flow: is the line moving? Ingest, scoring, the lead events, the CRM sync, routing, the SLA and
notifications judged against how far behind each may fall (domain/health.py), published as the artifact
`handoff-health`. A run that finds a problem ends Failed, with the problems in its message, so Prefect's
notifications and automations can page someone."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed

from tasks.health import check_health, headline, health_json, publish_health


@flow(name="health-check", description="Is the line moving? Ingest to notifications, each against its lag.")
def health_check(now: datetime | None = None):
    """Reads only. Completed when nothing needs a person; Failed, naming each problem, when something does (the
    run's result holds the whole report either way, as `handoff status --json` prints it)."""
    now = now or datetime.now(timezone.utc)
    facts, findings = check_health(now)
    publish_health(facts, findings)
    log = get_run_logger()
    for finding in findings:
        (log.warning if finding.level == "problem" else log.info)("%s: %s", finding.area, finding.text)
    report = health_json(facts, findings)
    problems = [f"{f.area}: {f.text}" for f in findings if f.level == "problem"]
    if problems:
        return Failed(message=f"{headline(findings)} " + " ".join(f"({n}) {text}" for n, text in
                                                                 enumerate(problems, start=1)), data=report)
    return Completed(message=headline(findings), data=report)
