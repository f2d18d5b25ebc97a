"""A deployment run whose process is killed ends Crashed by Handoff's zombie-run automation, within its window,
so the deployment's one-at-a-time limit lets the next run go ahead instead of cancelling it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from handoff.automations import (
    AUTOMATION_NAME,
    HEARTBEAT_SETTING,
    ZombieDetection,
    ensure_zombie_automation,
    ensure_zombie_detection,
)
from tests.flow_support import prefect_server_at

# Prefect's shortest heartbeat, and a window 20 s longer: the test waits on it once.
FAST = ZombieDetection(heartbeat_seconds=30, zombie_after_seconds=50)

NAPPING_FLOW = '''
import json, os, time
from pathlib import Path
from prefect import flow

@flow(name="nap")
def nap(seconds: float, marker: str) -> None:
    Path(marker).write_text(json.dumps({"pid": os.getpid(), "heartbeat": os.environ.get("%s")}))
    time.sleep(seconds)
''' % HEARTBEAT_SETTING


def wait_for(what: str, check, timeout: float):
    """Poll `check` until it returns something truthy; a loaded machine gets generous deadlines, not sleeps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def heartbeats(api_url: str, run_id) -> list[datetime]:
    response = httpx.post(f"{api_url}/events/filter", json={"limit": 50, "filter": {
        "event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": [f"prefect.flow-run.{run_id}"]}}})
    response.raise_for_status()
    return sorted(datetime.fromisoformat(event["occurred"]) for event in response.json()["events"])


@pytest.fixture(scope="module")
def zombie_server(tmp_path_factory):
    """A Prefect server of this module's own: the session's has the whole suite's events queued before its
    triggers service, which can hold a heartbeat back past the window (seen in CI) and fail the test for that."""
    with prefect_server_at(tmp_path_factory.mktemp("zombie-prefect")) as server:
        yield server


@pytest.fixture
def workers(zombie_server, tmp_path):
    """Start `prefect worker start --pool POOL` processes, each in its own process group; stopped afterwards."""
    started: list[subprocess.Popen] = []
    env = {**os.environ, "PREFECT_API_URL": zombie_server.api_url, "PREFECT_HOME": str(tmp_path / "worker-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2"}
    # The heartbeat must reach the runs from the work pool, as in production, not from this environment.
    for name in (HEARTBEAT_SETTING, "PREFECT_RUNNER_HEARTBEAT_FREQUENCY"):
        env.pop(name, None)

    def start(pool: str) -> subprocess.Popen:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


@pytest.mark.slow
def test_a_killed_run_is_crashed_after_the_window_and_its_deployment_runs_again_while_a_live_run_is_left_alone(
    zombie_server, workers, tmp_path
):
    from prefect import flow, get_client
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.states import Pending

    api_url, pool = zombie_server.api_url, f"zombie-{uuid.uuid4().hex[:8]}"
    ensure_zombie_detection(api_url, work_pool=pool, detection=FAST)
    code = tmp_path / "code"
    code.mkdir()
    (code / "napping.py").write_text(NAPPING_FLOW)
    napping = flow.from_source(source=str(code), entrypoint="napping.py:nap")
    one_at_a_time = napping.deploy(
        name="nap-one-at-a-time", work_pool_name=pool, build=False, push=False, print_next_steps=False,
        ignore_warnings=True, concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW"))
    alongside = napping.deploy(name="nap-alongside", work_pool_name=pool, build=False, push=False,
                               print_next_steps=False, ignore_warnings=True)

    def slot_taken(client) -> int:
        return client.read_global_concurrency_limit_by_name(f"deployment:{one_at_a_time}").active_slots

    def final(client, run_id, timeout: float):
        return wait_for(f"run {run_id} final",
                        lambda: (state := client.read_flow_run(run_id).state).is_final() and state, timeout)

    with get_client(sync_client=True) as client:
        worker = workers(pool)
        marker = tmp_path / "killed-run.json"
        killed = client.create_flow_run_from_deployment(one_at_a_time, parameters={"seconds": 600,
                                                                                   "marker": str(marker)})
        wait_for("the run running and sending heartbeats",
                 lambda: marker.exists() and client.read_flow_run(killed.id).state.is_running()
                 and heartbeats(api_url, killed.id), timeout=90)
        run = json.loads(marker.read_text())
        # Every run gets the heartbeat from the work pool the setup configured
        assert run["heartbeat"] == str(FAST.heartbeat_seconds)

        # The machine is lost: the worker and the run's process die at once, so nothing reports the crash
        os.killpg(worker.pid, signal.SIGKILL)
        if alive(run["pid"]):
            os.kill(run["pid"], signal.SIGKILL)
        worker.wait()
        wait_for("the run's process gone", lambda: not alive(run["pid"]), timeout=15)
        assert client.read_flow_run(killed.id).state.is_running() and slot_taken(client) == 1

        # While it still counts as running, the deployment's next run is cancelled when a worker takes it up
        blocked = client.create_flow_run_from_deployment(one_at_a_time, parameters={"seconds": 1, "marker": "-"})
        refused = client.set_flow_run_state(blocked.id, Pending())
        assert refused.state.is_cancelled() and refused.state.message == "Deployment concurrency limit reached."

        workers(pool)  # a machine comes back, and runs something that outlasts the window
        live = client.create_flow_run_from_deployment(alongside, parameters={
            "seconds": FAST.zombie_after_seconds + 10, "marker": str(tmp_path / "live-run.json")})

        crashed = wait_for("the killed run marked Crashed",
                           lambda: (state := client.read_flow_run(killed.id).state).is_crashed() and state,
                           timeout=FAST.zombie_after_seconds + 150)  # the automation runs late on a busy machine
        assert crashed.message == FAST.crashed_message
        last_heartbeat = heartbeats(api_url, killed.id)[-1]
        assert (crashed.timestamp - last_heartbeat).total_seconds() >= FAST.zombie_after_seconds - 1
        assert slot_taken(client) == 0

        following = client.create_flow_run_from_deployment(one_at_a_time, parameters={
            "seconds": 1, "marker": str(tmp_path / "next-run.json")})
        done = final(client, following.id, timeout=90)
        assert done.is_completed(), f"{done.type.value}: {done.message}"

        # Heartbeats kept the live run's window open past its length
        lived = final(client, live.id, timeout=FAST.zombie_after_seconds + 90)
        assert lived.is_completed(), f"{lived.type.value}: {lived.message}"
        assert len(heartbeats(api_url, live.id)) >= 2


@pytest.mark.slow
def test_setting_up_again_leaves_one_automation_changed_in_place_and_keeps_the_pools_other_variables(zombie_server):
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    pool = f"zombie-{uuid.uuid4().hex[:8]}"
    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["env"]["default"] = {"HANDOFF_HOME": "/srv/handoff"}
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))

        first = ensure_zombie_automation(client, FAST)
        ensure_zombie_detection(client, work_pool=pool, detection=FAST)
        assert [a.id for a in client.read_automations_by_name(AUTOMATION_NAME)] == [first]

        slower = ZombieDetection(heartbeat_seconds=60, zombie_after_seconds=240)
        ensure_zombie_detection(zombie_server.api_url, work_pool=pool, detection=slower)
        [automation] = client.read_automations_by_name(AUTOMATION_NAME)
        assert automation.id == first and automation.trigger.within.total_seconds() == 240
        assert automation.actions[0].message == slower.crashed_message
        env = client.read_work_pool(pool).base_job_template["variables"]["properties"]["env"]["default"]
        assert env == {"HANDOFF_HOME": "/srv/handoff", HEARTBEAT_SETTING: "60"}


def test_the_settings_come_from_the_environment_with_defaults_of_a_minute_and_four():
    assert ZombieDetection.from_env({}) == ZombieDetection(heartbeat_seconds=60, zombie_after_seconds=240)
    assert ZombieDetection.from_env({"HANDOFF_HEARTBEAT_SECONDS": "30", "HANDOFF_ZOMBIE_AFTER_SECONDS": "120"}) \
        == ZombieDetection(30, 120)


@pytest.mark.parametrize("environ, problem", [
    ({"HANDOFF_HEARTBEAT_SECONDS": "10"}, "Prefect needs at least 30"),
    ({"HANDOFF_HEARTBEAT_SECONDS": "120", "HANDOFF_ZOMBIE_AFTER_SECONDS": "90"}, "must be longer than"),
    ({"HANDOFF_ZOMBIE_AFTER_SECONDS": "4m"}, "whole number of seconds"),
])
def test_a_setting_that_would_fail_every_run_or_crash_live_ones_is_refused(environ, problem):
    with pytest.raises(ValueError, match=problem):
        ZombieDetection.from_env(environ)
