"""The file source: any tool's export as JSON Lines, one activity per line."""

import json

import pytest

from config.sources import SourceConfig
from connectors.http import PermanentError
from connectors.marketing.jsonl import JsonlSource
from domain.activity import ActivityType


def source(path, **kwargs):
    return JsonlSource(SourceConfig(name="files", kind="jsonl", path=str(path), **kwargs), {})


def lines(*objects):
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects) + "\n"


GOOD = {"source": "webinar-tool", "id": "w-1", "email": "Ada@Acme.example", "type": "webinar_attended",
        "occurred_at": "2026-10-30T15:00:00Z", "asset": "Pipeline Alignment Live", "campaign": "Q4 webinars",
        "properties": {"minutes": 48}, "company": "Acme", "company_size": "250", "title": "VP Sales"}


def test_each_line_becomes_an_activity_keyed_by_its_own_source_and_id(tmp_path):
    (tmp_path / "a.jsonl").write_text(lines(GOOD))
    [page] = list(source(tmp_path / "a.jsonl").pages(None))
    [record] = page.activities
    assert (record.source, record.external_id, record.type) == ("webinar-tool", "w-1", ActivityType.WEBINAR_ATTENDED)
    assert (record.email, record.asset, record.campaign) == ("ada@acme.example", "Pipeline Alignment Live", "Q4 webinars")
    assert record.properties == {"minutes": 48}
    [person] = page.people
    assert (person.company, person.company_size, person.title) == ("Acme", 250, "VP Sales")
    assert page.checkpoint == record.occurred_at and page.fetched == 1


def test_bad_lines_are_rejected_with_file_line_and_reason_and_the_rest_goes_on(tmp_path):
    body = lines(
        GOOD,
        '{"id": "broken", ',
        "[1, 2]",
        {**GOOD, "id": "w-2", "type": "booth_visit"},
        {**GOOD, "id": "w-3", "email": None},
        {**GOOD, "id": "w-4", "occurred_at": "yesterday"},
        {**GOOD, "id": "w-5"},
    )
    (tmp_path / "export.jsonl").write_text(body)
    pages = list(source(tmp_path / "export.jsonl").pages(None))
    activities = [a.external_id for p in pages for a in p.activities]
    reasons = [r.reason for p in pages for r in p.rejected]
    assert activities == ["w-1", "w-5"]
    assert reasons == [
        "export.jsonl:2: invalid JSON: unexpected end of data: line 1 column 18 (char 17)",
        "export.jsonl:3: a line must be a JSON object",
        "export.jsonl:4: unknown activity type 'booth_visit'",
        "export.jsonl:5: missing identity: no e-mail and no contact id",
        "export.jsonl:6: unparseable occurred_at 'yesterday'",
    ]
    assert sum(p.fetched for p in pages) == 7


def test_a_directory_is_read_file_by_file_in_name_order_and_paged(tmp_path):
    for name, ids in (("2.jsonl", range(5, 9)), ("1.jsonl", range(0, 5))):
        (tmp_path / name).write_text(lines(*({**GOOD, "id": f"w-{i}"} for i in ids)))
    pages = list(source(tmp_path, page_size=3).pages(None))
    assert [a.external_id for p in pages for a in p.activities] == [f"w-{i}" for i in range(9)]
    assert [p.fetched for p in pages] == [3, 3, 3, 0]


def test_no_files_at_the_path_is_a_permanent_failure(tmp_path):
    with pytest.raises(PermanentError, match="no .jsonl files"):
        list(source(tmp_path / "missing-*.jsonl").pages(None))
