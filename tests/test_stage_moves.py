"""Stage moves people ask for: a lead recycled or disqualified with the reason, or a sales stage recorded; all
the asked moves or none; the routing they make moot withdrawn; and a scoring pass never writes a move away."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from sqlalchemy import text

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import build_activity
from domain.lifecycle import Stage
from store import scoring as store
from tasks.explain import explain_lead, explanation_markdown
from tasks.scoring import score_chunk
from tasks.stages import MoveRefused, move_leads
from tests.test_score_flow import lead_events
from tests.test_score_marks import while_paused_after
from tests.test_score_merges import (
    NOW, activity, emails, good_fit, history, merge, queue_rows, score_dirty, states, versioned, write,
)

LATER = NOW + timedelta(hours=2)


def mql(engine, name="ana", source="web"):
    """A well-fitting person who asked for a demo: an MQL, queued for routing and CRM sync. (rulebook, version, lead)"""
    rulebook, version_id = versioned(engine)
    address = f"{name}@acme.example"
    write(engine, source, activity(f"{name}-1", "demo_request", email=address, source=source),
          people=[good_fit(name.title(), email=address, source=source)])
    outcome = score_dirty(engine, rulebook, version_id)
    lead_id = emails(engine)[address]
    assert [m.lead_id for m in outcome.new_mqls] == [lead_id]
    return rulebook, version_id, lead_id


def move(engine, emails_, to, reason="no budget this year", by="jane@revops.example", now=LATER, rulebook=None):
    return move_leads(engine, emails_, to, reason, rulebook=rulebook or load_rulebook(CONFIG_DIR), requested_by=by,
                      now=now, run_id="move-run")


def naming_acme_a_competitor(tmp_path):
    """The shipped rulebook, with acme.example added to the competitors' domains."""
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    rules = tmp_path / "config" / "scoring.yaml"
    rules.write_text(rules.read_text().replace("[rivalrevops.example]", "[rivalrevops.example, acme.example]"))
    return load_rulebook(tmp_path / "config")


def test_recycling_an_mql_records_who_and_why_and_withdraws_its_routing_but_not_its_crm_sync(engine):
    rulebook, version_id, lead_id = mql(engine)

    moves = move(engine, ["  Ana@ACME.example "], Stage.RECYCLED)

    why = "recycled: no budget this year (by jane@revops.example)"
    assert [(m.lead_id, m.email, m.from_stage, m.to_stage, m.reason) for m in moves.moved] == [
        (lead_id, "ana@acme.example", "mql", "recycled", why)]
    assert moves.routing_withdrawn == 1
    assert states(engine)[lead_id][0] == "recycled"
    assert history(engine, lead_id)[-1] == ("mql", "recycled", why)
    assert [(r.queue, r.done_at is not None, r.outcome, r.detail) for r in queue_rows(engine)] == [
        ("crm_sync", False, None, None), ("routing", True, "recycled", why)]

    # Scoring again does not bounce the lead back to sales on the demo request it was recycled after ...
    write(engine, "web", activity("ana-2", "email_open", email="ana@acme.example", source="web"))
    again = score_dirty(engine, rulebook, version_id)
    assert states(engine)[lead_id][0] == "recycled" and not again.new_mqls


def test_a_recycle_disarms_a_trigger_re_armed_while_sales_held_the_lead(engine):
    rulebook, version_id, lead_id = mql(engine)
    with engine.begin() as conn:  # its score fell below the band and climbed back while it waited for sales
        conn.execute(text("UPDATE lead_state SET mql_armed = :armed WHERE lead_id = :lead"), {"armed": True, "lead": lead_id})
    move(engine, ["ana@acme.example"], Stage.RECYCLED, reason="not ready to buy")
    with engine.connect() as conn:
        assert store.lead_state_row(conn, lead_id)["mql_armed"] in (False, 0)
    write(engine, "web", activity("ana-2", "whitepaper_download", email="ana@acme.example", source="web"))
    assert not score_dirty(engine, rulebook, version_id).new_mqls and states(engine)[lead_id][0] == "recycled"


def test_a_new_hand_raise_after_a_recycle_hands_the_lead_over_again(engine):
    rulebook, version_id, lead_id = mql(engine)
    move(engine, ["ana@acme.example"], Stage.RECYCLED, now=NOW + timedelta(minutes=1))
    write(engine, "web", build_activity(source="web", external_id="ana-2", type_name="trial_signup", raw={},
                                        occurred_at=NOW + timedelta(minutes=5), email="ana@acme.example"))
    with engine.connect() as conn:
        dirty = store.dirty_leads(conn, 10)
    outcome = score_chunk(engine, rulebook, version_id, [lead_id], now=LATER, run_id="r2", rebuild=[lead_id],
                          dirty=dirty)
    assert [m.lead_id for m in outcome.new_mqls] == [lead_id] and states(engine)[lead_id][0] == "mql"
    open_routing = [r for r in queue_rows(engine) if r.queue == "routing" and r.done_at is None]
    assert len(open_routing) == 1  # the new crossing's; the recycled one's stays withdrawn


def test_a_disqualified_lead_stays_out_until_a_person_takes_it_back_with_a_reason(engine):
    rulebook, version_id, lead_id = mql(engine)
    move(engine, ["ana@acme.example"], Stage.DISQUALIFIED, reason="a reseller, not a buyer")
    write(engine, "web", activity("ana-2", "contact_sales", email="ana@acme.example", source="web"))
    assert not score_dirty(engine, rulebook, version_id).new_mqls
    assert states(engine)[lead_id][0] == "disqualified"

    back = move(engine, ["ana@acme.example"], Stage.RECYCLED, reason="buys for her own firm too",
                now=LATER + timedelta(minutes=1))
    why = "recycled: buys for her own firm too (by jane@revops.example)"
    assert [(m.from_stage, m.to_stage, m.reason) for m in back.moved] == [("disqualified", "recycled", why)]
    assert history(engine, lead_id)[-1] == ("disqualified", "recycled", why)
    # Back in nurture: the contact-sales request made while she was out does not hand her over; a new one does.
    write(engine, "web", build_activity(source="web", external_id="ana-3", type_name="email_open", raw={},
                                        occurred_at=LATER + timedelta(minutes=5), email="ana@acme.example"))
    assert not score_dirty(engine, rulebook, version_id).new_mqls and states(engine)[lead_id][0] == "recycled"
    write(engine, "web", build_activity(source="web", external_id="ana-4", type_name="demo_request", raw={},
                                        occurred_at=LATER + timedelta(minutes=6), email="ana@acme.example"))
    with engine.connect() as conn:
        dirty = store.dirty_leads(conn, 10)
    outcome = score_chunk(engine, rulebook, version_id, [lead_id], now=LATER + timedelta(hours=1), run_id="r3",
                          rebuild=[lead_id], dirty=dirty)
    assert [m.lead_id for m in outcome.new_mqls] == [lead_id] and states(engine)[lead_id][0] == "mql"


def test_a_lead_its_fit_disqualifies_is_taken_back_only_once_the_rulebook_no_longer_does(engine, tmp_path):
    _, _, lead_id = mql(engine)
    competitor = naming_acme_a_competitor(tmp_path)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, competitor, LATER)
    score_chunk(engine, competitor, version_id, [lead_id], now=LATER, run_id="r", rebuild=[lead_id])
    assert states(engine)[lead_id][0] == "disqualified"

    with pytest.raises(MoveRefused, match=r"fit still disqualifies it \(works for a competitor\)"):
        move(engine, ["ana@acme.example"], Stage.RECYCLED, reason="acme is a customer, not a rival", rulebook=competitor)
    assert states(engine)[lead_id][0] == "disqualified"
    # The marketers take acme.example off the list: the shipped rulebook no longer disqualifies her.
    move(engine, ["ana@acme.example"], Stage.RECYCLED, reason="acme is a customer, not a rival")
    assert states(engine)[lead_id][0] == "recycled"


def test_sales_stages_a_person_records_close_the_routing_sales_no_longer_needs(engine):
    _, _, lead_id = mql(engine)
    moves = move(engine, ["ana@acme.example"], Stage.SQL, reason="accepted on the intro call")
    assert moves.routing_withdrawn == 1 and states(engine)[lead_id][0] == "sql"
    with pytest.raises(MoveRefused, match="only move forward"):
        move(engine, ["ana@acme.example"], Stage.SQL)


def test_all_the_moves_or_none_with_every_problem_listed(engine):
    _, _, ana = mql(engine, "ana")
    _, _, bo = mql(engine, "bo")
    move(engine, ["bo@acme.example"], Stage.CUSTOMER, reason="signed last week")
    before = (states(engine), queue_rows(engine), history(engine, ana))

    with pytest.raises(MoveRefused) as refused:
        move(engine, ["ana@acme.example", "nobody@acme.example", "bo@acme.example", "not an address"], Stage.RECYCLED)

    assert refused.value.problems == [
        "'not an address' is not an e-mail address",
        "nobody@acme.example: no lead has this address",
        f"bo@acme.example (lead {bo}): only a lead in the funnel can be recycled, not a customer",
    ]
    assert (states(engine), queue_rows(engine), history(engine, ana)) == before


@pytest.mark.parametrize("to, reason, problem", [
    (Stage.RECYCLED, "   ", "say why"),
    (Stage.MQL, "looks ready", "reached by the scoring rules alone"),
])
def test_a_move_without_a_reason_or_to_a_marketing_stage_is_refused(engine, to, reason, problem):
    mql(engine)
    with pytest.raises(MoveRefused, match=problem):
        move(engine, ["ana@acme.example"], to, reason=reason)


def test_a_lead_never_scored_and_an_address_merged_away_are_answered_as_people(engine):
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="cy@acme.example", source="newsletter"))
    with pytest.raises(MoveRefused, match="not been scored yet"):
        move(engine, ["cy@acme.example"], Stage.RECYCLED)

    # Two addresses of one person: the lead that remains is moved, once
    _, _, kept = mql(engine, "dee")
    write(engine, "newsletter", activity("n2", "newsletter_signup", email="dee.old@acme.example", source="newsletter"))
    merge(engine, kept, emails(engine)["dee.old@acme.example"])
    moves = move(engine, ["dee.old@acme.example", "dee@acme.example"], Stage.RECYCLED)
    assert [(m.lead_id, m.email) for m in moves.moved] == [(kept, "dee.old@acme.example")]


def test_a_lead_disqualified_by_its_fit_after_its_handoff_was_queued_has_its_routing_withdrawn(engine, tmp_path):
    _, _, lead_id = mql(engine)
    # The rulebook now names acme.example a competitor: the rescore disqualifies the MQL before any rep got it.
    rulebook = naming_acme_a_competitor(tmp_path)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, LATER)
    outcome = score_chunk(engine, rulebook, version_id, [lead_id], now=LATER, run_id="r", rebuild=[lead_id])
    assert outcome.routing_withdrawn == 1 and states(engine)[lead_id][0] == "disqualified"
    assert [(r.queue, r.done_at is not None, r.outcome, r.detail) for r in queue_rows(engine)] == [
        ("crm_sync", False, None, None), ("routing", True, "disqualified", "disqualified: works for a competitor")]


def wrongly_disqualified(engine, tmp_path):
    """Two MQLs, Ana and Bo; a person disqualifies Bo, then a marketer names acme.example a competitor by
    mistake and the rescore takes Ana out too. (the shipped rulebook, its version, Ana's lead, Bo's lead)"""
    rulebook, version_id, ana = mql(engine, "ana")
    _, _, bo = mql(engine, "bo")
    move(engine, ["bo@acme.example"], Stage.DISQUALIFIED, reason="a reseller, not a buyer")
    competitor = naming_acme_a_competitor(tmp_path)
    with engine.begin() as conn:
        wrong = store.ensure_version(conn, competitor, LATER)
    score_chunk(engine, competitor, wrong, [ana, bo], now=LATER, run_id="wrong", rebuild=[ana, bo])
    return rulebook, version_id, ana, bo


def test_leads_the_fit_disqualified_by_a_rulebook_mistake_return_with_the_fixed_rulebook_and_a_person_s_stay_out(
        engine, tmp_path):
    # The rescore with acme.example wrongly named a competitor takes Ana out, her routing withdrawn ...
    rulebook, version_id, ana, bo = wrongly_disqualified(engine, tmp_path)
    assert states(engine)[ana][0] == "disqualified"

    # ... and the rescore with the list put right hands her over again, as a new crossing; Bo stays out.
    fixed_at = LATER + timedelta(hours=1)
    outcome = score_chunk(engine, rulebook, version_id, [ana, bo], now=fixed_at, run_id="fixed", rebuild=[ana, bo])
    assert states(engine)[ana][0] == "mql" and states(engine)[bo][0] == "disqualified"
    assert outcome.stage_changes == {"disqualified -> mql": 1}
    assert [(m.lead_id, m.reason) for m in outcome.new_mqls] == [(ana, "reinstated: the fit no longer disqualifies it")]
    assert history(engine, ana)[-2:] == [("mql", "disqualified", "disqualified: works for a competitor"),
                                         ("disqualified", "mql", "reinstated: the fit no longer disqualifies it")]
    assert sorted((r.queue, r.done_at is None, r.outcome) for r in queue_rows(engine) if r.lead_id == ana) == [
        ("crm_sync", True, None), ("crm_sync", True, None), ("routing", False, "disqualified"), ("routing", True, None)]
    again = score_chunk(engine, rulebook, version_id, [ana, bo], now=fixed_at, run_id="again", rebuild=[ana, bo])
    assert again.stage_changes == {} and again.new_mqls == []


def test_a_person_s_recycle_is_kept_through_a_disqualification_the_rules_make_and_undo(engine, tmp_path):
    rulebook, version_id, ana = mql(engine)
    move(engine, ["ana@acme.example"], Stage.RECYCLED, reason="no budget this year")
    competitor = naming_acme_a_competitor(tmp_path)
    with engine.begin() as conn:
        wrong = store.ensure_version(conn, competitor, LATER)
    score_chunk(engine, competitor, wrong, [ana], now=LATER + timedelta(hours=1), run_id="wrong", rebuild=[ana])
    score_chunk(engine, rulebook, version_id, [ana], now=LATER + timedelta(hours=2), run_id="fixed", rebuild=[ana])
    with engine.connect() as conn:
        state = store.lead_state_row(conn, ana)
    assert [c[1] for c in history(engine, ana)[-3:]] == ["recycled", "disqualified", "recycled"]
    assert state["stage_changed_at"] == LATER + timedelta(hours=2) and state["recycled_at"] == LATER
    # The explanation tells marketing from when a demo request would hand her over again
    explained = explain_lead(engine, "ana@acme.example")
    assert explained["recycled_at"] == explained["hand_raises_count_after"] == LATER.isoformat()
    assert (f"A hand-raise (contact_sales, demo_request, trial_signup) counts only after {LATER.isoformat()[:16]}, "
            "its last qualification or recycle.") in explanation_markdown(explained)


def test_a_scoring_pass_at_work_on_the_lead_does_not_write_a_move_away(engine, monkeypatch):
    # A decay pass (which holds no mark) has read the MQL's facts when a person recycles the lead; the pass
    # saves after. The lead must stay recycled, with the pass's score: the two take turns on the lead's state.
    rulebook, version_id, lead_id = mql(engine)
    while_paused_after(monkeypatch, "behaviour_totals", lambda: score_chunk(
        engine, rulebook, version_id, [lead_id], now=LATER, run_id="decay"),
        meanwhile=lambda: move(engine, ["ana@acme.example"], Stage.RECYCLED))
    assert states(engine)[lead_id][0] == "recycled"
    assert [change[:2] for change in history(engine, lead_id)][-1] == ("mql", "recycled")


@pytest.mark.slow
def test_the_flow_moves_the_leads_publishes_who_moved_what_and_fails_listing_refusals(prefect_server, handoff_env,
                                                                                        engine):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    from flows.stages import move_lead_stage

    handoff_env()
    _, _, lead_id = mql(engine)
    moves = move_lead_stage(emails=["ana@acme.example"], to="recycled", reason="no answer after five calls",
                            requested_by="jane@revops.example", now=LATER)
    assert [(m.lead_id, m.to_stage) for m in moves.moved] == [(lead_id, "recycled")] and moves.run_id
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["stage-moves"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[moves.run_id])))
    assert "# 1 lead moved to recycled" in artifact.data
    assert (f"| {lead_id} | ana@acme.example | mql | recycled | recycled: no answer after five calls "
            "(by jane@revops.example) |") in artifact.data
    # The move's lead event went out with the run (the handover's too, still waiting since no score run sent it)
    with engine.connect() as conn:
        sent = dict(conn.execute(text("SELECT event_id, kind FROM lead_event WHERE sends = 1")).all())
    assert sorted(sent.values()) == ["mql", "recycled"]
    [recycled] = [e for e in lead_events(prefect_server.api_url, set(sent))
                  if e["id"] in sent and e["event"] == "handoff.lead.recycled"]
    assert recycled["resource"]["prefect.resource.id"] == f"handoff.lead.{lead_id}"
    assert recycled["payload"]["from"] == "mql" and recycled["payload"]["score"] == "100"

    state = move_lead_stage(emails=["ana@acme.example", "nobody@acme.example"], to="sql", reason="accepted",
                            now=LATER, return_state=True)
    assert state.is_failed()
    with pytest.raises(MoveRefused, match="nobody@acme.example: no lead has this address"):
        state.result()
    assert states(engine)[lead_id][0] == "recycled"


@pytest.mark.slow
def test_handoff_lead_move_prints_the_moves_or_every_refusal(prefect_server, handoff_env, engine, monkeypatch):
    from typer.testing import CliRunner

    from handoff.cli import app

    handoff_env(PREFECT_API_URL=prefect_server.api_url)
    _, _, lead_id = mql(engine)
    runner = CliRunner()
    refused = runner.invoke(app, ["lead", "move", "ana@acme.example", "bob@acme.example", "--to", "disqualified",
                                  "--reason", "spam"])
    assert refused.exit_code == 1 and "bob@acme.example: no lead has this address" in refused.output
    moved = runner.invoke(app, ["lead", "move", "ana@acme.example", "--to", "disqualified", "--reason", "spam",
                                "--by", "jane"])
    assert moved.exit_code == 0, moved.output
    assert "disqualified: spam (by jane)" in moved.output and states(engine)[lead_id][0] == "disqualified"
