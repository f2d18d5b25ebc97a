"""Leads in bulk: resolve a batch of identities to lead ids, creating, linking and merging set-wise."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Callable, Iterable

from sqlalchemy import Connection, bindparam, func, select, update

from domain.activity import PERSON_FIELDS, PersonRecord
from domain.identity import Identity, NewLead, plan_resolution
from store.bulk import chunks, insert_for
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
    lead_by_email: dict[str, int] = {}
    for part in chunks(emails):
        lead_by_email.update(
            (email, lead_id)
            for lead_id, email in conn.execute(select(lead_t.c.id, lead_t.c.email).where(lead_t.c.email.in_(part)))
        )
    lead_by_contact: dict[tuple[str, str], int] = {}
    for source, ids in contacts.items():
        for part in chunks(sorted(ids)):
            query = select(contact_t.c.contact_id, contact_t.c.lead_id).where(
                contact_t.c.source == source, contact_t.c.contact_id.in_(part)
            )
            lead_by_contact.update(((source, cid), lead_id) for cid, lead_id in conn.execute(query))
    email_of_lead: dict[int, str | None] = {lead_id: email for email, lead_id in lead_by_email.items()}
    unknown = sorted(set(lead_by_contact.values()) - set(email_of_lead))
    for part in chunks(unknown):
        email_of_lead.update(conn.execute(select(lead_t.c.id, lead_t.c.email).where(lead_t.c.id.in_(part))).all())
    return lead_by_email, lead_by_contact, email_of_lead


def _create(conn: Connection, new_leads: list[NewLead], now: datetime) -> dict[int, int]:
    """Insert new leads; an e-mail another writer inserted meanwhile is looked up instead. Returns id(NewLead) -> id."""
    created: dict[int, int] = {}
    with_email = [lead for lead in new_leads if lead.email is not None]
    if with_email:
        stmt = insert_for(conn, lead_t).on_conflict_do_nothing(index_elements=["email"])
        rows = sorted(({"email": lead.email, "created_at": now, "updated_at": now} for lead in with_email), key=lambda r: r["email"])
        conn.execute(stmt, rows)
        ids: dict[str, int] = {}
        for part in chunks([lead.email for lead in with_email]):
            ids.update(
                (email, lead_id)
                for lead_id, email in conn.execute(select(lead_t.c.id, lead_t.c.email).where(lead_t.c.email.in_(part)))
            )
        created.update((id(lead), ids[lead.email]) for lead in with_email)
    anonymous = [lead for lead in new_leads if lead.email is None]
    if anonymous:
        stmt = lead_t.insert().returning(lead_t.c.id, sort_by_parameter_order=True)
        rows = conn.execute(stmt, [{"email": None, "created_at": now, "updated_at": now} for _ in anonymous]).all()
        created.update((id(lead), row.id) for lead, row in zip(anonymous, rows))
    return created


def resolve_leads(
    conn: Connection, identities: list[Identity], people: Iterable[PersonRecord], now: datetime
) -> tuple[Callable[[Identity], int | None], int]:
    """Make every identity resolve to one stored lead; returns the lookup and how many leads were created.
    Runs inside the caller's transaction."""
    lead_by_email, lead_by_contact, email_of_lead = _existing(conn, identities)
    plan = plan_resolution(identities, lead_by_email, lead_by_contact, email_of_lead)
    created = _create(conn, list(plan.new_leads.values()), now)

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
    if plan.links:
        stmt = insert_for(conn, contact_t)
        stmt = stmt.on_conflict_do_update(index_elements=["source", "contact_id"], set_={"lead_id": stmt.excluded.lead_id})
        conn.execute(
            stmt, [{"source": s, "contact_id": c, "lead_id": lead_id(ref)} for (s, c), ref in sorted(plan.links.items())]
        )
    _update_fields(conn, plan, people, lead_id, now)

    def lookup(identity: Identity) -> int | None:
        ref = plan.lead_for(identity)
        return None if ref is None else lead_id(ref)

    return lookup, len(created)


def _update_fields(conn: Connection, plan, people: Iterable[PersonRecord], lead_id, now: datetime) -> None:
    """Latest non-empty value wins, field by field: one executemany, in lead-id order so concurrent batches
    lock rows in the same order and cannot deadlock."""
    merged: dict[int, dict] = {}
    for person in people:
        ref = plan.lead_for(Identity(person.source, person.source_contact_id, person.email))
        fields = person.fields()
        if ref is not None and fields:
            merged.setdefault(lead_id(ref), {}).update(fields)
    if not merged:
        return
    rows = [{"b_id": lid, **{f"b_{name}": fields.get(name) for name in PERSON_FIELDS}} for lid, fields in sorted(merged.items())]
    values = {name: func.coalesce(bindparam(f"b_{name}", type_=lead_t.c[name].type), lead_t.c[name]) for name in PERSON_FIELDS}
    conn.execute(update(lead_t).where(lead_t.c.id == bindparam("b_id")).values(**values, updated_at=now), rows)
