"""Identity resolution: the same person in several tools becomes one lead (e-mail first, known source ids next)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, NamedTuple


class Identity(NamedTuple):
    """How a source names a person: its contact id, the normalized e-mail, or both. A tuple: a batch hashes
    each of its identities several times, and a tuple's hash is computed in C."""

    source: str
    contact_id: str | None
    email: str | None


@dataclass(eq=False, slots=True)
class NewLead:
    """A lead to create; `key` is its e-mail or, for an e-mail-less contact, `source/contact_id`.

    Compared by identity: a lead created without an e-mail may gain one later in the same batch.
    """

    key: str
    email: str | None


LeadRef = int | NewLead


@dataclass
class ResolutionPlan:
    """What to write so that every identity resolves to exactly one lead."""

    new_leads: dict[str, NewLead] = field(default_factory=dict)
    links: dict[tuple[str, str], LeadRef] = field(default_factory=dict)
    email_claims: dict[int, str] = field(default_factory=dict)
    merges: dict[int, int] = field(default_factory=dict)
    by_email: dict[str, LeadRef] = field(default_factory=dict)
    by_contact: dict[tuple[str, str], LeadRef] = field(default_factory=dict)

    def lead_for(self, identity: Identity) -> LeadRef | None:
        if identity.email is not None and identity.email in self.by_email:
            return self.by_email[identity.email]
        if identity.contact_id is not None:
            return self.by_contact.get((identity.source, identity.contact_id))
        return None


def plan_resolution(
    identities: Iterable[Identity],
    lead_by_email: dict[str, int],
    lead_by_contact: dict[tuple[str, str], int],
    email_of_lead: dict[int, str | None],
) -> ResolutionPlan:
    """Decide, for a batch of identities and the leads already stored, which leads to create, link, claim or merge.

    Rules, in order: a known e-mail decides the lead; a known contact id whose lead has no e-mail yet takes the
    new e-mail (claim); a known contact id whose lead has another e-mail is re-linked to the e-mail's lead (the
    tool now says this contact is that person); an e-mail-less lead whose contact id turns up with a known e-mail
    is merged into the e-mail's lead. Nothing else creates a lead.
    """
    plan = ResolutionPlan()
    by_email: dict[str, LeadRef] = dict(lead_by_email)
    by_contact: dict[tuple[str, str], LeadRef] = dict(lead_by_contact)
    emails: dict[int, str | None] = dict(email_of_lead)

    def new_lead(key: str, email: str | None) -> NewLead:
        lead = plan.new_leads.get(key)
        if lead is None:
            lead = plan.new_leads[key] = NewLead(key, email)
        return lead

    for identity in identities:
        contact = (identity.source, identity.contact_id) if identity.contact_id is not None else None
        known_by_contact = by_contact.get(contact) if contact else None
        if identity.email is not None:
            target = by_email.get(identity.email)
            if target is None:
                if isinstance(known_by_contact, int) and emails.get(known_by_contact) is None:
                    target = known_by_contact
                    plan.email_claims[target] = identity.email
                    emails[target] = identity.email
                elif isinstance(known_by_contact, NewLead) and known_by_contact.email is None:
                    target = known_by_contact  # created in this batch without an e-mail; give it one
                    target.email = identity.email
                else:
                    target = new_lead(identity.email, identity.email)
                by_email[identity.email] = target
            elif (
                isinstance(known_by_contact, int)
                and isinstance(target, int)
                and known_by_contact != target
                and emails.get(known_by_contact) is None
            ):
                plan.merges[known_by_contact] = target
            if contact and by_contact.get(contact) != target:
                by_contact[contact] = target
                plan.links[contact] = target
        elif contact:
            if known_by_contact is None:
                target = new_lead(f"{identity.source}/{identity.contact_id}", None)
                by_contact[contact] = target
                plan.links[contact] = target
    plan.by_email = by_email
    plan.by_contact = by_contact
    return plan

