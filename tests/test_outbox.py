"""The lead-event outbox's states: waiting, sent, confirmed, given up; what is due to be sent, and what a run
asks the Prefect server about."""

from __future__ import annotations

from datetime import timedelta

from store import outbox
from tests.test_score_merges import NOW
from tests.test_stage_moves import mql

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
