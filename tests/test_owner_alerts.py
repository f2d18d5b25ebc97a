"""Owner alerts (the relationship-owner scenario): the rep who already owns a lead is told when it engages with a
campaign, at most once per quiet period, and when its score reaches the readiness level, once; an unowned lead
alerts nobody; each alert is enqueued and sent once, whatever crashes or runs twice."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from config.loading import ConfigError
from config.notifications import NotificationConfig, OwnerAlertConfig, load_notifications
from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from config.teams import load_teams
from domain.activity import PersonRecord, build_activity
from domain.notifications import Engagement, LeadFacts, Message, Person, owner_alert
from domain.owner_alerts import AlertRules, AlertState, AssignedOwner, CrmOwner, LeadLook, decide, owner_of
from sandbox.mailbox import Mailbox
from store import owner_alerts as alert_store
from store import scoring
from store.ingest import write_batch
from store.tables import Assignment, CrmRecord, CrmUser, Notification
from tasks import notify
from tasks.alerts import alert_owners
from tasks.notify import send_notifications
from tasks.scoring import score_chunk
from tests.crm_support import point_at, scored_world, synced_world  # noqa: F401 - fixtures
from tests.test_notifications import TEAMS

UTC = timezone.utc
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # Mon 2 Nov 13:00 in Berlin
REP, OTHER_REP = "jonas.weber@sales.example", "sophie.martin@sales.example"
JONAS, SOPHIE, INTEGRATION = "005000000000001AAA", "005000000000002AAA", "005000000000009AAA"
QUEUE = "00G000000000001AAA"
ANA = "ana.example@acme.example"
INSTANCE = "https://acme.my.salesforce.com"


@pytest.fixture(scope="module")
def teams():
    return load_teams(Path("teams.yaml"), text=TEAMS)


def alerting(port: int = 25, **owner_alerts) -> NotificationConfig:
    return NotificationConfig(person=f"mailto://127.0.0.1:{port}?from=handoff@sales.example&to={{email}}",
                              owner_alerts=OwnerAlertConfig(**owner_alerts))


# ---------------------------------------------------------------------------------------------- a small world

class World:
    """Leads with marketing activities, scored, some of them owned in the CRM (as the last pull left it)."""

    def __init__(self, engine, teams):
        self.engine, self.teams = engine, teams
        self.rulebook = load_rulebook(CONFIG_DIR)
        with engine.begin() as conn:
            self.version_id = scoring.ensure_version(conn, self.rulebook, T0)
            conn.execute(CrmUser.__table__.insert(), [
                {"crm_id": JONAS, "email": REP, "name": "Jonas Weber", "active": True, "timezone": "Europe/Berlin"},
                {"crm_id": SOPHIE, "email": OTHER_REP, "name": "Sophie Martin", "active": True, "timezone": None},
                {"crm_id": INTEGRATION, "email": "integration@sales.example", "name": "Integration", "active": True,
                 "timezone": None}])
        self.n = 0

    def person(self, email: str, first: str, company: str, *, owner: str | None = None) -> int:
        """A person who filled a form a week ago, owned in the CRM by `owner` (a CRM id) when given."""
        self.did(email, "form_fill", T0 - timedelta(days=7), "Contact us", now=T0 - timedelta(days=7),
                 people=[PersonRecord(source="web", source_contact_id=None, email=email, first_name=first,
                                      last_name="Example", company=company, title="Head of Sales Operations",
                                      country="DE")])
        lead_id = self.lead(email)
        if owner:
            with self.engine.begin() as conn:
                conn.execute(CrmRecord.__table__.insert().values(
                    lead_id=lead_id, object="Lead", crm_id=f"00Q{lead_id:015d}", owner_id=owner,
                    pulled_at=T0 - timedelta(days=6)))
        return lead_id

    def did(self, email, kind, at, asset=None, campaign=None, *, now=None, people=()) -> None:
        """An activity, ingested and scored at `now` (default: when it happened, plus five minutes)."""
        self.n += 1
        now = now or at + timedelta(minutes=5)
        record = build_activity(source="web", external_id=f"a-{self.n}", type_name=kind, occurred_at=at.isoformat(),
                                raw={"n": self.n}, email=email, asset=asset, campaign=campaign)
        write_batch(self.engine, source="web", activities=[record], people=list(people), rejections=[],
                    checkpoint=None, now=now)
        self.score(now)

    def ingest_only(self, email, kind, at, asset=None, campaign=None) -> None:
        self.n += 1
        record = build_activity(source="web", external_id=f"a-{self.n}", type_name=kind, occurred_at=at.isoformat(),
                                raw={"n": self.n}, email=email, asset=asset, campaign=campaign)
        write_batch(self.engine, source="web", activities=[record], people=[], rejections=[], checkpoint=None, now=at)

    def score(self, now) -> None:
        with self.engine.connect() as conn:
            dirty = scoring.dirty_leads(conn, 1000)
        leads = [lead_id for lead_id, _ in dirty]
        score_chunk(self.engine, self.rulebook, self.version_id, leads, now=now, run_id="r", rebuild=leads, dirty=dirty)

    def lead(self, email: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT id FROM lead WHERE email = :e"), {"e": email}).scalar_one()

    def alert(self, now, config=None, **kwargs):
        return alert_owners(self.engine, config or alerting(), self.teams, now=now, run_id="test",
                            instance_url=INSTANCE, **kwargs)

    def outbox(self) -> list[dict]:
        t = Notification.__table__
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(t).order_by(t.c.id)).mappings()]


@pytest.fixture
def world(engine, teams) -> World:
    return World(engine, teams)


def clicked(world: World, at: datetime, email=ANA, name="November product update", campaign="Q4 nurture"):
    world.did(email, "email_click", at, name, campaign)


# ---------------------------------------------------------------------------------------------- engagement

def test_an_owned_lead_s_campaign_click_alerts_its_owner_once_within_the_quiet_period(world):
    lead_id = world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
    clicked(world, T0 - timedelta(minutes=10))

    first = world.alert(T0)

    assert (first.alerts, first.engaged, first.by_owner) == (1, 1, {REP: 1})
    [alert] = world.outbox()
    assert (alert["recipient"], alert["kind"], alert["lead_id"]) == (REP, "owner_alert", lead_id)
    assert alert["subject"] == ("Your lead Ana Example, Acme GmbH engaged: Clicked in e-mail 'November product update' "
                                "(campaign Q4 nurture)")
    assert "Ana Example just engaged: Clicked in e-mail 'November product update' (campaign Q4 nurture), " \
           "Mon 2 Nov 12:50." in alert["body"]
    assert "Campaign: Q4 nurture" in alert["body"]
    assert "You are told because you own it in the CRM; nothing was re-routed." in alert["body"]
    assert f"In the CRM: {INSTANCE}/lightning/r/Lead/00Q{lead_id:015d}/view" in alert["body"]
    assert "No other engagement alert for this lead before Tue 3 Nov 13:00 Europe/Berlin." in alert["body"]
    assert world.alert(T0 + timedelta(minutes=5)).alerts == 0  # nothing new

    clicked(world, T0 + timedelta(hours=1), name="Webinar invitation", campaign="Q4 webinars")
    inside = world.alert(T0 + timedelta(hours=1, minutes=5))
    assert (inside.alerts, inside.quiet) == (0, 1) and len(world.outbox()) == 1

    clicked(world, T0 + timedelta(hours=25), name="December offer", campaign="Year-end push")
    after = world.alert(T0 + timedelta(hours=25, minutes=5))
    assert after.alerts == 1
    latest = world.outbox()[-1]
    assert latest["subject"].endswith("Clicked in e-mail 'December offer' (campaign Year-end push)")
    assert "Before that:" not in latest["body"]  # the click held back is not told after all


def test_a_lead_moved_to_another_rep_in_the_crm_alerts_its_new_owner_inside_the_former_owner_s_quiet_period(world):
    lead_id = world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
    clicked(world, T0 - timedelta(minutes=10))
    assert world.alert(T0).alerts == 1
    with world.engine.begin() as conn:  # the next pull finds Sophie the owner
        conn.execute(CrmRecord.__table__.update().where(CrmRecord.__table__.c.lead_id == lead_id)
                     .values(owner_id=SOPHIE))

    clicked(world, T0 + timedelta(hours=1), name="Webinar invitation", campaign="Q4 webinars")
    moved = world.alert(T0 + timedelta(hours=1, minutes=5))

    assert (moved.alerts, moved.quiet) == (1, 0)
    assert [(n["recipient"], n["key"].split(":")[0]) for n in world.outbox()] == \
        [(REP, "owner-engaged"), (OTHER_REP, "owner-engaged")]
    with world.engine.connect() as conn:
        assert conn.execute(text("SELECT engaged_alert_to FROM owner_alert_lead")).scalar_one() == OTHER_REP


def test_activities_that_do_not_count_alert_nobody_but_a_pricing_page_visit_does(world):
    world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
    world.did(ANA, "email_open", T0 - timedelta(minutes=30), "November product update", "Q4 nurture")
    world.did(ANA, "page_view", T0 - timedelta(minutes=20), "/blog/lead-scoring-101")
    assert world.alert(T0).alerts == 0

    world.did(ANA, "page_view", T0 + timedelta(minutes=10), "https://www.handoff.example/pricing/enterprise?ref=mail")
    assert world.alert(T0 + timedelta(minutes=20)).alerts == 1
    [alert] = world.outbox()
    assert alert["subject"].endswith("engaged: Visited 'https://www.handoff.example/pricing/enterprise?ref=mail'")


def test_an_unowned_lead_alerts_nobody(world):
    world.person("ben@nobody.example", "Ben", "Nobody Ltd")  # no CRM record at all
    world.person("cara@queue.example", "Cara", "Queue Co", owner=QUEUE)  # a queue owns the record
    world.person("dan@integration.example", "Dan", "Sync Inc", owner=INTEGRATION)  # an active user, but no rep
    for email in ("ben@nobody.example", "cara@queue.example", "dan@integration.example"):
        world.did(email, "demo_request", T0 - timedelta(minutes=5), "Demo form")

    summary = world.alert(T0)

    assert (summary.activities, summary.owned, summary.alerts) == (3, 0, 0)
    assert world.outbox() == []
    with world.engine.connect() as conn:  # nothing is kept of leads nobody owns
        assert conn.execute(text("SELECT COUNT(*) FROM owner_alert_lead")).scalar_one() == 0


def test_a_lead_handoff_gave_a_rep_since_the_last_pull_alerts_that_rep(world):
    lead_id = world.person(ANA, "Ana", "Acme GmbH", owner=QUEUE)
    with world.engine.begin() as conn:  # routed to Sophie, and the CRM took her as the owner after the last pull
        conn.execute(Assignment.__table__.insert().values(
            lead_id=lead_id, owner_email=OTHER_REP, owner_crm_id=SOPHIE, owner_name="Sophie Martin", rule="territory",
            kind="routed", reason="territory: DE", path="{}", notify_only=False, decided_at=T0 - timedelta(days=1),
            written_at=T0 - timedelta(days=1)))
    clicked(world, T0 - timedelta(minutes=10))

    world.alert(T0)

    [alert] = world.outbox()
    assert alert["recipient"] == OTHER_REP
    assert "Handoff gave it to you and the CRM holds you as its owner" in alert["body"]
    assert "Mon 2 Nov 06:50." in alert["body"]  # on her own clock (New York)


def test_an_activity_from_long_ago_alerts_nobody(world):
    world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
    world.did(ANA, "webinar_attended", T0 - timedelta(days=3), "Routing in practice", "Q4 webinars", now=T0)
    assert world.alert(T0).alerts == 0


# ---------------------------------------------------------------------------------------------- readiness

def test_reaching_the_readiness_level_alerts_once_even_inside_the_quiet_period(world):
    world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)  # a form fill a week ago: about 9 points
    world.did(ANA, "whitepaper_download", T0 - timedelta(minutes=30), "Pipeline alignment guide", "Q4 nurture")
    first = world.alert(T0)
    assert (first.engaged, first.reached) == (1, 0)

    world.did(ANA, "webinar_attended", T0 + timedelta(hours=2), "Routing in practice", "Q4 webinars")
    second = world.alert(T0 + timedelta(hours=2, minutes=10))  # 9 + 30 + 25: over 50

    assert (second.alerts, second.engaged, second.reached, second.quiet) == (1, 0, 1, 1)
    ready = world.outbox()[-1]
    assert ready["key"].startswith("owner-ready:")
    assert ready["subject"] == "Your lead Ana Example, Acme GmbH is at 64 points"
    assert "Their score is 64 points: at or above your alert level of 50." in ready["body"]

    world.did(ANA, "form_fill", T0 + timedelta(hours=3), "Contact us")
    assert world.alert(T0 + timedelta(hours=3, minutes=10)).reached == 0  # still over the level: told once
    assert len(world.outbox()) == 2


def test_readiness_waits_for_the_activities_to_be_scored(world):
    world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
    world.ingest_only(ANA, "demo_request", T0 - timedelta(minutes=5), "Demo form")  # not scored yet

    waiting = world.alert(T0)
    assert (waiting.engaged, waiting.reached, waiting.rechecks) == (1, 0, 1)

    world.score(T0 + timedelta(minutes=1))
    scored = world.alert(T0 + timedelta(minutes=2))  # no new activity: the lead is looked at again
    assert (scored.reached, scored.rechecks) == (1, 0)
    assert [r["key"].split(":")[0] for r in world.outbox()] == ["owner-engaged", "owner-ready"]


# ---------------------------------------------------------------------------------------------- once

class Killed(BaseException):
    """The alerting process dies here (nothing of Handoff's catches a BaseException)."""


def test_a_look_killed_before_it_commits_leaves_nothing_and_the_next_run_alerts_once(world, monkeypatch):
    world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
    clicked(world, T0 - timedelta(minutes=10))

    def dies(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(alert_store, "move_cursor", dies)
    with pytest.raises(Killed):
        world.alert(T0)
    monkeypatch.undo()
    assert world.outbox() == []  # enqueued and rolled back with the cursor

    assert world.alert(T0 + timedelta(minutes=5)).alerts == 1
    assert world.alert(T0 + timedelta(minutes=6)).alerts == 0
    assert len(world.outbox()) == 1


def test_the_webhook_path_alerts_at_once_and_the_cursor_s_pass_finds_the_lead_already_told(world):
    lead_id = world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
    world.alert(T0 - timedelta(minutes=30))  # the cursor past the history
    clicked(world, T0 - timedelta(minutes=1))

    now = world.alert(T0, lead_ids=[lead_id])
    assert now.alerts == 1
    later = world.alert(T0 + timedelta(minutes=5))  # the scheduled pass over the same activity
    assert (later.activities, later.alerts, later.quiet) == (1, 0, 0)
    assert len(world.outbox()) == 1
    assert world.alert(T0 + timedelta(minutes=6), lead_ids=[lead_id]).alerts == 0


def test_two_alert_runs_at_once_alert_each_owner_once(world):
    for n in range(6):
        world.person(f"p{n}@acme.example", f"P{n}", "Acme GmbH", owner=JONAS if n % 2 else SOPHIE)
        clicked(world, T0 - timedelta(minutes=10), email=f"p{n}@acme.example")
    start, results, errors = threading.Barrier(2), [], []

    def run(lead_ids):
        start.wait()
        try:
            results.append(world.alert(T0, lead_ids=lead_ids))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    ids = [world.lead(f"p{n}@acme.example") for n in range(6)]
    threads = [threading.Thread(target=run, args=(ids,)), threading.Thread(target=run, args=(None,))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(r.alerts for r in results) == 6
    assert sorted(r["lead_id"] for r in world.outbox()) == sorted(ids)


@pytest.mark.slow
def test_an_alert_reaches_the_owner_by_email_once_though_the_sending_run_died_and_both_ran_again(world, monkeypatch):
    world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
    world.person("eva@acme.example", "Eva", "Acme GmbH", owner=SOPHIE)
    clicked(world, T0 - timedelta(minutes=10))
    clicked(world, T0 - timedelta(minutes=9), email="eva@acme.example", name="Case study", campaign="Q4 nurture")
    with Mailbox() as mailbox:
        config = alerting(mailbox.port)
        world.alert(T0, config)
        real = notify.deliver

        def dies_after_the_first_send(url, **message):
            real(url, **message)
            raise Killed()

        monkeypatch.setattr(notify, "deliver", dies_after_the_first_send)
        with pytest.raises(Killed):  # killed between the receiver taking the first alert and Handoff noting it
            send_notifications(world.engine, config, now=T0)
        monkeypatch.setattr(notify, "deliver", real)
        for minutes in (1, 2):  # both run again
            world.alert(T0 + timedelta(minutes=minutes), config)
            send_notifications(world.engine, config, now=T0 + timedelta(minutes=minutes))

        assert sorted(m.recipients[0] for m in mailbox.mails) == sorted([REP, OTHER_REP])  # each once
        [mail] = mailbox.to(REP)
        assert mail.header("X-Handoff-Notification").startswith("owner-engaged:")
        assert mail.subject.endswith("(campaign Q4 nurture)") and "Campaign: Q4 nurture" in mail.text


# ---------------------------------------------------------------------------------------------- PostgreSQL

@pytest.mark.postgres
def test_an_activity_committed_after_a_higher_id_is_not_passed_by_the_cursor(postgres_template, teams, monkeypatch):
    from store.engine import make_engine
    from tests.conftest import _postgres_copy

    url, drop = _postgres_copy(postgres_template)
    engine = make_engine(url)
    try:
        world = World(engine, teams)
        world.person(ANA, "Ana", "Acme GmbH", owner=JONAS)
        world.person("eva@acme.example", "Eva", "Acme GmbH", owner=SOPHIE)
        world.alert(T0 - timedelta(hours=1))
        monkeypatch.setattr(alert_store, "LOCK_TIMEOUT", "200ms")
        late = engine.connect()
        in_flight = late.begin()  # an ingest batch still under way holds a lower id
        late.execute(text("INSERT INTO activity (source, external_id, lead_id, type, asset, campaign, occurred_at, "
                          "ingested_at, raw) VALUES ('web', 'late', :lead, 'email_click', 'November product update', "
                          "'Q4 nurture', :at, :at, '{}')"), {"lead": world.lead(ANA), "at": T0 - timedelta(minutes=3)})
        clicked(world, T0 - timedelta(minutes=2), email="eva@acme.example")  # committed first, with a higher id

        waiting = world.alert(T0)
        assert waiting.cursor_waited and waiting.alerts == 0
        in_flight.commit()
        late.close()
        after = world.alert(T0 + timedelta(minutes=1))
        assert not after.cursor_waited and after.alerts == 2
        assert sorted(r["recipient"] for r in world.outbox()) == sorted([REP, OTHER_REP])
    finally:
        engine.dispose()
        drop()


# ---------------------------------------------------------------------------------------------- the rules

RULES = AlertRules(quiet_period=timedelta(hours=24), readiness_level=5000)
JONAS_PERSON = Person(REP, "Jonas Weber")


def engagement(n: int, kind="email_click", at=T0, asset="November product update", campaign="Q4 nurture"):
    return Engagement(kind, asset, campaign, at, n)


def look(*activities, score=1000, state=AlertState(), unscored=False) -> LeadLook:
    return LeadLook(1, JONAS_PERSON, "you own it in the CRM", tuple(activities), score, unscored, state)


def test_a_click_inside_the_quiet_period_is_held_back_and_one_after_it_alerts():
    [first] = decide([look(engagement(10))], RULES, T0)
    assert first.engaged and first.state.engaged_alert_at == T0 and first.key == "owner-engaged:1:10"

    [inside] = decide([look(engagement(11, at=T0 + timedelta(hours=23)), state=first.state)], RULES,
                      T0 + timedelta(hours=23, minutes=59))
    assert not inside.alerted and inside.held_back == 1 and inside.state.looked_through == 11
    assert inside.state.engaged_alert_at == T0

    [after] = decide([look(engagement(12, at=T0 + timedelta(hours=24)), state=inside.state)], RULES,
                     T0 + timedelta(hours=24))
    assert after.engaged == (engagement(12, at=T0 + timedelta(hours=24)),)


def test_a_new_owner_is_not_kept_quiet_by_the_alert_the_former_owner_had():
    [first] = decide([look(engagement(10))], RULES, T0)
    assert first.state.engaged_alert_to == REP
    sam = Person("sam.carter@handoff-demo.example", "Sam Carter")
    later = T0 + timedelta(hours=2)
    moved = LeadLook(1, sam, "you own it in the CRM", (engagement(11, at=later),), 1000, False, first.state)
    [told] = decide([moved], RULES, later)
    assert told.owner == sam and told.engaged == (engagement(11, at=later),)
    assert told.state.engaged_alert_to == sam.email and told.state.engaged_alert_at == later
    # The same rep under another spelling of the address is the same rep, kept quiet
    [same] = decide([look(engagement(12, at=later), state=replace(first.state, engaged_alert_to=REP.upper()))],
                    RULES, later)
    assert not same.alerted and same.held_back == 1
    # An alert remembered from before whom it told was kept: the quiet period holds for whoever owns the lead
    [legacy] = decide([replace(moved, state=replace(first.state, engaged_alert_to=None))], RULES, later)
    assert not legacy.alerted and legacy.held_back == 1


def test_activities_already_looked_at_or_too_old_alert_nobody():
    seen = AlertState(looked_through=10)
    assert not decide([look(engagement(10), state=seen)], RULES, T0)[0].alerted
    old = engagement(11, at=T0 - timedelta(hours=25))
    [decision] = decide([look(old)], RULES, T0)
    assert not decision.alerted and decision.state.looked_through == 11


def test_the_engagements_are_named_newest_first():
    older, newer = engagement(5, "whitepaper_download", T0 - timedelta(hours=1), "Guide"), engagement(6)
    assert decide([look(older, newer)], RULES, T0)[0].engaged == (newer, older)


def test_only_a_crossing_of_the_readiness_level_alerts_and_a_fall_below_rearms_it():
    [crossed] = decide([look(engagement(1, "page_view", asset="/blog"), score=5200)], RULES, T0)
    assert crossed.reached == 5200 and not crossed.engaged and crossed.key == "owner-ready:1:1"
    [still] = decide([look(engagement(2, "page_view", asset="/blog"), score=5600, state=crossed.state)], RULES, T0)
    assert still.reached is None and still.state.ready
    [fell] = decide([look(engagement(3, "page_view", asset="/blog"), score=4900, state=still.state)], RULES, T0)
    assert not fell.state.ready
    [again] = decide([look(engagement(4, "page_view", asset="/blog"), score=5000, state=fell.state)], RULES, T0)
    assert again.reached == 5000


def test_readiness_is_decided_once_the_activities_are_scored():
    [waiting] = decide([look(engagement(1, "demo_request", asset="Demo form", campaign=None), score=900,
                             unscored=True)], RULES, T0)
    assert waiting.engaged and waiting.reached is None and waiting.state.recheck
    [scored] = decide([look(score=10900, state=waiting.state)], RULES, T0 + timedelta(minutes=5))
    assert scored.reached == 10900 and not scored.state.recheck and not scored.engaged


def test_a_page_view_counts_only_on_the_configured_pages():
    for asset, counts in [("/pricing", True), ("/pricing/enterprise", True), ("https://x.example/Pricing/?a=1", True),
                          ("/pricingplans", False), ("/blog/pricing", False), (None, False)]:
        assert RULES.counts(Engagement("page_view", asset, None, T0)) is counts, asset


def test_the_crm_owner_wins_unless_handoff_wrote_its_own_since_the_last_pull(teams):
    pulled = T0 - timedelta(hours=1)
    jonas = CrmOwner(JONAS, REP, "Jonas Weber", True, pulled)
    sophie_before = AssignedOwner(OTHER_REP, "Sophie Martin", written_at=pulled - timedelta(minutes=1))
    sophie_since = AssignedOwner(OTHER_REP, "Sophie Martin", written_at=pulled + timedelta(minutes=1))

    assert owner_of(jonas, sophie_before, teams)[0].email == REP  # a person moved the record since Handoff wrote
    assert owner_of(jonas, sophie_since, teams)[0].email == OTHER_REP
    assert owner_of(None, sophie_since, teams)[0].email == OTHER_REP
    assert owner_of(None, AssignedOwner(OTHER_REP, written_at=None), teams) == (None, "it has no owner")
    assert owner_of(None, AssignedOwner(None, written_at=pulled), teams)[0] is None  # Handoff gave it to a queue


def test_nobody_owns_a_lead_whose_owner_is_a_queue_a_leaver_or_no_rep(teams):
    assert owner_of(CrmOwner(QUEUE), None, teams) == (None, f"its CRM owner {QUEUE} is no CRM user (a queue?)")
    assert owner_of(CrmOwner(JONAS, REP, "Jonas", active=False), None, teams)[0] is None
    assert owner_of(CrmOwner(INTEGRATION, "integration@sales.example", "Integration", True), None, teams) == \
        (None, "its owner integration@sales.example is not a rep in the sales teams")
    assert owner_of(None, AssignedOwner(REP, written_at=T0, active=False), teams)[0] is None


def test_the_alert_names_the_lead_the_activity_its_asset_and_campaign_and_the_score():
    lead = LeadFacts(lead_id=1, email=ANA, first_name="Ana", last_name="Example", company="Acme GmbH", score=6420,
                     fit_grade="A")
    message = owner_alert(lead, JONAS_PERSON, engaged=(engagement(9, "webinar_attended", asset="Routing in practice",
                                                                  campaign="Q4 webinars"),),
                          reached=6420, level=5000, why_owner="you own it in the CRM", quiet_until=T0 + timedelta(1),
                          key="owner-engaged:1:9", now=T0, zone="Europe/Berlin")

    assert message.subject == ("Your lead Ana Example, Acme GmbH engaged: Attended webinar 'Routing in practice' "
                               "(campaign Q4 webinars), score now 64")
    assert "Score: 64, fit A" in message.body
    assert "Their score is 64 points: at or above your alert level of 50." in message.body
    assert "Not in the CRM yet." in message.body


# ---------------------------------------------------------------------------------------------- the config

def test_the_shipped_file_alerts_on_campaign_engagement_with_a_day_s_quiet_period():
    rules = load_notifications(CONFIG_DIR / "notifications.yaml", env={}).owner_alerts.rules()
    assert rules.enabled and rules.quiet_period == timedelta(hours=24) and rules.readiness_level == 5000
    assert "email_click" in rules.activity_types and "email_open" not in rules.activity_types
    assert rules.pages == ("/pricing",)


@pytest.mark.parametrize("section, problem", [
    ("activity_types: [email_click, email_klick]", "owner_alerts.activity_types"),
    ("quiet_hours: -1", "owner_alerts.quiet_hours"),
    ("pages: [pricing]", "owner_alerts.pages"),
    ("readiness: 50", "owner_alerts.readiness"),
])
def test_a_wrong_owner_alerts_section_names_the_key(tmp_path, section, problem):
    path = tmp_path / "notifications.yaml"
    path.write_text(f'person: "mailto://localhost?to={{email}}"\nowner_alerts:\n  {section}\n')
    with pytest.raises(ConfigError, match=problem):
        load_notifications(path, env={})


# ---------------------------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_route_leads_alerts_the_rep_who_owns_a_lead_in_salesforce_of_its_click_by_email_and_nobody_for_a_queue(
        scored_world, tmp_path, sandbox_factory, point_at, prefect_server):
    from flows.routing import route_leads
    from flows.score import score_and_qualify
    from tests.test_routing_flow import smtp

    world = synced_world(scored_world, tmp_path, sandbox_factory)
    with Mailbox() as mailbox:
        point_at(world, **smtp(mailbox))
        with world.engine.connect() as conn:  # two people with nothing new for a day, and no handoff
            quiet = conn.exec_driver_sql(
                "SELECT l.id, l.email FROM lead l JOIN lead_state s ON s.lead_id = l.id WHERE s.stage IN "
                "('subscriber', 'lead') AND l.email IS NOT NULL AND NOT EXISTS (SELECT 1 FROM activity a WHERE "
                "a.lead_id = l.id AND a.occurred_at >= ?) ORDER BY l.id LIMIT 2",
                (world.now - timedelta(days=1),)).fetchall()
        (owned, owned_email), (queued, queued_email) = quiet
        client = world.client()
        jordan = world.org("SELECT Id FROM User WHERE Username LIKE 'jordan.blake%'")[0]["Id"]
        [queue] = client.queue_ids(["Inbound Leads"]).values()
        for email, owner in ((owned_email, jordan), (queued_email, queue)):  # sales knew them already
            client.call("a rep's own lead", lambda sf, email=email, owner=owner: sf.Lead.create(
                {"LastName": "Known", "Company": "Known Co", "Email": email, "OwnerId": owner},
                headers={"Sforce-Auto-Assign": "FALSE"}))
        route_leads(now=world.now)  # the pull links them, with their owners
        before = len(mailbox.mails)

        later = world.now + timedelta(minutes=10)
        for n, email in enumerate((owned_email, queued_email)):
            write_batch(world.engine, source="mautic", rejections=[], checkpoint=None, now=later, people=[],
                        activities=[build_activity(source="mautic", external_id=f"click-{n}", type_name="email_click",
                                                   occurred_at=(later - timedelta(minutes=2)).isoformat(), raw={},
                                                   email=email, asset="November product update",
                                                   campaign="Q4 nurture")])
        score_and_qualify(now=later)
        summary = route_leads(now=later)
        route_leads(now=later + timedelta(minutes=5))  # the next run tells nobody again
        alerts_and_more = mailbox.mails[before:]

        def broken(*args, **kwargs):
            raise RuntimeError("an owner alert bug")

        with world.engine.begin() as conn:  # something routing's run has to send
            notify.enqueue_messages(conn, [Message("test:1", "test", REP, "Note", "Body\n")], alerting(), later)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("tasks.alerts.alert_owners", broken)
            with pytest.raises(RuntimeError, match="an owner alert bug"):
                route_leads(now=later + timedelta(minutes=10))
        assert [m.subject for m in mailbox.to(REP)] == ["Note"]  # sent all the same, then the run failed

    alerts = [m for m in alerts_and_more if (m.header("X-Handoff-Notification") or "").startswith("owner-")]
    [alert] = alerts
    assert alert.recipients == ("jordan.blake@handoff-demo.example",)
    assert alert.header("X-Handoff-Notification").startswith(f"owner-engaged:{owned}:")
    assert alert.subject.endswith("engaged: Clicked in e-mail 'November product update' (campaign Q4 nurture)")
    assert "You are told because you own it in the CRM; nothing was re-routed." in alert.text
    assert "/lightning/r/Lead/" in alert.text
    assert "**Owner alerts**: 1 to the reps who own the leads (1 of engagement" in summary.markdown
    with world.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM notification WHERE kind = 'owner_alert' AND lead_id = ?",
                                    (queued,)).scalar_one() == 0
    world.engine.dispose()
