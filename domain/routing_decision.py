"""What routing decided and why: the owner chosen, and the routing path (each rule tried, each rep considered), in a
plain form for the routing log table and in lines for `handoff explain`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Owner:
    """Who a lead goes to: a rep (with their CRM user) or a CRM queue."""

    rep: str | None = None  # the rep's e-mail
    crm_user_id: str | None = None
    name: str = ""
    queue: str | None = None

    @property
    def is_queue(self) -> bool:
        return self.queue is not None

    def to_json(self) -> dict[str, Any]:
        if self.is_queue:
            return {"kind": "queue", "queue": self.queue}
        return {"kind": "rep", "email": self.rep, "crm_user_id": self.crm_user_id, "name": self.name}

    def __str__(self) -> str:
        if self.is_queue:
            return f"queue {self.queue}"
        return f"{self.name} <{self.rep}>" if self.name else str(self.rep)


@dataclass(frozen=True)
class Candidate:
    """A rep a rule considered: chosen, skipped with the reason, or passed over (`note` says why)."""

    rep: str
    team: str | None = None
    skipped: str | None = None
    chosen: bool = False
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rep": self.rep, "team": self.team, "chosen": self.chosen, "skipped": self.skipped,
                "note": self.note}

    def __str__(self) -> str:
        team = f" [{self.team}]" if self.team else ""
        if self.chosen:
            return f"{self.rep}{team}: chosen{': ' + self.note if self.note else ''}"
        if self.skipped:
            return f"{self.rep}{team}: skipped: {self.skipped}"
        return f"{self.rep}{team}: {self.note or 'not chosen'}"


@dataclass(frozen=True)
class RuleTried:
    """One rule on the routing path: whether it matched, why, and the reps it considered."""

    rule: str
    kind: str
    matched: bool
    reason: str
    candidates: tuple[Candidate, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "kind": self.kind, "matched": self.matched, "reason": self.reason,
                "candidates": [c.to_json() for c in self.candidates]}


@dataclass(frozen=True)
class RoutingDecision:
    """Where a lead goes, by which rule, and the path that led there. `notify_only`: the owner keeps a lead they
    already own and is told about it; nothing is written to the CRM's owner."""

    lead_id: int | str
    email: str
    rule: str
    kind: str
    owner: Owner
    notify_only: bool
    decided_at: datetime
    path: tuple[RuleTried, ...]
    team: str | None = None
    product_line: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"lead_id": self.lead_id, "email": self.email, "rule": self.rule, "kind": self.kind,
                "owner": self.owner.to_json(), "notify_only": self.notify_only, "team": self.team,
                "product_line": self.product_line, "decided_at": self.decided_at.isoformat(),
                "path": [step.to_json() for step in self.path]}

    def explain(self) -> list[str]:
        """The routing path as lines of text, for `handoff explain`."""
        action = "stays with" if self.notify_only else "goes to"
        team = f" (team {self.team})" if self.team else ""
        lines = [f"{self.email} {action} {self.owner}{team}: rule '{self.rule}' ({self.kind}), "
                 f"{self.decided_at:%Y-%m-%d %H:%M %Z}"]
        if self.product_line:
            lines.append(f"  product line: {self.product_line}")
        for number, step in enumerate(self.path, 1):
            lines.append(f"  {number}. {step.rule} ({step.kind}): {'yes' if step.matched else 'no'}: {step.reason}")
            lines.extend(f"       - {candidate}" for candidate in step.candidates)
        return lines
