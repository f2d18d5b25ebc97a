"""What the funnel report reads, set-wise: the stage changes of every person who moved or was handed to a rep in a
period (their whole history, which the counting rules need), where each came from, and the SLA timers opened in it.
A person is a lead not merged away, with every record merged into it (a chain of merges followed to its end)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from domain.funnel import Attribution, Move
from domain.lifecycle import Stage
from store.bulk import db_time, param_mark
from store.types import from_db_time

# Each lead's person
_PERSON = ("WITH RECURSIVE person (lead_id, person_id) AS ("
           " SELECT id, id FROM lead WHERE merged_into_id IS NULL"
           " UNION ALL SELECT l.id, p.person_id FROM lead l JOIN person p ON l.merged_into_id = p.lead_id) ")
# ... and the people who moved or were handed over in the period (start, end; twice)
_PEOPLE = _PERSON[:-1] + (
    ", in_period (person_id) AS ("
    " SELECT p.person_id FROM stage_change c JOIN person p ON p.lead_id = c.lead_id"
    " WHERE c.changed_at >= {p} AND c.changed_at < {p}"
    " UNION SELECT p.person_id FROM sla_timer t JOIN person p ON p.lead_id = t.lead_id"
    " WHERE t.opened_at >= {p} AND t.opened_at < {p}) ")

_MOVES = ("SELECT p.person_id, c.changed_at, c.to_stage FROM in_period i JOIN person p ON p.person_id = i.person_id "
          "JOIN stage_change c ON c.lead_id = p.lead_id ORDER BY p.person_id, c.changed_at, c.id")

# Activities move to the lead that remains when records merge: a person's are their own lead's
_FIRST = ("SELECT lead_id, {column}, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY occurred_at, id) AS n "
          "FROM activity WHERE lead_id IN (SELECT person_id FROM in_period){where}")
_FIRST_SOURCE = _FIRST.format(column="source", where="")
_FIRST_CAMPAIGN = _FIRST.format(column="campaign", where=" AND campaign IS NOT NULL AND campaign <> ''")
_ATTRIBUTION = ("SELECT i.person_id, f.source, l.lead_source_channel, k.campaign FROM in_period i "
                "JOIN lead l ON l.id = i.person_id "
                f"LEFT JOIN ({_FIRST_SOURCE}) f ON f.lead_id = i.person_id AND f.n = 1 "
                f"LEFT JOIN ({_FIRST_CAMPAIGN}) k ON k.lead_id = i.person_id AND k.n = 1")

_TIMERS = ("SELECT p.person_id, t.timer FROM sla_timer t JOIN person p ON p.lead_id = t.lead_id "
           "WHERE t.opened_at >= {p} AND t.opened_at < {p} ORDER BY t.id")

_STAGES = {stage.value: stage for stage in Stage}


@dataclass(frozen=True)
class FunnelFacts:
    moves: list[Move]
    attribution: dict[int, Attribution]
    handed_over: list[tuple[int, dict]]  # (person, the timer as the domain's JSON) of each timer opened in the period


def funnel_facts(conn: Connection, start: datetime, end: datetime) -> FunnelFacts:
    """Everything the funnel of `start` to `end` (excluded) counts from, in three statements."""
    p, stamp = param_mark(conn), db_time(conn)
    bounds = (stamp(start), stamp(end))
    people = _PEOPLE.format(p=p)
    moves = [Move(person, from_db_time(at), _STAGES[stage]) for person, at, stage in
             conn.exec_driver_sql(people + _MOVES, bounds * 2)]
    attribution = {person: Attribution(source, _blank(channel), _blank(campaign)) for person, source, channel, campaign
                   in conn.exec_driver_sql(people + _ATTRIBUTION, bounds * 2)}
    timers = [(person, json.loads(timer)) for person, timer in
              conn.exec_driver_sql(_PERSON + _TIMERS.format(p=p), bounds)]
    return FunnelFacts(moves, attribution, timers)


def first_stage_change(conn: Connection) -> datetime | None:
    """When the first stage change was recorded (by the index on its time)."""
    return from_db_time(conn.exec_driver_sql("SELECT MIN(changed_at) FROM stage_change").scalar())


def _blank(text: str | None) -> str | None:
    return text.strip() or None if text else None
