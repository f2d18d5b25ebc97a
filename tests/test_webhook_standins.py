"""The Mautic and HubSpot stand-ins post their webhooks to a receiver, signed as the tools sign them: a tiny
receiver here reads each post with connectors.webhooks (as `handoff serve` does) and keeps what it read. What the
clock reveals and the hand-raises made now arrive under the keys the polling connectors read the same events by;
the delivery faults (twice, late, wrong signature) fire, are counted and are seen; a failed delivery is retried
like the tool (a refusal only by HubSpot's app webhooks)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from config.loading import read_yaml
from config.sources import SourceConfig, load_sources
from connectors.marketing.hubspot import HubSpotSource
from connectors.marketing.mautic import MauticSource
from connectors.webhooks import Refused, webhook_reader
from domain.activity import ActivityType
from sandbox import world as w
from sandbox.faults import RequestFaults
from sandbox.server import BackgroundServer
from sandbox.world import WorldSpec

pytestmark = pytest.mark.slow

SOURCES = Path(__file__).resolve().parents[1] / "config" / "sources.yaml"
FORM_TYPES = read_yaml(SOURCES)["form_types"]
TOOLS = ("mautic", "hubspot")
SPEC = WorldSpec(people=80, activities=900, weeks=1, late_rate=0.3, late_by_hours=24)
FORMS = {w.SUBSCRIBED, w.WEBINAR_REGISTERED, w.DEMO_REQUESTED, w.TRIAL_STARTED, w.CONTACT_SALES, w.FORM_FILLED}
# What each tool sends a webhook for (a Mautic download is an asset download: none; HubSpot's white papers are forms).
HOOKED = {"mautic": FORMS | {w.PAGE_VISITED, w.EMAIL_CLICKED, w.EMAIL_OPENED}, "hubspot": FORMS | {w.WHITEPAPER_DOWNLOADED}}


@dataclass
class Receiver:
    """Reads each post with the source's webhook reader; the first `fail_first` posts of a source get `fail_with`."""

    fail_first: dict[str, int] = field(default_factory=dict)
    fail_with: int = 503
    posts: list[dict] = field(default_factory=list)
    readers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = BackgroundServer(Starlette(routes=[Route("/webhooks/{source}", self._receive, methods=["POST"])]))

    async def _receive(self, request: Request) -> JSONResponse:
        name, body = request.path_params["source"], await request.body()
        post = {"source": name, "body": body}
        with self._lock:
            self.posts.append(post)
            if self.fail_first.get(name, 0) > 0:
                self.fail_first[name] -= 1
                post["status"] = self.fail_with
                return JSONResponse({"error": "not now"}, status_code=self.fail_with)
        try:
            delivery = self.readers[name].read(request.method, str(request.url), request.headers, body,
                                               datetime.now(timezone.utc))
        except Refused as refused:
            post.update(status=refused.status, reason=refused.reason)
            return JSONResponse({"error": refused.reason}, status_code=refused.status)
        post.update(status=200, delivery=delivery)
        return JSONResponse({"stored": len(delivery.activities)})

    @property
    def url(self) -> str:
        return f"{self._server.url}/webhooks"

    def read(self, source: str) -> list:
        return [post["delivery"] for post in self.posts if post["source"] == source and "delivery" in post]

    def keys(self, source: str) -> list[str]:
        return [a.external_id for delivery in self.read(source) for a in delivery.activities]

    def answers(self, source: str) -> list[int]:
        return [post["status"] for post in self.posts if post["source"] == source]


@pytest.fixture
def receiving(sandbox_factory):
    """Start a receiver and the stand-ins posting to it; the receiver takes the secrets the sandbox's env gives."""
    started = []

    def start(spec: WorldSpec = SPEC, faults: dict | None = None, **receiver) -> tuple:
        inbox = Receiver(**receiver)
        inbox._server.start()
        started.append(inbox)
        box = sandbox_factory(spec, tools=TOOLS, faults=faults, webhooks_to=inbox.url)
        for config in load_sources(SOURCES, env=box.env):
            inbox.readers[config.name] = webhook_reader(
                config, {key: value.get_secret_value() for key, value in config.credentials.items()})
        return box, inbox

    yield start
    for inbox in started:
        inbox._server.stop()


def settle(box, *tools: str) -> None:
    """Wait for the hand-raises scheduled and every delivery queued (retries included) to be done."""
    for tool in tools or TOOLS:
        control = box.webhooks[tool]
        deadline = time.monotonic() + 20
        while control.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert control.pending == 0 and control.hooks.sender.drain(20), tool


def polled_keys(box, tool: str, since: datetime | None = None) -> set[str]:
    config = SourceConfig(name=tool, kind=tool, base_url=box.url(tool), form_types=FORM_TYPES)
    source = (MauticSource if tool == "mautic" else HubSpotSource)(config, box.credentials[tool])
    try:
        return {a.external_id for page in source.pages(since) for a in page.activities}
    finally:
        source.close()


def sender(box, tool: str):
    return box.webhooks[tool].hooks.sender


def test_what_the_clock_reveals_is_posted_signed_and_read_into_the_keys_the_apis_give(receiving):
    box, inbox = receiving()
    before = box.world.clock
    assert requests.post(f"{box.url('mautic')}/_sandbox/clock", json={"advance_hours": 25}).ok
    settle(box)
    revealed = [e for e in box.world.events if before < e.available_ts <= box.world.clock and not e.malformed]
    for tool in TOOLS:
        hooks = box.webhooks[tool].hooks
        expected = {hooks.activity_id(e) for e in revealed if e.tool == tool and e.kind in HOOKED[tool]}
        assert expected and set(inbox.keys(tool)) == expected, tool
        assert set(inbox.answers(tool)) == {200}
        assert expected <= polled_keys(box, tool)  # the poll reads them under the same keys: stored once
    assert max(len(d.activities) for d in inbox.read("mautic")) <= 10  # Mautic's queue-mode batches


def test_hand_raises_made_now_are_posted_one_by_one_and_show_on_the_api_too(receiving):
    box, inbox = receiving()
    made = {"mautic": requests.post(f"{box.url('mautic')}/_sandbox/webhooks/hand-raises",
                                    json={"count": 3, "every_seconds": 0.05, "tool": "mautic"}),
            "hubspot": requests.post(f"{box.url('hubspot')}/_sandbox/webhooks/hand-raises",
                                     json={"count": 2, "delivery": "workflow", "kind": "trial_signup"})}
    assert all(answer.ok for answer in made.values()), {t: a.text for t, a in made.items()}
    settle(box)
    for tool, count, kind in (("mautic", 3, ActivityType.DEMO_REQUEST), ("hubspot", 2, ActivityType.TRIAL_SIGNUP)):
        raised = requests.get(f"{box.url(tool)}/_sandbox/webhooks/hand-raises").json()["hand_raises"]
        assert len(raised) == count and all(r["posted_at"] and r["status"] == 200 for r in raised)
        assert len({r["email"] for r in raised}) == count
        assert sorted(inbox.keys(tool)) == sorted(r["activity_id"] for r in raised)  # one post each
        deliveries = inbox.read(tool)
        assert {a.type for d in deliveries for a in d.activities} == {kind}
        people = {p.email: p for d in deliveries for p in d.people}
        assert {r["email"].lower() for r in raised} <= set(people)
        assert all(p.title and p.company_size and p.industry for p in people.values())  # the fit comes along
        assert {r["activity_id"] for r in raised} <= polled_keys(box, tool)
    assert requests.post(f"{box.url('hubspot')}/_sandbox/webhooks/hand-raises", json={"tool": "mautic"}).status_code \
        == 400


def test_the_delivery_faults_fire_are_counted_and_are_seen_by_the_receiver(receiving):
    faults = {"hubspot": RequestFaults(webhook_twice_every=1, webhook_bad_signature_every=3),
              "mautic": RequestFaults(webhook_bad_signature_every=2, webhook_late_every=1, webhook_late_seconds=0.2)}
    box, inbox = receiving(faults=faults)
    sender(box, "hubspot").retry_delays = (0.05,) * 10
    for tool in TOOLS:
        assert requests.post(f"{box.url(tool)}/_sandbox/webhooks/hand-raises", json={"count": 3}).ok
    settle(box)
    hubspot, mautic = sender(box, "hubspot").state(), sender(box, "mautic").state()
    assert hubspot["faults_fired"] == {"webhook_twice": 3, "webhook_late": 0, "webhook_bad_signature": 1}
    # each posted twice; the one signed wrong was refused, then retried signed afresh, as HubSpot retries a 4xx
    assert sorted(inbox.keys("hubspot")) == sorted(2 * [r.activity_id for r in box.webhooks["hubspot"].hand_raises])
    assert sorted(inbox.answers("hubspot")) == [200] * 6 + [401] * 2 and hubspot["retried"] == 2
    assert mautic["faults_fired"] == {"webhook_twice": 0, "webhook_late": 3, "webhook_bad_signature": 1}
    assert sorted(inbox.answers("mautic")) == [200, 200, 401]  # the late ones came; the one signed wrong was refused
    assert [p["reason"] for p in inbox.posts if p["source"] == "mautic" and p["status"] == 401] == \
        ["the Webhook-Signature does not match the body"]
    assert mautic["retried"] == 0 and mautic["answers"] == {"200": 2, "401": 1}  # Mautic does not send a 4xx again


def test_a_delivery_that_failed_is_retried_like_the_tool(receiving):
    box, inbox = receiving(fail_first={"hubspot": 2, "mautic": 1})
    sender(box, "hubspot").retry_delays = (0.05,) * 10
    sender(box, "mautic").retry_delays = (0.05,) * 30
    for tool in TOOLS:
        assert requests.post(f"{box.url(tool)}/_sandbox/webhooks/hand-raises", json={"count": 1}).ok
    settle(box)
    assert inbox.answers("hubspot") == [503, 503, 200] and inbox.answers("mautic") == [503, 200]
    attempts = [event["attemptNumber"] for post in inbox.posts if post["source"] == "hubspot"
                for event in json.loads(post["body"])]
    assert attempts == [0, 1, 2]  # HubSpot numbers its retries
    assert [r.attempts for r in box.webhooks["hubspot"].hand_raises] == [3]

    box, inbox = receiving(fail_first={"hubspot": 1, "mautic": 1}, fail_with=400)
    sender(box, "hubspot").retry_delays = (0.05,) * 10
    for tool in TOOLS:  # an app's webhook is retried after a 4xx too; Mautic's is not
        assert requests.post(f"{box.url(tool)}/_sandbox/webhooks/hand-raises", json={"count": 1}).ok
    settle(box)
    assert inbox.answers("hubspot") == [400, 200] and inbox.answers("mautic") == [400]
    inbox.fail_first["hubspot"] = 1  # a workflow's is not either
    assert requests.post(f"{box.url('hubspot')}/_sandbox/webhooks/hand-raises",
                         json={"count": 1, "delivery": "workflow"}).ok
    settle(box, "hubspot")
    assert inbox.answers("hubspot")[2:] == [400] and box.webhooks["hubspot"].hand_raises[-1].attempts == 1


def test_a_person_clicks_a_campaign_e_mail_now(receiving):
    box, inbox = receiving()
    person = next(p for p in box.world.tool_people("mautic") if "mautic" == p.tools[0])
    clicked = requests.post(f"{box.url('mautic')}/_sandbox/webhooks/activity",
                            json={"email": person.email, "type": "email_click",
                                  "asset": "How aligned teams grow 20% a year"}).json()
    settle(box, "mautic")
    assert clicked["posted"] and clicked["campaign"] == "Nurture Q4"
    [click] = [a for d in inbox.read("mautic") for a in d.activities]
    assert (click.external_id, click.type, click.asset, click.campaign) == \
        (clicked["activity_id"], ActivityType.EMAIL_CLICK, "How aligned teams grow 20% a year", "Nurture Q4")
    someone = box.world.tool_people("hubspot")[0]
    told = requests.post(f"{box.url('hubspot')}/_sandbox/webhooks/activity",
                         json={"email": someone.email, "type": "email_click"}).json()
    assert not told["posted"] and "next poll" in told["note"]
    assert told["activity_id"] in polled_keys(box, "hubspot")
