"""Plain-text views of the store for people at a terminal."""

from __future__ import annotations

from datetime import datetime

from config.settings import get_settings
from store.engine import get_engine
from store.reports import store_figures
from tasks.markdown import cell


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


def stage_overview() -> str:
    """Leads now at each lifecycle stage. Shares between today's counts would mislead (an MQL worked by sales is an
    SQL now), so conversions are left to the funnel report, which counts who entered each stage."""
    from store.scoring import stage_counts

    engine = get_engine(get_settings().resolved_database_url())
    with engine.connect() as conn:
        counts = stage_counts(conn)
    lines = ["| stage | leads now |", "|---|---:|"]
    lines += [f"| {stage} | {counts.get(stage, 0)} |" for stage in STAGE_ORDER]
    return "\n".join(lines) + "\n\nConversions between stages, month by month: `handoff report funnel`.\n"


_EVENT_MEANINGS = {"waiting": "never sent yet", "sent": "sent, not yet seen on the Prefect server",
                   "confirmed": "held by the Prefect server", "given up": "never seen after the most sends allowed"}


def outbox_overview(engine, now: datetime) -> str:
    """The outbox's events by state and kind, and the first given up, with how to send them again."""
    from store.outbox import STATES, given_up_events, outbox_states

    settings = get_settings()
    policy = (now, settings.event_resend_after(), settings.event_max_sends)
    with engine.connect() as conn:
        states = outbox_states(conn, *policy)
        lost = given_up_events(conn, *policy)
    lines = ["| state | meaning | events | by kind |", "|---|---|---:|---|"]
    for state in STATES:
        meaning = _EVENT_MEANINGS[state]
        kinds = states.get(state, {})
        by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
        lines.append(f"| {state} | {meaning} | {sum(kinds.values())} | {by_kind} |")
    if lost:
        lines += ["", f"Given up after {settings.event_max_sends} sends (`handoff events retry` sends them again "
                      "with the next run):", "", "| event id | lead | kind | occurred | sends | last sent |",
                  "|---|---:|---|---|---:|---|"]
        lines += [f"| {e['event_id']} | {e['lead_id']} | {e['kind']} | {e['occurred_at']:%Y-%m-%d %H:%M} | "
                  f"{e['sends']} | {e['sent_at']:%Y-%m-%d %H:%M} |" for e in lost]
        more = sum(states.get("given up", {}).values()) - len(lost)
        if more:
            lines.append(f"| … {more} more | | | | | |")
    return "\n".join(lines) + "\n"


def quarantine_overview(engine, *, source: str | None, since: datetime | None, limit: int) -> str:
    """The quarantine by source and kind of reason, then the latest records."""
    from store.reports import latest_quarantined, quarantine_groups
    from tasks.markdown import cell

    groups = quarantine_groups(engine, source=source, since=since)
    scope = "".join([f" from {source}" if source else "", f" since {since:%Y-%m-%d %H:%M} UTC" if since else ""])
    total = sum(g.records for g in groups)
    if not total:
        return f"No record quarantined{scope}.\n"
    lines = [f"**{total}** record{'' if total == 1 else 's'} quarantined{scope}, each kept whole with its reason "
             "(`handoff quarantine show ID` prints one).", "",
             "| source | reason | records | first | last | latest id |", "|---|---|---:|---|---|---:|"]
    lines += [f"| {cell(g.source)} | {cell(g.reason)} | {g.records} | {g.first:%Y-%m-%d %H:%M} | {g.last:%Y-%m-%d %H:%M} | "
              f"{g.example_id} |" for g in groups]
    latest = latest_quarantined(engine, source=source, since=since, limit=limit)
    if latest:
        lines += ["", f"The latest {len(latest)}:", "", "| id | source | external id | reason | quarantined |",
                  "|---:|---|---|---|---|"]
        lines += [f"| {r['id']} | {cell(r['source'])} | {cell(r['external_id']) or '—'} | {cell(r['reason'])} | "
                  f"{r['quarantined_at']:%Y-%m-%d %H:%M} |" for r in latest]
    return "\n".join(lines) + "\n"


def crm_failures_overview(engine, limit: int | None) -> str:
    """The dead-lettered CRM writes, newest first, and how to write them again."""
    from store.crm import dead_letters

    with engine.connect() as conn:
        rows = dead_letters(conn, limit)
    if not rows:
        return "No CRM write is dead-lettered.\n"
    lines = [f"**{len(rows)}** record{'' if len(rows) == 1 else 's'} the sync gave up writing "
             "(`handoff crm retry` writes them again):", "",
             "| lead | e-mail | record | error | attempts | given up |", "|---:|---|---|---|---:|---|"]
    lines += [f"| {r['lead_id']} | {cell(r['email'])} | {r['object']} {r['crm_id'] or '(new)'} | "
              f"{cell((r['error_code'] or '') + ': ' + (r['error'] or ''))} | {r['attempts']} | "
              f"{r['dead_at']:%Y-%m-%d %H:%M} |" for r in rows]
    return "\n".join(lines) + "\n"


def crm_leads_overview(engine, client, limit: int = 6) -> str:
    """Some of the CRM's leads that carry Handoff's fields, highest score first, as a rep sees them there: who,
    score, fit, stage, owner and the moment that last moved the score."""
    from store.crm import user_names

    records = client.call("check", lambda sf: sf.query(
        "SELECT Name, Email, OwnerId, Handoff_Score__c, Handoff_Fit_Grade__c, Handoff_Stage__c, "
        "Handoff_Last_Interesting_Moment__c FROM Lead WHERE Handoff_Id__c != null AND IsConverted = false "
        f"ORDER BY Handoff_Score__c DESC LIMIT {int(limit)}"))["records"]
    with engine.connect() as conn:
        owners = user_names(conn, [r["OwnerId"] for r in records if r.get("OwnerId")])
    lines = ["| lead | e-mail | score | fit | stage | owner | last interesting moment |", "|---|---|---:|---|---|---|---|"]
    lines += [f"| {cell(r['Name'])} | {cell(r['Email'])} | {r['Handoff_Score__c'] or 0:.0f} | {r['Handoff_Fit_Grade__c']} | "
              f"{r['Handoff_Stage__c']} | {cell(owners.get(r['OwnerId'], r['OwnerId']))} | "
              f"{cell(r['Handoff_Last_Interesting_Moment__c'] or '—')} |" for r in records]
    return "\n".join(lines) + "\n"


def sales_outcome_overview(engine, since: datetime, examples: int = 6) -> str:
    """What sales did since `since`, as the sync brought it back: stage moves by kind with a few examples, and the
    calls, e-mails and meetings logged on leads."""
    from sqlalchemy import text

    with engine.connect() as conn:
        moves = conn.execute(text(
            "SELECT c.to_stage, l.email, c.from_stage, c.reason FROM stage_change c JOIN lead l ON l.id = c.lead_id "
            "WHERE c.changed_at >= :since AND c.to_stage IN ('sql', 'opportunity', 'customer', 'recycled', "
            "'disqualified') ORDER BY c.id"), {"since": since}).all()
        contacts = conn.execute(text(
            "SELECT kind, COUNT(*) FROM crm_activity WHERE lead_id IS NOT NULL AND NOT deleted GROUP BY kind "
            "ORDER BY kind")).all()
    counts: dict[str, int] = {}
    for stage, *_ in moves:
        counts[stage] = counts.get(stage, 0) + 1
    lines = ["| lifecycle moves from the CRM | leads |", "|---|---:|", *[f"| to {s} | {n} |" for s, n in counts.items()],
             "", "| logged on leads | count |", "|---|---:|", *[f"| {kind} | {n} |" for kind, n in contacts]]
    if moves:
        lines += ["", "| lead | from | to | why |", "|---|---|---|---|"]
        lines += [f"| {cell(email)} | {old} | {new} | {cell(reason)} |" for new, email, old, reason in moves[-examples:]]
    return "\n".join(lines) + "\n"


def sla_steps_table(runs) -> str:
    """One line per SLA run: when, and the steps it took."""
    kinds = ("met", "contacted_late", "remind", "breach", "reassign", "recycle")
    lines = ["| SLA run at | contacted in time | contacted late | reminded | breached (escalated) | reassigned | "
             "recycled |", "|---|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        steps = run.steps
        if not steps:
            continue
        cells = [str(steps.get(kind, 0)) for kind in kinds]
        cells[3] = f"{steps.get('breach', 0)} ({run.escalated})"
        lines.append(f"| {run.now:%a %d %b %H:%M} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def funnel_of(engine, now: datetime, start: str | None = None, end: str | None = None, by: str | None = None):
    """The funnel report (domain.funnel.FunnelReport) from `start` to `end` (months or days; by default the months of
    the funnel file up to `now`), by source, channel or campaign when `by` says, with the configured targets."""
    from config.funnel import load_funnel
    from config.teams import load_teams
    from tasks.funnel import read_funnel

    settings = get_settings()
    return read_funnel(engine, load_funnel(settings.funnel_file), load_teams(settings.teams_file), now, start, end, by)


def funnel_against_targets(engine, now: datetime) -> str:
    """The funnel of the configured months up to `now` against the targets, month by month, as markdown (the
    funnel-report flow's page without its chart)."""
    from tasks.funnel import funnel_markdown

    return funnel_markdown(funnel_of(engine, now))
