"""The explain-leads flow: the explanation `handoff explain` prints, as an artifact per lead in the Prefect UI."""

from __future__ import annotations

import pytest

from tasks.explain import LeadNotFound
from tests.flow_support import run_artifacts
from tests.test_stage_moves import mql


def explanations(run_id: str) -> dict[str, str]:
    return {key: artifact.data for key, artifact in run_artifacts(run_id).items()}


@pytest.mark.slow
def test_each_lead_asked_for_is_explained_in_an_artifact_of_its_own_and_an_unknown_address_fails_the_run(
        prefect_server, handoff_env, engine):
    from flows.explain import explain_leads

    handoff_env()
    _, _, ana = mql(engine)
    _, _, bob = mql(engine, name="bob")

    state = explain_leads(emails=["ana@acme.example", "Bob@Acme.example", "ana@acme.example"], return_state=True)
    assert state.is_completed()
    [first, second] = state.result()
    assert (first["lead_id"], second["lead_id"]) == (ana, bob) and first["explained_total"] == first["score"]
    published = explanations(str(state.state_details.flow_run_id))
    assert set(published) == {f"lead-{ana}-explanation", f"lead-{bob}-explanation"}
    assert "## ana@acme.example (lead" in published[f"lead-{ana}-explanation"]
    assert f"| | **total** | | | | **{first['score']}** |" in published[f"lead-{ana}-explanation"]

    state = explain_leads(emails=["nobody@acme.example", "ana@acme.example", "not an address"], return_state=True)
    assert state.is_failed()
    with pytest.raises(LeadNotFound) as refused:
        state.result()
    assert str(refused.value) == ("- no lead with the e-mail nobody@acme.example\n"
                                  "- 'not an address' is not an e-mail address")
    assert set(explanations(str(state.state_details.flow_run_id))) == {f"lead-{ana}-explanation"}  # found: published
