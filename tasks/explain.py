"""One lead explained: its score contribution by contribution (adding up exactly), its fit and its stages,
under the rulebook version that scored it."""

from __future__ import annotations

from typing import Any

from domain.explain import explain_score, fit_dict
from domain.fit import assess_fit
from domain.lifecycle import QUALIFIABLE, LeadState, Stage, hand_raises_count_after
from domain.rules import points_text
from store import scoring as store
from tasks.markdown import cell
from tasks.scoring import entries_of


class LeadNotFound(LookupError):
    pass


def explain_lead(engine, email: str) -> dict[str, Any]:
    """Everything `handoff explain` shows, as plain data (the `--json` output)."""
    from domain.activity import normalize_email

    address = normalize_email(email)
    if address is None:
        raise LeadNotFound(f"{email!r} is not an e-mail address")
    with engine.connect() as conn:
        lead_id = store.lead_by_email(conn, address)
        if lead_id is None:
            raise LeadNotFound(f"no lead with the e-mail {address}")
        state = store.lead_state_row(conn, lead_id)
        profile = store.lead_profiles(conn, [lead_id]).get(lead_id, {})
        history = store.stage_history(conn, lead_id)
        if state is None:
            return {"lead_id": lead_id, "email": address, "scored": False, "profile": profile, "stages": []}
        rulebook = store.version_rulebook(conn, state["version_id"])
        lines = store.ledger_lines(conn, [lead_id]).get(lead_id, [])
        routing = _routing(conn, lead_id)
    explanation = explain_score(entries_of(lines), rulebook.decay, state["scored_at"])
    fit = assess_fit(profile, address, rulebook.fit)
    # what the hand-raise rule reads of the state, from the row already read
    stage = Stage(state["stage"])
    raise_rule = LeadState(stage=stage, stage_changed_at=state["stage_changed_at"], qualified_at=state["qualified_at"],
                           recycled_at=state["recycled_at"])
    return {
        "lead_id": lead_id,
        "email": address,
        "scored": True,
        "stage": state["stage"],
        "stage_since": state["stage_changed_at"].isoformat(),
        "score": points_text(state["score"]),
        "score_as_of": state["scored_at"].isoformat(),
        "explained_total": points_text(explanation.total),
        "readiness_threshold": points_text(rulebook.readiness_threshold),
        "rulebook_version": state["version_id"],
        "cold": bool(state["cold"]),
        "mql_armed": bool(state["mql_armed"]),
        "qualified_at": _iso(state["qualified_at"]),
        "recycled_at": _iso(state["recycled_at"]),
        # while marketing may still make it an MQL: one of the hand-raisers counts only after this (its last
        # qualification, or its recycle); None when any would
        "hand_raisers": sorted(kind.value for kind in rulebook.qualification.hand_raisers),
        "hand_raises_count_after": _iso(hand_raises_count_after(raise_rule)) if stage in QUALIFIABLE else None,
        "contributions": [line.as_dict() for line in explanation.lines],
        "floor_adjustment": points_text(explanation.floor_adjustment),
        "fit": fit_dict(fit),
        "profile": {k: v for k, v in profile.items() if k != "email"},
        "stages": [{"at": h["changed_at"].isoformat(), "from": h["from_stage"], "to": h["to_stage"], "reason": h["reason"]}
                   for h in history],
        "routing": routing,
    }


def _routing(conn, lead_id: int) -> list[dict[str, Any]]:
    """Each assignment the lead had, oldest first: owner, rule, reason, the routing path, and its SLA timer."""
    from store.routing import assignment_history, timers_of_lead

    timers = timers_of_lead(conn, lead_id)
    return [{"owner": a.owner_name or a.owner_email or a.queue, "owner_email": a.owner_email, "queue": a.queue,
             "team": a.team, "rule": a.rule, "kind": a.kind, "reason": a.reason, "decided_at": _iso(a.decided_at),
             "written_at": _iso(a.written_at), "path": a.path.get("path", []), "sla": timers.get(a.id)}
            for a in assignment_history(conn, lead_id)]


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def explanation_markdown(data: dict[str, Any]) -> str:
    if not data["scored"]:
        return f"**{cell(data['email'])}** (lead {data['lead_id']}) has not been scored yet: run `handoff run score`.\n"
    lines = [
        f"## {cell(data['email'])} (lead {data['lead_id']})",
        "",
        f"**{data['stage'].upper()}** since {data['stage_since'][:16]} · score **{data['score']}** of "
        f"{data['readiness_threshold']} as of {data['score_as_of'][:16]} · fit **{data['fit']['grade']}** "
        f"({data['fit']['points']} points) · rulebook version {data['rulebook_version']}"
        + (" · cold" if data["cold"] else ""),
        "",
        *([f"A hand-raise ({', '.join(data['hand_raisers'])}) counts only after "
           f"{data['hand_raises_count_after'][:16]}, its last qualification or recycle.", ""]
          if data["hand_raises_count_after"] else []),
        "| when | action | what | earned | age (days) | points now |",
        "|---|---|---|---:|---:|---:|",
    ]
    for c in data["contributions"]:
        what = " / ".join(x for x in (c["asset"], c["campaign"]) if x) or "—"
        lines.append(f"| {c['occurred_at'][:16]} | {c['action']} | {cell(what)} | {c['earned']} | "
                     f"{c['age_days']} | {c['points']} |")
    if data["floor_adjustment"] != "0":
        lines.append(f"| | score floor | | | | {data['floor_adjustment']} |")
    lines.append(f"| | **total** | | | | **{data['explained_total']}** |")
    fit = data["fit"]
    lines += ["", "| fit field | value | points |", "|---|---|---:|"]
    lines += [f"| {f['field']} | {cell(str(f['value']))} | {f['points']} |" for f in fit["lines"]]
    if fit["disqualified"]:
        lines.append(f"| disqualified | {fit['disqualified']} | |")
    if fit["capped_by"]:
        lines.append(f"| grade capped | {fit['capped_by']} | |")
    if data["stages"]:
        lines += ["", "| stage change | from | to | why |", "|---|---|---|---|"]
        lines += [f"| {s['at'][:16]} | {s['from'] or '—'} | {s['to']} | {cell(s['reason'])} |"
                  for s in data["stages"]]
    lines += routing_markdown(data.get("routing") or [])
    return "\n".join(lines) + "\n"


def routing_markdown(assignments: list[dict[str, Any]]) -> list[str]:
    """Each assignment with its routing path (every rule tried, every rep considered) and its SLA timer."""
    lines: list[str] = []
    for a in assignments:
        written = f", in the CRM since {a['written_at'][:16]}" if a["written_at"] and a["kind"] != "kept" else ""
        lines += ["", f"**Owner: {cell(a['owner'])}**{' (team ' + cell(a['team']) + ')' if a['team'] else ''} from "
                      f"{a['decided_at'][:16]}{written}: {cell(a['reason'])}", ""]
        for n, step in enumerate(a["path"], 1):
            lines.append(f"{n}. {cell(step['rule'])} ({step['kind']}): **{'yes' if step['matched'] else 'no'}**, "
                         f"{cell(step['reason'])}")
            lines += [f"   - {cell(c['rep'])}: " + ("chosen" if c["chosen"] else f"skipped: {cell(c['skipped'])}"
                                                    if c["skipped"] else cell(c["note"] or "not chosen"))
                      for c in step["candidates"]]
        sla = a["sla"]
        if sla:
            lines += ["", f"SLA ({cell(sla['policy'])}): due {sla['due_at'][:16]} UTC, {sla['state']}"
                          + (f", first contact {sla['first_contact_at'][:16]}" if sla["first_contact_at"] else "")
                          + (f": {cell(sla['reason'])}" if sla["reason"] else "")]
    return lines
