"""Stage moves people ask for: resolve the addresses, apply the lifecycle's rule to each lead under its state's
lock, save the moves with their reasons, and withdraw the routing they make moot, all or nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from config.rulebook import load_rulebook
from config.settings import get_settings
from domain.activity import normalize_email
from domain.fit import assess_fit
from domain.lifecycle import Qualification, Stage, StageMoveRefused, move_by_person
from domain.rules import Rulebook
from store import scoring, stages
from store.engine import get_engine


class MoveRefused(ValueError):
    """Some of the asked moves cannot be made; none was made. Every problem is listed, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("no lead was moved:\n" + "\n".join(f"- {p}" for p in problems))


class MovedLead(BaseModel):
    lead_id: int
    email: str
    from_stage: str
    to_stage: str
    reason: str


class StageMoves(BaseModel):
    now: datetime
    run_id: str | None
    to_stage: str
    moved: list[MovedLead]
    routing_withdrawn: int


def move_leads(engine, emails: Sequence[str], target: Stage, reason: str, *, rulebook: Rulebook,
               requested_by: str | None, now: datetime, run_id: str | None) -> StageMoves:
    """One transaction: every address names a lead and every move is allowed, and then all are made; or none.
    The leads' fit is judged under `rulebook` (the one the next scoring run uses)."""
    why = " ".join(reason.split())
    if not why:
        raise MoveRefused(["say why: a move is recorded with its reason"])
    if requested_by and requested_by.strip():
        why = f"{why} (by {requested_by.strip()})"
    problems: list[str] = []
    addresses: dict[str, str] = {}
    for given in emails:
        address = normalize_email(given)
        if address is None:
            problems.append(f"{given!r} is not an e-mail address")
        else:
            addresses.setdefault(address, given)
    if not addresses and not problems:
        problems.append("no e-mail address given")
    with engine.begin() as conn:
        owners: dict[int, str] = {}  # lead -> the address it was asked by (two addresses may lead to one person)
        found = scoring.leads_by_email(conn, list(addresses))
        for address in addresses:
            if address not in found:
                problems.append(f"{address}: no lead has this address")
            else:
                owners.setdefault(found[address], address)
        states = scoring.load_states(conn, list(owners), lock=True)
        profiles = scoring.lead_profiles(conn, list(owners))
        moves: dict[int, Qualification] = {}
        for lead_id, address in sorted(owners.items()):
            profile = profiles.get(lead_id)
            fit = assess_fit(profile, profile["email"], rulebook.fit) if profile else None
            try:
                moves[lead_id] = move_by_person(states.get(lead_id), target, why, now, fit=fit,
                                                rearm_below=rulebook.qualification.rearm_below)
            except StageMoveRefused as refused:
                problems.append(f"{address} (lead {lead_id}): {refused}")
        if problems:
            raise MoveRefused(problems)
        bookmarks = scoring.scoring_state(conn)
        stages.save_moves(conn, moves, bookmarks[0] if bookmarks else None, now, run_id)
        withdrawn = stages.withdraw_routing(conn, [(lead_id, target.value, q.changes[0].reason)
                                                   for lead_id, q in moves.items()], now)
    moved = [MovedLead(lead_id=lead_id, email=owners[lead_id], from_stage=states[lead_id].stage.value,
                       to_stage=q.state.stage.value, reason=q.changes[0].reason) for lead_id, q in sorted(moves.items())]
    return StageMoves(now=now, run_id=run_id, to_stage=target.value, moved=moved, routing_withdrawn=withdrawn)


@task(cache_policy=NO_CACHE)
def move_stages(emails: list[str], target: Stage, reason: str, requested_by: str | None, now: datetime,
                run_id: str | None) -> StageMoves:
    settings = get_settings()
    engine = get_engine(settings.resolved_database_url())
    return move_leads(engine, emails, target, reason, rulebook=load_rulebook(settings.rulebook_dir),
                      requested_by=requested_by, now=now, run_id=run_id)

