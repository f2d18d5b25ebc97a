"""The lead-segment flow: what `handoff leads` lists, as a table artifact in the Prefect UI."""

from __future__ import annotations

import json

import pytest

from domain.segments import SegmentRefused, segment_of
from tasks.segments import CSV_COLUMNS
from tests.flow_support import run_artifacts
from tests.test_stage_moves import mql


@pytest.mark.slow
def test_a_segment_is_published_as_a_table_keyed_by_its_filters_and_filters_that_cannot_apply_fail_the_run(
        prefect_server, handoff_env, engine):
    from flows.segment import segment_leads

    handoff_env()
    ana, _ = (mql(engine, name)[2] for name in ("ana", "bob"))  # two MQLs of fit A, scoring alike

    state = segment_leads(stages=["MQL"], fits=["a"], limit=1, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert (summary.artifact, summary.matching, summary.shown) == ("lead-segment-mql-fit-a", 2, 1)
    published = run_artifacts(str(state.state_details.flow_run_id))
    table = published["lead-segment-mql-fit-a"]
    assert table.type == "table"
    assert table.description.startswith("**2** leads in stage mql, of fit A, highest score first; the first 1 shown")
    [row] = json.loads(table.data)
    assert tuple(row) == CSV_COLUMNS
    assert (row["email"], row["stage"], row["fit_grade"], row["lead_id"]) == ("ana@acme.example", "mql", "A", ana)

    everyone = segment_leads()
    assert (everyone.artifact, everyone.matching, everyone.shown) == ("lead-segment-all", 2, 2)
    nobody = segment_leads(stages=["customer"], cold=True, min_score=12.5)
    assert (nobody.artifact, nobody.matching, nobody.shown) == ("lead-segment-customer-cold-min-12-5", 0, 0)
    assert nobody.heading == "**0** leads in stage customer, flagged cold, scoring at least 12.5."

    state = segment_leads(stages=["mql", "hot"], fits=["E"], min_score=1.234, limit=0, return_state=True)
    assert state.is_failed()
    with pytest.raises(SegmentRefused) as refused:
        state.result()
    assert [name for name, _ in refused.value.problems] == ["stage", "fit", "min-score", "limit"]
    assert "not 'hot'" in str(refused.value) and "not 'E'" in str(refused.value)
    assert run_artifacts(str(state.state_details.flow_run_id)) == {}


def test_a_segment_key_holds_only_what_an_artifact_key_allows():
    assert segment_of().key == "all"
    assert segment_of(["SQL", "mql"], ["b", "A"], True, "-7.25").key == "mql-sql-fit-a-b-cold-min-minus-7-25"
    assert segment_of(min_score=50).described == "scoring at least 50"
    with pytest.raises(SegmentRefused) as refused:
        segment_of(min_score="lots")
    assert refused.value.problems == [("min-score", "a number of points with at most two decimals, not 'lots'")]
