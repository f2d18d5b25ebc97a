"""A rulebook change previewed before it goes live: the rules that differ, read as a marketer wrote them, and
every lead worked out under both rulebooks from its activity log, exactly as the pass that applies the draft then
scores it."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR, get_settings
from domain.activity import ActivityRecord, ActivityType, PersonRecord
from domain.impact import rulebook_changes
from domain.lifecycle import Stage
from domain.rules import Disqualifier
from flows.impact import rulebook_impact
from flows.score import score_and_qualify
from handoff.cli import app
from handoff.prefect_server import drain_prefect_clients
from store import scoring as store
from store.tables import LeadState
from tasks.impact import compare_rulebooks
from tasks.lead_impact import Comparison, impact_of, worked_out
from tasks.scoring import score_chunk
from tasks.stages import move_leads
from tests.flow_support import rulebook_copy
from tests.test_score_flow import count, scored_on_its_own_rulebook
from tests.test_scoring_properties import (
    BASE,
    EMAILS,
    SHIPPED,
    WITH_DB,
    histories,
    moments,
    profiles,
    reset,
    rulebooks,
    snapshot,
    store_in_batches,
    stored_ids,
    with_emails,
)


def edited(tmp_path, **edits):
    """The shipped rulebook with text replaced in its files (scoring_csv=[(old, new)], ...)."""
    return load_rulebook(rulebook_copy(tmp_path / "draft", **edits))


# ------------------------------------------------------------------------------------------ what changed

def test_the_same_rulebook_has_no_changes_whatever_the_order_of_its_rows(tmp_path):
    csv = (CONFIG_DIR / "scoring.csv").read_text().splitlines()
    reordered = edited(tmp_path, scoring_csv=[("\n".join(csv[1:]), "\n".join(reversed(csv[1:])))])
    assert rulebook_changes(SHIPPED, reordered) == []


def test_a_white_paper_worth_more_reads_as_its_percent_and_points(tmp_path):
    draft = edited(tmp_path, scoring_csv=[("whitepaper_download,consideration,30,60,every",
                                           "whitepaper_download,consideration,40,60,every")])
    assert rulebook_changes(SHIPPED, draft) == ["whitepaper_download: 30% = 30 points -> 40% = 40 points"]


def test_added_removed_and_limited_rules_are_each_named(tmp_path):
    draft = edited(tmp_path, scoring_csv=[
        ("page_view:/security,decision,5,10,1/day\n", ""),
        ("email_click,awareness,3,15,2/day", "email_click,consideration,3,,every"),
        ("email_bounce,awareness,-20,,first", "email_bounce,awareness,-20,,first\npage_view:/customers,consideration,5,10,1/day"),
    ])
    assert rulebook_changes(SHIPPED, draft) == [
        "email_click: stage awareness -> consideration; cap 15, at most 2/day -> no cap, every time",
        "page_view:/customers: consideration, 5% = 5 points, cap 10, at most 1/day (added)",
        "page_view:/security: decision, 5% = 5 points, cap 10, at most 1/day (removed)",
    ]


def test_a_new_threshold_changes_every_rule_s_points_and_says_so(tmp_path):
    draft = edited(tmp_path, scoring_yaml=[("readiness_threshold: 100", "readiness_threshold: 150")])
    changes = rulebook_changes(SHIPPED, draft)
    assert changes[0] == "readiness threshold: 100 -> 150 points"
    assert "whitepaper_download: 30% = 30 points -> 30% = 45 points" in changes
    assert len(changes) == 1 + len(SHIPPED.rules)


def test_decay_fit_and_qualification_changes_read_as_the_settings_they_are(tmp_path):
    draft = edited(tmp_path, scoring_yaml=[
        ("half_life_days: 30", "half_life_days: 45"),
        ("Software: 25, Financial Services: 20", "Software: 30, Financial Services: 20, Retail: 5"),
        ("[rivalrevops.example]", "[rivalrevops.example, acme.example]"),
        ("mql_min_fit_grade: B", "mql_min_fit_grade: A"),
        ("hand_raisers: [demo_request, trial_signup, contact_sales]", "hand_raisers: [demo_request, contact_sales]"),
        ("grades: {A: 70, B: 45, C: 20}", "grades: {A: 75, B: 45, C: 20}"),
    ])
    assert rulebook_changes(SHIPPED, draft) == [
        "decay: half-life 30 days, floor 0 -> half-life 45 days, floor 0",
        "fit industry: Retail none -> 5, Software 25 -> 30",
        "fit grades: A from 70, B from 45, C from 20 -> A from 75, B from 45, C from 20",
        "disqualifier 'works for a competitor': e-mail domains rivalrevops.example: disqualify -> "
        "e-mail domains rivalrevops.example, acme.example: disqualify",
        "MQL on score: minimum fit grade: B -> A",
        "hand-raisers: contact_sales, demo_request, trial_signup -> contact_sales, demo_request",
    ]


def test_company_size_ranges_and_title_keywords_name_just_the_entries_that_moved(tmp_path):
    draft = edited(tmp_path, scoring_yaml=[
        ("{min: 50, max: 199, points: 10}", "{min: 50, max: 199, points: 12}"),
        ("        - {max: 10, points: -15}\n", ""),
        ("{words: [Student, Intern], points: -30}", "{words: [Student, Intern], points: -30}\n"
                                                     "        - {words: [Founder, Owner], points: 20}"),
    ])
    assert rulebook_changes(SHIPPED, draft) == [
        "fit company_size: 50..199 10 -> 12, ..10 -15 -> none",
        "fit title: Founder/Owner none -> 20",
    ]


def test_ranges_in_another_order_match_differently_so_the_whole_rule_is_shown(tmp_path):
    # the first range that holds a number counts: a company of 150 would score 10 under the draft, not 25, which
    # "100..5000 none -> 25" alone would not tell
    draft = edited(tmp_path, scoring_yaml=[
        ("        - {min: 200, max: 5000, points: 25}\n        - {min: 50, max: 199, points: 10}",
         "        - {min: 50, max: 199, points: 10}\n        - {min: 100, max: 5000, points: 25}"),
    ])
    assert rulebook_changes(SHIPPED, draft) == [
        "fit company_size: 200..5000 25, 50..199 10, ..10 -15 -> 50..199 10, 100..5000 25, ..10 -15",
    ]
    reordered = edited(tmp_path / "reordered", scoring_yaml=[
        ("        - {min: 200, max: 5000, points: 25}\n        - {min: 50, max: 199, points: 10}",
         "        - {min: 50, max: 199, points: 10}\n        - {min: 200, max: 5000, points: 25}"),
    ])
    assert rulebook_changes(SHIPPED, reordered) == [
        "fit company_size: 200..5000 25, 50..199 10, ..10 -15 -> 50..199 10, 200..5000 25, ..10 -15",
    ]


# ------------------------------------------------------------------------------------------ every lead, exactly

ACME_A_COMPETITOR = Disqualifier(reason="works for a competitor", effect="disqualify",
                                 email_domains=("rivalrevops.example", "acme.example"))


@st.composite
def drafts(draw):
    """Any scoring rules, decay and threshold; sometimes acme.example named a competitor, or another MQL minimum."""
    draft = draw(rulebooks())
    if draw(st.booleans()):
        draft = replace(draft, fit=replace(SHIPPED.fit, disqualifiers=(ACME_A_COMPETITOR, *SHIPPED.fit.disqualifiers[1:])))
    grade = draw(st.sampled_from("ABC"))
    return replace(draft, qualification=replace(SHIPPED.qualification, min_fit_grade=grade))


# WITH_DB: its examples scale with HANDOFF_PROPERTY_SCALE, as in the other property tests (make test-deep)
def live_leads(engine) -> list[int]:
    """Every lead not merged away, those known by no e-mail too."""
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT id FROM lead WHERE merged_into_id IS NULL")).scalars())


@WITH_DB
@given(in_force=drafts(), draft=drafts(), recycled=st.sets(st.integers(0, 3)), anonymous=st.sets(st.integers(0, 3)),
       history=histories(leads=4, size=40), people=st.lists(profiles, min_size=4, max_size=4), cut=st.integers(0, 40),
       scored_at=moments.map(lambda m: m + timedelta(days=3)), later=st.integers(0, 30))
def test_the_impact_is_exactly_what_the_pass_that_applies_the_draft_then_does(engine, in_force, draft, recycled,
                                                                              anonymous, history, people, cut,
                                                                              scored_at, later):
    reset(engine)
    records = [PersonRecord("marketo", None, email, **fields) for email, fields in zip(EMAILS, people)]
    history = with_emails(history, EMAILS)
    # Some people's activities (every other one) name them at first only by the tool's contact id: a lead of its
    # own, without an e-mail, beside the lead of the person's e-mail
    early = [(n, replace(record, email=None, source_contact_id=f"contact-{n}") if n in anonymous and i % 2 else record)
             for i, (n, record) in enumerate(history[:cut])]
    # Scored with the rulebook in force; then more activities arrive that no pass has scored yet, among them one
    # that names each of those people by both, which merges the two leads of one person
    store_in_batches(engine, early, records, [], [])
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, in_force, BASE)
    leads = live_leads(engine)
    score_chunk(engine, in_force, version_id, leads, now=scored_at, run_id="in force", rebuild=leads)
    # A person recycles some of those in the funnel (a recycled lead counts only hand-raises made since)
    with engine.connect() as conn:
        stages = {lead_id: state.stage for lead_id, state in store.load_states(conn, leads).items()}
    ids = stored_ids(engine)[0]
    recycle = [EMAILS[n] for n in sorted(recycled) if stages.get(ids.get(EMAILS[n])) in (Stage.LEAD, Stage.MQL)]
    if recycle:
        move_leads(engine, recycle, Stage.RECYCLED, "not now", rulebook=in_force, requested_by="rep",
                   now=scored_at + timedelta(hours=1), run_id="move")
    links = [(n, ActivityRecord(source=source, external_id=f"link-{n}", type=ActivityType.EMAIL_OPEN,
                                occurred_at=scored_at + timedelta(hours=2), email=EMAILS[n],
                                source_contact_id=f"contact-{n}", raw_json="{}"))
             for n in sorted(anonymous) for source in ("marketo", "hubspot")]
    store_in_batches(engine, history[cut:] + links, records, [], [])
    leads = live_leads(engine)
    with engine.connect() as conn:
        merged = conn.execute(text("SELECT COUNT(*) FROM lead WHERE merged_into_id IS NOT NULL")).scalar_one()
    # every person is known by an e-mail (their profile); a contact id is the tool's own: each tool's lead is merged
    assert merged == len({(n, record.source) for n, record in early if record.email is None})
    now = scored_at + timedelta(days=later, hours=2)

    before = snapshot(engine)
    predicted = worked_out(engine, [draft], leads, now)
    comparison = Comparison(rules_dir="draft", draft=draft, in_force_version=version_id, in_force=in_force)
    impact = impact_of(engine, comparison, leads, now, examples=10)
    assert snapshot(engine) == before  # a preview saves nothing

    with engine.begin() as conn:
        draft_id = store.ensure_version(conn, draft, now)
    applied = score_chunk(engine, draft, draft_id, leads, now=now, run_id="draft", rebuild=leads)
    with engine.connect() as conn:
        states = store.load_states(conn, leads)
    assert {lead_id: q.state for lead_id, (_, (q,)) in predicted.items()} == states
    assert impact.draft.stage_changes == applied.stage_changes
    assert impact.draft.handovers == len(applied.new_mqls)
    assert impact.counts["handed_over_only_with_draft"] <= impact.draft.handovers
    assert sorted(lead_id for lead_id, (_, (q,)) in predicted.items() if q.triggers) == \
        sorted(m.lead_id for m in applied.new_mqls)
    assert impact.leads == len(leads) == sum(impact.draft.stages.values()) == sum(impact.in_force.stages.values())


# ------------------------------------------------------------------------------------------ the flow and the command

@pytest.mark.slow
def test_the_preview_artifact_names_the_changes_and_the_leads_and_the_scheduled_run_then_does_just_that(
    prefect_server, handoff_env, engine, sandbox_factory, tmp_path
):
    live = tmp_path / "live"
    box, first = scored_on_its_own_rulebook(sandbox_factory, handoff_env, live)
    unchanged = rulebook_impact(now=box.world.now)
    assert unchanged.outcome.leads == 0 and "The draft is the rulebook in force: nothing would change." in unchanged.markdown

    # The marketers' draft: white papers worth twice as much, and pinemetrics.example named a competitor
    draft = rulebook_copy(tmp_path / "draft", live, scoring_csv=[("whitepaper_download,consideration,30,60,every",
                                                                  "whitepaper_download,consideration,60,120,every")],
                          scoring_yaml=[("[rivalrevops.example]", "[rivalrevops.example, pinemetrics.example]")])
    later = box.world.now + timedelta(hours=1)
    before = snapshot(engine)
    preview = rulebook_impact(rules_dir=str(draft), now=later, examples=3)
    assert snapshot(engine) == before

    assert preview.in_force_version == first.version_id and preview.outcome.leads == first.outcome.leads
    assert preview.changes == [
        "whitepaper_download: 30% = 30 points -> 60% = 60 points; cap 60, every time -> cap 120, every time",
        "disqualifier 'works for a competitor': e-mail domains rivalrevops.example: disqualify -> "
        "e-mail domains rivalrevops.example, pinemetrics.example: disqualify"]
    markdown = preview.markdown
    assert "- whitepaper_download: 30% = 30 points -> 60% = 60 points" in markdown
    assert f"## {first.outcome.leads:,} leads" in markdown and "## Where the leads would stand" in markdown
    outcome = preview.outcome
    assert outcome.score_up > 0 and outcome.score_down == 0
    assert outcome.counts["disqualified_only_with_draft"] > 0
    assert all(lead.email.endswith("@pinemetrics.example") for lead in outcome.disqualified_only_with_draft)
    assert 0 < len(outcome.largest_score_changes) <= 3
    assert f"## Disqualified only with the draft: {outcome.counts['disqualified_only_with_draft']:,}" in markdown
    [artifact] = requests.post(f"{prefect_server.api_url}/artifacts/filter", timeout=10, json={
        "artifacts": {"key": {"any_": ["rulebook-impact"]}, "flow_run_id": {"any_": [preview.run_id]}}}).json()
    assert artifact["data"] == markdown

    # The same draft pasted into the run's parameters (from the Prefect UI, where no file can be put): the same
    pasted = rulebook_impact(scoring_csv=(draft / "scoring.csv").read_text(),
                             scoring_yaml=(draft / "scoring.yaml").read_text(), now=later, examples=3)
    assert pasted.outcome == outcome and pasted.changes == preview.changes and pasted.pasted == ["scoring.csv", "scoring.yaml"]
    assert pasted.markdown == markdown.replace(f"The draft in `{draft}`", "The draft pasted in the run's parameters")
    assert pasted.markdown != markdown

    # The same preview in small chunks worked out by two processes: the same outcome, each chunk a task run
    handoff_env(HANDOFF_SCORE_CHUNK_SIZE="97", HANDOFF_IMPACT_WORKERS="2")
    split = rulebook_impact(rules_dir=str(draft), now=later, examples=3)
    assert split.outcome == outcome and split.markdown == markdown
    chunks = -(-outcome.leads // 97)
    assert chunks > 2 and completed_task_runs(prefect_server.api_url, split.run_id, "impact-of-leads-", chunks) == chunks

    # The draft goes live: the next scheduled run (in the same small chunks) does what the preview said
    rulebook_copy(live, draft)
    applied = score_and_qualify(now=later)
    assert applied.mode == "rescore"
    assert applied.outcome.stage_changes == outcome.draft.stage_changes
    assert len(applied.outcome.new_mqls) == outcome.draft.handovers
    assert count(engine, LeadState, LeadState.__table__.c.stage == "disqualified") == outcome.draft.stages["disqualified"]


def test_a_field_left_blank_in_the_ui_pastes_nothing_and_the_summary_says_which_file_was_pasted(engine, handoff_env,
                                                                                                tmp_path):
    draft = rulebook_copy(tmp_path / "draft", scoring_csv=[("whitepaper_download,consideration,30",
                                                            "whitepaper_download,consideration,50")])
    blank = compare_rulebooks.fn(str(draft), {"scoring.csv": " \n", "scoring.yaml": None})
    assert blank.pasted == [] and blank.draft == load_rulebook(draft) and blank.source == f"in `{draft}`"
    assert blank.in_force is None and blank.changes == []  # nothing scored yet
    shipped_sheet = compare_rulebooks.fn(str(draft), {"scoring.csv": (CONFIG_DIR / "scoring.csv").read_text()})
    assert shipped_sheet.pasted == ["scoring.csv"] and shipped_sheet.draft == SHIPPED
    assert shipped_sheet.source == f"in `{draft}`, with its scoring.csv pasted in the run's parameters"


def completed_task_runs(api_url: str, flow_run_id: str, prefix: str, expected: int) -> int:
    """How many of the flow run's task runs named so the server holds as completed, once it has them all (it
    records task runs from their events, asynchronously) or after twenty seconds."""
    drain_prefect_clients()
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "task_runs": {"name": {"like_": prefix}}}
    done = 0
    for _ in range(40):
        runs = requests.post(f"{api_url}/task_runs/filter", timeout=10, json=body).json()
        done = sum(run["state_type"] == "COMPLETED" for run in runs)
        if done >= expected:
            break
        time.sleep(0.5)
    return done


def test_handoff_rules_impact_refuses_a_draft_that_does_not_load_naming_the_file_and_line(tmp_path, monkeypatch):
    draft = rulebook_copy(tmp_path / "draft", scoring_csv=[("whitepaper_download,consideration,30,60,every",
                                                            "whitepaper_download,consideration,lots,60,every")])
    number = (draft / "scoring.csv").read_text().splitlines().index("whitepaper_download,consideration,lots,60,every") + 1
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["rules", "impact", "--rules-dir", str(draft)], catch_exceptions=False)
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert f"scoring.csv:{number}: readiness_pct must be a number, not 'lots'" in result.output.replace("\n", "")
    assert not (tmp_path / "home" / "prefect").exists()  # refused before a Prefect server was started


def test_before_the_first_scoring_run_the_preview_is_what_that_run_will_do(engine):
    from flows.impact import ImpactSummary
    from tasks.reporting import impact_markdown
    from tests.test_score_merges import NOW, activity, good_fit, write

    write(engine, "web", activity("w-1", "demo_request", email="ana@acme.example", source="web"),
          people=[good_fit("Ana", email="ana@acme.example", source="web")])
    with engine.connect() as conn:
        leads = store.all_lead_ids(conn)
    outcome = impact_of(engine, Comparison(rules_dir="config", draft=SHIPPED), leads, NOW, examples=10)

    assert outcome.in_force is None and outcome.draft.handovers == 1
    assert outcome.draft.stage_changes == {"new -> lead": 1, "lead -> mql": 1}
    summary = ImpactSummary(now=NOW, run_id=None, rules_dir="config", pasted=[], draft_source="in `config`",
                            draft_digest=SHIPPED.digest, in_force_version=None, in_force_digest=None, changes=[],
                            outcome=outcome)
    markdown = impact_markdown(summary.model_dump(mode="json"))
    assert "no rulebook in force: no lead has been scored yet, so this is what the first scoring run will do" in markdown
    assert "## 1 lead\n" in markdown and "## Handed to sales by this pass: 1" in markdown
    assert "| 1 | ana@acme.example | 100 | A | mql | hand-raise: demo_request on 2026-11-02 with fit A |" in markdown


def test_on_postgresql_every_read_of_a_preview_sees_the_database_as_it_was_when_the_preview_began(engine, handoff_env):
    from tasks.impact import one_snapshot
    from tasks.scoring import all_leads
    from tests.test_score_merges import NOW, activity, good_fit, write

    write(engine, "web", activity("w-1", "whitepaper_download", email="ana@acme.example", source="web"),
          people=[good_fit("Ana", email="ana@acme.example", source="web")])
    with one_snapshot() as snapshot:
        comparison = compare_rulebooks.fn(None, None, snapshot)
        # committed while the preview runs: Ana asks for a demo, and Bea turns up
        write(engine, "web", activity("w-2", "demo_request", email="ana@acme.example", source="web"),
              activity("w-3", "demo_request", email="bea@acme.example", source="web"),
              people=[good_fit("Bea", email="bea@acme.example", source="web")])
        leads = all_leads.fn(snapshot)
        outcome = impact_of(engine, comparison, leads, NOW, examples=10)

    if engine.dialect.name == "postgresql":
        assert comparison.snapshot == snapshot and snapshot
        assert outcome.leads == 1 and outcome.draft.handovers == 0  # neither the demo request nor Bea
        assert outcome.draft.stages == {"lead": 1}
    else:  # SQLite connections share no snapshot: each chunk reads what is committed when it starts
        assert snapshot is None and comparison.snapshot is None
        assert outcome.leads == 2 and outcome.draft.handovers == 2
    with engine.connect() as conn:  # the snapshot ends with the preview; the store reads as usual again
        assert len(store.all_lead_ids(conn)) == 2


def test_a_snapshot_id_goes_into_sql_text_only_when_it_is_one(engine):
    from store.engine import read_in_snapshot

    with engine.connect() as conn:
        if engine.dialect.name != "postgresql":
            read_in_snapshot(conn, None)  # nothing to share: reads as usual
            with pytest.raises(ValueError, match="only a PostgreSQL database"):
                read_in_snapshot(conn, "00000003-0000001B-1")
            return
        with pytest.raises(ValueError, match="is not a snapshot id"):
            read_in_snapshot(conn, "1'; DROP TABLE lead; --")
