"""Notifications to reps and managers, really delivered: e-mails read back from a local SMTP server and posts from a
local webhook receiver; each sent once whatever fails, crashes or runs beside it; and what they say."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text

from config.notifications import NotificationConfig
from config.settings import CONFIG_DIR
from config.sla import load_sla
from config.teams import load_teams
from domain.activity import PersonRecord, build_activity
from domain.notifications import (
    Contribution, Due, EngagedEmail, LeadFacts, Message, Person, lead_routed, notification_key, sla_breached,
    sla_escalated,
)
from domain.routing_decision import Owner
from domain.sla import SlaStep, SlaTimer, StepKind, TimerState
from sandbox.mailbox import Mailbox, WebhookInbox
from store import notifications as outbox
from store.tables import Assignment, CrmRecord, Notification, SlaTimerRow
from tasks import notify
from tasks.notify import enqueue_messages, enqueue_routed, enqueue_sla_steps, send_notifications
from tests.test_score_merges import NOW, score_dirty, versioned, write

UTC = timezone.utc
REP, OTHER_REP, MANAGER = "jonas.weber@sales.example", "sophie.martin@sales.example", "lena.vogel@sales.example"
LEAD = "ana.example@acme.example"
INSTANCE = "https://acme.my.salesforce.com"
RECORD = "00Q5g00000ABCDEFGH"
DUE = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)  # Thu 5 Nov 13:00 in Berlin
REASSIGN = datetime(2026, 11, 5, 16, 0, tzinfo=UTC)
RETRY = timedelta(minutes=2)

TEAMS = """
teams:
  - name: emea-routing
    timezone: Europe/Berlin
    working_hours:
      mon-fri: "09:00-17:00"
reps:
  - email: jonas.weber@sales.example
    name: Jonas Weber
    teams: [emea-routing]
    manager: lena.vogel@sales.example
  - email: sophie.martin@sales.example
    name: Sophie Martin
    teams: [emea-routing]
    timezone: America/New_York
    manager: lena.vogel@sales.example
managers:
  - email: lena.vogel@sales.example
    name: Lena Vogel
fallback: {queue: Inbound Leads}
"""


@pytest.fixture(scope="module")
def teams():
    return load_teams(Path("teams.yaml"), text=TEAMS)


@pytest.fixture(scope="module")
def policies():
    return load_sla(CONFIG_DIR / "sla.yaml")


@pytest.fixture
def mailbox():
    with Mailbox() as box:
        yield box


def mail_to(box: Mailbox, **more) -> NotificationConfig:
    return NotificationConfig(person=f"mailto://127.0.0.1:{box.port}?from=handoff@sales.example&to={{email}}", **more)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hook(inbox: WebhookInbox) -> str:
    return inbox.url.replace("http://", "json://")


# ---------------------------------------------------------------------------------------------- the facts

def an_mql(engine) -> int:
    """Ana, Head of Sales Operations at Acme GmbH in Germany: read a white paper, attended a webinar, clicked the
    November e-mail, then asked for a demo."""
    rulebook, version_id = versioned(engine)

    def did(n, kind, at, asset=None, campaign=None):
        return build_activity(source="web", external_id=f"ana-{n}", type_name=kind, occurred_at=at, raw={"n": n},
                              email=LEAD, asset=asset, campaign=campaign)

    write(engine, "web",
          did(1, "whitepaper_download", "2026-10-28T14:05:00Z", "State of RevOps 2026", "Q4 nurture"),
          did(2, "webinar_attended", "2026-10-29T16:00:00Z", "Routing in practice", "Q4 webinars"),
          did(3, "email_click", "2026-10-30T08:10:00Z", "November product update", "Q4 nurture"),
          did(4, "demo_request", "2026-11-02T09:00:00Z", "Demo form"),
          people=[PersonRecord(source="web", source_contact_id=None, email=LEAD, first_name="Ana", last_name="Example",
                               company="Acme GmbH", title="Head of Sales Operations", industry="Software",
                               company_size=250, country="DE")])
    score_dirty(engine, rulebook, version_id)
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM lead WHERE email = :e"), {"e": LEAD}).scalar_one()


def assign(engine, lead_id, owner=REP, name="Jonas Weber", *, kind="routed", written=True, due=DUE,
           reason="product line: sells routing in EMEA (team emea-routing)") -> int:
    """The lead's current assignment (the one before superseded), in the CRM at once unless `written` is False,
    with its SLA timer."""
    table = Assignment.__table__
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.superseded_at.is_(None), table.c.lead_id == lead_id)
                     .values(superseded_at=NOW))
        assignment_id = conn.execute(table.insert().values(
            lead_id=lead_id, owner_email=owner, owner_crm_id="005000000000001AAA", owner_name=name, team="emea-routing",
            rule=reason.partition(":")[0], kind=kind, reason=reason, path="{}", notify_only=kind == "kept",
            decided_at=NOW, written_at=NOW if written else None).returning(table.c.id)).scalar_one()
        conn.execute(SlaTimerRow.__table__.insert().values(
            lead_id=lead_id, assignment_id=assignment_id, owner_email=owner, team="emea-routing", policy="standard",
            state="open", opened_at=NOW, due_at=due, next_step_at=due,
            timer=json.dumps({"reassign_at": REASSIGN.isoformat(), "manager": MANAGER})))
    return assignment_id


def in_the_crm(engine, lead_id) -> None:
    with engine.begin() as conn:
        conn.execute(CrmRecord.__table__.insert().values(lead_id=lead_id, object="Lead", crm_id=RECORD))


def routed(engine, assignment_ids, config, teams, policies) -> int:
    with engine.begin() as conn:
        return enqueue_routed(conn, assignment_ids, config=config, teams=teams, policies=policies,
                              instance_url=INSTANCE, now=NOW)


def rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(Notification.__table__).order_by(Notification.__table__.c.id))
                .mappings()]


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return outbox.outbox_counts(conn)


def plain(n: int, recipient=REP) -> list[Message]:
    return [Message(key=f"test:{i}", kind="test", recipient=recipient, subject=f"Note {i}", body=f"Body {i}\n")
            for i in range(n)]


def enqueued(engine, messages, config) -> int:
    with engine.begin() as conn:
        return enqueue_messages(conn, messages, config, NOW)


# ---------------------------------------------------------------------------------------------- a routed lead

@pytest.mark.slow
def test_a_routed_lead_reaches_its_rep_by_email_once_with_what_a_first_call_needs(engine, mailbox, teams, policies):
    lead_id = an_mql(engine)
    in_the_crm(engine, lead_id)
    assignment_id = assign(engine, lead_id)
    config = mail_to(mailbox)
    assert routed(engine, [assignment_id], config, teams, policies) == 1

    summary = send_notifications(engine, config, now=NOW)

    assert (summary.sent, summary.failed, summary.given_up, summary.unconfirmed) == (1, 0, 0, 0)
    [mail] = mailbox.to(REP)
    assert mail.header("X-Handoff-Notification") == f"routed:{assignment_id}"
    assert mail.subject == "New lead: Ana Example, Acme GmbH (score 158, fit A), contact by Thu 5 Nov 13:00 " \
                           "Europe/Berlin"
    body = mail.text
    for fact in ("Who: Ana Example <ana.example@acme.example>", "Company: Acme GmbH",
                 "Title: Head of Sales Operations", "Country: DE", "Score: 158, fit A",
                 "Sales-ready because: hand-raise: demo_request on 2026-11-02 with fit A",
                 # the due time on the rep's own clock, with the policy's window
                 "Contact by Thu 5 Nov 13:00 Europe/Berlin, 24 business hours (SLA policy 'standard').",
                 "- +100 Requested a demo 'Demo form', Mon 2 Nov 10:00",
                 # each at its value when the lead was scored: they add up to the score
                 "- +32 Downloaded 'State of RevOps 2026' (campaign Q4 nurture), Wed 28 Oct 15:05",
                 "- +23 Attended webinar 'Routing in practice' (campaign Q4 webinars), Thu 29 Oct 17:00",
                 "- +3 Clicked in e-mail 'November product update' (campaign Q4 nurture), Fri 30 Oct 09:10",
                 "Last marketing e-mail they engaged with: 'November product update' (campaign Q4 nurture), "
                 "clicked Fri 30 Oct 09:10.",
                 f"In the CRM: {INSTANCE}/lightning/r/Lead/{RECORD}/view",
                 "Routed to you by: product line: sells routing in EMEA (team emea-routing)"):
        assert fact in body, fact

    again = send_notifications(engine, config, now=NOW + timedelta(hours=1))
    assert again.sent == 0 and len(mailbox.mails) == 1
    assert counts(engine) == {"waiting": 0, "retrying": 0, "sent": 1, "given up": 0, "unconfirmed": 0}


@pytest.mark.slow
def test_the_same_cause_enqueued_twice_is_sent_once(engine, mailbox, teams, policies):
    lead_id = an_mql(engine)
    assignment_id = assign(engine, lead_id)
    config = mail_to(mailbox)

    assert routed(engine, [assignment_id], config, teams, policies) == 1
    assert routed(engine, [assignment_id, assignment_id], config, teams, policies) == 0  # a retried routing run
    send_notifications(engine, config, now=NOW)

    assert len(mailbox.to(REP)) == 1 and len(rows(engine)) == 1


@pytest.mark.slow
def test_a_new_lead_waits_until_the_crm_holds_its_owner(engine, mailbox, teams, policies):
    lead_id = an_mql(engine)
    assignment_id = assign(engine, lead_id, written=False)
    config = mail_to(mailbox)
    routed(engine, [assignment_id], config, teams, policies)

    assert send_notifications(engine, config, now=NOW).sent == 0 and mailbox.mails == []
    with engine.begin() as conn:  # the CRM push took the owner
        conn.execute(Assignment.__table__.update().values(written_at=NOW + timedelta(minutes=1)))
    assert send_notifications(engine, config, now=NOW + timedelta(minutes=1)).sent == 1
    assert len(mailbox.to(REP)) == 1


@pytest.mark.slow
def test_a_relationship_owner_is_told_their_lead_is_sales_ready(engine, mailbox, teams, policies):
    lead_id = an_mql(engine)
    config = mail_to(mailbox)
    routed(engine, [assign(engine, lead_id, kind="kept", reason="keep the owner: Jonas Weber owns it")], config,
           teams, policies)
    send_notifications(engine, config, now=NOW)

    [mail] = mailbox.to(REP)
    assert mail.subject.startswith("Your lead is sales-ready: Ana Example, Acme GmbH")
    assert "You already own this lead: nothing was re-routed." in mail.text
    assert "Not in the CRM yet." in mail.text  # no record linked yet: no link to a record that is not there


@pytest.mark.slow
def test_a_reassignment_tells_the_new_rep_why_and_the_rep_who_lost_it_and_their_manager(engine, mailbox, teams,
                                                                                      policies):
    lead_id = an_mql(engine)
    config = mail_to(mailbox)
    first = assign(engine, lead_id)
    routed(engine, [first], config, teams, policies)
    why = "reassigned: still not contacted after the grace period: reassignment 1 of at most 2"
    second = assign(engine, lead_id, OTHER_REP, "Sophie Martin", kind="reassigned", reason=why,
                    due=datetime(2026, 11, 6, 20, tzinfo=UTC))
    routed(engine, [second], config, teams, policies)
    send_notifications(engine, config, now=NOW)

    [new] = mailbox.to(OTHER_REP)
    assert new.header("X-Handoff-Notification") == f"routed:{second}"
    assert f"It comes to you as a reassignment: {why}" in new.text
    assert "Contact by Fri 6 Nov 15:00 America/New_York" in new.text  # her own timezone
    [_, lost] = mailbox.to(REP)
    assert lost.subject == "Lead reassigned: Ana Example, Acme GmbH now goes to Sophie Martin"
    assert f"Why: {why}" in lost.text
    [manager] = mailbox.to(MANAGER)
    assert manager.subject == "Lead reassigned: Ana Example, Acme GmbH, from Jonas Weber to Sophie Martin"


# ---------------------------------------------------------------------------------------------- the SLA

def a_timer(lead_id, state=TimerState.OPEN) -> SlaTimer:
    return SlaTimer(lead_id=lead_id, owner=Owner(rep=REP, crm_user_id="005000000000001AAA", name="Jonas Weber"),
                    team="emea-routing", policy="standard", opened_at=NOW, due_at=DUE,
                    remind_at=DUE - timedelta(hours=4), reassign_at=REASSIGN, manager=MANAGER, state=state)


@pytest.mark.slow
def test_each_sla_step_tells_its_people_once_whatever_the_retries(engine, mailbox, teams, policies):
    lead_id = an_mql(engine)
    config = mail_to(mailbox)
    timer = a_timer(lead_id)
    steps = [
        (7, timer, SlaStep(StepKind.REMIND, lead_id, TimerState.OPEN, TimerState.REMINDED, timer.remind_at,
                           "not contacted yet", notify=(REP,))),
        (7, timer, SlaStep(StepKind.BREACH, lead_id, TimerState.REMINDED, TimerState.BREACHED, DUE,
                           "not contacted by the due time", notify=(REP, MANAGER), escalate_to=MANAGER)),
        (7, timer, SlaStep(StepKind.RECYCLE, lead_id, TimerState.BREACHED, TimerState.RECYCLED, REASSIGN,
                           "not contacted within the SLA after 2 reassignments: back to marketing nurture",
                           notify=(REP, MANAGER))),
    ]
    for _ in range(2):  # a retried SLA run enqueues nothing new
        with engine.begin() as conn:
            enqueue_sla_steps(conn, steps, config=config, teams=teams, policies=policies, instance_url=INSTANCE,
                              now=DUE + timedelta(hours=3))
    send_notifications(engine, config, now=DUE + timedelta(hours=3))

    assert sorted(r["key"] for r in rows(engine)) == [
        "recycled:7:manager", "recycled:7:owner", "sla-breached:7", "sla-escalated:7", "sla-reminded:7"]
    to_rep = {m.header("X-Handoff-Notification"): m for m in mailbox.to(REP)}
    to_manager = {m.header("X-Handoff-Notification"): m for m in mailbox.to(MANAGER)}
    assert set(to_rep) == {"sla-reminded:7", "sla-breached:7", "recycled:7:owner"}
    assert set(to_manager) == {"sla-escalated:7", "recycled:7:manager"}
    assert to_rep["sla-reminded:7"].subject == \
        "Reminder: contact Ana Example, Acme GmbH by Thu 5 Nov 13:00 Europe/Berlin"
    assert "Your manager Lena Vogel <lena.vogel@sales.example> has been told." in to_rep["sla-breached:7"].text
    escalation = to_manager["sla-escalated:7"]
    assert escalation.subject == ("Escalation: Jonas Weber has not contacted Ana Example, Acme GmbH "
                                  "(due Thu 5 Nov 13:00 Europe/Berlin)")
    assert "First contact was due by Thu 5 Nov 13:00 Europe/Berlin, 3 h ago (24 business hours, policy standard)." \
        in escalation.text
    assert "Why: not contacted within the SLA after 2 reassignments" in to_rep["recycled:7:owner"].text


# ---------------------------------------------------------------------------------------------- failures

@pytest.mark.slow
def test_a_webhook_that_fails_first_gets_the_post_on_the_next_run_once_and_the_email_is_not_sent_again(
        engine, mailbox):
    with WebhookInbox(fail_first=1) as inbox:
        config = mail_to(mailbox, also=[hook(inbox)])
        enqueued(engine, plain(1), config)

        first = send_notifications(engine, config, now=NOW, retry_in=RETRY)
        assert (first.sent, first.failed) == (1, 1) and inbox.refused == 1 and inbox.posts == []
        assert "Failed to send JSON POST notification" in first.errors[0] and "error=503" in first.errors[0]
        assert send_notifications(engine, config, now=NOW + RETRY / 2, retry_in=RETRY).sent == 0  # not yet due
        second = send_notifications(engine, config, now=NOW + RETRY, retry_in=RETRY)

        assert (second.sent, second.failed) == (1, 0)
        [(post, headers)] = inbox.posts
        assert post["title"] == "Note 0" and post["message"].rstrip() == f"For {REP}\n\nBody 0"
        assert headers["x-handoff-notification"] == "test:0"
        assert len(mailbox.mails) == 1  # the e-mail went once, on the first run


@pytest.mark.slow
def test_a_webhook_that_keeps_failing_is_given_up_after_max_attempts_and_counted(engine, mailbox):
    with WebhookInbox(fail_first=100) as inbox:
        config = mail_to(mailbox, also=[hook(inbox)], max_attempts=3)
        enqueued(engine, plain(1), config)
        summaries = [send_notifications(engine, config, now=NOW + RETRY * n, retry_in=RETRY) for n in (0, 1, 3, 10)]

        assert [(s.failed, s.given_up) for s in summaries] == [(1, 0), (1, 0), (0, 1), (0, 0)]  # backoff 2, then 4 min
        assert inbox.refused == 3 and inbox.posts == []
        assert counts(engine) == {"waiting": 0, "retrying": 0, "sent": 1, "given up": 1, "unconfirmed": 0}
        [_, webhook] = rows(engine)
        assert webhook["attempts"] == 3 and "error=503" in webhook["error"]


class ProcessDied(BaseException):
    """The sending process killed between the receiver taking a notification and Handoff recording it."""


@pytest.mark.slow
def test_a_run_that_dies_after_sending_never_sends_it_again(engine, mailbox, monkeypatch):
    config = mail_to(mailbox)
    enqueued(engine, plain(3), config)
    real = notify.deliver
    sends = []

    def dies_after_the_second_send(url, **message):
        problem = real(url, **message)
        sends.append(message["key"])
        if len(sends) == 2:
            raise ProcessDied()
        return problem

    monkeypatch.setattr(notify, "deliver", dies_after_the_second_send)
    with pytest.raises(ProcessDied):
        send_notifications(engine, config, now=NOW)
    monkeypatch.setattr(notify, "deliver", real)

    after = send_notifications(engine, config, now=NOW + timedelta(minutes=1))

    assert (after.unconfirmed, after.sent) == (1, 1)  # the one cut short is settled; the third goes now
    assert sorted(m.subject for m in mailbox.mails) == ["Note 0", "Note 1", "Note 2"]  # each once
    assert send_notifications(engine, config, now=NOW + timedelta(hours=1)).sent == 0
    assert counts(engine) == {"waiting": 0, "retrying": 0, "sent": 2, "given up": 0, "unconfirmed": 1}


@pytest.mark.slow
def test_two_sending_runs_at_once_send_each_notification_once(engine, mailbox, monkeypatch):
    config = mail_to(mailbox)
    enqueued(engine, plain(12), config)
    real = notify.deliver

    def slowly(url, **message):  # long enough that the two runs overlap
        threading.Event().wait(0.05)
        return real(url, **message)

    monkeypatch.setattr(notify, "deliver", slowly)
    start, results = threading.Barrier(2), []

    def run():
        start.wait()
        results.append(send_notifications(engine, config, now=NOW))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(m.subject for m in mailbox.mails) == sorted(f"Note {i}" for i in range(12))
    assert sum(s.sent for s in results) == 12
    assert [s.another_run_sending for s in results].count(True) == 1


@pytest.mark.slow
def test_an_smtp_server_that_is_down_is_a_clear_failure_retried_later_and_nothing_is_lost(engine):
    port = closed_port()
    config = NotificationConfig(person=f"mailto://127.0.0.1:{port}?from=handoff@sales.example&to={{email}}")
    enqueued(engine, plain(2), config)

    down = send_notifications(engine, config, now=NOW, retry_in=RETRY)

    assert (down.sent, down.failed, down.given_up) == (0, 2, 0)
    [first, _] = rows(engine)
    assert "Connection refused" in first["error"] and first["attempts"] == 1
    with Mailbox(port=port) as mailbox:
        back = send_notifications(engine, config, now=NOW + RETRY, retry_in=RETRY)
        assert back.sent == 2 and sorted(m.subject for m in mailbox.mails) == ["Note 0", "Note 1"]
    assert counts(engine)["sent"] == 2


@pytest.mark.slow
def test_a_receiver_that_never_answers_fails_the_send_within_the_timeout_instead_of_holding_the_run(
        engine, monkeypatch):
    monkeypatch.setattr(notify, "CONNECT_TIMEOUT", 0.5)
    with socket.socket() as silent:  # takes the connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        config = NotificationConfig(person=f"mailto://127.0.0.1:{port}?from=h@sales.example&to={{email}}")
        enqueued(engine, plain(1), config)
        started = time.monotonic()
        summary = send_notifications(engine, config, now=NOW)

    assert time.monotonic() - started < 5 and summary.failed == 1
    assert "timed out" in rows(engine)[0]["error"]


# ---------------------------------------------------------------------------------------------- the words

FACTS = LeadFacts(lead_id=1, email=LEAD, first_name="Ana", last_name="Example\r\nBcc: someone@else.example",
                  company="Acme GmbH", title="Head of Sales Operations", country="DE", score=15804, fit_grade="A",
                  mql_reason="hand-raise: demo_request on 2026-11-02 with fit A",
                  contributions=(Contribution("demo_request", "demo_request", "Demo form", None,
                                              datetime(2026, 11, 2, 9, tzinfo=UTC), 10000),
                                 Contribution("whitepaper_download", "whitepaper_download", "Old paper", "2025 push",
                                              datetime(2025, 12, 1, 9, tzinfo=UTC), 153)),
                  last_email=EngagedEmail("November product update", "Q4 nurture", False,
                                          datetime(2026, 10, 30, 8, 10, tzinfo=UTC)),
                  record_link=f"{INSTANCE}/lightning/r/Lead/{RECORD}/view")


def test_a_subject_is_one_line_whatever_the_lead_typed_and_the_body_keeps_it_as_it_came():
    message = lead_routed(FACTS, Person(REP, "Jonas Weber"), rule="territory: DE", key=notification_key("routed", 1),
                          now=NOW, due=Due(DUE, "Europe/Berlin", Decimal(24), True, "standard"))

    assert "\n" not in message.subject and "\r" not in message.subject
    assert message.subject.startswith("New lead: Ana Example Bcc: someone@else.example, Acme GmbH")
    assert "Who: Ana Example\r\nBcc: someone@else.example <ana.example@acme.example>" in message.body
    assert "opened Fri 30 Oct 09:10." in message.body
    assert "(campaign 2025 push), Mon 1 Dec 2025 10:00" in message.body  # another year says so


def test_the_due_time_reads_on_the_rep_s_own_clock_across_the_change_to_winter_time():
    summer = Due(datetime(2026, 10, 23, 9, tzinfo=UTC), "Europe/Berlin", Decimal(4), False, "fit A hand-raiser")
    winter = Due(datetime(2026, 10, 26, 9, tzinfo=UTC), "Europe/Berlin", Decimal(1), True)

    assert (summer.local, summer.window) == ("Fri 23 Oct 11:00 Europe/Berlin", "4 hours")
    assert (winter.local, winter.window) == ("Mon 26 Oct 10:00 Europe/Berlin", "1 business hour")


def test_an_escalation_says_who_let_which_lead_lapse_and_since_when():
    message = sla_escalated(FACTS, Person(MANAGER, "Lena Vogel"), owner=Person(REP, "Jonas Weber"),
                            due=Due(DUE, "Europe/Berlin", Decimal(24), True, "standard"), reassign_at=REASSIGN,
                            key="sla-escalated:7", now=DUE + timedelta(hours=26, minutes=5))

    assert message.recipient == MANAGER and message.kind == "sla_escalated"
    assert "Jonas Weber <jonas.weber@sales.example> has not contacted Ana Example" in message.body
    assert "First contact was due by Thu 5 Nov 13:00 Europe/Berlin, 1 d 2 h ago" in message.body
    assert "Unless contacted by Thu 5 Nov 17:00 Europe/Berlin, it goes to another rep." in message.body


def test_when_the_last_reassignment_is_spent_the_breach_and_its_escalation_say_the_lead_goes_back_to_nurture():
    due = Due(DUE, "Europe/Berlin", Decimal(24), True, "standard")
    late = DUE + timedelta(hours=26, minutes=5)
    breached = sla_breached(FACTS, Person(REP, "Jonas Weber"), due=due, manager=Person(MANAGER, "Lena Vogel"),
                            reassign_at=REASSIGN, key="sla-breached:7", now=late, recycles=True)
    escalated = sla_escalated(FACTS, Person(MANAGER, "Lena Vogel"), owner=Person(REP, "Jonas Weber"), due=due,
                              reassign_at=REASSIGN, key="sla-escalated:7", now=late, recycles=True)

    assert "before Thu 5 Nov 17:00 Europe/Berlin, or the lead goes back to marketing nurture." in breached.body
    assert "Unless contacted by Thu 5 Nov 17:00 Europe/Berlin, it goes back to marketing nurture." in escalated.body
    assert "another rep" not in breached.body + escalated.body


def test_a_key_names_its_cause_and_cannot_be_mistaken_for_a_channel_copy():
    assert notification_key("routed", 12) == "routed:12"
    assert notification_key("recycled", 7, "manager") == "recycled:7:manager"
    with pytest.raises(ValueError):
        notification_key("routed", "12#also-x")
