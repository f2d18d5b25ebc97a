"""The CRM sync's Prefect tasks: connect, pull, push, and the run summary with its alerts."""

from __future__ import annotations

from datetime import datetime
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger

from config.crm import CrmConfig, load_crm_config
from config.rulebook import load_rulebook
from config.settings import get_settings
from connectors.crm.base import CrmClient
from store.engine import get_engine
from tasks import crm
from tasks.crm import CrmSyncSummary, PullSummary, PushSummary
from tasks.markdown import cell
from tasks.secrets import resolve_credentials


def _engine():
    return get_engine(get_settings().resolved_database_url())


@task(cache_policy=NO_CACHE)
def crm_settings() -> CrmConfig:
    return load_crm_config(get_settings().crm_file)


def _transient(task, task_run, state) -> bool:
    """Retry a sign-in that failed on the way (network, 5xx), not one the org refused: a retry cannot fix it."""
    from connectors.http import PermanentError

    try:
        state.result()
    except PermanentError:
        return False
    except Exception:  # noqa: BLE001 - anything else may pass
        return True
    return True


@task(retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=_transient, cache_policy=NO_CACHE)
def connect_crm(config: CrmConfig) -> CrmClient:
    """A signed-in client (a transient failure to sign in is retried; refused credentials are not)."""
    from connectors.crm.salesforce import SalesforceClient

    client = SalesforceClient(config, resolve_credentials(config.connection.credentials))
    client.authenticate()
    return client


@task(cache_policy=NO_CACHE)
def pull_from_crm(client: CrmClient, config: CrmConfig, now: datetime, run_id: str | None) -> PullSummary:
    rulebook = load_rulebook(get_settings().rulebook_dir)
    summary = crm.pull(_engine(), client, config, now=now, run_id=run_id, rulebook=rulebook)
    for refused in summary.refused_moves:
        get_run_logger().warning("a move the CRM reported was not made: %s", refused)
    return summary


@task(cache_policy=NO_CACHE)
def pull_leads_from_crm(client: CrmClient, config: CrmConfig, lead_ids: list[int], emails: list[str], now: datetime,
                        run_id: str | None) -> PullSummary:
    rulebook = load_rulebook(get_settings().rulebook_dir)
    return crm.pull_people(_engine(), client, config, lead_ids, emails, now=now, run_id=run_id, rulebook=rulebook)


@task(cache_policy=NO_CACHE)
def push_to_crm(client: CrmClient, config: CrmConfig, now: datetime, lead_ids: list[int] | None = None,
                force: bool = False) -> PushSummary:
    return crm.push(_engine(), client, config, now=now, lead_ids=lead_ids, force=force)


@task(cache_policy=NO_CACHE)
def leads_to_resync(emails: list[str]) -> tuple[list[int], list[str]]:
    """The leads these addresses name, and the addresses that name none."""
    from domain.activity import normalize_email
    from store.scoring import leads_by_email

    addresses = [normalize_email(e) or e for e in emails]
    with _engine().connect() as conn:
        found = leads_by_email(conn, [a for a in addresses if a])
    return sorted(set(found.values())), [a for a in addresses if a not in found]


@task(cache_policy=NO_CACHE)
def close_crm(client: CrmClient) -> None:
    client.close()


def crm_markdown(summary: CrmSyncSummary) -> str:
    if not summary.enabled:
        return ("# CRM sync\n\nThe sync is off (`enabled` in config/crm.yaml, `HANDOFF_SALESFORCE_ENABLED`): nothing "
                "was read or written.\n")
    pull, push = summary.pull, summary.push
    left = summary.allowance_left
    lines = [f"# CRM sync at {summary.now:%Y-%m-%d %H:%M:%S} UTC", "",
             "| | |", "|---|---:|",
             *[f"| pulled: {kind} | {n:,} |" for kind, n in pull.pulled.items()],
             f"| records of Handoff's leads | {pull.linked:,} |",
             f"| records of people Handoff does not know | {pull.not_ours:,} |",
             f"| merged records followed / deleted records released | {pull.merged:,} / {pull.released:,} |",
             f"| activities logged on leads | {pull.activities_on_leads:,} |",
             f"| quarantined | {pull.quarantined:,} |",
             f"| records looked at to push | {push.considered:,} |",
             f"| already up to date | {push.unchanged:,} |",
             f"| updated / created / linked | {push.updated:,} / {push.created:,} / {push.linked:,} |",
             f"| writes of a run cut short found taken | {push.reconciled:,} |",
             f"| failed / dead-lettered | {sum(push.failed.values()):,} / {push.dead_lettered:,} |",
             f"| API calls | {sum(summary.calls.values()):,} |",
             f"| daily allowance left | {'—' if left is None else f'{left:.0%} ({summary.api_used:,} of {summary.api_allowed:,} used)'} |"]
    if pull.moves:
        lines += ["", "## Stages sales moved", "", "| to | leads |", "|---|---:|",
                  *[f"| {stage} | {n:,} |" for stage, n in pull.moves.items()]]
    if pull.refused_moves:
        lines += ["", "## Moves the lifecycle did not allow", "", *[f"- {cell(m)}" for m in pull.refused_moves[:20]]]
    if push.failed:
        lines += ["", "## Failed writes by error", "", "| error | records |", "|---|---:|",
                  *[f"| {cell(code)} | {n:,} |" for code, n in sorted(push.failed.items())],
                  "", "`handoff crm failures` lists the dead-lettered records; `handoff crm retry` writes them again."]
    if push.stopped_for_budget:
        lines += ["", f"**Stopped for the API budget**: {push.left_unsent:,} writes wait for a later run."]
    return "\n".join(lines) + "\n"


@task(cache_policy=NO_CACHE)
def publish_crm_summary(summary: CrmSyncSummary, key: str = "crm-sync") -> str:
    """The run summary as an artifact, and the events an automation alerts on: writes that failed, an API budget
    running low."""
    markdown = crm_markdown(summary)
    create_markdown_artifact(key=key, markdown=markdown, description="What the CRM sync read and wrote")
    resource = {"prefect.resource.id": "handoff.crm.salesforce", "prefect.resource.name": "salesforce"}
    push = summary.push
    if push.failed:
        emit_event(event="handoff.crm.push-failed", resource=resource,
                   payload={"failed": push.failed, "dead_lettered": push.dead_lettered, "run_id": summary.run_id})
    left = summary.allowance_left
    if push.stopped_for_budget or (left is not None and left < get_budget_floor()):
        emit_event(event="handoff.crm.budget-low", resource=resource,
                   payload={"used": summary.api_used, "allowed": summary.api_allowed, "left_unsent": push.left_unsent,
                            "run_id": summary.run_id})
    return markdown


def get_budget_floor() -> float:
    return load_crm_config(get_settings().crm_file).push.budget_floor


def summarize(summary: CrmSyncSummary, client: CrmClient) -> CrmSyncSummary:
    usage = client.usage
    summary.calls = dict(client.calls)
    if usage is not None:
        summary.api_used, summary.api_allowed = usage.used, usage.allowed
    return summary

