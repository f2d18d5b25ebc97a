"""A source ingested in a child process stores exactly what it would in process; the child's failures and
death are the parent's; stopping early ends the child; an orphaned child stops before its next batch."""

import json
import multiprocessing
import os
import threading
import time
from datetime import datetime, timezone

import pytest

from config.settings import Settings
from config.sources import SourceConfig
from connectors.http import TransientError
from connectors.marketing.worker import run_in_child, serve
from store.engine import get_engine
from store.migrate import upgrade
from tasks.source_ingest import _ingest, ingest_source_once
from tests.flow_support import snapshot

pytestmark = pytest.mark.slow  # each test spawns a process

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def export(tmp_path, lines: int):
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps({"id": f"a{i}", "email": f"p{i % 40}@acme.example", "type": "page_view",
                                        "asset": "/", "occurred_at": f"2026-11-01T10:{i % 60:02d}:00Z",
                                        "company": "Acme"}) + "\n"
                            for i in range(lines)) + "{broken\n")
    return SourceConfig(name="files", kind="jsonl", path=str(path), page_size=7)


def database(tmp_path, name: str) -> str:
    url = f"sqlite:///{tmp_path / name}"
    upgrade(url)
    return url


def ingest(config, url, *, in_child: bool):
    settings = Settings(database_url=url, batch_size=20, fetch_in_subprocess=in_child)
    summary = ingest_source_once(config, {}, now=NOW, run_id="r1", settings=settings)
    return summary.model_dump(exclude={"seconds"}), snapshot(get_engine(url))


def test_a_source_ingested_in_a_child_stores_exactly_what_it_would_in_process(tmp_path):
    config = export(tmp_path, 130)
    child = ingest(config, database(tmp_path, "child.db"), in_child=True)
    here = ingest(config, database(tmp_path, "here.db"), in_child=False)
    assert child == here
    assert child[0]["new"] == 130 and child[0]["quarantined"] == 1 and child[0]["batches"] > 1


def test_a_permanent_failure_in_the_child_is_reported_as_in_process(tmp_path):
    config = SourceConfig(name="files", kind="jsonl", path=str(tmp_path / "nothing-*.jsonl"))
    summary, _ = ingest(config, database(tmp_path, "child.db"), in_child=True)
    assert summary["status"] == "failed" and "no .jsonl files" in summary["error"]


# Targets for run_in_child: module-level, so a spawned child can import them.

def _raise(channel) -> None:
    def work(send):
        send("first")
        raise ValueError("broken in the child")

    serve(channel, work)


def _die(channel) -> None:
    serve(channel, lambda send: os._exit(3))


class LockedError(Exception):
    """An error that cannot be pickled (it holds a lock), as some driver errors cannot."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def _raise_unpicklable(channel) -> None:
    def work(send):
        raise LockedError("the database said no")

    serve(channel, work)


def _collector_settings(channel) -> None:
    def work(send):
        import gc

        garbage = []
        garbage.append(garbage)  # a cycle only the collector can free
        del garbage
        send((gc.get_threshold()[0], gc.get_freeze_count(), gc.collect()))

    serve(channel, work)


def _endless(channel) -> None:
    def work(send):
        n = 0
        while True:
            send(n)
            n += 1

    serve(channel, work)


def test_a_child_s_error_is_raised_in_the_parent_and_a_child_that_dies_is_a_transient_failure():
    items = run_in_child(_raise, (), name="raise", what="the test child", depth=2)
    assert next(items) == "first"
    with pytest.raises(ValueError, match="broken in the child"):
        next(items)
    with pytest.raises(TransientError, match=r"the test child ended unexpectedly \(exit code 3\)"):
        list(run_in_child(_die, (), name="die", what="the test child", depth=2))


def test_an_error_that_cannot_cross_to_the_parent_still_says_what_it_was():
    with pytest.raises(TransientError, match="LockedError: the database said no"):
        list(run_in_child(_raise_unpicklable, (), name="locked", what="the test child", depth=2))


def test_stopping_early_ends_the_child():
    items = run_in_child(_endless, (), name="endless", what="the test child", depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def test_an_ingest_whose_run_is_gone_stops_before_writing_another_batch(tmp_path):
    url = database(tmp_path, "orphan.db")
    settings = Settings(database_url=url, batch_size=20, fetch_in_subprocess=False)
    with pytest.raises(TransientError, match="is gone"):
        _ingest(export(tmp_path, 50), {}, now=NOW, run_id="r1", settings=settings, since=None, log=None,
                orphaned=lambda: True)
    assert snapshot(get_engine(url))["activities"] == {}


def test_the_child_keeps_what_it_imported_out_of_the_collectors_scans():
    """A batch child runs the cycle collector rarely and never over the modules it imported (the scans once
    took about 30% of an ingest child's CPU time), and real cyclic garbage is still collected."""
    import gc

    from connectors.marketing.worker import CHILD_GC_THRESHOLD

    [(threshold, frozen, collected)] = list(run_in_child(_collector_settings, (), name="gc", what="the test child", depth=2))
    assert threshold == CHILD_GC_THRESHOLD > gc.get_threshold()[0]
    assert frozen > 10_000  # the interpreter's and the imported modules' objects
    assert collected >= 1

