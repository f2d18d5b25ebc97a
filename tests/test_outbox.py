"""The lead-event outbox: the events stage changes write with them, and their states (waiting, sent, confirmed,
given up): what is due to be sent, and what a run asks the Prefect server about."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from domain.lifecycle import Stage, StageChange, stage_event_kind
from store import outbox
from store import scoring as store
from store.tables import LeadEvent
from store.tables import StageChange as StageChangeRow
from tasks.scoring import score_chunk
from tasks.stages import MoveRefused
from tests.test_score_merges import NOW
from tests.test_stage_moves import LATER, move, mql, wrongly_disqualified

RESEND = timedelta(minutes=10)


def due(engine, now, max_sends=3) -> list[int]:
    with engine.connect() as conn:
        return [row["lead_id"] for row in outbox.events_to_send(conn, now, RESEND, max_sends)]


def asked(engine, now, max_sends=3, after_id=0, limit=1000) -> list[int]:
    with engine.connect() as conn:
        return [row["id"] for row in outbox.events_to_confirm(conn, now, RESEND, max_sends, after_id, limit)]


def given_up(engine, now, max_sends=3) -> int:
    with engine.connect() as conn:
        return outbox.events_given_up(conn, now, RESEND, max_sends)


def sent(engine, lead_ids, now) -> None:
    with engine.begin() as conn:
        ids = [row["id"] for row in outbox.events_to_send(conn, now, RESEND, 10**6) if row["lead_id"] in lead_ids]
        outbox.mark_sent(conn, ids, now)


def test_an_event_is_sent_when_new_and_again_only_a_resend_interval_after_its_last_send(engine):
    leads = [mql(engine, name)[2] for name in ("ana", "ben", "cy")]
    assert due(engine, NOW) == leads and asked(engine, NOW) == []  # waiting: nothing to ask the server about

    sent(engine, leads, NOW)
    assert due(engine, NOW + RESEND - timedelta(seconds=1)) == []
    assert len(asked(engine, NOW)) == 3
    assert due(engine, NOW + RESEND) == leads  # not confirmed by then: sent again

    confirm = asked(engine, NOW)[:1]
    with engine.begin() as conn:
        outbox.mark_confirmed(conn, confirm, NOW + timedelta(minutes=1))
    assert due(engine, NOW + RESEND) == leads[1:] and len(asked(engine, NOW)) == 2


def test_an_event_sent_the_most_times_allowed_is_given_up_once_its_last_send_had_time_to_arrive(engine):
    leads = [mql(engine, name)[2] for name in ("ana", "ben")]
    for n in range(3):
        sent(engine, leads[:1], NOW + n * RESEND)
    sent(engine, leads[1:], NOW)
    last = NOW + 2 * RESEND
    # Its third send may still be on its way: asked about, not sent again, not given up (the other, sent once,
    # is due again).
    assert len(asked(engine, last)) == 2 and due(engine, last) == leads[1:] and given_up(engine, last) == 0
    # A resend interval later it is given up: neither asked about nor sent, only counted.
    assert len(asked(engine, last + RESEND)) == 1 and due(engine, last + RESEND) == leads[1:]
    assert given_up(engine, last + RESEND) == 1
    # Allowing more sends takes it up again.
    assert due(engine, last + RESEND, max_sends=4) == leads and given_up(engine, last + RESEND, max_sends=4) == 0


def test_the_server_is_asked_about_sent_events_a_batch_at_a_time_in_id_order(engine):
    leads = [mql(engine, name)[2] for name in ("ana", "ben", "cy", "di")]
    sent(engine, leads, NOW)
    first = asked(engine, NOW, limit=3)
    assert len(first) == 3 and first == sorted(first)
    assert asked(engine, NOW, after_id=first[-1]) == asked(engine, NOW)[3:] and len(asked(engine, NOW)) == 4


def outbox_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(select(LeadEvent.__table__).order_by(LeadEvent.__table__.c.id)).all()
        changes = dict(conn.execute(select(StageChangeRow.__table__.c.id, StageChangeRow.__table__.c.to_stage)).all())
    found = []
    for row in rows:
        payload = json.loads(row.payload)
        if row.kind != "mql":  # a stage event is made once by its stage change's id
            assert payload["stage_change_id"] == row.crossing and changes[row.crossing] == payload["to"]
        found.append((row.lead_id, row.kind, payload.get("from"), payload.get("to"), payload["reason"]))
    return found


def test_stage_changes_people_act_on_write_their_lead_events_with_the_change(engine, tmp_path):
    rulebook, version_id, ana, bo = wrongly_disqualified(engine, tmp_path)
    score_chunk(engine, rulebook, version_id, [ana, bo], now=LATER + timedelta(hours=1), run_id="fixed",
                rebuild=[ana, bo])
    move(engine, ["ana@acme.example"], Stage.SQL, reason="accepted on the intro call", now=LATER + timedelta(hours=2))
    move(engine, ["bo@acme.example"], Stage.RECYCLED, reason="a buyer after all", now=LATER + timedelta(hours=2))
    before = outbox_rows(engine)
    with pytest.raises(MoveRefused):
        move(engine, ["ana@acme.example", "nobody@acme.example"], Stage.CUSTOMER, now=LATER + timedelta(hours=3))

    assert outbox_rows(engine) == before == [
        (ana, "mql", None, None, "hand-raise: demo_request on 2026-11-02 with fit A"),
        (bo, "mql", None, None, "hand-raise: demo_request on 2026-11-02 with fit A"),
        (bo, "disqualified", "mql", "disqualified", "disqualified: a reseller, not a buyer (by jane@revops.example)"),
        (ana, "disqualified", "mql", "disqualified", "disqualified: works for a competitor"),
        (ana, "reinstated", "disqualified", "mql", "reinstated: the fit no longer disqualifies it"),
        (ana, "mql", None, None, before[5][4]),  # handed over again, as a new crossing
        (ana, "sql", "mql", "sql", "accepted on the intro call (by jane@revops.example)"),
        (bo, "recycled", "disqualified", "recycled", "recycled: a buyer after all (by jane@revops.example)"),
    ]


@pytest.mark.parametrize("change, kind", [
    (StageChange(None, Stage.LEAD, "gave details"), None),
    (StageChange(Stage.SUBSCRIBER, Stage.LEAD, "gave details"), None),
    (StageChange(Stage.LEAD, Stage.MQL, "score 100 with fit A"), None),  # the handover's own event
    (StageChange(Stage.LEAD, Stage.SQL, "merged with lead 7 (sql)"), "sql"),
    (StageChange(Stage.MQL, Stage.RECYCLED, "recycled: no answer"), "recycled"),
    (StageChange(Stage.DISQUALIFIED, Stage.RECYCLED, "recycled: a mistake"), "recycled"),
    (StageChange(None, Stage.DISQUALIFIED, "disqualified: free-mail domain"), "disqualified"),
    (StageChange(Stage.DISQUALIFIED, Stage.LEAD, "reinstated: the fit no longer disqualifies it"), "reinstated"),
    (StageChange(Stage.OPPORTUNITY, Stage.CUSTOMER, "customer: signed"), "customer"),
])
def test_which_stage_changes_emit_a_lead_event(change, kind):
    assert stage_event_kind(change) == kind


def test_a_pass_that_reinstates_a_subscriber_and_moves_it_on_keeps_its_history_in_order(engine, tmp_path):
    """An event-bearing change (reinstated) followed in the same pass by a quiet one (subscriber -> lead): the
    history reads them in the order they happened."""
    from tests.test_score_merges import activity, emails, good_fit, history, score_dirty, versioned, write
    from tests.test_stage_moves import naming_acme_a_competitor

    rulebook, version_id = versioned(engine)
    write(engine, "newsletter", activity("n1", "newsletter_signup", email="cy@acme.example", source="newsletter"))
    competitor = naming_acme_a_competitor(tmp_path)
    with engine.begin() as conn:
        wrong = store.ensure_version(conn, competitor, NOW)
    score_dirty(engine, competitor, wrong)
    cy = emails(engine)["cy@acme.example"]
    # The list is put right while Cy gives her details on a web form
    write(engine, "web", activity("w1", "page_view", email="cy@acme.example", source="web"),
          people=[good_fit("Cy", email="cy@acme.example", source="web")])
    score_dirty(engine, rulebook, version_id)

    assert [(a, b) for a, b, _ in history(engine, cy)] == [
        (None, "subscriber"), ("subscriber", "disqualified"), ("disqualified", "subscriber"), ("subscriber", "lead")]
    assert [(kind, to) for _, kind, _, to, _ in outbox_rows(engine)] == [("disqualified", "disqualified"),
                                                                       ("reinstated", "subscriber")]


def test_the_outbox_counts_its_events_by_state_and_a_person_gives_the_given_up_their_sends_back(engine):
    leads = [mql(engine, name)[2] for name in ("ana", "ben", "cy", "di")]
    for n in range(3):
        sent(engine, leads[:1], NOW + n * RESEND)  # ana: given up
    sent(engine, leads[1:3], NOW)  # ben and cy: sent
    cy = asked(engine, NOW)[2:3]
    with engine.begin() as conn:
        outbox.mark_confirmed(conn, cy, NOW)  # cy: confirmed; di: waiting
    later = NOW + 3 * RESEND
    with engine.connect() as conn:
        assert outbox.outbox_states(conn, later, RESEND, 3) == {
            "given up": {"mql": 1}, "sent": {"mql": 1}, "confirmed": {"mql": 1}, "waiting": {"mql": 1}}
        [lost] = outbox.given_up_events(conn, later, RESEND, 3)
    assert (lost["lead_id"], lost["sends"], lost["sent_at"]) == (leads[0], 3, NOW + 2 * RESEND)

    with engine.begin() as conn:
        assert outbox.send_given_up_again(conn, later, RESEND, 3) == 1
    assert due(engine, later) == [leads[0], leads[1], leads[3]] and given_up(engine, later) == 0
