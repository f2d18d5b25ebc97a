"""A long backfill of a source that can start its feed at any time (Marketo) is read as time windows side by
side: together they store exactly what one read stores, only the first window moves the watermark while the
run is under way, and a run that fails in any window is completed by the next one with nothing lost."""

from __future__ import annotations

import contextvars
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from config.settings import Settings
from config.sources import SourceConfig
from connectors.marketing import build_source
from sandbox.world import WorldSpec
from store.engine import get_engine
from store.ingest import get_watermark
from store.migrate import upgrade
from tasks.source_ingest import ingest_source_once, plan_windows
from tests.flow_support import expected_activities, snapshot

FORM_TYPES = yaml.safe_load((Path(__file__).parents[1] / "config" / "sources.yaml").read_text())["form_types"]
SPEC = WorldSpec(seed=5, people=200, activities=3000, malformed_rate=0.02, duplicate_rate=0.03)
T0 = datetime(2026, 9, 1, 6, 30, 15, 500_000, tzinfo=timezone.utc)
DAY = timedelta(days=1)


# --- planning the windows ---

def test_a_read_shorter_than_two_shortest_windows_is_not_split():
    assert plan_windows(None, T0, T0 + DAY - timedelta(seconds=1), 4, timedelta(hours=12)) == [(None, None)]
    assert plan_windows(T0, T0, T0 + 2 * DAY - timedelta(seconds=1), 2, DAY) == [(T0, None)]


def test_a_source_with_nothing_to_read_or_one_window_asked_for_is_not_split():
    assert plan_windows(T0, None, T0 + 30 * DAY, 4, timedelta(hours=12)) == [(T0, None)]
    assert plan_windows(T0, T0, T0 + 30 * DAY, 1, timedelta(hours=12)) == [(T0, None)]
    assert plan_windows(T0, T0 + DAY, T0, 4, timedelta(hours=12)) == [(T0, None)]


def test_a_long_read_is_cut_into_equal_spans_from_its_first_activity_on_whole_seconds():
    since = datetime(1970, 1, 1, tzinfo=timezone.utc)
    windows = plan_windows(since, T0, T0 + 30 * DAY, 3, timedelta(hours=12))
    cuts = [T0.replace(microsecond=0) + 10 * DAY, T0.replace(microsecond=0) + 20 * DAY]
    assert windows == [(since, cuts[0]), (cuts[0], cuts[1]), (cuts[1], None)]


def test_no_window_is_shorter_than_the_shortest_allowed():
    windows = plan_windows(None, T0, T0 + 2 * DAY + timedelta(hours=1), 8, DAY)
    assert len(windows) == 2 and windows[1][0] - T0 >= DAY - timedelta(seconds=1)


# --- reading the windows ---

def marketo(box) -> SourceConfig:
    return SourceConfig(name="marketo", kind="marketo", base_url=box.url("marketo"), form_types=FORM_TYPES, page_size=100)


def settings_for(url: str, windows: int) -> Settings:
    return Settings(database_url=url, batch_size=150, ingest_windows=windows, ingest_window_min_hours=24,
                    http_backoff_base=0.001, http_backoff_cap=0.01)


def run(box, url: str, windows: int):
    summary = ingest_source_once(marketo(box), box.credentials["marketo"], now=box.world.now, run_id="r1",
                                 settings=settings_for(url, windows))
    return summary, snapshot(get_engine(url))


def sqlite_database(tmp_path, name: str) -> str:
    url = f"sqlite:///{tmp_path / name}"
    upgrade(url)
    return url


@pytest.mark.slow
def test_a_backfill_read_as_windows_stores_exactly_what_one_read_stores(sandbox_factory, database_url, tmp_path):
    box = sandbox_factory(SPEC, tools=("marketo",))
    one, expected = run(box, sqlite_database(tmp_path, "one.db"), 1)
    split, got = run(box, database_url, 3)

    assert (one.windows, split.windows) == (1, 3)
    assert got == expected
    assert got["activities"] == expected_activities(box.world, ("marketo",))
    assert split.status == "ok" and split.watermark == one.watermark
    assert (split.new, split.quarantined) == (one.new, one.quarantined)
    assert split.fetched == split.new + split.duplicate + split.quarantined
    assert get_watermark(get_engine(database_url), "marketo") == one.watermark

    again, after = run(box, database_url, 3)  # an incremental run after it: short, so one window, nothing new
    assert again.windows == 1 and again.new == 0 and after == expected


@pytest.mark.slow
def test_a_window_that_fails_leaves_the_watermark_within_the_first_window_and_the_next_run_completes(
    sandbox_factory, database_url, tmp_path
):
    box = sandbox_factory(SPEC, tools=("marketo",))
    _, expected = run(box, sqlite_database(tmp_path, "clean.db"), 1)
    source = build_source(marketo(box), box.credentials["marketo"])
    cut = plan_windows(None, source.first_activity_at(None), box.world.now, 2, DAY)[0][1]
    source.close()
    state = box.servers["marketo"].app.state.marketo
    state.daily_quota = state.calls + 30  # Marketo's daily quota (607) runs out part-way through the windows

    failed, partial = run(box, database_url, 2)
    assert failed.status == "failed" and "607" in failed.error and failed.windows == 2
    assert 0 < sum(partial["activities"].values()) < sum(expected["activities"].values())
    stored = get_watermark(get_engine(database_url), "marketo")
    assert stored is None or stored < cut
    assert failed.watermark == stored

    state.daily_quota = None
    completed, after = run(box, database_url, 2)
    assert completed.status == "ok"
    assert after == expected



@pytest.mark.slow
def test_an_incremental_run_spends_no_api_call_on_planning_windows(sandbox_factory, tmp_path):
    box = sandbox_factory(SPEC, tools=("marketo",))
    url = sqlite_database(tmp_path, "incremental.db")
    run(box, url, 2)  # the backfill, in two windows
    state = box.servers["marketo"].app.state.marketo
    before = [path for path, _ in state.requests]
    again, _ = run(box, url, 2)
    asked = [path for path, _ in state.requests][len(before):]
    assert again.windows == 1
    assert asked.count("/rest/v1/activities/pagingtoken.json") == 1  # the read itself, no probe before it


class _ContextRecorder:
    """A run logger stand-in that notes, for every line, which thread logged it and what a context variable
    held there: Prefect keeps the API to report to and the task run a line belongs to in context variables."""

    def __init__(self, var):
        self.var = var
        self.lines: list[tuple[str, str, str]] = []

    def log(self, level, message, *args):
        self.lines.append((threading.current_thread().name, self.var.get("unset"), message % args if args else message))

    def info(self, message, *args):
        self.log(20, message, *args)


def test_each_window_logs_in_the_context_of_the_run_that_started_it(sandbox_factory, tmp_path):
    box = sandbox_factory(SPEC, tools=("marketo",))
    var = contextvars.ContextVar("handoff_test_run")
    var.set("the ingest task's run")
    recorder = _ContextRecorder(var)
    summary = ingest_source_once(marketo(box), box.credentials["marketo"], now=box.world.now, run_id="r1",
                                 settings=settings_for(sqlite_database(tmp_path, "ctx.db"), 3), log=recorder)

    assert summary.windows == 3 and summary.status == "ok"
    from_windows = [line for line in recorder.lines if line[0].startswith("ingest-marketo")]
    assert {thread for thread, _, _ in from_windows} and any("batch" in text for _, _, text in from_windows)
    assert {held for _, held, _ in recorder.lines} == {"the ingest task's run"}
