"""A file export from the synthetic world: trade-show badge scans as JSON Lines, for the file source."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

from sandbox.world import World

EVENT_NAME = "RevOps Summit 2026"


def write_badge_scans(world: World, path: Path, share: float = 0.03, broken: bool = True) -> int:
    """Badge scans for a share of the world's people (so they merge with leads the tools know), plus, when
    `broken`, a truncated line and one of an unknown type, as real exports have. Returns the lines written."""
    rng = random.Random(f"{world.spec.seed}:scans")
    scanned = [p for p in world.people if rng.random() < share]
    day = world.spec.end - timedelta(days=9)
    lines = []
    for n, person in enumerate(scanned, start=1):
        moment = day + timedelta(minutes=rng.randrange(8 * 60))
        lines.append(
            json.dumps(
                {
                    "source": "revops-summit",
                    "id": f"scan-{n:05d}",
                    "email": person.email,
                    "type": "form_fill",
                    "occurred_at": moment.isoformat().replace("+00:00", "Z"),
                    "asset": f"Booth scan - {EVENT_NAME}",
                    "campaign": EVENT_NAME,
                    "properties": {"booth": "B12", "scanned_by": "events team"},
                    "first_name": person.first_name,
                    "last_name": person.last_name,
                    "company": person.company,
                    "title": person.title,
                }
            )
        )
    if broken:
        lines.append('{"source": "revops-summit", "id": "scan-broken", "email": ')
        lines.append(json.dumps({"source": "revops-summit", "id": "scan-x", "email": "x@y.example", "type": "booth_visit", "occurred_at": day.isoformat()}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)
