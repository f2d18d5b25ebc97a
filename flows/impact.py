"""The rulebook-impact flow: what a rulebook change would do to every lead, before it goes live. Saves nothing."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote
from pydantic import BaseModel

from config.settings import get_settings
from flows.chunks import in_chunk_order
from tasks.impact import compare_rulebooks, impact_of_leads, one_snapshot, worker_processes
from tasks.lead_impact import ImpactOutcome
from tasks.reporting import publish_impact_summary
from tasks.scoring import all_leads
from tasks.store import check_database


class ImpactSummary(BaseModel):
    now: datetime
    run_id: str | None
    rules_dir: str
    pasted: list[str]
    draft_source: str
    draft_digest: str
    in_force_version: int | None
    in_force_digest: str | None
    changes: list[str]
    outcome: ImpactOutcome
    markdown: str = ""


@flow(name="rulebook-impact",
      description="Preview a rulebook change: every lead under the draft beside the rulebook in force. Saves nothing.")
def rulebook_impact(rules_dir: str | None = None, scoring_csv: str | None = None, scoring_yaml: str | None = None,
                    now: datetime | None = None, examples: int = 10) -> ImpactSummary:
    """`rules_dir`: the draft's directory (scoring.yaml and scoring.csv; default: the configured rulebook, which
    the next scheduled run applies). `scoring_csv`, `scoring_yaml`: a file's text pasted instead of that file
    (the sheet saved as CSV, say), for a draft that lives on no disk the worker reads. Each lead is worked out
    from its activity log as a pass at `now` would under either rulebook; `examples` leads are listed per kind
    of difference."""
    now = now or datetime.now(timezone.utc)
    examples = max(0, examples)
    log = get_run_logger()
    check_database()
    with one_snapshot() as snapshot:  # every read of the run sees the database at one moment (PostgreSQL)
        pasted = {"scoring.csv": scoring_csv, "scoring.yaml": scoring_yaml}
        comparison = compare_rulebooks(rules_dir, pasted, snapshot)
        outcome = ImpactOutcome(examples=examples)
        if comparison.same:
            log.info("the draft %s is the rulebook in force (version %s): nothing would change",
                     comparison.source, comparison.in_force_version)
        else:
            settings = get_settings()
            leads = all_leads(snapshot)
            size = settings.score_chunk_size
            chunks = [leads[start:start + size] for start in range(0, len(leads), size)]
            workers = min(settings.resolved_impact_workers(), len(chunks))
            log.info("%s leads worked out under the draft %s and the rulebook in force (%s), in %d chunk%s of up to "
                     "%s, %s; %s", f"{len(leads):,}", comparison.source,
                     f"version {comparison.in_force_version}" if comparison.in_force else "none: nothing scored yet",
                     len(chunks), "" if len(chunks) == 1 else "s", f"{size:,}",
                     f"{workers} side by side, each in a process of its own" if workers > 1 else "one at a time",
                     "all read from one snapshot of the database" if snapshot
                     else "each chunk reads what is committed when it starts")
            with worker_processes(workers):
                submissions = (impact_of_leads.submit(comparison, quote(chunk), now, examples,
                                                      label=f"{chunk[0]}-{chunk[-1]}") for chunk in chunks)
                for part in in_chunk_order(submissions, workers):
                    outcome.add(part)
    summary = ImpactSummary(
        now=now, run_id=flow_run.get_id(), rules_dir=comparison.rules_dir, pasted=comparison.pasted,
        draft_source=comparison.source, draft_digest=comparison.draft.digest,
        in_force_version=comparison.in_force_version,
        in_force_digest=comparison.in_force.digest if comparison.in_force else None, changes=comparison.changes,
        outcome=outcome)
    summary.markdown = publish_impact_summary(summary.model_dump(mode="json"))
    return summary
