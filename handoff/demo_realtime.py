"""The demo's last act: a demo request posted by HubSpot's webhook and handed to a rep in seconds, a rep alerted
when a lead they own clicks a campaign e-mail, then the funnel against the targets both teams agreed on."""

from __future__ import annotations

import time

import requests
from rich.console import Console
from rich.markdown import Markdown
from sqlalchemy import text

WAIT_SECONDS = 60


def in_real_time(console: Console, box, engine, mailbox, port: int) -> None:
    from config.settings import get_settings
    from handoff.serve import start_receiving

    console.rule("Real time: a demo request by webhook, handed to a rep in seconds")
    receiving = start_receiving(get_settings(), port=port, clock=lambda: box.world.now)
    try:
        _hand_raise(console, box, engine, mailbox)
        _owner_alert(console, box, engine, mailbox)
    finally:
        receiving.stop()


def _hand_raise(console: Console, box, engine, mailbox) -> None:
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT l.email FROM lead l JOIN lead_state s ON s.lead_id = l.id WHERE s.stage = 'lead' AND "
            "s.fit_grade = 'A' AND EXISTS (SELECT 1 FROM activity a WHERE a.lead_id = l.id AND a.source = 'hubspot') "
            "ORDER BY s.score DESC, l.id LIMIT 1")).first()
    if found is None:
        console.print("No good-fit lead left who is not sales-ready yet.")
        return
    email = found[0]
    started, seen = time.monotonic(), len(mailbox.mails)
    _act(box, "hubspot", email, "demo_request")
    mail = _wait_for_mail(mailbox, seen, lambda m: m.subject.startswith(("New lead", "Your lead is sales-ready"))
                          and f"<{email}>" in m.text)
    owner = _owner_in_salesforce(engine, email)
    if mail is None:
        console.print(f"{email} asked for a demo; no rep was e-mailed within {WAIT_SECONDS} s (see the run log).")
        return
    console.print(f"{email} asked for a demo in HubSpot, which posted its signed webhook to `handoff serve`'s "
                  f"receiver. The hand-off-now flow scored the lead, routed it and wrote its owner to Salesforce "
                  f"({owner}), and the rep's e-mail arrived {time.monotonic() - started:.1f} s after the request:")
    console.print(f"  To: {', '.join(mail.recipients)}\n  Subject: {mail.subject}")


def _owner_alert(console: Console, box, engine, mailbox) -> None:
    from config.notifications import load_notifications
    from config.settings import get_settings

    alerts = load_notifications(get_settings().notifications_file).owner_alerts
    console.rule("Owner alerts: a rep told when a lead they own engages with a campaign")
    # Mautic posts a click in a campaign e-mail as it happens (HubSpot's webhooks carry form submissions only);
    # a lead alerted within the quiet period would, rightly, stay quiet.
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT l.email FROM lead l JOIN lead_state s ON s.lead_id = l.id JOIN assignment g ON g.lead_id = l.id "
            "AND g.superseded_at IS NULL AND g.written_at IS NOT NULL AND g.owner_email IS NOT NULL "
            "LEFT JOIN owner_alert_lead o ON o.lead_id = l.id WHERE s.stage IN ('sql', 'mql') "
            "AND o.engaged_alert_at IS NULL AND EXISTS (SELECT 1 FROM activity a WHERE a.lead_id = l.id AND "
            "a.source = 'mautic') ORDER BY l.email LIMIT 1")).first()
    if found is None or not alerts.enabled:
        console.print("No lead owned by a rep to click a campaign e-mail.")
        return
    email = found[0]
    seen = len(mailbox.mails)
    _act(box, "mautic", email, "email_click")
    mail = _wait_for_mail(mailbox, seen, lambda m: m.subject.startswith("Your lead") and f"<{email}>" in m.text)
    if mail is None:
        console.print(f"{email} clicked a campaign e-mail; no alert arrived within {WAIT_SECONDS} s.")
        return
    console.print(f"{email}, whose rep already works it, clicked a campaign e-mail in Mautic. Its owner was told "
                  f"at once (and not again for {alerts.quiet_hours:g} hours):")
    body = "\n".join(f"  {line}" for line in mail.text.splitlines()[:6])
    console.print(f"  To: {', '.join(mail.recipients)}\n  Subject: {mail.subject}\n{body}")


def funnel_against_targets(console: Console, engine, now, chart_file) -> None:
    from handoff.report import funnel_against_targets as funnel_page, funnel_of
    from tasks.funnel_chart import funnel_chart

    console.rule("The funnel against the targets both teams agreed on")
    console.print(Markdown(funnel_page(engine, now)))
    chart_file.write_bytes(funnel_chart(funnel_of(engine, now)))
    console.print(f"The chart: {chart_file} (the funnel-report flow embeds it in its artifact).")


def _act(box, tool: str, email: str, kind: str) -> None:
    answer = requests.post(f"{box.url(tool)}/_sandbox/webhooks/activity", json={"email": email, "type": kind},
                           timeout=30)
    answer.raise_for_status()


def _wait_for_mail(mailbox, seen: int, wanted):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for mail in list(mailbox.mails)[seen:]:
            if wanted(mail):
                return mail
        time.sleep(0.1)
    return None


def _owner_in_salesforce(engine, email: str) -> str:
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT COALESCE(u.name, g.owner_name) FROM lead l JOIN assignment g ON g.lead_id = l.id AND "
            "g.superseded_at IS NULL LEFT JOIN crm_user u ON u.crm_id = g.owner_crm_id WHERE l.email = :email"),
            {"email": email}).first()
    return f"owner {row[0]}" if row and row[0] else "owner not recorded"
