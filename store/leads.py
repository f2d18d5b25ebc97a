"""Leads in bulk: resolve a batch of identities to lead ids, creating, linking and merging set-wise."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable

from sqlalchemy import Connection, bindparam, func, select, update

from domain.activity import PERSON_FIELDS, PersonRecord
from domain.identity import Identity, NewLead, plan_resolution
from store.bulk import db_time, insert_rows, select_where_in, stage
from store.tables import Activity, Lead, LeadContact

lead_t = Lead.__table__
contact_t = LeadContact.__table__
activity_t = Activity.__table__


def _existing(conn: Connection, identities: list[Identity]):
    emails = sorted({i.email for i in identities if i.email})
    contacts: dict[str, set[str]] = defaultdict(set)
    for i in identities:
        if i.contact_id is not None:
            contacts[i.source].add(i.contact_id)
    lead_by_email = {email: lead_id for lead_id, email in _leads_by_email(conn, emails)}
    lead_by_contact: dict[tuple[str, str], int] = {}
    for source, ids in contacts.items():
        rows = select_where_in(conn, "SELECT contact_id, lead_id FROM lead_contact WHERE source = ? AND contact_id {keys}",
                               sorted(ids), source)
        lead_by_contact.update(((source, cid), lead_id) for cid, lead_id in rows)
    email_of_lead: dict[int, str | None] = {lead_id: email for email, lead_id in lead_by_email.items()}
    unknown = sorted(set(lead_by_contact.values()) - set(email_of_lead))
    email_of_lead.update(select_where_in(conn, "SELECT id, email FROM lead WHERE id {keys}", unknown))
    return lead_by_email, lead_by_contact, email_of_lead


def _leads_by_email(conn: Connection, emails: list[str]) -> list[tuple[int, str]]:
    return select_where_in(conn, "SELECT id, email FROM lead WHERE email {keys}", emails)


def _create(conn: Connection, new_leads: list[NewLead], now: datetime) -> tuple[dict[int, int], int]:
    """Insert new leads; an e-mail another writer inserted meanwhile is looked up instead. Returns id(NewLead) -> id,
    and how many leads this call really inserted (not those another writer got to first)."""
    created: dict[int, int] = {}
    inserted = 0
    with_email = sorted((lead for lead in new_leads if lead.email is not None), key=lambda lead: lead.email)
    if with_email:
        stamp = db_time(conn)(now)
        inserted = insert_rows(conn, lead_t, ("email", "created_at", "updated_at"),
                               [(lead.email, stamp, stamp) for lead in with_email], conflict=("email",))
        ids = {email: lead_id for lead_id, email in _leads_by_email(conn, [lead.email for lead in with_email])}
        created.update((id(lead), ids[lead.email]) for lead in with_email)
    anonymous = [lead for lead in new_leads if lead.email is None]
    if anonymous:
        stmt = lead_t.insert().returning(lead_t.c.id, sort_by_parameter_order=True)
        rows = conn.execute(stmt, [{"email": None, "created_at": now, "updated_at": now} for _ in anonymous]).all()
        created.update((id(lead), row.id) for lead, row in zip(anonymous, rows))
        inserted += len(rows)
    return created, inserted


@dataclass(frozen=True)
class Resolution:
    lead_of: Callable[[Identity], int | None]
    created: int
    touched: set[int]
    merged_away: list[int]


def resolve_leads(
    conn: Connection, identities: list[Identity], people: Iterable[PersonRecord], now: datetime
) -> Resolution:
    """Make every identity resolve to one stored lead; returns the lookup, how many leads were created and
    which leads changed. Runs inside the caller's transaction."""
    identities = list(dict.fromkeys(identities))  # a person named by many activities is resolved once
    lead_by_email, lead_by_contact, email_of_lead = _existing(conn, identities)
    plan = plan_resolution(identities, lead_by_email, lead_by_contact, email_of_lead)
    created, inserted = _create(conn, list(plan.new_leads.values()), now)

    def lead_id(ref) -> int:
        return created[id(ref)] if isinstance(ref, NewLead) else ref

    if plan.email_claims:
        conn.execute(
            update(lead_t)
            .where(lead_t.c.id == bindparam("b_id"), lead_t.c.email.is_(None))
            .values(email=bindparam("b_email"), updated_at=now),
            [{"b_id": lid, "b_email": email} for lid, email in sorted(plan.email_claims.items())],
        )
    if plan.merges:
        moves = [{"b_from": src, "b_into": dst} for src, dst in sorted(plan.merges.items())]
        conn.execute(update(activity_t).where(activity_t.c.lead_id == bindparam("b_from")).values(lead_id=bindparam("b_into")), moves)
        conn.execute(update(contact_t).where(contact_t.c.lead_id == bindparam("b_from")).values(lead_id=bindparam("b_into")), moves)
        conn.execute(
            update(lead_t).where(lead_t.c.id == bindparam("b_from")).values(merged_into_id=bindparam("b_into"), updated_at=now),
            moves,
        )
        # What the merged-away lead knew fills what the lead that remains does not (the badge scanner's company
        # and title, say): its fit and stage are judged on everything known about the person.
        away = lead_t.alias("away")
        known = {name: func.coalesce(lead_t.c[name], select(away.c[name]).where(away.c.id == bindparam("b_from"))
                                     .scalar_subquery()) for name in PERSON_FIELDS}
        conn.execute(update(lead_t).where(lead_t.c.id == bindparam("b_into")).values(**known, updated_at=now), moves)
    if plan.links:
        links = sorted((s, c, lead_id(ref)) for (s, c), ref in plan.links.items())
        insert_rows(conn, contact_t, ("source", "contact_id", "lead_id"), links, conflict=("source", "contact_id"),
                    on_conflict="DO UPDATE SET lead_id = excluded.lead_id WHERE {table}.lead_id <> excluded.lead_id")
    changed = _update_fields(conn, plan, people, lead_id, now)

    resolved: dict[Identity, int | None] = {}

    def lookup(identity: Identity) -> int | None:
        if identity not in resolved:
            ref = plan.lead_for(identity)
            resolved[identity] = None if ref is None else lead_id(ref)
        return resolved[identity]

    # Leads whose scoring inputs changed here: new ones, those whose fields changed, both sides of a merge
    # (the merged-away lead's ledger must lose the activities that moved).
    touched = set(created.values()) | changed | set(plan.merges.values()) | set(plan.merges)
    return Resolution(lookup, inserted, touched, sorted(plan.merges))


def _update_fields(conn: Connection, plan, people: Iterable[PersonRecord], lead_id, now: datetime) -> set[int]:
    """Latest non-empty value wins, field by field, set-wise from staged rows; a lead whose fields are already
    so is not written. Rows go in lead-id order so concurrent batches lock them alike and cannot deadlock."""
    merged: dict[int, dict] = {}
    for person in people:
        ref = plan.lead_for(Identity(person.source, person.source_contact_id, person.email))
        fields = person.fields()
        if ref is not None and fields:
            merged.setdefault(lead_id(ref), {}).update(fields)
    if not merged:
        return set()
    stamp = db_time(conn)(now)
    rows = [(lid, *(fields.get(name) for name in PERSON_FIELDS), stamp) for lid, fields in sorted(merged.items())]
    staged = stage(conn, lead_t, ("id", *PERSON_FIELDS, "updated_at"), rows)
    value = {name: f"COALESCE(s.{name}, lead.{name})" for name in PERSON_FIELDS}
    changed = " OR ".join(f"lead.{name} IS DISTINCT FROM {value[name]}" for name in PERSON_FIELDS)
    if conn.dialect.name == "sqlite":
        changed = changed.replace("IS DISTINCT FROM", "IS NOT")
    assignments = ", ".join(f"{name} = {value[name]}" for name in PERSON_FIELDS)
    updated = conn.exec_driver_sql(
        f"UPDATE lead SET {assignments}, updated_at = s.updated_at FROM {staged} AS s WHERE lead.id = s.id AND ({changed}) "
        "RETURNING lead.id"
    )
    return {row[0] for row in updated}
