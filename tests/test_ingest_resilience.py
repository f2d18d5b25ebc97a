"""A run killed or failed part-way, then run again, ends with exactly the rows of one clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from flows.ingest import IngestFailed, ingest
from sandbox.faults import RequestFaults
from sandbox.world import TOOLS, WorldSpec
from store.engine import make_engine
from store.ingest import get_watermark
from store.migrate import upgrade
from store.tables import Activity
from tests.flow_support import FAST, expected_activities, snapshot

pytestmark = pytest.mark.slow

SPEC = WorldSpec(seed=21, people=300, activities=4000, malformed_rate=0.01, duplicate_rate=0.02)


def activity_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Activity.__table__)).scalar_one()


@pytest.fixture
def clean_run(handoff_env, tmp_path, monkeypatch, prefect_server):
    """The snapshot one uninterrupted run gives, on its own SQLite database."""

    def run(box) -> dict:
        url = f"sqlite:///{tmp_path / 'clean.db'}"
        upgrade(url)
        handoff_env(box.env, FAST, HANDOFF_DATABASE_URL=url)
        ingest(now=box.world.now)
        engine = make_engine(url)
        try:
            return snapshot(engine)
        finally:
            engine.dispose()

    return run


def test_a_run_killed_midway_and_run_again_ends_with_the_rows_of_a_clean_run(
    prefect_server, handoff_env, sandbox_factory, clean_run, database_url, engine
):
    box = sandbox_factory(SPEC, faults={tool: RequestFaults(slow_ms=60) for tool in TOOLS})
    expected = clean_run(box)
    env = handoff_env(box.env, FAST, HANDOFF_DATABASE_URL=database_url, HANDOFF_BATCH_SIZE="100")
    child_env = {**os.environ, **env, "PREFECT_API_URL": prefect_server.api_url}
    child = subprocess.Popen(
        [sys.executable, "-m", "handoff.cli", "run", "ingest", "--now", box.world.now.isoformat()],
        env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        # Kill once batches are committed and at least one of them moved a watermark.
        while activity_count(engine) < 300 or not any(get_watermark(engine, tool) for tool in TOOLS):
            assert child.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "the run committed nothing in time"
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()

    partial = activity_count(engine)
    assert 0 < partial < sum(expected["activities"].values())
    assert any(get_watermark(engine, tool) for tool in TOOLS)  # some batches committed with their watermark

    for faults in box.faults.values():
        faults.update(slow_ms=0)
    ingest(now=box.world.now)
    assert snapshot(engine) == expected


def test_a_run_failing_partway_then_run_again_ends_with_the_rows_of_a_clean_run(
    prefect_server, handoff_env, sandbox_factory, clean_run, database_url, engine, monkeypatch
):
    import tasks.source_ingest

    box = sandbox_factory(SPEC)
    expected = clean_run(box)
    # In-process sources, so the broken write below is the one they call.
    handoff_env(box.env, FAST, HANDOFF_DATABASE_URL=database_url, HANDOFF_BATCH_SIZE="200",
                HANDOFF_INGEST_RETRY_DELAYS="[]", HANDOFF_FETCH_IN_SUBPROCESS="false")
    real_write = tasks.source_ingest.write_batch
    calls = {"n": 0}

    def failing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4:
            raise ConnectionError("database went away")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(tasks.source_ingest, "write_batch", failing_write)
    with pytest.raises(IngestFailed) as failed:
        ingest(now=box.world.now)
    assert "error" in {s.status for s in failed.value.summary.sources}
    assert 0 < activity_count(engine) < sum(expected["activities"].values())

    monkeypatch.setattr(tasks.source_ingest, "write_batch", real_write)
    ingest(now=box.world.now)
    assert snapshot(engine) == expected


def test_a_transient_failure_is_retried_by_the_task_and_the_run_completes_exactly_once(
    prefect_server, handoff_env, sandbox_factory, engine, monkeypatch
):
    import tasks.source_ingest

    box = sandbox_factory(SPEC, tools=("marketo",))
    handoff_env(box.env, FAST, HANDOFF_BATCH_SIZE="300", HANDOFF_INGEST_RETRY_DELAYS="[0]", HANDOFF_FETCH_IN_SUBPROCESS="false")
    real_write = tasks.source_ingest.write_batch
    calls = {"n": 0}

    def flaky_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("connection reset")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(tasks.source_ingest, "write_batch", flaky_write)
    summary = ingest(now=box.world.now)

    assert [s.status for s in summary.sources] == ["ok"]
    assert snapshot(engine)["activities"] == expected_activities(box.world, ("marketo",))
