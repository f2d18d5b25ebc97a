"""The ingest task's own rules, without a Prefect server: batching, checkpoints, the run's clock."""

import json

import pytest
from datetime import datetime, timedelta, timezone

from config.settings import Settings
from config.sources import SourceConfig
from connectors.marketing.base import Page
from store.engine import get_engine
from store.ingest import get_watermark
from tasks.ingest import ingest_source_once, merge_pages

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def line(i, when):
    return json.dumps({"id": f"a{i}", "email": f"p{i}@acme.example", "type": "page_view", "occurred_at": when.isoformat()})


def run(database_url, tmp_path, lines, **settings):
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(lines) + "\n")
    config = SourceConfig(name="files", kind="jsonl", path=str(path), page_size=10)
    return ingest_source_once(config, {}, now=NOW, run_id="r1", settings=Settings(database_url=database_url, **settings))


def test_a_future_dated_record_is_quarantined_and_never_moves_the_watermark_past_the_clock(database_url, tmp_path):
    summary = run(database_url, tmp_path, [line(1, NOW - timedelta(hours=1)), line(2, NOW + timedelta(days=30))])
    assert (summary.new, summary.quarantined) == (1, 1)
    assert get_watermark(get_engine(database_url), "files") == NOW


def test_pages_are_merged_into_batches_that_keep_the_last_checkpoint():
    times = [NOW - timedelta(minutes=m) for m in (30, 20, 10)]
    pages = [Page(fetched=2, checkpoint=times[0]), Page(fetched=2, checkpoint=None), Page(fetched=2, checkpoint=times[2])]
    for page in pages:
        page.rejected = [object(), object()]
    batches = list(merge_pages(pages, size=3))
    assert [b.fetched for b in batches] == [4, 2]
    assert [b.checkpoint for b in batches] == [times[0], times[2]]


def test_counts_add_up_and_a_second_pass_is_all_duplicates(database_url, tmp_path):
    lines = [line(i, NOW - timedelta(minutes=i)) for i in range(50)] + ["{broken"]
    first = run(database_url, tmp_path, lines, batch_size=20)
    second = run(database_url, tmp_path, lines, batch_size=20)
    assert (first.fetched, first.new, first.duplicate, first.quarantined, first.batches) == (51, 50, 0, 1, 3)
    assert (second.new, second.duplicate, second.quarantined, second.leads_created) == (0, 51, 0, 0)


def write_lines(path, numbers):
    with path.open("a") as handle:
        handle.writelines(line(i, NOW - timedelta(hours=i)) + "\n" for i in numbers)


def read_folder(database_url, folder, since=None, **settings):
    config = SourceConfig(name="files", kind="jsonl", path=str(folder), page_size=4)
    return ingest_source_once(config, {}, now=NOW, run_id="r", since=since,
                              settings=Settings(database_url=database_url, batch_size=5, **settings))


def test_a_file_read_to_the_end_is_not_read_again_until_it_changes_and_a_backfill_reads_everything(database_url, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    write_lines(folder / "day1.jsonl", range(10))
    first = read_folder(database_url, folder)
    assert (first.fetched, first.new) == (10, 10)
    assert read_folder(database_url, folder).fetched == 0  # unchanged: not read

    write_lines(folder / "day1.jsonl", [20, 21, 22])  # grew, with lines older than the watermark
    write_lines(folder / "day2.jsonl", range(30, 34))
    third = read_folder(database_url, folder)
    assert (third.fetched, third.new, third.duplicate) == (17, 7, 10)  # day1 read whole again, day2 for the first time
    assert read_folder(database_url, folder).fetched == 0

    backfill = read_folder(database_url, folder, since=NOW - timedelta(days=30))
    assert (backfill.fetched, backfill.new) == (17, 0)


def test_a_file_whose_lines_were_not_all_committed_is_read_again(database_url, tmp_path, monkeypatch):
    import tasks.source_ingest

    folder = tmp_path / "exports"
    folder.mkdir()
    write_lines(folder / "day1.jsonl", range(12))
    real_write, calls = tasks.source_ingest.write_batch, []

    def failing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("database went away")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(tasks.source_ingest, "write_batch", failing_write)
    with pytest.raises(ConnectionError):
        read_folder(database_url, folder, fetch_in_subprocess=False)
    monkeypatch.setattr(tasks.source_ingest, "write_batch", real_write)
    again = read_folder(database_url, folder)
    assert (again.fetched, again.new, again.duplicate) == (12, 4, 8)  # the first batch of 8 lines was committed
