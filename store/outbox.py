"""The lead-event outbox: events written with the state change that caused them, sent to Prefect after, and
confirmed once Prefect is seen to hold them.

An event is in one of four states, read off three columns:
- waiting: never sent (`sent_at` is NULL);
- sent: sent `sends` times, the last at `sent_at`, not yet seen on the Prefect server;
- confirmed: `published_at` is when a run found it on the server;
- given up: sent the most times allowed and still not seen a resend interval after the last send. It stays in
  the outbox with its payload, counted in every run's log, and is sent again only when a person asks
  (`handoff events retry`, which gives it its sends back).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import Connection, and_, case, func, or_, select

from store.tables import LeadEvent

event_t = LeadEvent.__table__
_unconfirmed = event_t.c.published_at.is_(None)
_waiting = and_(_unconfirmed, event_t.c.sent_at.is_(None))

STATES = ("waiting", "sent", "confirmed", "given up")


def _given_up(now: datetime, resend_after: timedelta, max_sends: int):
    return and_(_unconfirmed, event_t.c.sends >= max_sends, event_t.c.sent_at <= now - resend_after)


def events_to_send(conn: Connection, now: datetime, resend_after: timedelta, max_sends: int,
                   limit: int = 1000) -> list[dict]:
    """Unconfirmed events never sent, or last sent at least `resend_after` before `now` with sends to spare,
    oldest first."""
    due = or_(event_t.c.sent_at.is_(None),
              and_(event_t.c.sent_at <= now - resend_after, event_t.c.sends < max_sends))
    rows = conn.execute(select(event_t).where(_unconfirmed, due).order_by(event_t.c.id).limit(limit)).mappings()
    return [dict(row) for row in rows]


def events_to_confirm(conn: Connection, now: datetime, resend_after: timedelta, max_sends: int,
                      after_id: int = 0, limit: int = 1000) -> list[dict]:
    """Sent, unconfirmed events that are not given up, by id from after `after_id`: their ids and times."""
    rows = conn.execute(
        select(event_t.c.id, event_t.c.event_id, event_t.c.occurred_at)
        .where(_unconfirmed, event_t.c.sent_at.isnot(None), ~_given_up(now, resend_after, max_sends),
               event_t.c.id > after_id)
        .order_by(event_t.c.id).limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


def events_given_up(conn: Connection, now: datetime, resend_after: timedelta, max_sends: int) -> int:
    return conn.execute(
        select(func.count()).select_from(event_t)
        .where(_given_up(now, resend_after, max_sends))
    ).scalar_one()


def mark_sent(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    if ids:
        conn.execute(event_t.update().where(event_t.c.id.in_(list(ids)))
                     .values(sent_at=now, sends=event_t.c.sends + 1))


def mark_confirmed(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    if ids:
        conn.execute(event_t.update().where(event_t.c.id.in_(list(ids)), _unconfirmed).values(published_at=now))


def oldest_waiting(conn: Connection) -> datetime | None:
    """When the oldest event never sent was written (its `occurred_at`); None when none waits."""
    return conn.execute(select(func.min(event_t.c.occurred_at)).where(_waiting)).scalar_one()


def outbox_states(conn: Connection, now: datetime, resend_after: timedelta,
                  max_sends: int) -> dict[str, dict[str, int]]:
    """How many events of each kind are in each state: {state: {kind: count}}, states as the module names them."""
    state = case((event_t.c.published_at.isnot(None), "confirmed"), (event_t.c.sent_at.is_(None), "waiting"),
                 (_given_up(now, resend_after, max_sends), "given up"), else_="sent")
    counts: dict[str, dict[str, int]] = {}
    for name, kind, n in conn.execute(select(state, event_t.c.kind, func.count()).group_by(state, event_t.c.kind)):
        counts.setdefault(name, {})[kind] = n
    return counts


def given_up_events(conn: Connection, now: datetime, resend_after: timedelta, max_sends: int,
                    limit: int = 50) -> list[dict]:
    """The events given up, oldest first: what a person looks at before sending them again."""
    rows = conn.execute(
        select(event_t.c.id, event_t.c.event_id, event_t.c.lead_id, event_t.c.kind, event_t.c.occurred_at,
               event_t.c.sends, event_t.c.sent_at)
        .where(_given_up(now, resend_after, max_sends)).order_by(event_t.c.id).limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


def send_given_up_again(conn: Connection, now: datetime, resend_after: timedelta, max_sends: int) -> int:
    """Give the given-up events their sends back: the next run sends them again (under their ids). Returns how
    many."""
    return conn.execute(
        event_t.update().where(_given_up(now, resend_after, max_sends)).values(sends=0)
    ).rowcount
