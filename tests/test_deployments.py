"""deployments.yaml declares what the schedules run, and Prefect accepts it as written."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from tests.flow_support import prefect_server_at

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ROOT / "deployments.yaml"


def declared() -> list[dict]:
    return yaml.safe_load(DEPLOYMENTS.read_text())["deployments"]


def test_every_entrypoint_names_a_prefect_flow_in_flows():
    from prefect import Flow

    for deployment in declared():
        path, name = deployment["entrypoint"].split(":")
        assert path.startswith("flows/")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, name), Flow)


@pytest.fixture(scope="module")
def deploy_server(tmp_path_factory):
    """A Prefect server of this module's own: the deployments' schedules fill it with scheduled runs, which the
    session's server, busy with the other tests' runs, is better without."""
    with prefect_server_at(tmp_path_factory.mktemp("deploy-prefect")) as server:
        yield server


@pytest.mark.slow
def test_prefect_deploys_the_file_with_five_minute_schedules_one_run_at_a_time_and_manual_runs(deploy_server):
    from prefect import get_client

    env = {**os.environ, "PREFECT_API_URL": deploy_server.api_url, "HANDOFF_PROJECT_DIR": str(ROOT)}
    prefect = [sys.executable, "-m", "prefect"]
    subprocess.run([*prefect, "work-pool", "create", "handoff", "--type", "process", "--overwrite"],
                   env=env, cwd=ROOT, check=True, capture_output=True)
    deployed = subprocess.run([*prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(DEPLOYMENTS)],
                              env=env, cwd=ROOT, capture_output=True, text=True)
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]

    with get_client(sync_client=True) as client:
        ingest = client.read_deployment_by_name("ingest/ingest-every-5-minutes")
        score = client.read_deployment_by_name("score-and-qualify/score-every-5-minutes")
        rescore = client.read_deployment_by_name("rescore/rescore")
        moves = client.read_deployment_by_name("move-lead-stage/move-lead-stage")
        impact = client.read_deployment_by_name("rulebook-impact/rulebook-impact")
        explain = client.read_deployment_by_name("explain-leads/explain-leads")
        segment = client.read_deployment_by_name("lead-segment/lead-segment")
        health = client.read_deployment_by_name("health-check/health-check-every-15-minutes")
        sync = client.read_deployment_by_name("crm-sync/crm-sync-every-5-minutes")
        resync = client.read_deployment_by_name("resync-leads/resync-leads")
        routing = client.read_deployment_by_name("route-leads/route-leads")
        sla = client.read_deployment_by_name("sla/sla-every-15-minutes")
        assign = client.read_deployment_by_name("assign-lead/assign-lead")
        funnel = client.read_deployment_by_name("funnel-report/funnel-report-daily")
        automations = client.read_automations_by_name("route-leads__automation_1")
    assert ingest.entrypoint == "flows/ingest.py:ingest"
    for scheduled in (ingest, score, sync):
        [schedule] = scheduled.schedules
        assert schedule.active and schedule.schedule.interval == timedelta(minutes=5)
        assert scheduled.global_concurrency_limit.limit == 1
        assert scheduled.concurrency_options.collision_strategy == "CANCEL_NEW"
        assert scheduled.work_pool_name == "handoff"
    assert rescore.schedules == [] and rescore.parameter_openapi_schema["required"] == ["reason"]
    # People pick the stage from a list in the UI; the reason is required
    assert moves.schedules == [] and moves.parameter_openapi_schema["required"] == ["emails", "to", "reason"]
    assert moves.parameter_openapi_schema["properties"]["to"]["enum"] == ["recycled", "disqualified", "sql",
                                                                          "opportunity", "customer"]
    # A preview needs nothing: by default it compares the configured rulebook with the one in force
    assert impact.schedules == [] and impact.parameter_openapi_schema.get("required", []) == []
    assert set(impact.parameter_openapi_schema["properties"]) == {"rules_dir", "scoring_csv", "scoring_yaml", "now",
                                                                   "examples"}
    assert explain.schedules == [] and explain.parameter_openapi_schema["required"] == ["emails"]
    # Every filter is optional: by default the first 500 scored leads
    assert segment.schedules == [] and segment.parameter_openapi_schema.get("required", []) == []
    assert set(segment.parameter_openapi_schema["properties"]) == {"stages", "fits", "cold", "min_score", "limit"}
    # The health check's failed runs are what an automation pages on: every quarter hour, read only
    [schedule] = health.schedules
    assert schedule.active and schedule.schedule.interval == timedelta(minutes=15)
    assert health.parameter_openapi_schema.get("required", []) == [] and health.tags == ["handoff", "health"]
    assert resync.schedules == [] and resync.parameter_openapi_schema["required"] == ["emails"]
    # routing runs at once on an MQL's event, and every 5 minutes for anything an event missed
    assert routing.schedules[0].schedule.interval == timedelta(minutes=5)
    assert routing.concurrency_options.collision_strategy == "CANCEL_NEW"
    [trigger] = [a.trigger for a in automations]
    assert trigger.expect == {"handoff.lead.mql"}
    # one run for a scoring run's MQLs, not one per MQL that the slot would cancel
    assert (trigger.posture, trigger.threshold, trigger.within) == ("Reactive", 1, timedelta(seconds=60))
    [schedule] = sla.schedules
    assert schedule.schedule.interval == timedelta(minutes=15)
    assert assign.schedules == [] and assign.parameter_openapi_schema["required"] == ["email", "to", "reason"]
    # The funnel every morning; from the UI for any period, by source, channel or campaign (all optional)
    [schedule] = funnel.schedules
    assert schedule.schedule.cron == "0 6 * * *" and funnel.parameter_openapi_schema.get("required", []) == []
    assert set(funnel.parameter_openapi_schema["properties"]) == {"start", "end", "by", "now"}

    # The server's scheduler makes the runs the schedules promise: with sqlalchemy 2.1 its insert failed and no
    # schedule ever fired (pyproject.toml pins below it)
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline, scheduled = time.monotonic() + 120, {}
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            scheduled = {d.name: client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[d.id])), limit=3) for d in (ingest, score, sync, routing, sla, funnel)}
            if all(scheduled.values()):
                break
            time.sleep(2)
    assert {name: len(runs) for name, runs in scheduled.items()} == {d.name: 3 for d in (ingest, score, sync, routing,
                                                                                           sla, funnel)}
    assert all(run.state_type == "SCHEDULED" and run.expected_start_time > datetime.now(timezone.utc)
               - timedelta(minutes=15) for runs in scheduled.values() for run in runs)
