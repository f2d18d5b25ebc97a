"""`handoff serve`: one process that runs every deployment of deployments.yaml on its schedule and triggers
(Prefect's serve: each run in a child process, reported to the Prefect API) and the webhook receiver with its
hand-off-now runs, with no other infrastructure than a Prefect API.

Ctrl-C (or SIGTERM) stops it in order: Prefect's runner stops and pauses the schedules (nothing is scheduled
for a process that is gone), then the receiver stops taking webhooks and answers the requests in flight, and
the hand-off-now run in flight finishes; leads still waiting keep their marks for the scheduled runs."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import uvicorn
import yaml

from config.settings import Settings
from config.sources import load_sources
from handoff.receiver import Clock, HandOffNow, Receiver, receiver_from, utc_now
from store.engine import get_engine

log = logging.getLogger("handoff.serve")
PROJECT_DIR = Path(__file__).resolve().parents[1]


class ReceiverServer:
    """The receiver on uvicorn in a thread of its own; stopping finishes the requests in flight."""

    def __init__(self, receiver: Receiver, host: str, port: int):
        self.receiver = receiver
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((host, port))
        self.host, self.port = host, self._socket.getsockname()[1]
        config = uvicorn.Config(receiver.app(), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10) -> "ReceiverServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the webhook receiver did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=35)
        self._socket.close()


@dataclass
class Receiving:
    """The receiver and the hand-off-now runs it feeds, started together and stopped in order."""

    server: ReceiverServer
    hand_off: HandOffNow

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        self.hand_off.stop()


def start_receiving(settings: Settings, *, clock: Clock = utc_now, port: int | None = None,
                    run: Callable[[list[int]], Any] | None = None) -> Receiving:
    """The receiver for the enabled sources that take webhooks, its touched leads handed to hand-off-now (by
    default the flow, run in this process at `clock`'s time)."""
    from flows.realtime import hand_off_now
    from tasks.secrets import resolve_secrets

    hand_off = HandOffNow(run or (lambda leads: hand_off_now(lead_ids=leads, now=clock()))).start()
    engine = get_engine(settings.resolved_database_url())
    receiver = receiver_from(settings, engine, load_sources(settings.sources_file), resolve_secrets, clock=clock,
                             touched=hand_off.add)
    try:
        server = ReceiverServer(receiver, settings.webhook_host,
                                settings.webhook_port if port is None else port).start()
    except BaseException:
        hand_off.stop()
        raise
    return Receiving(server, hand_off)


def deployments_of(path: Path) -> list:
    """deployments.yaml's deployments as Prefect's runner serves them: same names, schedules, triggers, limits
    and parameters (the work pool is the runner itself)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.flows import load_flow_from_entrypoint

    served = []
    for spec in yaml.safe_load(path.read_text())["deployments"]:
        flow = load_flow_from_entrypoint(str(PROJECT_DIR / spec["entrypoint"]))
        schedules = []
        for schedule in spec.get("schedules") or []:
            zone = schedule.get("timezone", "UTC")
            schedules.append(IntervalSchedule(interval=timedelta(seconds=schedule["interval"]), timezone=zone)
                             if "interval" in schedule else CronSchedule(cron=schedule["cron"], timezone=zone))
        limit = spec.get("concurrency_limit")
        served.append(flow.to_deployment(
            name=spec["name"], description=spec.get("description"), tags=spec.get("tags"),
            parameters=spec.get("parameters") or {}, schedules=schedules or None,
            triggers=[DeploymentEventTrigger(**trigger) for trigger in spec.get("triggers") or []] or None,
            concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit))
    return served


def serve(settings: Settings, deployments_file: Path = PROJECT_DIR / "deployments.yaml", *,
          schedules: bool = True, say: Callable[[str], None] = print) -> None:
    """Blocks until Ctrl-C or SIGTERM. Without `schedules`, only the receiver and its hand-off-now runs (the
    deployments run elsewhere, on a work pool's workers)."""
    deployments = deployments_of(deployments_file) if schedules else []
    receiving = start_receiving(settings)
    sources = sorted(receiving.server.receiver.readers)
    say(f"Webhooks: POST {receiving.url}/webhooks/<source> for "
        + (", ".join(sources) if sources else "no source yet (none has its webhook secret set)")
        + "; leads they touch are scored, routed and synced at once (flow hand-off-now).")
    try:
        if deployments:
            from prefect import serve as prefect_serve

            prefect_serve(*deployments, print_starting_message=True)
        else:
            _until_stopped()
    finally:
        receiving.stop()


def _until_stopped() -> None:
    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
