"""The route-leads run summary as a Prefect artifact: who got which lead by which rule, and what the CRM took."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.alerts import AlertSummary, alerts_markdown
from tasks.calendar_feeds import FeedsSummary
from tasks.crm import CrmSyncSummary
from tasks.markdown import cell
from tasks.routing import RoutingSummary

SHOWN = 20


def routing_markdown(summary: RoutingSummary, crm: CrmSyncSummary | None = None) -> str:
    lines = [f"# Routing at {summary.now:%Y-%m-%d %H:%M:%S} UTC", ""]
    if not summary.decisions:
        return "\n".join(lines + ["No sales-ready lead was waiting for an owner."]) + "\n"
    lines += [f"**{summary.routed}** leads routed to reps, **{summary.kept}** kept by the rep who owns them "
              f"(told instead), **{summary.to_queue}** to a queue.", "",
              "| rule | leads |", "|---|---:|", *[f"| {cell(rule)} | {n} |" for rule, n in summary.by_rule.items()],
              "", "| owner | leads |", "|---|---:|", *[f"| {cell(owner)} | {n} |" for owner, n in summary.by_owner.items()]]
    lines += ["", "| lead | owner | rule | SLA due |", "|---|---|---|---|"]
    lines += [f"| {cell(d.email)} | {cell(d.owner)} | {cell(d.rule)}{' (kept)' if d.kind == 'kept' else ''} | "
              f"{d.due or '—'} |" for d in summary.decisions[:SHOWN]]
    if len(summary.decisions) > SHOWN:
        lines.append(f"\n… and {len(summary.decisions) - SHOWN} more (`handoff explain EMAIL` shows each one's path).")
    if crm is not None and crm.enabled:
        push = crm.push
        lines += ["", f"The CRM took the owners: {push.updated} records updated, {push.created} created"
                      + (f", {sum(push.failed.values())} failed (`handoff crm failures`)" if push.failed else "") + "."]
    if summary.state_conflicts:
        lines += ["", f"Another run saved routing's state meanwhile {summary.state_conflicts} time(s): decided again."]
    return "\n".join(lines) + "\n"


def feeds_markdown(feeds: FeedsSummary | None) -> str:
    if feeds is None or not feeds.feeds:
        return ""
    lines = ["", f"Out-of-office calendar feeds: {feeds.read} of {feeds.feeds} read this run; {feeds.absences} "
                 "absences from them count."]
    if feeds.failing:
        lines += ["", "| rep | feed not read |", "|---|---|"]
        lines += [f"| {cell(rep)} | {cell(error)} |" for rep, error in sorted(feeds.failing.items())]
    return "\n".join(lines) + "\n"


@task(cache_policy=NO_CACHE)
def publish_routing_summary(summary: RoutingSummary, crm: CrmSyncSummary | None = None,
                            alerts: AlertSummary | None = None, feeds: FeedsSummary | None = None) -> str:
    markdown = routing_markdown(summary, crm) + alerts_markdown(alerts) + feeds_markdown(feeds)
    create_markdown_artifact(key="route-leads", markdown=markdown, description="Who got which lead, by which rule")
    return markdown
