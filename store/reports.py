"""Read-only figures about what the store holds, for the CLI and the demo."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Collection

from sqlalchemy import Connection, Engine, func, select

from store.tables import Activity, Lead, LeadContact, LeadState, Quarantine

lead_t, contact_t, activity_t, quarantine_t = Lead.__table__, LeadContact.__table__, Activity.__table__, Quarantine.__table__
state_t = LeadState.__table__


@dataclass(frozen=True)
class StoreFigures:
    leads: int
    leads_in_several_sources: int
    activities_by_type: list[tuple[str, int]]
    activities_by_source: list[tuple[str, int]]
    quarantined_by_source: list[tuple[str, int]]


def lead_count(conn: Connection) -> int:
    """Leads that stand for a person (not merged away)."""
    return conn.execute(select(func.count()).select_from(lead_t).where(lead_t.c.merged_into_id.is_(None))).scalar_one()


def store_figures(engine: Engine) -> StoreFigures:
    per_lead = select(contact_t.c.lead_id).group_by(contact_t.c.lead_id).having(func.count(func.distinct(contact_t.c.source)) > 1)
    with engine.connect() as conn:
        leads = lead_count(conn)
        several = conn.execute(select(func.count()).select_from(per_lead.subquery())).scalar_one()
        by_type = conn.execute(
            select(activity_t.c.type, func.count()).group_by(activity_t.c.type).order_by(func.count().desc())
        ).all()
        by_source = conn.execute(
            select(activity_t.c.source, func.count()).group_by(activity_t.c.source).order_by(activity_t.c.source)
        ).all()
        quarantined = conn.execute(
            select(quarantine_t.c.source, func.count()).group_by(quarantine_t.c.source).order_by(quarantine_t.c.source)
        ).all()
    return StoreFigures(leads, several, [tuple(r) for r in by_type], [tuple(r) for r in by_source], [tuple(r) for r in quarantined])


def example_leads(engine: Engine) -> list[tuple[str, str]]:
    """Leads worth explaining in a demo: (why, e-mail) for the best-scored MQL, a lead that lost points to an
    unsubscribe or bounce, and a disqualified one."""
    queries = [
        ("the highest-scoring MQL",
         "SELECT l.email FROM lead_state s JOIN lead l ON l.id = s.lead_id WHERE s.stage = 'mql' AND l.email IS NOT NULL "
         "ORDER BY s.score DESC, l.id LIMIT 1"),
        ("a lead that lost points",
         "SELECT l.email FROM score_ledger g JOIN lead l ON l.id = g.lead_id JOIN lead_state s ON s.lead_id = l.id "
         "WHERE g.points < 0 AND l.email IS NOT NULL ORDER BY s.score DESC, l.id LIMIT 1"),
        ("a disqualified lead",
         "SELECT l.email FROM lead_state s JOIN lead l ON l.id = s.lead_id WHERE s.stage = 'disqualified' "
         "AND l.email IS NOT NULL ORDER BY s.score DESC, l.id LIMIT 1"),
    ]
    found = []
    with engine.connect() as conn:
        for why, sql in queries:
            email = conn.exec_driver_sql(sql).scalar()
            if email:
                found.append((why, email))
    return found


@dataclass(frozen=True)
class SegmentLead:
    """One lead of a segment, as a list of leads shows it."""

    lead_id: int
    email: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    stage: str
    score: int  # centipoints
    fit_grade: str
    cold: bool
    stage_changed_at: datetime
    qualified_at: datetime | None


def lead_segment(engine: Engine, *, stages: Collection[str] = (), grades: Collection[str] = (), cold: bool = False,
                 min_score: int | None = None, limit: int | None = None) -> tuple[int, list[SegmentLead]]:
    """The scored leads (not merged away) in any of `stages`, of any of `grades`, flagged cold if `cold`, scoring
    at least `min_score` centipoints; each filter left empty lets every lead through. Returns how many match, and
    the first `limit` of them (all when None), highest score first, then oldest lead."""
    joined = state_t.join(lead_t, lead_t.c.id == state_t.c.lead_id)
    where = [lead_t.c.merged_into_id.is_(None)]
    if stages:
        where.append(state_t.c.stage.in_(sorted(stages)))
    if grades:
        where.append(state_t.c.fit_grade.in_(sorted(grades)))
    if cold:
        where.append(state_t.c.cold.is_(True))
    if min_score is not None:
        where.append(state_t.c.score >= min_score)
    listed = (select(lead_t.c.id, lead_t.c.email, lead_t.c.first_name, lead_t.c.last_name, lead_t.c.company,
                     state_t.c.stage, state_t.c.score, state_t.c.fit_grade, state_t.c.cold, state_t.c.stage_changed_at,
                     state_t.c.qualified_at)
              .select_from(joined).where(*where).order_by(state_t.c.score.desc(), lead_t.c.id).limit(limit))
    with engine.connect() as conn:
        matching = conn.execute(select(func.count()).select_from(joined).where(*where)).scalar_one()
        rows = conn.execute(listed).all()
    return matching, [SegmentLead(row[0], *row[1:8], bool(row[8]), *row[9:]) for row in rows]


@dataclass(frozen=True)
class QuarantineGroup:
    """Quarantined records of one source whose reasons differ only in quoted values and numbers."""

    source: str
    reason: str  # the pattern: reason_pattern
    records: int
    first: datetime
    last: datetime
    example_id: int  # the latest record of the group


_GENERIC = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?")


def reason_pattern(reason: str) -> str:
    """A quarantine reason with its quoted values and numbers (a line number, a size) left out, so that reasons
    of one kind count together."""
    return _GENERIC.sub("…", reason)


def _quarantine_filter(source: str | None, since: datetime | None, run_id: str | None = None) -> list:
    where = [] if run_id is None else [quarantine_t.c.run_id == run_id]
    if source:
        where.append(quarantine_t.c.source == source)
    if since is not None:
        where.append(quarantine_t.c.quarantined_at >= since)
    return where


def quarantine_groups(engine: Engine, *, source: str | None = None, since: datetime | None = None,
                      run_id: str | None = None) -> list[QuarantineGroup]:
    """What the quarantine holds (of `source`, quarantined at or after `since`, by the run `run_id`), by source
    and kind of reason, the largest group first."""
    rows = select(quarantine_t.c.source, quarantine_t.c.reason, func.count(), func.min(quarantine_t.c.quarantined_at),
                  func.max(quarantine_t.c.quarantined_at), func.max(quarantine_t.c.id)) \
        .where(*_quarantine_filter(source, since, run_id)).group_by(quarantine_t.c.source, quarantine_t.c.reason)
    groups: dict[tuple[str, str], QuarantineGroup] = {}
    with engine.connect() as conn:
        for name, reason, n, first, last, latest in conn.execute(rows):
            key = (name, reason_pattern(reason))
            seen = groups.get(key)
            groups[key] = QuarantineGroup(name, key[1], n, first, last, latest) if seen is None else QuarantineGroup(
                name, key[1], seen.records + n, min(seen.first, first), max(seen.last, last), max(seen.example_id, latest))
    return sorted(groups.values(), key=lambda g: (-g.records, g.source, g.reason))


def latest_quarantined(engine: Engine, *, source: str | None = None, since: datetime | None = None,
                       limit: int = 20) -> list[dict]:
    """The latest quarantined records (without their raw payloads), newest first."""
    columns = [quarantine_t.c[name] for name in ("id", "source", "external_id", "reason", "quarantined_at", "run_id")]
    query = select(*columns).where(*_quarantine_filter(source, since)).order_by(quarantine_t.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def quarantined_record(engine: Engine, record_id: int) -> dict | None:
    """One quarantined record, its raw payload as it arrived included."""
    with engine.connect() as conn:
        row = conn.execute(select(quarantine_t).where(quarantine_t.c.id == record_id)).mappings().first()
    return dict(row) if row else None
