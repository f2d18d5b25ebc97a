"""Prefect's own zombie-run detection, set up for Handoff: deployment runs send heartbeats, and an automation marks
a run whose heartbeats stop Crashed, which frees its deployment's concurrency slot so the schedule goes on."""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Mapping
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

# The run setting Prefect 3.8 reads (PREFECT_RUNNER_HEARTBEAT_FREQUENCY is its legacy alias).
HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
# Prefect refuses a shorter interval: a run given one fails at its settings before it starts.
PREFECT_MINIMUM_HEARTBEAT_SECONDS = 30
DEFAULT_HEARTBEAT_SECONDS = 60
# Four heartbeats; and a run the pool's setting missed (a pool recreated since) beats at Prefect's own 180 s.
DEFAULT_ZOMBIE_AFTER_SECONDS = 240
AUTOMATION_NAME = "handoff: crash runs whose heartbeats stopped"
TERMINAL_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")


@dataclass(frozen=True)
class ZombieDetection:
    """How often a deployment run heartbeats, and how long without one before it is marked Crashed."""

    heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS
    zombie_after_seconds: int = DEFAULT_ZOMBIE_AFTER_SECONDS

    def __post_init__(self) -> None:
        if self.heartbeat_seconds < PREFECT_MINIMUM_HEARTBEAT_SECONDS:
            raise ValueError(f"HANDOFF_HEARTBEAT_SECONDS is {self.heartbeat_seconds}: Prefect needs at least "
                             f"{PREFECT_MINIMUM_HEARTBEAT_SECONDS} and fails every run given less")
        if self.zombie_after_seconds <= self.heartbeat_seconds:
            raise ValueError(f"HANDOFF_ZOMBIE_AFTER_SECONDS ({self.zombie_after_seconds}) must be longer than "
                             f"HANDOFF_HEARTBEAT_SECONDS ({self.heartbeat_seconds}), or every live run is crashed")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "ZombieDetection":
        """HANDOFF_HEARTBEAT_SECONDS and HANDOFF_ZOMBIE_AFTER_SECONDS, with their defaults."""
        return cls(_seconds(environ, "HANDOFF_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS),
                   _seconds(environ, "HANDOFF_ZOMBIE_AFTER_SECONDS", DEFAULT_ZOMBIE_AFTER_SECONDS))

    @property
    def crashed_message(self) -> str:
        return (f"No heartbeat for {self.zombie_after_seconds} s: the run's process is gone (killed, out of memory, "
                f"machine lost). Marked Crashed by the automation '{AUTOMATION_NAME}'.")


def _seconds(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of seconds, not {raw!r}") from None


def zombie_automation(detection: ZombieDetection) -> AutomationCore:
    """After each heartbeat of a deployment's run, expect another heartbeat or a final state within the window;
    when none comes, propose Crashed (never forced: a run that has already ended keeps its state)."""
    return AutomationCore(
        name=AUTOMATION_NAME,
        description=(f"Handoff: a deployment run silent for {detection.zombie_after_seconds} s (heartbeats every "
                     f"{detection.heartbeat_seconds} s) is marked Crashed, freeing its deployment's concurrency slot. "
                     "Managed by handoff.automations.ensure_zombie_detection; edits here are overwritten."),
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in TERMINAL_EVENTS)},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            # Only deployment runs: they get our heartbeat interval from the work pool, and only they hold a slot.
            match_related={"prefect.resource.role": "deployment"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=detection.zombie_after_seconds),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=detection.crashed_message)],
    )


@contextlib.contextmanager
def _client(client_or_api_url: SyncPrefectClient | str | None) -> Iterator[SyncPrefectClient]:
    if isinstance(client_or_api_url, SyncPrefectClient):
        yield client_or_api_url
        return
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url = client_or_api_url or PREFECT_API_URL.value()
    if not api_url:  # Prefect would set up a throwaway server of its own
        raise ValueError("No Prefect server to set up: pass its API URL or set PREFECT_API_URL")
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


def _comparable(automation: AutomationCore) -> dict[str, Any]:
    # The trigger's id is minted afresh on every construction: it says nothing about what the automation does.
    fields = automation.model_dump(mode="json", include={"name", "description", "enabled", "trigger", "actions",
                                                         "actions_on_trigger", "actions_on_resolve"})
    fields["trigger"].pop("id", None)
    for unordered in ("after", "expect", "for_each"):  # sets, listed in no particular order
        fields["trigger"][unordered] = sorted(fields["trigger"].get(unordered) or [])
    return fields


def ensure_zombie_automation(client_or_api_url: SyncPrefectClient | str | None = None,
                             detection: ZombieDetection | None = None) -> UUID:
    """Create the zombie-run automation if missing, update it if it differs, drop duplicates; return its id."""
    wanted = zombie_automation(detection or ZombieDetection.from_env())
    with _client(client_or_api_url) as client:
        existing = sorted(client.read_automations_by_name(AUTOMATION_NAME), key=lambda a: str(a.id))
        if not existing:
            return client.create_automation(wanted)
        kept, *duplicates = existing
        for duplicate in duplicates:
            client.delete_automation(duplicate.id)
        if _comparable(kept) != _comparable(wanted):
            client.update_automation(kept.id, wanted)
        return kept.id


def ensure_run_heartbeats(client_or_api_url: SyncPrefectClient | str | None = None, work_pool: str = "handoff",
                          detection: ZombieDetection | None = None) -> None:
    """Put the heartbeat setting in the environment the work pool gives every run (creating a process pool if
    there is none), beside any other variables already there."""
    from prefect.workers.process import ProcessWorker

    seconds = str((detection or ZombieDetection.from_env()).heartbeat_seconds)
    with _client(client_or_api_url) as client:
        try:
            pool = client.read_work_pool(work_pool)
        except ObjectNotFound:
            pool = client.create_work_pool(WorkPoolCreate(
                name=work_pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
        template = copy.deepcopy(pool.base_job_template)
        env = template.setdefault("variables", {}).setdefault("properties", {}).setdefault("env", {"type": "object"})
        defaults = dict(env.get("default") or {})
        if defaults.get(HEARTBEAT_SETTING) == seconds:
            return
        env["default"] = {**defaults, HEARTBEAT_SETTING: seconds}
        client.update_work_pool(work_pool, WorkPoolUpdate(base_job_template=template))


def ensure_zombie_detection(client_or_api_url: SyncPrefectClient | str | None = None, *, work_pool: str = "handoff",
                            detection: ZombieDetection | None = None) -> ZombieDetection:
    """Everything a Prefect server needs so a killed Handoff run ends Crashed: the runs' heartbeat through the work
    pool and the automation. Idempotent; run it after creating or recreating the pool."""
    detection = detection or ZombieDetection.from_env()
    with _client(client_or_api_url) as client:
        ensure_run_heartbeats(client, work_pool, detection)
        ensure_zombie_automation(client, detection)
    return detection
