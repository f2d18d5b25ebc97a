"""The health check: what counts as a problem (a person should look now) and what is only noted, from ingest to
the notifications, read from a real store on both databases, through `handoff status` and the health-check flow."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import timedelta

import pytest

from config.settings import CONFIG_DIR, get_settings
from domain.activity import Rejection
from domain.health import (
    CrmFacts, FeedFacts, HealthFacts, HealthPolicy, NotificationFacts, QueueFacts, RulebookFacts, SlaFacts, SourceFacts,
    assess,
)
from store import crm as crm_store
from store import outbox
from store import scoring as store
from store.ingest import record_read, write_batch
from store.migrate import head
from store.tables import CrmRecord, Notification, SlaTimerRow
from tasks.health import gather_facts, health_json, health_markdown, policy_of
from tests.test_score_merges import NOW, activity, write
from tests.test_stage_moves import mql

POLICY = HealthPolicy(scoring_lag=timedelta(minutes=30), decay_every=timedelta(hours=24))
DIGEST = "a" * 64
HEALTHY = HealthFacts(
    now=NOW, schema=head(), schema_head=head(), leads=10,
    sources=(SourceFacts("marketo", True, watermark=NOW - timedelta(minutes=7), read_at=NOW - timedelta(minutes=5)),),
    rulebook=RulebookFacts(version_id=3, digest=DIGEST, since=NOW - timedelta(days=9), configured_digest=DIGEST),
    scored_at=NOW - timedelta(minutes=4), decayed_at=NOW - timedelta(hours=20), waiting=2,
    oldest_mark=NOW - timedelta(minutes=4), events={"confirmed": 40, "sent": 2})


def problems(facts: HealthFacts) -> list[str]:
    return [f.text for f in assess(facts, POLICY) if f.level == "problem"]


def notes(facts: HealthFacts) -> list[str]:
    return [f.text for f in assess(facts, POLICY) if f.level == "note"]


def test_a_line_that_keeps_up_has_nothing_to_look_at():
    assert assess(HEALTHY, POLICY) == []


def test_a_database_behind_this_code_is_the_one_problem_named_with_its_fix():
    behind = replace(HEALTHY, schema="0012", waiting=5, oldest_mark=NOW - timedelta(days=3))
    assert problems(behind) == [f"the database is at revision 0012; this version needs {head()}: run `handoff db upgrade`"]
    assert problems(replace(HEALTHY, schema=None))[0].startswith("the database has no Handoff schema")


def test_scoring_is_behind_once_a_lead_waited_longer_than_the_lag_and_not_a_moment_before():
    assert problems(replace(HEALTHY, oldest_mark=NOW - timedelta(minutes=30))) == []
    late = replace(HEALTHY, waiting=1234, oldest_mark=NOW - timedelta(minutes=31))
    assert problems(late) == ["scoring is behind: 1,234 leads waiting, the longest marked 31 min ago"]
    never = replace(late, scored_at=None, decayed_at=None, rulebook=RulebookFacts(configured_digest=DIGEST))
    assert problems(never) == ["scoring is behind: 1,234 leads waiting, the longest marked 31 min ago (no scoring run "
                               "has finished yet)"]


def test_the_decay_pass_is_overdue_a_lag_after_it_was_due():
    assert problems(replace(HEALTHY, decayed_at=NOW - timedelta(hours=24, minutes=30))) == []
    assert problems(replace(HEALTHY, decayed_at=NOW - timedelta(days=3))) == [
        "the pass that re-decays every lead is overdue: the last ran 3 days ago, due every 24 h"]


def test_lead_events_given_up_or_never_sent_are_problems_and_a_send_under_way_is_not():
    given_up = replace(HEALTHY, events={"confirmed": 40, "given up": 3})
    assert problems(given_up) == ["3 lead events given up after the most sends allowed: the Prefect server never held "
                                  "them (`handoff events` lists them, `handoff events retry` sends them again)"]
    assert problems(replace(HEALTHY, events={"waiting": 7}, oldest_unsent=NOW - timedelta(minutes=10))) == []
    unsent = replace(HEALTHY, events={"waiting": 7}, oldest_unsent=NOW - timedelta(hours=3))
    assert problems(unsent) == ["7 lead events never sent, the oldest written 3 h ago: the next scoring run or stage "
                                "move sends them"]


def test_a_source_is_a_problem_once_no_read_of_it_finished_for_the_ingest_lag_or_its_first_reads_fail():
    read = lambda **facts: replace(HEALTHY, sources=(SourceFacts("marketo", True, **facts),))  # noqa: E731
    fine = read(read_at=NOW - timedelta(minutes=59), failed_at=NOW - timedelta(hours=3), error="HTTP 503")
    assert assess(fine, POLICY) == []  # a failure a finished read has put behind it
    assert problems(read(read_at=NOW - timedelta(minutes=75))) == [
        "marketo: no read has finished for 75 min (is its ingest running?)"]
    assert problems(read(read_at=NOW - timedelta(hours=3), failed_at=NOW - timedelta(minutes=4),
                         error="marketo: 601 access token invalid")) == [
        "marketo: no read has finished for 3 h; the last read failed 4 min ago: marketo: 601 access token invalid"]
    assert problems(read(failed_at=NOW - timedelta(minutes=4), error="credentials: no HANDOFF_MARKETO_CLIENT_ID")) == [
        "marketo: no read has finished yet; the last read failed 4 min ago: credentials: no HANDOFF_MARKETO_CLIENT_ID"]
    once = read(read_at=NOW - timedelta(minutes=10), failed_at=NOW - timedelta(minutes=5), error="HTTP 503")
    assert problems(once) == []
    assert notes(once) == ["marketo: the last read failed 5 min ago: HTTP 503; the last that finished was 10 min ago"]
    disabled = replace(HEALTHY, sources=(*HEALTHY.sources, SourceFacts("mautic", False, read_at=NOW - timedelta(days=9))))
    assert assess(disabled, POLICY) == []


def test_files_that_do_not_load_are_problems_and_a_changed_rulebook_is_a_note():
    broken = replace(HEALTHY, sources_problem="sources.yaml:4: expected a mapping",
                     rulebook=replace(HEALTHY.rulebook, configured_digest=None,
                                      configured_problem="scoring.csv, line 7: readiness_pct must be a number"))
    assert problems(broken) == [
        "the sources file does not load, so ingest runs fail: sources.yaml:4: expected a mapping",
        "the configured rulebook does not load, so scoring runs fail: scoring.csv, line 7: readiness_pct must be a number"]
    changed = replace(HEALTHY, rulebook=replace(HEALTHY.rulebook, configured_digest="b" * 64))
    assert problems(changed) == []
    assert notes(changed) == ["the configured rulebook differs from version 3 in force: the next scoring run rescores "
                              "every lead with it (preview first: `handoff rules impact`)"]


def test_quiet_facts_worth_knowing_are_notes_after_the_problems():
    facts = replace(HEALTHY, waiting=3, oldest_mark=NOW - timedelta(hours=1), queues=(
        QueueFacts("crm_sync", 0, None), QueueFacts("routing", 12, NOW - timedelta(minutes=25))), sources=(
        SourceFacts("files", True, NOW, NOW, quarantined_today=1), SourceFacts("hubspot", True),
        SourceFacts("marketo", True, NOW, NOW, quarantined_today=1200),
        SourceFacts("mautic", False, NOW - timedelta(days=40), NOW - timedelta(days=40))))
    found = assess(facts, POLICY)
    assert [(f.level, f.area) for f in found] == [("problem", "scoring"), ("note", "ingest"), ("note", "ingest"),
                                                  ("note", "queues")]
    assert [f.text for f in found[1:]] == ["hubspot: enabled, not read yet",
                                           "1,201 records quarantined in the last 24 h (marketo 1,200, files 1), each "
                                           "kept with its reason in the quarantine table",
                                           "routing: 12 leads queued, the oldest queued 25 min ago"]
    assert notes(replace(HEALTHY, sources=(SourceFacts("mautic", False),))) == [
        "no source is enabled in the sources file: ingest runs read nothing"]


HANDING_OVER = replace(
    HEALTHY, queues=(QueueFacts("routing", 2, NOW - timedelta(minutes=12)),),
    crm=CrmFacts(enabled=True, pulled_at=NOW - timedelta(minutes=4)),
    sla=SlaFacts(running={"open": 40, "reminded": 3, "breached": 1}, steps_due=2,
                 oldest_step_due=NOW - timedelta(minutes=9)),
    notifications=NotificationFacts(channels=("mailto",), states={"waiting": 2, "sent": 90},
                                    oldest_unsent=NOW - timedelta(minutes=3)))


def test_a_handoff_half_that_keeps_up_has_nothing_to_look_at_but_the_queue_it_works_through():
    assert problems(HANDING_OVER) == []
    assert notes(HANDING_OVER) == ["routing: 2 leads queued, the oldest queued 12 min ago"]


def test_a_crm_sync_that_is_off_is_not_judged_and_one_that_is_on_must_pull_within_the_lag():
    off = replace(HANDING_OVER, crm=CrmFacts(enabled=False))
    assert problems(off) == [] and [f.area for f in assess(off, POLICY)] == ["queues"]
    pulled = lambda minutes: replace(  # noqa: E731
        HANDING_OVER, crm=CrmFacts(enabled=True, pulled_at=NOW - timedelta(minutes=minutes)))
    assert problems(pulled(60)) == []
    assert problems(pulled(75)) == ["no pull from the CRM has finished for 75 min (is the crm-sync deployment running, "
                                    "and do its runs finish?)"]
    never = replace(HANDING_OVER, crm=CrmFacts(enabled=True))
    assert problems(never) == [] and "the CRM sync is on and no pull has finished yet" in notes(never)


def test_crm_writes_given_up_wait_for_a_person_and_are_a_problem_with_the_command_that_shows_them():
    given_up = replace(HANDING_OVER, crm=replace(HANDING_OVER.crm, given_up=3,
                                                 oldest_given_up=NOW - timedelta(hours=5)))
    assert problems(given_up) == ["3 CRM writes given up, the oldest 5 h ago: each waits for a person (`handoff crm "
                                  "failures` shows the CRM's errors; fix the cause, then `handoff crm retry`)"]


def test_a_crm_or_notifications_file_that_does_not_load_is_a_problem_and_the_sync_is_not_judged_further():
    broken = replace(HANDING_OVER, crm=CrmFacts(problem="crm.yaml: push.create_at: Input should be 'lead'"),
                     notifications=replace(HANDING_OVER.notifications, channels=(),
                                           problem="notifications.yaml: person: Field required"))
    assert problems(broken) == [
        "the CRM file does not load, so the CRM sync, routing and SLA runs fail: crm.yaml: push.create_at: Input "
        "should be 'lead'",
        "the notifications file does not load, so route-leads and SLA runs fail and no one is told: "
        "notifications.yaml: person: Field required"]


def test_a_sales_ready_lead_waiting_longer_than_the_routing_lag_for_an_owner_is_a_problem():
    waiting = lambda minutes: replace(HANDING_OVER, queues=(  # noqa: E731
        QueueFacts("crm_sync", 4, NOW - timedelta(hours=3)),
        QueueFacts("routing", 7, NOW - timedelta(minutes=minutes))))
    assert problems(waiting(30)) == []
    assert problems(waiting(31)) == ["7 sales-ready leads waiting for an owner, the longest queued 31 min ago (is the "
                                     "route-leads deployment running, and do its runs finish?)"]
    assert notes(waiting(31)) == ["crm_sync: 4 leads queued, the oldest queued 3 h ago"]


def test_the_sla_flow_is_behind_once_a_running_timers_step_stayed_due_longer_than_the_sla_lag():
    due = lambda minutes: replace(HANDING_OVER, sla=replace(  # noqa: E731
        HANDING_OVER.sla, steps_due=5, oldest_step_due=NOW - timedelta(minutes=minutes)))
    assert problems(due(60)) == []
    assert problems(due(150)) == ["the SLA flow is behind: 5 running timers with a step due, the oldest due 2 h ago, "
                                  "so reminders, escalations and reassignments wait (is the sla deployment running, "
                                  "and do its runs finish?)"]


def test_a_reps_calendar_feed_that_fails_is_a_note_and_a_problem_once_it_failed_longer_than_the_feed_lag():
    failing = lambda hours: replace(HEALTHY, failing_feeds=(FeedFacts(  # noqa: E731
        "jordan.blake@handoff-demo.example", NOW - timedelta(hours=hours), "calendar feed at cal.example: HTTP 503"),))
    said = ("jordan.blake@handoff-demo.example's out-of-office calendar feed has failed every read for {}: calendar "
            "feed at cal.example: HTTP 503; the absences of its last good read still count, newer ones are missed")
    assert problems(failing(24)) == [] and notes(failing(24)) == [said.format("24 h")]
    assert problems(failing(25)) == [said.format("25 h")] and notes(failing(25)) == []


def test_notifications_given_up_or_left_unsent_past_the_lag_are_problems_and_unconfirmed_ones_a_note():
    told = lambda **facts: replace(  # noqa: E731
        HANDING_OVER, notifications=replace(HANDING_OVER.notifications, **facts))
    assert problems(told(states={"waiting": 1, "retrying": 2}, oldest_unsent=NOW - timedelta(minutes=60))) == []
    assert problems(told(states={"waiting": 1, "retrying": 2}, oldest_unsent=NOW - timedelta(minutes=61))) == [
        "3 notifications not sent, the oldest written 61 min ago: route-leads and SLA runs send them, a new owner's "
        "once the CRM holds the owner (are those runs finishing, does the channel answer?)"]
    assert problems(told(states={"sent": 9, "given up": 1}, oldest_unsent=None)) == [
        "1 notification given up after the most sends allowed, so their people were never told: each keeps its error "
        "(runbook, Notifications: fix the cause, then clear them)"]
    unconfirmed = told(states={"sent": 9, "unconfirmed": 2}, oldest_unsent=None)
    assert problems(unconfirmed) == []
    assert notes(unconfirmed)[-1] == ("2 notifications unconfirmed: a run died while sending them, and they are not "
                                      "sent again by themselves (runbook, Notifications)")


def rules_and_sources(tmp_path, *, sources: str) -> None:
    """This test's rulebook (a copy of the shipped one) and sources file, in the settings."""
    shutil.copytree(CONFIG_DIR, tmp_path / "rules", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (tmp_path / "rules" / "sources.yaml").write_text(sources)


@pytest.fixture
def configured(tmp_path, handoff_env):
    rules_and_sources(tmp_path, sources="sources:\n  - {name: web, kind: jsonl, path: ./drop}\n")
    handoff_env(HANDOFF_RULEBOOK_DIR=str(tmp_path / "rules"), HANDOFF_SOURCES_FILE=str(tmp_path / "rules" / "sources.yaml"))
    return tmp_path / "rules"


def test_the_facts_are_read_from_the_store_and_the_configuration(engine, configured):
    rulebook, version_id, ana = mql(engine)  # scored at NOW: an MQL, its event waiting, routing and CRM sync queued
    write_batch(engine, source="web", activities=[], people=[], checkpoint=NOW - timedelta(minutes=2), now=NOW,
                rejections=[Rejection("web", "x1", "missing e-mail", "{}")])
    write(engine, "events", activity("bob-1", "page_view", email="bob@acme.example"))  # bob waits to be scored
    record_read(engine, "web", NOW - timedelta(minutes=1), "run-1")
    record_read(engine, "web", NOW, "run-2", error="web: " + "no such directory " * 40)
    record_read(engine, "files", NOW, "run-2")  # a source without a watermark yet
    with engine.begin() as conn:
        store.set_scoring_state(conn, version_id, NOW, NOW)

    later = NOW + timedelta(minutes=20)
    facts = gather_facts(later)
    assert (facts.schema, facts.leads, facts.waiting, facts.oldest_mark) == (head(), 2, 1, NOW)
    assert facts.rulebook.version_id == version_id and facts.rulebook.digest == rulebook.digest
    assert facts.rulebook.configured_digest == rulebook.digest and facts.rulebook.since == NOW
    assert (facts.scored_at, facts.decayed_at) == (NOW, NOW)
    assert [(s.name, s.enabled, s.watermark, s.read_at, s.failed_at, s.quarantined_today) for s in facts.sources] == [
        ("files", False, None, NOW, None, 0),
        ("web", True, NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), NOW, 1)]
    assert facts.sources[1].failing and facts.sources[1].error == ("web: " + "no such directory " * 40)[:500]
    assert facts.events == {"waiting": 1} and facts.oldest_unsent == NOW
    assert [(q.queue, q.open, q.oldest) for q in facts.queues] == [("crm_sync", 1, NOW), ("routing", 1, NOW)]
    assert assess(facts, policy_of(get_settings())) != [] and problems(facts) == []

    # An hour on, nothing has moved: bob still waits, ana's event was never sent and ana has no owner
    stuck = gather_facts(NOW + timedelta(hours=1))
    assert problems(stuck) == ["web: no read has finished for 61 min; the last read failed 60 min ago: "
                               + facts.sources[1].error,
                               "scoring is behind: 1 lead waiting, the longest marked 60 min ago",
                               "1 lead event never sent, the oldest written 60 min ago: the next scoring run or stage "
                               "move sends them",
                               "1 sales-ready lead waiting for an owner, the longest queued 60 min ago (is the "
                               "route-leads deployment running, and do its runs finish?)"]
    with engine.begin() as conn:
        ids = [row["id"] for row in outbox.events_to_send(conn, NOW, timedelta(minutes=10), 5)]
        outbox.mark_sent(conn, ids, NOW)
        outbox.mark_confirmed(conn, ids, NOW)
    assert gather_facts(NOW + timedelta(hours=1)).events == {"confirmed": 1}
    assert gather_facts(NOW + timedelta(days=1, seconds=1)).sources[0].quarantined_today == 0


def test_a_rulebook_or_sources_file_that_does_not_load_is_named(engine, configured):
    (configured / "sources.yaml").write_text("sources: {}\n")
    sheet = configured / "scoring.csv"
    sheet.write_text(sheet.read_text().replace("whitepaper_download,consideration,30",
                                               "whitepaper_download,consideration,lots"))
    found = problems(gather_facts(NOW))
    assert len(found) == 2
    assert found[0].startswith("the sources file does not load, so ingest runs fail: ") and "'sources' list" in found[0]
    assert found[1].startswith("the configured rulebook does not load, so scoring runs fail: ")
    assert "scoring.csv" in found[1] and "lots" in found[1]


def handed_over(engine, lead_id: int, *, given_up: bool = False) -> None:
    """The handoff half of one lead as the flows leave it at NOW, written straight into the tables: the CRM pulled,
    two SLA timers running (one with a step due at NOW, one in three hours) and one closed long overdue, a
    notification in each state but given up; with `given_up`, a CRM write and a notification given up too."""
    early = NOW - timedelta(days=2)
    with engine.begin() as conn:
        crm_store.advance_watermarks(conn, {"Lead": NOW, "Task": NOW - timedelta(minutes=1)}, NOW, "sync-1")
        conn.execute(CrmRecord.__table__.insert(), [{
            "lead_id": lead_id, "object": "Lead", "crm_id": "00Q000000000001AAA", "attempts": 5,
            "error": "REQUIRED_FIELD_MISSING", "dead_at": NOW if given_up else None}])
        conn.execute(SlaTimerRow.__table__.insert(), [
            {"lead_id": lead_id, "assignment_id": n, "policy": "standard", "state": state, "opened_at": early,
             "due_at": NOW, "next_step_at": step, "closed_at": closed, "timer": "{}"}
            for n, state, step, closed in ((1, "open", NOW + timedelta(hours=3), None), (2, "reminded", NOW, None),
                                          (3, "met", early, early))])
        conn.execute(Notification.__table__.insert(), [
            {"key": f"test:{state}", "kind": "test", "recipient": "rep@revops.example", "subject": "s", "body": "b",
             "created_at": NOW, "attempts": attempts, "sent_at": sent, "given_up_at": gave_up,
             "unconfirmed_at": unconfirmed}
            for state, attempts, sent, gave_up, unconfirmed in (
                ("waiting", 0, None, None, None), ("retrying", 2, None, None, None), ("sent", 1, NOW, None, None),
                ("unconfirmed", 1, None, None, NOW), *([("given up", 5, None, NOW, None)] if given_up else []))])


@pytest.fixture
def crm_on(configured, handoff_env):
    handoff_env(HANDOFF_SALESFORCE_ENABLED="true")


def handoff_problems(facts: HealthFacts) -> list[str]:
    return [f.text for f in assess(facts, POLICY) if f.level == "problem" and f.area not in ("events", "scoring")]


def test_the_handoff_half_is_read_from_the_store_and_each_problem_found_when_it_holds(engine, crm_on):
    _, _, ana = mql(engine)  # waits for an owner from NOW
    handed_over(engine, ana)

    facts = gather_facts(NOW + timedelta(minutes=20))
    assert facts.crm == CrmFacts(enabled=True, pulled_at=NOW)
    assert facts.sla == SlaFacts(running={"open": 1, "reminded": 1}, steps_due=1, oldest_step_due=NOW)
    assert facts.notifications == NotificationFacts(
        channels=("mailto",), states={"waiting": 1, "retrying": 1, "sent": 1, "given up": 0, "unconfirmed": 1},
        oldest_unsent=NOW)
    assert handoff_problems(facts) == []

    # Two hours on, nothing of the handoff half has moved
    assert handoff_problems(gather_facts(NOW + timedelta(hours=2))) == [
        "no pull from the CRM has finished for 2 h (is the crm-sync deployment running, and do its runs finish?)",
        "1 sales-ready lead waiting for an owner, the longest queued 2 h ago (is the route-leads deployment running, "
        "and do its runs finish?)",
        "the SLA flow is behind: 1 running timer with a step due, the oldest due 2 h ago, so reminders, escalations "
        "and reassignments wait (is the sla deployment running, and do its runs finish?)",
        "2 notifications not sent, the oldest written 2 h ago: route-leads and SLA runs send them, a new owner's once "
        "the CRM holds the owner (are those runs finishing, does the channel answer?)"]


def test_writes_and_notifications_given_up_are_problems_until_a_person_gives_them_back(engine, crm_on):
    _, _, ana = mql(engine)
    handed_over(engine, ana, given_up=True)
    soon = NOW + timedelta(minutes=20)
    assert handoff_problems(gather_facts(soon)) == [
        "1 CRM write given up, the oldest 20 min ago: each waits for a person (`handoff crm failures` shows the CRM's "
        "errors; fix the cause, then `handoff crm retry`)",
        "1 notification given up after the most sends allowed, so their people were never told: each keeps its error "
        "(runbook, Notifications: fix the cause, then clear them)"]
    with engine.begin() as conn:
        crm_store.requeue(conn)
        conn.execute(Notification.__table__.update().values(given_up_at=None))
    assert handoff_problems(gather_facts(soon)) == []


def test_a_crm_sync_that_is_off_is_shown_as_such_and_its_writes_are_not_judged(engine, configured):
    _, _, ana = mql(engine)
    handed_over(engine, ana, given_up=True)
    facts = gather_facts(NOW + timedelta(hours=2))
    assert facts.crm == CrmFacts(enabled=False)
    assert not [f for f in assess(facts, POLICY) if f.area == "crm"]
    assert "## CRM sync\n\nOff (`enabled` in config/crm.yaml, `HANDOFF_SALESFORCE_ENABLED`): not configured" in \
           health_markdown(facts, assess(facts, POLICY))


def test_a_crm_or_notifications_file_that_does_not_load_is_named_without_the_urls_it_quotes(engine, configured,
                                                                                           handoff_env, tmp_path):
    (tmp_path / "crm.yaml").write_text("enabled: true\nfields: {}\n")
    handoff_env(HANDOFF_CRM_FILE=str(tmp_path / "crm.yaml"), HANDOFF_NOTIFY_ALSO="[slack://T0/B0/secret-token")
    crm, notifications = handoff_problems(gather_facts(NOW))
    assert crm.startswith("the CRM file does not load, so the CRM sync, routing and SLA runs fail: ")
    assert "crm.yaml: fields:" in crm and "the key field" in crm
    assert notifications.startswith("the notifications file does not load, so route-leads and SLA runs fail")
    assert "also: '[<url>' is not a YAML list of URLs" in notifications and "secret-token" not in notifications


def test_the_report_reads_as_a_page_and_as_json(engine, crm_on):
    _, _, ana = mql(engine)
    handed_over(engine, ana, given_up=True)
    facts = gather_facts(NOW + timedelta(hours=2))
    findings = assess(facts, POLICY)
    page = health_markdown(facts, findings)
    assert "**7 problems to look at.**" in page
    assert "| PROBLEM | events | 1 lead event never sent, the oldest written 2 h ago" in page
    assert "| web | yes | — | — | — | 0 |" in page and "| crm_sync | 1 | 2026-11-02 12:00 UTC (2 h ago) |" in page
    for section in ("| last pull finished | 2026-11-02 12:00 UTC (2 h ago) |",
                    "| writes given up, waiting for a person | 1 (the oldest 2 h ago; `handoff crm failures`) |",
                    "| sales-ready leads waiting for an owner | 1 (the longest queued 2 h ago) |",
                    "| open | reminded | breached | with a step due now |\n|---:|---:|---:|---:|\n| 1 | 1 | 0 | 1 (the "
                    "oldest due 2 h ago) |",
                    "Each person by `mailto`.",
                    "| waiting | failed, to be tried again | sent | given up | unconfirmed |\n"
                    "|---:|---:|---:|---:|---:|\n| 1 | 1 | 1 | 1 | 1 |"):
        assert section in page
    data = json.loads(json.dumps(health_json(facts, findings)))
    assert data["healthy"] is False and data["facts"]["leads"] == 1
    assert data["findings"][0] == {"level": "problem", "area": "events", "text": findings[0].text}
    assert data["facts"]["oldest_unsent"] == "2026-11-02T12:00:00Z"
    assert data["facts"]["crm"]["pulled_at"] == "2026-11-02T12:00:00Z" and data["facts"]["sla"]["steps_due"] == 1


def test_status_prints_the_report_and_exits_1_on_a_problem_only_when_asked_to_check(engine, configured):
    from typer.testing import CliRunner

    from handoff.cli import app

    mql(engine)
    status = lambda *args: CliRunner().invoke(app, ["status", *args], catch_exceptions=False)  # noqa: E731
    soon, late = (NOW + timedelta(minutes=m) for m in (5, 45))
    assert status("--check", "--now", soon.isoformat()).exit_code == 0
    shown = status("--now", late.isoformat())
    assert shown.exit_code == 0 and "2 problems to look at." in shown.output
    assert all(section in shown.output for section in ("CRM sync", "Routing", "SLA timers running", "Notifications"))
    checked = status("--check", "--json", "--now", late.isoformat())
    assert checked.exit_code == 1
    report = json.loads(checked.output)
    assert report["healthy"] is False and [f["area"] for f in report["findings"]] == ["events", "routing", "ingest",
                                                                                      "queues"]
    assert "not an ISO-8601 time" in CliRunner().invoke(app, ["status", "--now", "soon"]).output


@pytest.mark.slow
def test_the_flow_publishes_the_report_and_fails_naming_each_problem(prefect_server, engine, crm_on):
    from flows.health import health_check
    from tests.flow_support import run_artifacts

    _, _, ana = mql(engine)
    handed_over(engine, ana)
    fine = health_check(now=NOW + timedelta(minutes=5), return_state=True)
    assert fine.is_completed()
    assert fine.message == "All clear: from ingest to the notifications, the line is keeping up."
    assert fine.result()["healthy"] is True

    with engine.begin() as conn:  # a CRM write and a notification given up
        conn.execute(CrmRecord.__table__.update().values(dead_at=NOW))
        conn.execute(Notification.__table__.update().where(Notification.__table__.c.key == "test:sent")
                     .values(sent_at=None, given_up_at=NOW))
    failed = health_check(now=NOW + timedelta(hours=2), return_state=True)
    assert failed.is_failed()
    assert failed.message == (
        "7 problems to look at. (1) events: 1 lead event never sent, the oldest written 2 h ago: the next scoring run "
        "or stage move sends them (2) crm: no pull from the CRM has finished for 2 h (is the crm-sync deployment "
        "running, and do its runs finish?) (3) crm: 1 CRM write given up, the oldest 2 h ago: each waits for a person "
        "(`handoff crm failures` shows the CRM's errors; fix the cause, then `handoff crm retry`) (4) routing: 1 "
        "sales-ready lead waiting for an owner, the longest queued 2 h ago (is the route-leads deployment running, and "
        "do its runs finish?) (5) sla: the SLA flow is behind: 1 running timer with a step due, the oldest due 2 h "
        "ago, so reminders, escalations and reassignments wait (is the sla deployment running, and do its runs "
        "finish?) (6) notifications: 1 notification given up after the most sends allowed, so their people were "
        "never told: each keeps its error (runbook, Notifications: fix the cause, then clear them) (7) notifications: "
        "2 notifications not sent, the oldest written 2 h ago: route-leads and SLA runs send them, a new owner's once "
        "the CRM holds the owner (are those runs finishing, does the channel answer?)")
    page = run_artifacts(str(failed.state_details.flow_run_id))["handoff-health"]
    assert page.type == "markdown" and page.description == "7 problems to look at."
    assert "| PROBLEM | events | 1 lead event never sent" in page.data and "## SLA timers running" in page.data
