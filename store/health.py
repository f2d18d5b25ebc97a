"""What the store says about how the line is moving: the facts domain/health.py judges. Read only, and never
the activity log or the score ledger: the tables read here stay small beside them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, case, func, select

from domain.health import CrmFacts, QueueFacts, SlaFacts, SourceFacts
from store.tables import (
    CrmRecord, CrmWatermark, HandoffQueue, LeadDirty, Quarantine, RulebookVersion, ScoringState, SlaTimerRow,
    SourceWatermark,
)

watermark_t, quarantine_t, dirty_t = SourceWatermark.__table__, Quarantine.__table__, LeadDirty.__table__
version_t, scoring_t, queue_t = RulebookVersion.__table__, ScoringState.__table__, HandoffQueue.__table__
crm_mark_t, crm_record_t, timer_t = CrmWatermark.__table__, CrmRecord.__table__, SlaTimerRow.__table__


def source_facts(conn: Connection, now: datetime, enabled: list[str]) -> list[SourceFacts]:
    """The sources enabled now and those the store has read before, by name: watermark, how their reads last
    ended, and the records quarantined in the day before `now`."""
    marks = {row.source: row for row in conn.execute(select(watermark_t.c.source, watermark_t.c.watermark,
                                                            watermark_t.c.read_at, watermark_t.c.failed_at,
                                                            watermark_t.c.error))}
    quarantined = dict(conn.execute(
        select(quarantine_t.c.source, func.count()).where(quarantine_t.c.quarantined_at > now - timedelta(days=1))
        .group_by(quarantine_t.c.source)).all())
    names = sorted(set(enabled) | set(marks) | set(quarantined))
    found = []
    for name in names:
        mark = marks.get(name)
        found.append(SourceFacts(name=name, enabled=name in enabled, quarantined_today=quarantined.get(name, 0),
                                 **({"watermark": mark.watermark, "read_at": mark.read_at, "failed_at": mark.failed_at,
                                     "error": mark.error} if mark else {})))
    return found


def version_in_force(conn: Connection) -> tuple[int, str, datetime, datetime, datetime | None] | None:
    """The last scoring run's bookmarks: (version id, its digest, when it was registered, when the run finished,
    the last decay pass); None before any scoring run finished."""
    row = conn.execute(
        select(scoring_t.c.version_id, version_t.c.digest, version_t.c.created_at, scoring_t.c.updated_at,
               scoring_t.c.decayed_at)
        .join(version_t, version_t.c.id == scoring_t.c.version_id).where(scoring_t.c.key == "default")).first()
    return tuple(row) if row else None


def scoring_backlog(conn: Connection) -> tuple[int, datetime | None]:
    """Leads marked for scoring, and the oldest mark."""
    count, oldest = conn.execute(select(func.count(), func.min(dirty_t.c.marked_at))).one()
    return count, oldest


def open_queues(conn: Connection) -> list[QueueFacts]:
    """Work queued for the next rooms (routing, CRM sync) and not yet done, per queue, with the oldest."""
    rows = conn.execute(select(queue_t.c.queue, func.count(), func.min(queue_t.c.created_at))
                        .where(queue_t.c.done_at.is_(None)).group_by(queue_t.c.queue).order_by(queue_t.c.queue))
    return [QueueFacts(queue=queue, open=n, oldest=oldest) for queue, n, oldest in rows]



def crm_facts(conn: Connection) -> CrmFacts:
    """The sync that is on: when a pull last finished, and the writes given up (by the index on `dead_at`)."""
    # Each pull moves every kind it read to the org's clock; a kind the org never dates may stay behind
    pulled_at = conn.execute(select(func.max(crm_mark_t.c.updated_at))).scalar_one()
    given_up, oldest = conn.execute(select(func.count(), func.min(crm_record_t.c.dead_at))
                                    .where(crm_record_t.c.dead_at.isnot(None))).one()
    return CrmFacts(enabled=True, pulled_at=pulled_at, given_up=given_up, oldest_given_up=oldest)


def sla_facts(conn: Connection, now: datetime) -> SlaFacts:
    """The running timers by state, how many have a step due at `now`, and the oldest step due."""
    due = timer_t.c.next_step_at <= now
    rows = conn.execute(select(timer_t.c.state, func.count(), func.sum(case((due, 1), else_=0)),
                               func.min(timer_t.c.next_step_at))
                        .where(timer_t.c.closed_at.is_(None)).group_by(timer_t.c.state)).all()
    earliest = min((first for *_, first in rows), default=None)
    return SlaFacts(running={state: n for state, n, _, _ in rows}, steps_due=sum(int(d or 0) for _, _, d, _ in rows),
                    oldest_step_due=earliest if earliest is not None and earliest <= now else None)
