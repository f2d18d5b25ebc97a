"""Pages fetched in a child process arrive whole and in order; the child's failures and death are the parent's."""

import json
import multiprocessing
import os
import signal

import pytest

from config.sources import SourceConfig
from connectors.http import Backoff, PermanentError, TransientError
from connectors.marketing.jsonl import JsonlSource
from connectors.marketing.worker import pages_in_subprocess

pytestmark = pytest.mark.slow  # each test spawns a process


def export(tmp_path, lines: int):
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps({"id": f"a{i}", "email": f"p{i}@acme.example", "type": "page_view", "asset": "/",
                                        "occurred_at": f"2026-11-01T10:{i % 60:02d}:00Z", "company": "Acme"}) + "\n"
                            for i in range(lines)) + "{broken\n")
    return SourceConfig(name="files", kind="jsonl", path=str(path), page_size=7)


def fetch(config, **kwargs):
    return pages_in_subprocess(config, {}, None, timeout=(1, 1), backoff=Backoff(), **kwargs)


def test_the_child_yields_the_same_pages_as_the_connector_in_process(tmp_path):
    config = export(tmp_path, 30)
    child = list(fetch(config))
    here = list(JsonlSource(config).pages(None))
    assert [p.fetched for p in child] == [p.fetched for p in here]
    assert [a for p in child for a in p.activities] == [a for p in here for a in p.activities]
    assert [r for p in child for r in p.rejected] == [r for p in here for r in p.rejected]
    assert [x for p in child for x in p.people] == [x for p in here for x in p.people]
    assert [p.checkpoint for p in child] == [p.checkpoint for p in here]


def test_a_permanent_failure_in_the_child_is_raised_in_the_parent(tmp_path):
    config = SourceConfig(name="files", kind="jsonl", path=str(tmp_path / "nothing-*.jsonl"))
    with pytest.raises(PermanentError, match="no .jsonl files"):
        list(fetch(config))


def test_a_child_that_dies_is_a_transient_failure_and_stopping_early_ends_the_child(tmp_path):
    pages = fetch(export(tmp_path, 500), depth=2)
    next(pages)
    [child] = multiprocessing.active_children()
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(TransientError, match="fetch process ended unexpectedly"):
        list(pages)
    early = fetch(export(tmp_path, 500), depth=2)
    next(early)
    early.close()
    assert multiprocessing.active_children() == []
