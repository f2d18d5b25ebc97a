"""Read-only figures about what the store holds, for the CLI and the demo."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from store.tables import Activity, Lead, LeadContact, Quarantine

lead_t, contact_t, activity_t, quarantine_t = Lead.__table__, LeadContact.__table__, Activity.__table__, Quarantine.__table__


@dataclass(frozen=True)
class StoreFigures:
    leads: int
    leads_in_several_sources: int
    activities_by_type: list[tuple[str, int]]
    activities_by_source: list[tuple[str, int]]
    quarantined_by_source: list[tuple[str, int]]


def store_figures(engine: Engine) -> StoreFigures:
    per_lead = select(contact_t.c.lead_id).group_by(contact_t.c.lead_id).having(func.count(func.distinct(contact_t.c.source)) > 1)
    with engine.connect() as conn:
        leads = conn.execute(select(func.count()).select_from(lead_t).where(lead_t.c.merged_into_id.is_(None))).scalar_one()
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
