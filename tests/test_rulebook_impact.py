"""A rulebook change previewed before it goes live: the rules that differ, read as a marketer wrote them, and
every lead worked out under both rulebooks from its activity log, exactly as the pass that applies the draft then
scores it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import PersonRecord
from domain.impact import rulebook_changes
from domain.lifecycle import Stage
from domain.rules import Disqualifier
from store import scoring as store
from tasks.impact import Comparison, impact_of, worked_out
from tasks.scoring import score_chunk
from tasks.stages import move_leads
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


def edited(tmp_path, **replacements):
    """The shipped rulebook with text replaced in its files ({"scoring.csv": [(old, new)], ...})."""
    directory = tmp_path / "draft"
    shutil.copytree(CONFIG_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__", "sources.yaml"))
    for name, pairs in replacements.items():
        path = directory / name.replace("_", ".")
        text = path.read_text()
        for old, new in pairs:
            assert old in text, old
            text = text.replace(old, new)
        path.write_text(text)
    return load_rulebook(directory)


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


@WITH_DB
@given(in_force=drafts(), draft=drafts(), recycled=st.sets(st.integers(0, 3)), history=histories(leads=4, size=40),
       people=st.lists(profiles, min_size=4, max_size=4), cut=st.integers(0, 40),
       scored_at=moments.map(lambda m: m + timedelta(days=3)), later=st.integers(0, 30))
def test_the_impact_is_exactly_what_the_pass_that_applies_the_draft_then_does(engine, in_force, draft, recycled, history,
                                                                              people, cut, scored_at, later):
    reset(engine)
    records = [PersonRecord("marketo", None, email, **fields) for email, fields in zip(EMAILS, people)]
    history = with_emails(history, EMAILS)
    # Scored with the rulebook in force; then more activities arrive that no pass has scored yet
    store_in_batches(engine, history[:cut], records, [], [])
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, in_force, BASE)
    leads = sorted(stored_ids(engine)[0].values())
    score_chunk(engine, in_force, version_id, leads, now=scored_at, run_id="in force", rebuild=leads)
    # A person recycles some of those in the funnel (a recycled lead counts only hand-raises made since)
    with engine.connect() as conn:
        stages = {lead_id: state.stage for lead_id, state in store.load_states(conn, leads).items()}
    ids = stored_ids(engine)[0]
    recycle = [EMAILS[n] for n in sorted(recycled) if stages.get(ids.get(EMAILS[n])) in (Stage.LEAD, Stage.MQL)]
    if recycle:
        move_leads(engine, recycle, Stage.RECYCLED, "not now", rulebook=in_force, requested_by="rep",
                   now=scored_at + timedelta(hours=1), run_id="move")
    store_in_batches(engine, history[cut:], records, [], [])
    leads = sorted(stored_ids(engine)[0].values())
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
