"""The whole lifecycle through the store, driven by a state machine (hypothesis): people act through the web
and a badge scanner whose contacts later turn out to be known people (merges), give their details or not,
time passes, scoring runs incrementally and in full passes, sales recycles, disqualifies and advances leads,
and the marketers name a customer's domain a competitor's and take it back (a rescore each time). After every
step the stored lifecycle keeps its promises:

- each lead's stage history is one unbroken chain ending at its current stage; a stage falls back only by a
  person's recycle or disqualification (or the fit's disqualifiers, never for a lead sales holds);
- every handover to sales fired exactly one MQL event, numbered apart from the lead's others, with exactly one
  routing and one CRM-sync row; the crossings the states count add up to the events; every stage change people
  act on (recycled, disqualified, reinstated, a sales stage) wrote exactly one event of its own;
- a lead waits for a rep (an open routing row) exactly while it is an MQL;
- every activity counts once, and each lead's ledger explains its score exactly;
- after a full pass no merged-away lead keeps a state, the fit's disqualifiers stand as the rulebook in force
  says, no lead left in nurture is owed a handover, and scoring again at that moment changes nothing."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import text

from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import PersonRecord, build_activity
from domain.explain import explain_score
from domain.lifecycle import (
    MERGE_RANK, QUALIFIABLE, SALES_OWNED, Stage, StageChange, hand_raises_count_after, stage_event_kind,
)
from domain.rules import grade_at_least
from store import scoring as store
from store.ingest import write_batch
from store.types import from_db_time
from tasks.scoring import entries_of, score_chunk
from tasks.stages import MoveRefused, move_leads
from tests.test_score_merges import NOW
from tests.test_scoring_properties import reset, snapshot
from tests.test_stage_moves import naming_acme_a_competitor

SCALE = int(os.environ.get("HANDOFF_PROPERTY_SCALE", "1"))
MACHINE = settings(derandomize=True, database=None, deadline=None, max_examples=30 * SCALE, stateful_step_count=50,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SHIPPED = load_rulebook(CONFIG_DIR)
# Who acts: acme.example is the company the marketers later call a competitor (and then not again)
EMAILS = ("ana@acme.example", "ben@globex.example", "cy@gmail.com", "dot@initech.example")
BADGES = 3  # the scanner's contacts; which person a badge belongs to comes out only when it sends an e-mail
HAND_RAISES = ("demo_request", "trial_signup", "contact_sales")
KINDS = (*HAND_RAISES, "whitepaper_download", "webinar_attended",
         "page_view", "email_open", "unsubscribe", "newsletter_signup")
PROFILES = {
    "none": None,
    "good": {"first_name": "Pat", "company": "Acme", "title": "VP of Sales", "industry": "Software",
             "company_size": 250, "country": "US"},  # grade A
    "fair": {"first_name": "Lou", "title": "Sales Manager", "industry": "Financial Services", "company_size": 100,
             "country": "GB"},  # grade B
    "poor": {"first_name": "Sam", "title": "Student", "industry": "Education", "company_size": 5},  # grade D
    "named": {"last_name": "Doe"},  # details, no fit points: grade D
}
TARGETS = (Stage.RECYCLED, Stage.DISQUALIFIED, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER)
BY = "tester@revops.example"
HELD_BY_SALES = {stage.value for stage in SALES_OWNED}


class LeadLife(RuleBasedStateMachine):
    def __init__(self, engine, rival):
        super().__init__()
        self.engine, self.clock, self.sent = engine, NOW, 0
        reset(engine)
        with engine.begin() as conn:
            self.versions = {"shipped": store.ensure_version(conn, SHIPPED, NOW),
                             "rival": store.ensure_version(conn, rival, NOW)}
        self.rulebooks = {"shipped": SHIPPED, "rival": rival}
        self.in_force = "shipped"
        self.resent: list[tuple] = []

    # ------------------------------------------------------------------ what happens

    @rule(acts=st.lists(st.tuples(st.integers(0, len(EMAILS) - 1), st.integers(0, BADGES - 1),
                                  st.sampled_from(("web", "badge", "badge-with-email")), st.sampled_from(KINDS),
                                  st.sampled_from((0, 1, 2, 12, 48, 300)), st.sampled_from(sorted(PROFILES))),
                          min_size=1, max_size=4),
          again=st.integers(-3, 30))
    def people_act(self, acts, again):
        """A batch from a tool: activities, each perhaps with what the tool knows of the person; now and then it
        sends an older one again (a re-read overlap window)."""
        for act in acts:
            self._act(*act, again=again)

    @rule(person=st.integers(0, len(EMAILS) - 1), kind=st.sampled_from(HAND_RAISES), hours_back=st.integers(0, 2))
    def a_person_raises_a_hand(self, person, kind, hours_back):
        """A demo request, trial or contact-sales form just now (the moments the lifecycle's freshness turns on)."""
        self._act(person, 0, "web", kind, hours_back, "none")

    @rule(hours=st.sampled_from((1, 1, 5, 24, 24 * 7, 24 * 40, 24 * 100)))
    def time_passes(self, hours):
        self.clock += timedelta(hours=hours)

    @rule()
    def an_incremental_run(self):
        with self.engine.connect() as conn:
            marked = store.dirty_leads(conn, 10_000)
        leads = [lead_id for lead_id, _ in marked]
        self._score(leads, rebuild=leads, dirty=marked)

    @rule()
    def a_full_pass(self):
        """The scheduled decay pass: every lead, the marked ones' ledgers rebuilt; then the same pass again, as a
        retried run would make it, which must change nothing."""
        with self.engine.connect() as conn:
            marked = store.dirty_leads(conn, 10_000)
            leads = store.all_lead_ids(conn)
        self._score(leads, rebuild=[lead_id for lead_id, _ in marked], dirty=marked)
        self._after_a_full_pass()

    @rule(rival=st.booleans())
    def the_marketers_change_the_rulebook(self, rival):
        """acme.example named a competitor, or no longer: a new rulebook version, every lead rescored with it."""
        self.in_force = "rival" if rival else "shipped"
        with self.engine.begin() as conn:
            marked = store.dirty_leads(conn, 10_000)
            store.rebuild_ledger(conn, self.versions[self.in_force], None)
            store.clear_dirty(conn, marked)
            leads = store.all_lead_ids(conn)
        self._score(leads)
        self._after_a_full_pass()

    @rule(person=st.integers(0, len(EMAILS) - 1), to=st.sampled_from(TARGETS))
    def a_person_moves_a_lead(self, person, to):
        """Sales or marketing ops recycles, disqualifies or advances a lead; a refused move changes nothing."""
        self._move(person, to)

    @rule(person=st.integers(0, len(EMAILS) - 1))
    def sales_gives_a_lead_back(self, person):
        self._move(person, Stage.RECYCLED)

    def _act(self, person, badge, channel, kind, hours_back, profile, again=0):
        self.sent += 1
        email = EMAILS[person] if channel != "badge" else None
        contact = f"badge-{badge}" if channel != "web" else None
        source = "web" if channel == "web" else "scanner"
        activity = build_activity(source=source, external_id=f"a{self.sent}", type_name=kind, raw={"n": self.sent},
                                  occurred_at=self.clock - timedelta(hours=hours_back), email=email,
                                  source_contact_id=contact)
        fields = PROFILES[profile]
        people = [PersonRecord(source, contact, email, **fields)] if fields else []
        if again < 0 and self.resent:
            source, activity, people = self.resent[again % len(self.resent)]
        self.resent.append((source, activity, people))
        write_batch(self.engine, source=source, activities=[activity], people=people, rejections=[], checkpoint=None,
                    now=self.clock)

    def _move(self, person, to):
        before = snapshot(self.engine)
        try:
            move_leads(self.engine, [EMAILS[person]], to, f"asked for {to.value}",
                       rulebook=self.rulebooks[self.in_force], requested_by=BY, now=self.clock, run_id="move")
        except MoveRefused:
            assert snapshot(self.engine) == before

    def _score(self, leads, rebuild=(), dirty=()):
        if leads:
            score_chunk(self.engine, self.rulebooks[self.in_force], self.versions[self.in_force], leads,
                        now=self.clock, run_id="run", rebuild=rebuild, dirty=dirty)

    def _after_a_full_pass(self):
        with self.engine.connect() as conn:
            kept = conn.execute(text("SELECT s.lead_id FROM lead_state s JOIN lead l ON l.id = s.lead_id "
                                     "WHERE l.merged_into_id IS NOT NULL")).scalars().all()
            unscored = conn.execute(text(
                "SELECT l.id FROM lead l WHERE l.merged_into_id IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM lead_state s WHERE s.lead_id = l.id)")).scalars().all()
            leads = store.all_lead_ids(conn)
            standing = conn.execute(text("SELECT l.email, s.stage, s.fit_disqualified_from FROM lead_state s "
                                         "JOIN lead l ON l.id = s.lead_id")).all()
        assert kept == [], f"merged-away leads {kept} keep a state after a full pass"
        assert unscored == [], f"leads {unscored} have no state after a full pass"
        # The fit's disqualifiers take out every lead they name that sales does not hold, and only while named
        for email, stage, taken_from in standing:
            if self.in_force == "rival" and email and email.endswith("@acme.example"):
                assert stage in HELD_BY_SALES | {Stage.DISQUALIFIED.value}, (email, stage)
            if self.in_force == "shipped":
                assert taken_from is None, f"{email} still out on a disqualifier the rulebook dropped"
        self._nobody_owed_a_handover_is_left_in_nurture(leads)
        once = snapshot(self.engine)
        self._score(leads)
        assert snapshot(self.engine) == once, "scoring every lead again at the same moment changed something"

    def _nobody_owed_a_handover_is_left_in_nurture(self, leads):
        """After a full pass, no lead marketing still holds has a fresh hand-raise with the fit for it, or an armed
        trigger with the score and the fit for a crossing: its handover would be lost."""
        rulebook = self.rulebooks[self.in_force]
        policy = rulebook.qualification
        with self.engine.connect() as conn:
            states = store.load_states(conn, leads)
            raises = store.last_hand_raises(conn, leads, [kind.value for kind in policy.hand_raisers])
        for lead_id, state in states.items():
            if state.stage not in QUALIFIABLE:
                continue
            if lead_id in raises and grade_at_least(state.fit_grade, policy.hand_raise_min_fit_grade):
                after = hand_raises_count_after(state)
                assert after is not None and raises[lead_id][0] <= after, f"lead {lead_id}: a fresh hand-raise lost"
            assert not (state.mql_armed and state.score >= rulebook.readiness_threshold
                        and grade_at_least(state.fit_grade, policy.min_fit_grade)), f"lead {lead_id}: a crossing lost"

    # ------------------------------------------------------------------ what always holds

    @invariant()
    def the_stored_lifecycle_keeps_its_promises(self):
        with self.engine.connect() as conn:
            states = {row.lead_id: row for row in conn.execute(text(
                "SELECT lead_id, score, stage, crossings, scored_at FROM lead_state"))}
            changes = conn.execute(text(
                "SELECT id, lead_id, from_stage, to_stage, reason FROM stage_change ORDER BY id")).all()
            events = conn.execute(text("SELECT id, lead_id, kind, crossing FROM lead_event ORDER BY id")).all()
            queue = conn.execute(text("SELECT lead_event_id, lead_id, queue, done_at FROM handoff_queue")).all()
            counted = conn.execute(text("SELECT activity_id FROM score_ledger")).scalars().all()
            lines = store.ledger_lines(conn, sorted(states))

        history = defaultdict(list)
        for change in changes:
            history[change.lead_id].append(change)
        assert set(states) <= set(history), "a lead has a stage but no history of how it got there"
        handovers = Counter()
        for lead_id, moves in history.items():
            stage = None
            for move in moves:
                assert move.from_stage == stage, f"lead {lead_id}: history breaks at {move}"
                stage = move.to_stage
                by_person = move.reason.endswith(f"(by {BY})")
                if move.from_stage in HELD_BY_SALES:
                    assert by_person or move.reason.startswith("merged with"), f"lead {lead_id}: {move}"
                if move.from_stage and MERGE_RANK.index(Stage(move.to_stage)) < MERGE_RANK.index(Stage(move.from_stage)):
                    assert move.reason.startswith(("recycled: ", "disqualified: ")), f"lead {lead_id} fell back: {move}"
                if move.reason.startswith("recycled: "):
                    assert by_person, f"lead {lead_id} recycled by no one: {move}"
                if move.to_stage == Stage.MQL.value and not move.reason.startswith("merged with"):
                    handovers[lead_id] += 1
            if lead_id in states:
                assert stage == states[lead_id].stage, f"lead {lead_id}: history ends at {stage}, state says otherwise"

        # Every change people act on (a recycle, a disqualification, ...) emitted its one event, made by its id
        emitted = sorted((event.crossing, event.lead_id, event.kind) for event in events if event.kind != "mql")
        assert emitted == [(change.id, change.lead_id, kind) for change in changes if (kind := stage_event_kind(
            StageChange(change.from_stage and Stage(change.from_stage), Stage(change.to_stage), change.reason)))]
        events = [event for event in events if event.kind == "mql"]
        fired = Counter(event.lead_id for event in events)
        assert fired == handovers, "an MQL handover without its one event, or an event without a handover"
        crossings = defaultdict(list)
        for event in events:
            crossings[event.lead_id].append(event.crossing)
        assert all(len(set(numbers)) == len(numbers) for numbers in crossings.values()), crossings
        assert sum(state.crossings for state in states.values()) == len(events)

        rows = Counter((row.lead_event_id, row.queue) for row in queue)
        assert rows == Counter({(event.id, q): 1 for event in events for q in store.HANDOFF_QUEUES})
        open_routing = Counter(row.lead_id for row in queue if row.queue == "routing" and row.done_at is None)
        waiting = {lead_id for lead_id, state in states.items() if state.stage == Stage.MQL.value}
        assert open_routing == Counter({lead_id: 1 for lead_id in waiting}), (open_routing, waiting)
        assert {row.lead_id for row in queue if row.done_at is None} <= set(states)

        assert len(counted) == len(set(counted)), "an activity counts in two ledgers"
        for lead_id, state in states.items():
            explained = explain_score(entries_of(lines.get(lead_id, [])), SHIPPED.decay, from_db_time(state.scored_at))
            assert explained.total == explained.score == state.score, f"lead {lead_id}: ledger and score disagree"


def test_any_run_of_events_leaves_the_lifecycle_whole(engine, tmp_path):
    rival = naming_acme_a_competitor(tmp_path)
    run_state_machine_as_test(lambda: LeadLife(engine, rival), settings=MACHINE)
