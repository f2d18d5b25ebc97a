"""The rulebook-impact tasks: a draft rulebook beside the one in force, every lead worked out under both from its
activity log, chunk by chunk (the chunk's work is tasks/lead_impact.py), read only."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from config.rulebook import load_rulebook
from config.settings import get_settings
from domain.impact import rulebook_changes
from store import scoring as store
from store.engine import export_snapshot, get_engine, read_in_snapshot
from tasks.lead_impact import Comparison, ImpactOutcome, impact_in_process, impact_of


@task(cache_policy=NO_CACHE)
def compare_rulebooks(rules_dir: str | None, pasted: dict[str, str | None] | None = None,
                      snapshot: str | None = None) -> Comparison:
    """Load the draft (a rulebook directory, default: the configured one; `pasted`: either file's text instead,
    by file name; blank is none) and the version the last scoring run used (as of `snapshot`, when given, which
    the comparison then carries to every chunk). A draft that does not load fails here, naming the file, the
    line and the problem."""
    settings = get_settings()
    directory = Path(rules_dir) if rules_dir else settings.rulebook_dir
    # a field left blank in the UI pastes nothing: that file comes from the directory
    pasted = {name: text for name, text in (pasted or {}).items() if text is not None and text.strip()}
    draft = load_rulebook(directory, pasted)
    with get_engine(settings.resolved_database_url()).connect() as conn:
        read_in_snapshot(conn, snapshot)
        bookmarks = store.scoring_state(conn)
        in_force = store.version_rulebook(conn, bookmarks[0]) if bookmarks else None
    return Comparison(rules_dir=str(directory), pasted=sorted(pasted), draft=draft,
                      in_force_version=bookmarks[0] if bookmarks else None, in_force=in_force,
                      changes=rulebook_changes(in_force, draft) if in_force else [], snapshot=snapshot)


@contextmanager
def one_snapshot() -> Iterator[str | None]:
    """For its duration, a read-only transaction holds a snapshot of the database that the preview's reads share
    (see store.engine.export_snapshot): on PostgreSQL every chunk, in whatever process, reads the leads, their
    activities and states as they all were at one moment, whatever ingest or scoring commits meanwhile. None on
    SQLite, where each chunk reads what is committed when it starts."""
    with get_engine(get_settings().resolved_database_url()).connect() as conn:
        snapshot = export_snapshot(conn)
        try:
            yield snapshot
        finally:
            conn.rollback()


# The processes the chunks of this run are worked out in, when it has more than one (see worker_processes)
_PROCESSES: ContextVar[ProcessPoolExecutor | None] = ContextVar("impact_processes", default=None)


@contextmanager
def worker_processes(workers: int) -> Iterator[None]:
    """For its duration, with more than one worker, each chunk's leads are worked out in one of that many
    processes of their own: the work is pure Python, and threads in one interpreter would share one core. The
    chunks stay task runs of the flow (in threads that wait on their process); a process that dies fails its
    chunk's task run."""
    if workers <= 1:
        yield
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as processes:
        token = _PROCESSES.set(processes)
        try:
            yield
        finally:
            _PROCESSES.reset(token)


@task(cache_policy=NO_CACHE, task_run_name="impact-of-leads-{label}")
def impact_of_leads(comparison: Comparison, lead_ids: list[int], now: datetime, examples: int,
                    label: str) -> ImpactOutcome:
    url = get_settings().resolved_database_url()
    processes = _PROCESSES.get()
    if processes is None:
        return impact_of(get_engine(url), comparison, lead_ids, now, examples)
    return processes.submit(impact_in_process, url, comparison, list(lead_ids), now, examples).result()

