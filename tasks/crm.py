"""The two-way sync's work, free of Prefect: pull what sales did into the store and the lifecycle, then push what
changed in Handoff's fields, each record's write recorded as the CRM answers it."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from pydantic import BaseModel

from config.crm import CrmConfig
from connectors.crm.base import PULLED, CrmClient
from domain.activity import Rejection, dump_raw, normalize_email
from store.bulk import select_where_in
from domain.crm import (
    OWNER_FIELD, CrmChanges, CrmObject, CrmPerson, CrmWrite, Outcome, SalesMove, WriteResult, changed_values, comparable, desired_values,
    details_for_create, interesting_moment, opportunity_move, person_move,
)
from domain.fit import assess_fit
from domain.lifecycle import Qualification, Stage, StageMoveRefused, move_by_person
from domain.rules import Rulebook
from store import crm as store
from store import scoring, stages
from store.ingest import quarantine

log = logging.getLogger("handoff.crm")

COMPOSITE_SIZE = 200  # records a composite call takes
SOURCE = "salesforce"  # the quarantine's name for records pulled from the CRM


class PullSummary(BaseModel):
    pulled: dict[str, int] = {}
    linked: int = 0  # person records that are leads of Handoff's
    not_ours: int = 0  # person records of people Handoff does not know
    merged: int = 0
    released: int = 0
    moves: dict[str, int] = {}  # lifecycle moves made, by target stage
    refused_moves: list[str] = []  # moves the lifecycle did not allow, with why
    activities_on_leads: int = 0
    quarantined: int = 0


class PushSummary(BaseModel):
    considered: int = 0
    unchanged: int = 0
    updated: int = 0
    created: int = 0
    linked: int = 0  # matched to a record the CRM already had (by key or e-mail), or named as a duplicate
    reconciled: int = 0  # writes a run cut short found already taken by the CRM
    failed: dict[str, int] = {}  # by error code
    dead_lettered: int = 0
    stopped_for_budget: bool = False
    left_unsent: int = 0
    another_run_pushing: bool = False  # a concurrent run holds the push: this one wrote nothing


class CrmSyncSummary(BaseModel):
    now: datetime
    run_id: str | None
    enabled: bool = True
    pull: PullSummary = PullSummary()
    push: PushSummary = PushSummary()
    calls: dict[str, int] = {}
    api_used: int | None = None
    api_allowed: int | None = None
    markdown: str = ""

    @property
    def allowance_left(self) -> float | None:
        if self.api_used is None or not self.api_allowed:
            return None
        return max(0.0, (self.api_allowed - self.api_used) / self.api_allowed)


# ---------------------------------------------------------------- pull

def pull(engine, client: CrmClient, config: CrmConfig, *, now: datetime, run_id: str | None,
         rulebook: Rulebook) -> PullSummary:
    """Read everything changed in the CRM since each kind's watermark (less the overlap) and take it in."""
    with engine.connect() as conn:
        marks = store.watermarks(conn)
    overlap = timedelta(minutes=config.pull.overlap_minutes)
    since = {kind: (marks[kind] - overlap if marks.get(kind) else None) for kind in PULLED}
    return take_in(engine, client.pull(since), config, now=now, run_id=run_id, rulebook=rulebook)


def pull_people(engine, client: CrmClient, config: CrmConfig, lead_ids: Sequence[int], emails: Sequence[str], *,
                now: datetime, run_id: str | None, rulebook: Rulebook) -> PullSummary:
    """Read these leads' records from the CRM now, whatever the watermarks (a resync); the watermarks stay."""
    people = client.find_people(keys=[store.key_of(lead_id) for lead_id in lead_ids], emails=list(emails))
    return take_in(engine, CrmChanges(people=people), config, now=now, run_id=run_id, rulebook=rulebook)


def take_in(engine, changes: CrmChanges, config: CrmConfig, *, now: datetime, run_id: str | None,
            rulebook: Rulebook) -> PullSummary:
    """Store what the CRM said and move the leads whose status, conversion or opportunity changed; one
    transaction, the watermarks last."""
    summary = PullSummary(pulled={"people": len(changes.people), "activities": len(changes.activities),
                                  "opportunities": len(changes.opportunities), "users": len(changes.users),
                                  "accounts": len(changes.accounts)})
    mapping = config.stage_mapping()
    with engine.begin() as conn:
        store.save_users(conn, changes.users)
        store.save_accounts(conn, changes.accounts)
        users = store.user_names(conn, [p.modified_by for p in changes.people if p.modified_by])
        moves: dict[int, list[SalesMove]] = {}
        summary.merged = store.repoint(conn, [(p.crm_id, p.master_id) for p in changes.people if p.deleted and p.master_id])
        deleted = [p.crm_id for p in changes.people if p.deleted and not p.master_id]
        summary.released = len(store.release(conn, deleted, now))
        live = [p for p in changes.people if not p.deleted]
        linked = _link_people(conn, live)
        summary.linked, summary.not_ours = len(linked), len(live) - len(linked)
        before = store.records_of(conn, [lead_id for lead_id, _ in linked])
        for lead_id, person in linked:
            stored = before.get(lead_id)
            move = person_move(person, stored.person if stored else None, mapping, users.get(person.modified_by))
            if move:
                moves.setdefault(lead_id, []).append(move)
        store.save_people(conn, linked, now)
        previous = store.save_opportunities(conn, changes.opportunities)
        owners = store.leads_of_opportunities(conn, [o.crm_id for o in changes.opportunities])
        for opportunity in changes.opportunities:
            move = opportunity_move(opportunity, previous.get(opportunity.crm_id), mapping)
            for lead_id in owners.get(opportunity.crm_id, []) if move else []:
                moves.setdefault(lead_id, []).append(move)
        summary.activities_on_leads = store.save_activities(conn, changes.activities)
        _apply_moves(conn, moves, rulebook, now, run_id, summary)
        rejections = [Rejection(SOURCE, None, f"{kind}: {reason}", dump_raw(raw)) for kind, reason, raw in changes.refused]
        summary.quarantined = quarantine(conn, rejections, SOURCE, now, run_id)
        store.advance_watermarks(conn, changes.watermarks(), now, run_id)
    return summary


def _link_people(conn, people: Sequence[CrmPerson]) -> list[tuple[int, CrmPerson]]:
    """The leads these CRM records belong to: by Handoff's key on the record, by the record ids already linked,
    then by e-mail address. A record of someone Handoff does not know is left out."""
    known = store.records_by_crm_id(conn, [p.crm_id for p in people] + [p.contact_id for p in people if p.contact_id])
    emails = scoring.leads_by_email(conn, sorted({e for p in people if (e := normalize_email(p.email))}))
    keyed = {store.lead_of_key(p.handoff_key) for p in people} - {None}
    live = _existing_leads(conn, keyed) if keyed else set()
    linked = []
    for person in people:
        lead_id = store.lead_of_key(person.handoff_key)
        if lead_id not in live:
            lead_id = None
        if lead_id is None:
            record = known.get(person.crm_id) or (known.get(person.contact_id) if person.contact_id else None)
            lead_id = record.lead_id if record else emails.get(normalize_email(person.email) or "")
        if lead_id is not None:
            linked.append((lead_id, person))
    # One record per lead: when a converted Lead and the Contact it became come together, the Lead tells of the
    # conversion (a contact has no status); otherwise the later change wins
    chosen: dict[int, CrmPerson] = {}
    for lead_id, person in sorted(linked, key=lambda pair: (pair[1].object is CrmObject.LEAD, pair[1].modified_at)):
        chosen[lead_id] = person
    return sorted(chosen.items())


def _existing_leads(conn, lead_ids: set[int]) -> set[int]:
    return {row[0] for row in select_where_in(conn, "SELECT id FROM lead WHERE merged_into_id IS NULL AND "
                                                          "id {keys}", sorted(lead_ids))}


def _apply_moves(conn, moves: dict[int, list[SalesMove]], rulebook: Rulebook, now: datetime, run_id: str | None,
                 summary: PullSummary) -> None:
    """What sales did, through the lifecycle's own rules (stages move forward; recycle and disqualify with their
    reasons); a move the lifecycle refuses is reported, not forced. The leads' routing is withdrawn once sales
    has taken them on, or sent them back."""
    if not moves:
        return
    states = scoring.load_states(conn, sorted(moves), lock=True)
    profiles = scoring.lead_profiles(conn, sorted(moves))
    results: dict[int, Qualification] = {}
    for lead_id, asked in sorted(moves.items()):
        state = states.get(lead_id)
        for move in asked:
            if state is None or state.stage is move.target:
                continue
            profile = profiles.get(lead_id)
            fit = assess_fit(profile, profile["email"], rulebook.fit) if profile else None
            try:
                result = move_by_person(state, move.target, move.reason, now, fit=fit,
                                        rearm_below=rulebook.qualification.rearm_below)
            except StageMoveRefused as refused:
                summary.refused_moves.append(f"lead {lead_id}: {move.target} ({move.reason}): {refused}")
                continue
            previous = results.get(lead_id)
            results[lead_id] = Qualification(result.state, (previous.changes if previous else ()) + result.changes)
            state = result.state
    if not results:
        return
    bookmarks = scoring.scoring_state(conn)
    stages.save_moves(conn, results, bookmarks[0] if bookmarks else None, now, run_id)
    stages.withdraw_routing(conn, [(lead_id, q.state.stage.value, q.changes[-1].reason) for lead_id, q in results.items()
                                   if q.state.stage is not Stage.MQL], now)
    counts = Counter(q.state.stage.value for q in results.values())
    summary.moves = dict(sorted(counts.items()))


# ---------------------------------------------------------------- push

@dataclass
class _Plan:
    writes: list[CrmWrite] = field(default_factory=list)
    payloads: dict[int, dict] = field(default_factory=dict)
    unchanged: list[int] = field(default_factory=list)


PUSH_LEASE = "crm-push"
LEASE_MINUTES = 15  # a run that died holding the push frees it after this long


def push(engine, client: CrmClient, config: CrmConfig, *, now: datetime, lead_ids: Sequence[int] | None = None,
         force: bool = False) -> PushSummary:
    """Write what changed since the CRM last took it (of these leads only, when `lead_ids`; everything Handoff
    writes, changed or not, when `force`: a resync), one run at a time (two runs planning the same creates would
    make each record twice): a run that finds another pushing writes nothing."""
    holder = uuid.uuid4().hex
    with engine.begin() as conn:
        held = store.take_lease(conn, PUSH_LEASE, holder, now, now + timedelta(minutes=LEASE_MINUTES))
    if not held:
        log.warning("another run is pushing to the CRM: this run writes nothing")
        return PushSummary(another_run_pushing=True)
    try:
        return _push(engine, client, config, now=now, lead_ids=lead_ids, force=force)
    finally:
        with engine.begin() as conn:
            store.release_lease(conn, PUSH_LEASE, holder)


def _push(engine, client: CrmClient, config: CrmConfig, *, now: datetime, lead_ids: Sequence[int] | None,
          force: bool) -> PushSummary:
    """First settle the writes a run cut short (asking the CRM what it took), then link leads that need a record to
    one the CRM already has, then write, a group at a time, each group noted before it is sent and its answers
    recorded after."""
    summary = PushSummary()
    _settle_in_flight(engine, client, summary, now, config.push.max_attempts)
    create_at = [stage.value for stage in config.create_at()]
    with engine.connect() as conn:
        candidates = store.push_candidates(conn, create_at, lead_ids=lead_ids,
                                           create_when_assigned=config.push.new_leads_owner == "handoff")
        moments = store.interesting_moments(conn, [c.lead_id for c in candidates])
        profiles = scoring.lead_profiles(conn, [c.lead_id for c in candidates if c.target_id is None])
    summary.considered = len(candidates)
    unlinked = [c for c in candidates if c.target_id is None]
    found = _find_existing(client, unlinked, profiles)
    plan = _Plan()
    for candidate in candidates:
        moment = moments.get(candidate.lead_id)
        desired = desired_values(
            score_centipoints=candidate.score, fit_grade=candidate.fit_grade, stage=candidate.stage,
            qualified_at=candidate.qualified_at, moment=interesting_moment(*moment[:3]) if moment else None,
            moment_at=moment[3] if moment else None)
        if candidate.owner_id:  # routing's owner, written once (HANDOFF_FIELDS' neighbour OWNER_FIELD)
            desired[OWNER_FIELD] = candidate.owner_id
        existing = found.get(candidate.lead_id)
        target = candidate.target_id or (existing.crm_id if existing else None)
        obj = candidate.object if candidate.target_id else (existing.object if existing else CrmObject.LEAD)
        values = changed_values(desired, candidate.pushed) if candidate.target_id and not force else desired
        if candidate.assignment_id and candidate.owner_id:  # a new assignment is written even to the owner last
            values = {**values, OWNER_FIELD: candidate.owner_id}  # pushed: a person may have moved the record since
        if existing:
            summary.linked += 1
        if target is not None and not values:
            plan.unchanged.append(candidate.lead_id)
            continue
        key = store.key_of(candidate.lead_id)
        if target is None:
            profile = profiles.get(candidate.lead_id) or {"email": candidate.email}
            values = {**details_for_create(profile, config.placeholders), **desired}
        plan.writes.append(CrmWrite(candidate.lead_id, obj, target, key, values))
        plan.payloads[candidate.lead_id] = {"object": obj.value, "key": key, "crm_id": target,
                                            "values": comparable({k: v for k, v in values.items() if k in desired}),
                                            "assignment_id": candidate.assignment_id if OWNER_FIELD in values else None}
    summary.unchanged = len(plan.unchanged)
    with engine.begin() as conn:
        store.touch_pushed(conn, plan.unchanged, now)
    _write(engine, client, config, plan, summary, now)
    return summary


def _find_existing(client: CrmClient, unlinked, profiles) -> dict[int, CrmPerson]:
    """Records the CRM already has for leads that have none in Handoff: carrying Handoff's key (a create whose
    answer was lost), else with the lead's e-mail (a contact is preferred to a lead, an open lead to a converted
    one), so the sync never creates a duplicate."""
    if not unlinked:
        return {}
    keys = {store.key_of(c.lead_id): c.lead_id for c in unlinked}
    emails = {c.email: c.lead_id for c in unlinked if c.email}
    found: dict[int, CrmPerson] = {}
    people = client.find_people(keys=list(keys), emails=list(emails))  # the connector splits long lists itself
    ranked = sorted(people, key=lambda p: (p.object is CrmObject.CONTACT, not p.converted), reverse=True)
    for person in ranked:
        lead_id = keys.get(person.handoff_key or "") or emails.get(normalize_email(person.email) or "")
        if lead_id is not None and (person.object is CrmObject.CONTACT or not person.converted):
            found.setdefault(lead_id, person)
    return found


def _write(engine, client: CrmClient, config: CrmConfig, plan: _Plan, summary: PushSummary, now: datetime) -> None:
    writes = plan.writes
    # One Bulk API job for a large push, else composite calls of 200, each group noted and recorded on its own
    size = len(writes) if len(writes) > config.push.bulk_above else COMPOSITE_SIZE
    for start in range(0, len(writes), size):
        usage = client.usage
        if usage is not None and usage.remaining_share < config.push.budget_floor:
            summary.stopped_for_budget = True
            summary.left_unsent = len(writes) - start
            log.warning("the CRM's daily API allowance is down to %.0f%% (%d of %d used): %d writes left for a later "
                        "run", 100 * usage.remaining_share, usage.used, usage.allowed, summary.left_unsent)
            return
        group = writes[start:start + size]
        payloads = {w.lead_id: plan.payloads[w.lead_id] for w in group}
        with engine.begin() as conn:
            store.mark_sending(conn, group, payloads, now)
        results = client.write(group)
        with engine.begin() as conn:
            store.record_results(conn, results, payloads, now, config.push.max_attempts)
        _count(results, summary)


def _count(results, summary: PushSummary) -> None:
    for result in results:
        if result.outcome is Outcome.CREATED:
            summary.created += 1
        elif result.outcome is Outcome.WRITTEN:
            summary.updated += 1
        elif result.outcome is Outcome.DUPLICATE:
            summary.linked += 1
        else:
            code = result.error_code or result.outcome.value
            summary.failed[code] = summary.failed.get(code, 0) + 1
            if result.outcome is Outcome.FAILED:
                summary.dead_lettered += 1


def _settle_in_flight(engine, client: CrmClient, summary: PushSummary, now: datetime, max_attempts: int) -> None:
    """Writes noted as sent whose answer was never recorded: those the CRM holds are recorded as taken (never sent
    twice); the rest are cleared to be planned again."""
    with engine.connect() as conn:
        pending = store.in_flight(conn)
    if not pending:
        return
    taken = []
    creates = {payload["key"]: lead_id for lead_id, payload in pending if payload.get("crm_id") is None}
    for person in client.find_people(keys=list(creates)) if creates else []:
        if person.handoff_key in creates:
            taken.append((creates[person.handoff_key], person.crm_id))
    updates = [(lead_id, payload) for lead_id, payload in pending if payload.get("crm_id") is not None]
    for obj in CrmObject:
        ids = {payload["crm_id"]: (lead_id, payload) for lead_id, payload in updates if payload["object"] == obj.value}
        for start in range(0, len(ids), COMPOSITE_SIZE):
            chunk = list(ids)[start:start + COMPOSITE_SIZE]
            held = client.read_handoff_values(obj, chunk)
            for crm_id in chunk:
                lead_id, payload = ids[crm_id]
                if crm_id in held and not changed_values(payload["values"], held[crm_id]):
                    taken.append((lead_id, crm_id))
    payloads = dict(pending)
    with engine.begin() as conn:
        store.record_results(conn, [WriteResult(lead_id, Outcome.WRITTEN, crm_id) for lead_id, crm_id in taken],
                             payloads, now, max_attempts)
        store.clear_sending(conn, [lead_id for lead_id in payloads if lead_id not in {t[0] for t in taken}])
    summary.reconciled = len(taken)
