"""The webhook receiver over HTTP, fed by the Mautic and HubSpot stand-ins as they post (signed as the tools sign)
and by requests made here for Marketo's shared secret and the generic endpoint's token: a good delivery stored
once through ingest's path and its leads handed on; a wrong signature, a stale one, a wrong token, a body too big
or not the tool's refused and stored nowhere; a replay or a burst of the same event stored once; a database
that cannot take it answered 503; and a receiver killed right after it answered loses nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from sandbox.world import WorldSpec
from store.engine import make_engine
from store.tables import Activity, LeadDirty, LeadState, Quarantine

pytestmark = pytest.mark.slow

SPEC = WorldSpec(seed=5, people=120, activities=1200, weeks=2)
MARKETO_SECRET, INBOUND_TOKEN = "marketo-hook-3f1c9a", "inbound-token-8d2e77"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiving:
    def __init__(self, box, started, engine, handed: list, clock_shift: list):
        self.box, self.url, self.engine, self.handed, self.clock_shift = box, started.url, engine, handed, clock_shift
        self.receiver = started.server.receiver

    def post(self, source: str, body: bytes, headers: dict) -> requests.Response:
        return requests.post(f"{self.url}/webhooks/{source}", data=body, headers=headers, timeout=30)

    def activities(self, **where) -> int:
        table = Activity.__table__
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table).where(
                *(table.c[name] == value for name, value in where.items()))).scalar_one()

    def control(self, tool: str, path: str, **body) -> dict:
        answer = requests.post(f"{self.box.url(tool)}/_sandbox/webhooks/{path}", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def settle(self, tool: str) -> None:
        """Until the stand-in has no delivery left to post."""
        deadline = time.monotonic() + 30
        while requests.get(f"{self.box.url(tool)}/_sandbox/webhooks", timeout=10).json()["sender"]["queued"]:
            assert time.monotonic() < deadline, "the stand-in kept deliveries back"
            time.sleep(0.1)

    def answers(self) -> dict:
        return requests.get(f"{self.url}/healthz", timeout=10).json()["answers"]


@pytest.fixture
def receiving(handoff_env, sandbox_factory, database_url):
    from config.settings import get_settings
    from handoff.serve import start_receiving
    from store.migrate import upgrade

    upgrade(database_url)
    port = free_port()
    box = sandbox_factory(SPEC, webhooks_to=f"http://127.0.0.1:{port}/webhooks")
    handoff_env(box.env, HANDOFF_MARKETO_WEBHOOK_SECRET=MARKETO_SECRET, HANDOFF_INBOUND_ENABLED="true",
                HANDOFF_INBOUND_WEBHOOK_TOKEN=INBOUND_TOKEN)
    handed: list[list[int]] = []
    shift = [timedelta(0)]
    started = start_receiving(get_settings(), port=port, run=handed.append)
    started.server.receiver.wall = lambda: datetime.now(timezone.utc) + shift[0]
    engine = make_engine(database_url)
    yield Receiving(box, started, engine, handed, shift)
    started.stop()
    engine.dispose()


def inbound_line(external_id: str, email: str, kind: str = "demo_request") -> bytes:
    record = {"source": "inbound", "id": external_id, "type": kind, "email": email,
              "occurred_at": (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()}
    return json.dumps(record).encode() + b"\n"


def test_a_tools_signed_deliveries_are_stored_once_and_their_leads_handed_on_and_a_wrong_signature_is_not(receiving):
    for tool in ("mautic", "hubspot"):
        made = receiving.control(tool, "activity", email=receiving.box.world.tool_people(tool)[0].email,
                                 type="demo_request")
        assert made["posted"], made
        receiving.settle(tool)
        assert receiving.activities(source=tool, external_id=made["activity_id"]) == 1
    assert receiving.answers()["mautic"]["200"] >= 1 and receiving.answers()["hubspot"]["200"] >= 1
    assert receiving.handed  # the leads went to hand-off-now
    for tool in ("mautic", "hubspot"):
        receiving.box.faults[tool].update(webhook_bad_signature_every=1)
        person = receiving.box.world.tool_people(tool)[1]
        made = receiving.control(tool, "activity", email=person.email, type="contact_sales")
        receiving.settle(tool)
        assert receiving.answers()[tool]["401"] >= 1  # the fault fired and was refused, stored nowhere; HubSpot
        # retries an app's delivery after any 4xx, signed afresh: that one is stored, once. Mautic does not retry
        retried = 1 if tool == "hubspot" else 0
        assert receiving.activities(source=tool, external_id=made["activity_id"]) == retried
    with receiving.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Quarantine.__table__)).scalar_one() == 0


def test_a_replayed_delivery_is_stored_once_and_a_stale_one_is_refused(receiving):
    receiving.box.faults["hubspot"].update(webhook_twice_every=1)
    made = receiving.control("hubspot", "activity", email=receiving.box.world.tool_people("hubspot")[2].email,
                             type="trial_signup")
    receiving.settle("hubspot")
    assert receiving.answers()["hubspot"]["200"] == 2  # posted twice, taken twice ...
    assert receiving.activities(source="hubspot", external_id=made["activity_id"]) == 1  # ... stored once
    receiving.box.faults["hubspot"].update(webhook_twice_every=0)
    receiving.clock_shift[0] = timedelta(minutes=6)  # HubSpot's timestamp is five minutes old by the receiver's clock
    made = receiving.control("hubspot", "activity", email=receiving.box.world.tool_people("hubspot")[3].email,
                             type="demo_request")
    wait_for(lambda: receiving.answers()["hubspot"].get("401", 0) >= 1)
    assert receiving.activities(source="hubspot", external_id=made["activity_id"]) == 0
    receiving.clock_shift[0] = timedelta(0)  # the clocks agree again: HubSpot's next retry, signed anew, is taken
    wait_for(lambda: receiving.activities(source="hubspot", external_id=made["activity_id"]) == 1)


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)


def test_marketo_needs_its_shared_secret_and_the_generic_endpoint_its_token(receiving):
    email = receiving.box.world.tool_people("marketo")[0].email
    lead = {"email": email, "activity": "Demo Request", "campaign": "Q4 Demo Push"}
    marketo = json.dumps(lead).encode()
    assert receiving.post("marketo", marketo, {"X-Handoff-Webhook-Secret": "not-it"}).status_code == 401
    assert receiving.post("marketo", marketo, {}).status_code == 401
    line = inbound_line("badge-1", email)
    assert receiving.post("inbound", line, {"Authorization": "Bearer not-it"}).status_code == 401
    taken = receiving.post("inbound", line, {"Authorization": f"Bearer {INBOUND_TOKEN}"})
    assert taken.status_code == 200 and taken.json()["stored"] == 1
    assert receiving.post("nosuch", line, {}).status_code == 404
    assert receiving.post("inbound", b"{not json", {"Authorization": f"Bearer {INBOUND_TOKEN}"}).status_code == 400
    big = inbound_line("badge-2", email) * (2 * 1024 * 1024 // len(line))
    assert receiving.post("inbound", big, {"Authorization": f"Bearer {INBOUND_TOKEN}"}).status_code == 413
    assert receiving.activities(source="inbound") == 1


def test_a_burst_of_the_same_event_at_once_stores_one_activity(receiving):
    email = receiving.box.world.tool_people("mautic")[5].email
    line = inbound_line("burst-1", email)
    headers = {"Authorization": f"Bearer {INBOUND_TOKEN}"}
    start = threading.Barrier(16)

    def send(_):
        start.wait()
        return receiving.post("inbound", line, headers).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, range(16)))
    assert statuses == [200] * 16
    assert receiving.activities(source="inbound", external_id="burst-1") == 1


def test_a_database_that_cannot_take_it_is_answered_503_so_the_tool_sends_again(receiving):
    working = receiving.receiver.engine
    receiving.receiver.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    headers = {"Authorization": f"Bearer {INBOUND_TOKEN}"}
    email = receiving.box.world.tool_people("mautic")[6].email
    answer = receiving.post("inbound", inbound_line("down-1", email), headers)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    receiving.receiver.engine = working  # the database is back: the tool's retry is taken
    again = receiving.post("inbound", inbound_line("down-1", email), headers)
    assert again.status_code == 200 and receiving.activities(source="inbound", external_id="down-1") == 1


def test_a_receiver_killed_right_after_it_answered_loses_nothing(handoff_env, sandbox_factory, database_url,
                                                                 prefect_server, tmp_path):
    from store.migrate import upgrade

    upgrade(database_url)
    port = free_port()
    box = sandbox_factory(SPEC, tools=("mautic",))
    env = {**os.environ, **handoff_env(box.env, HANDOFF_INBOUND_ENABLED="true", HANDOFF_INBOUND_WEBHOOK_TOKEN=INBOUND_TOKEN),
           "PREFECT_API_URL": prefect_server.api_url}
    serving = subprocess.Popen([sys.executable, "-m", "handoff.cli", "serve", "--no-schedules", "--port", str(port)],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert serving.poll() is None and time.monotonic() < deadline, serving.stdout.read()
                time.sleep(0.2)
        people = box.world.tool_people("mautic")[:5]
        body = b"".join(inbound_line(f"kill-{n}", person.email) for n, person in enumerate(people))
        answer = requests.post(f"http://127.0.0.1:{port}/webhooks/inbound", data=body, timeout=30,
                               headers={"Authorization": f"Bearer {INBOUND_TOKEN}"})
        serving.send_signal(signal.SIGKILL)  # before the hand-off-now run could score anything
        assert answer.status_code == 200 and answer.json()["stored"] == 5
    finally:
        serving.kill()
        serving.wait()
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(Activity.__table__.c.lead_id).where(
                Activity.__table__.c.source == "inbound")).scalars().all()
            marked = set(conn.execute(select(LeadDirty.__table__.c.lead_id)).scalars())
            scored = set(conn.execute(select(LeadState.__table__.c.lead_id)).scalars())
        # each waits for the scheduled score run, unless the hand-off-now run scored it before the kill
        assert len(stored) == 5 and set(stored) <= marked | scored
    finally:
        engine.dispose()


def test_hand_off_now_runs_see_the_prefect_settings_of_the_process_that_started_them():
    """Set with temporary_settings (the demo's and tests' way), the API URL reaches the runs' thread: without
    it, each run started a throwaway Prefect server of its own, 12 s before the first hand-off."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from handoff.receiver import HandOffNow

    seen: list[str | None] = []
    done = threading.Event()
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        runs = HandOffNow(lambda leads: (seen.append(PREFECT_API_URL.value()), done.set())).start()
    runs.add([1])
    assert done.wait(10)
    runs.stop(timeout=10)
    assert seen == ["http://127.0.0.1:9/api"]
