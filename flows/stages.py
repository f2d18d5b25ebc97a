"""The move-lead-stage flow: a person recycles or disqualifies leads, or records a sales stage, with the reason."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from domain.lifecycle import PERSON_TARGETS, Stage
from tasks.outbox import publish_lead_events
from tasks.reporting import publish_move_summary
from tasks.stages import StageMoves, move_stages
from tasks.store import check_database

# The stages a person may move a lead to, as the Prefect UI offers them
Target = Literal[tuple(stage.value for stage in PERSON_TARGETS)]


@flow(name="move-lead-stage", description="Recycle or disqualify leads, or record a sales stage, with the reason.")
def move_lead_stage(emails: list[str], to: Target, reason: str, requested_by: str | None = None,
                    now: datetime | None = None) -> StageMoves:
    """Moves every lead named by `emails` to `to`, or none of them: an unknown address or a move the lifecycle
    refuses (a stage backwards, a customer disqualified) fails the run with every problem listed. The
    reason, and who asked, go on each stage change; open routing rows of the moved leads are withdrawn. Each move
    emits its lead event (`handoff.lead.recycled`, `handoff.lead.disqualified`, `handoff.lead.sql`, ...) now."""
    check_database()
    now = now or datetime.now(timezone.utc)
    moves = move_stages(emails, Stage(to), reason, requested_by, now, flow_run.get_id())
    publish_move_summary(moves)
    publish_lead_events(now).log_to(get_run_logger())
    return moves
