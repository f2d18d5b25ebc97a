"""The route-leads flow end to end: the scored world's MQLs given owners by the routing rules, the owners written to
the Salesforce stand-in through the real connector, each decision logged with its path and timed by the SLA; a
relationship owner keeps their lead; nothing routed twice, by one run or two at once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from config.settings import CONFIG_DIR
from sandbox.salesforce import SalesforceFaults
from store.engine import make_engine
from store.tables import Assignment, HandoffQueue, LeadState, SlaTimerRow
from tests.crm_support import WORLD, Synced, point_at, scored_world, synced_world  # noqa: F401 - fixtures
from tests.flow_support import FAST

pytestmark = pytest.mark.slow


@pytest.fixture
def world(scored_world, tmp_path, sandbox_factory, point_at, prefect_server) -> Synced:  # noqa: F811
    synced = synced_world(scored_world, tmp_path, sandbox_factory)
    point_at(synced)
    yield synced
    synced.engine.dispose()


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__).where(*where)).scalar_one()


def current(engine) -> dict[int, dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(Assignment.__table__).where(Assignment.__table__.c.superseded_at.is_(None)))
        return {row["lead_id"]: dict(row) for row in rows.mappings()}


def test_every_waiting_mql_gets_one_owner_the_crm_holds_and_a_second_run_routes_nothing(world):
    from flows.routing import route_leads

    summary = route_leads(now=world.now)
    mqls = count(world.engine, LeadState, LeadState.__table__.c.stage == "mql")  # after the pull: sales took some
    assert summary.routed + summary.kept + summary.to_queue == mqls > 0 and summary.routed > 0
    assigned = current(world.engine)
    assert len(assigned) == mqls
    assert all(a["written_at"] is not None for a in assigned.values() if a["owner_crm_id"])
    owners = {r["Handoff_Id__c"]: r["OwnerId"] for r in world.org(
        "SELECT Handoff_Id__c, OwnerId FROM Lead WHERE Handoff_Id__c != null")}
    owners.update({r["Handoff_Id__c"]: r["OwnerId"] for r in world.org(
        "SELECT Handoff_Id__c, OwnerId FROM Contact WHERE Handoff_Id__c != null")})
    for lead_id, assignment in assigned.items():
        if assignment["owner_crm_id"] and not assignment["notify_only"]:
            assert owners[f"handoff:{lead_id}"] == assignment["owner_crm_id"], lead_id
    assert count(world.engine, HandoffQueue, HandoffQueue.__table__.c.queue == "routing",
                 HandoffQueue.__table__.c.done_at.is_(None)) == 0
    assert count(world.engine, SlaTimerRow) == sum(1 for a in assigned.values() if a["owner_email"])
    again = route_leads(now=world.now)
    assert again.decisions == [] and len(current(world.engine)) == mqls
    assert "No sales-ready lead was waiting" in again.markdown


def test_a_lead_whose_crm_owner_is_a_rep_stays_with_them_and_the_path_says_why(world):
    from flows.routing import route_leads

    with world.engine.connect() as conn:
        email, lead_id = conn.exec_driver_sql(
            "SELECT l.email, l.id FROM lead l JOIN lead_state s ON s.lead_id = l.id WHERE s.stage = 'mql' "
            "ORDER BY l.id LIMIT 1").fetchone()
    client = world.client()
    jordan = world.org("SELECT Id FROM User WHERE Username LIKE 'jordan.blake%'")[0]["Id"]
    client.call("a rep's own lead", lambda sf: sf.Lead.create(  # the relationship owner has this person already
        {"LastName": "Known", "Company": "Known Co", "Email": email, "OwnerId": jordan},
        headers={"Sforce-Auto-Assign": "FALSE"}))
    summary = route_leads(now=world.now)
    assert summary.kept >= 1
    kept = [a for a in current(world.engine).values() if a["notify_only"]]
    assert kept and all(a["kind"] == "kept" and a["rule"] == "relationship owner keeps the lead" for a in kept)
    assert current(world.engine)[lead_id]["owner_crm_id"] == jordan
    routed = [a for a in current(world.engine).values() if not a["notify_only"] and a["owner_email"]]
    assert routed and all('"candidates"' in a["path"] and a["reason"] for a in routed)
    teams = Counter(a["team"] for a in routed)
    assert all(team and team.split("-")[0] in ("americas", "emea") for team in teams)


@pytest.mark.postgres
def test_two_routing_runs_at_once_never_give_a_lead_to_two_reps(postgres_template, prefect_server, handoff_env,
                                                                  sandbox_factory):
    from flows.ingest import ingest
    from flows.score import score_and_qualify
    from tasks.routing import load_rules, route_waiting
    from config.settings import get_settings
    from tests.conftest import _postgres_copy

    url, drop = _postgres_copy(postgres_template)
    try:
        marketing = sandbox_factory(WORLD)
        handoff_env(marketing.env, FAST, HANDOFF_FETCH_IN_SUBPROCESS="false", HANDOFF_DATABASE_URL=url)
        ingest(now=marketing.world.now)
        score_and_qualify(now=marketing.world.now)
        engine = make_engine(url)
        rules = load_rules(get_settings())
        results, errors = [], []

        def run() -> None:
            try:
                results.append(route_waiting(engine, rules, now=marketing.world.now, run_id=None))
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        decided = [d.lead_id for r in results for d in r.decisions]
        assert len(decided) == len(set(decided)) > 0
        with engine.connect() as conn:
            per_lead = conn.execute(select(Assignment.__table__.c.lead_id, func.count()).group_by(
                Assignment.__table__.c.lead_id)).all()
        assert per_lead and all(n == 1 for _, n in per_lead)
        engine.dispose()
    finally:
        drop()
