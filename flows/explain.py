"""The explain-leads flow: leads explained from the Prefect UI, for whoever does not use the command line."""

from __future__ import annotations

from prefect import flow
from prefect.logging import get_run_logger

from config.settings import get_settings
from store.engine import get_engine
from tasks.explain import LeadNotFound, explain_lead
from tasks.reporting import publish_explanation
from tasks.store import check_database


@flow(name="explain-leads",
      description="A lead's score point by point, its fit and its stages, as an artifact per lead.")
def explain_leads(emails: list[str]) -> list[dict]:
    """Each address's lead explained as `handoff explain` shows it: the score contribution by contribution (adding
    up to it exactly), the fit grade and the stage history, published as the artifact `lead-<id>-explanation`
    (its versions are the lead's explanations over time). Read only. Every lead found is published; then an
    address that is not one, or names no lead, fails the run with each listed."""
    check_database()
    log = get_run_logger()
    engine = get_engine(get_settings().resolved_database_url())
    explained, problems = [], []
    for email in dict.fromkeys(emails):
        try:
            data = explain_lead(engine, email)
        except LeadNotFound as exc:
            problems.append(str(exc))
            continue
        if any(done["lead_id"] == data["lead_id"] for done in explained):
            continue  # another spelling of an address already explained
        publish_explanation(data)
        explained.append(data)
        found = f"{data['stage']}, score {data['score']}, fit {data['fit']['grade']}" if data["scored"] else None
        log.info("%s (lead %s): %s", data["email"], data["lead_id"], found or "not scored yet")
    if problems or not explained:
        raise LeadNotFound("\n".join(f"- {p}" for p in problems) or "no e-mail address given")
    return explained
