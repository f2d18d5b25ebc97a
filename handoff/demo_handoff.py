"""The demo's second half, the handoff itself: the MQLs routed to reps in the Salesforce stand-in and the reps
e-mailed (read back from a local SMTP server), then days on the stand-in's clock: reps call or do not, and the
SLA flow reminds, escalates, reassigns and recycles; what sales did comes back as lifecycle stages."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from rich.console import Console
from rich.markdown import Markdown

SLA_DAYS = 7
SLA_EVERY_HOURS = 12
# Reps a little busier than the stand-in's usual, so a week shows every step of the SLA
DEMO_REP_RATES = {"first_touch_same_day": 0.45, "first_touch_late": 0.2}


def hand_over(console: Console, box, engine, mailbox) -> None:
    import requests

    from flows.crm_sync import crm_sync
    from flows.routing import route_leads

    requests.post(box.url("salesforce") + "/_sandbox/salesforce/rates", json=DEMO_REP_RATES, timeout=10)
    console.rule("Routing: each sales-ready lead to its rep, the owner written to Salesforce, the rep e-mailed")
    routed = route_leads(now=box.world.now)
    console.print(Markdown(_shortened(routed.markdown, 10)))
    _inbox(console, mailbox, routed)
    console.rule("Sync with Salesforce: score, fit, stage and the last interesting moment on every record")
    synced = crm_sync(now=box.world.now)
    console.print(Markdown(_crm_lines(synced)))
    _leads_in_salesforce(console, engine)
    since = box.world.now
    _sla_days(console, box, engine, mailbox)
    console.rule(f"What sales did in those {SLA_DAYS} days, back in Handoff")
    from handoff.report import stage_overview, sales_outcome_overview

    console.print(Markdown(sales_outcome_overview(engine, since) + "\n" + stage_overview()))


def _shortened(markdown: str, rows: int) -> str:
    lines = markdown.splitlines()
    table = [n for n, line in enumerate(lines) if line.startswith("| lead |")]
    if not table:
        return markdown
    start = table[0]
    end = next((n for n in range(start + 2, len(lines)) if not lines[n].startswith("|")), len(lines))
    if end - start - 2 <= rows:
        return markdown
    kept = lines[:start + 2 + rows] + [f"| … | {end - start - 2 - rows} more | | |"] + lines[end:]
    return "\n".join(kept)


def _inbox(console: Console, mailbox, routed) -> None:
    mails = [m for m in mailbox.mails if m.subject.startswith("New lead")]
    console.print(f"The local SMTP server received {len(mailbox.mails)} e-mails: {len(mails)} new leads for "
                  f"{len({r for m in mails for r in m.recipients})} reps. One of them, as it arrived:")
    if mails:
        mail = mails[0]
        body = "\n".join(mail.text.splitlines()[:22])
        console.print(f"To: {', '.join(mail.recipients)}\nSubject: {mail.subject}\n\n{body}", markup=False,
                      highlight=False)


def _crm_lines(synced) -> str:
    push, pull = synced.push, synced.pull
    return (f"Pulled {pull.pulled.get('people', 0)} people records ({pull.linked} of Handoff's leads); pushed "
            f"{push.updated} updates and {push.created} new records in {sum(synced.calls.values())} API calls; "
            f"{sum(push.failed.values())} failed.\n")


def _leads_in_salesforce(console: Console, engine) -> None:
    from config.crm import load_crm_config
    from config.settings import get_settings
    from connectors.crm.salesforce import SalesforceClient
    from handoff.report import crm_leads_overview
    from tasks.secrets import resolve_credentials

    config = load_crm_config(get_settings().crm_file)
    client = SalesforceClient(config, resolve_credentials(config.connection.credentials))
    try:
        console.print(Markdown("In the Salesforce stand-in, owned by the rep routing chose:\n\n"
                               + crm_leads_overview(engine, client)))
    finally:
        client.close()


def _sla_days(console: Console, box, engine, mailbox) -> None:
    """The SLA flow every twelve hours on the stand-in's clock; a line a run, then one message of each kind."""
    from flows.sla import sla_check
    from handoff.report import sla_steps_table
    from tasks.sla_report import sla_measures_markdown
    from tasks.routing import load_rules
    from config.settings import get_settings

    console.rule(f"The SLA clock: {SLA_DAYS} days on the stand-in's clock, the SLA flow every {SLA_EVERY_HOURS} hours")
    before = len(mailbox.mails)
    runs = []
    for _ in range(SLA_DAYS * 24 // SLA_EVERY_HOURS):
        box.world.advance(SLA_EVERY_HOURS)
        runs.append(sla_check(now=box.world.now))
    console.print(Markdown(sla_steps_table(runs)))
    sent = mailbox.mails[before:]
    kinds = Counter(m.header("X-Handoff-Notification").split(":")[0] for m in sent if m.header("X-Handoff-Notification"))
    console.print(f"E-mails sent meanwhile: {', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items()))}.")
    for prefix in ("sla-escalated", "recycled"):
        mail = next((m for m in sent if (m.header("X-Handoff-Notification") or "").startswith(prefix)), None)
        if mail:
            body = "\n".join(mail.text.splitlines()[:8])
            console.print(f"\nTo: {', '.join(mail.recipients)}\nSubject: {mail.subject}\n\n{body}", markup=False,
                          highlight=False)
    console.print(Markdown("\n**The response SLA, by team**\n\n" + _by_team(sla_measures_markdown(
        engine, load_rules(get_settings()).teams, box.world.now + timedelta(seconds=1)))))


def _by_team(markdown: str) -> str:
    """The overall and per-team tables of the measures (the per-rep table is `handoff report sla`)."""
    return markdown.split("**By rep**")[0]
