"""Runtime settings from the environment (HANDOFF_*), with defaults that run the embedded set-up."""

from __future__ import annotations

import os
import re
import types
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Union, get_args, get_origin

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as UnreadableSetting

CONFIG_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "HANDOFF_"


class InvalidSetting(ValueError):
    """A HANDOFF_* variable holds a value its setting cannot take; the message names the variable and what it takes."""


class Settings(BaseSettings):
    # no infinite or not-a-number timeouts, waits or lags: they would wait forever or never
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", allow_inf_nan=False)

    home: Path = Field(default=Path(".handoff"), description="Working directory for the embedded database and logs")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default is a SQLite file in home")
    sources_file: Path = Field(default=CONFIG_DIR / "sources.yaml")
    crm_file: Path = Field(default=CONFIG_DIR / "crm.yaml", description="The CRM sync: connection, fields, rules")
    teams_file: Path = Field(default=CONFIG_DIR / "teams.yaml", description="Sales teams, reps, managers, calendars")
    routing_file: Path = Field(default=CONFIG_DIR / "routing.yaml", description="How a sales-ready lead finds its owner")
    sla_file: Path = Field(default=CONFIG_DIR / "sla.yaml", description="The response SLA's policies")
    notifications_file: Path = Field(default=CONFIG_DIR / "notifications.yaml",
                                     description="Where notifications to reps and managers go (Apprise URLs)")
    funnel_file: Path = Field(default=CONFIG_DIR / "funnel.yaml", description="The funnel's monthly targets")
    rulebook_dir: Path = Field(default=CONFIG_DIR, description="Where scoring.yaml and scoring.csv live")
    score_chunk_size: int = Field(default=5000, ge=1, description="Leads scored per transaction")
    score_workers: int | None = Field(
        default=None, ge=1, le=8,
        description="Chunks of a rescore or decay pass scored side by side, each on its own connection. Unset: 2 on "
                    "PostgreSQL, whose server runs each connection's statements in a process of its own; 1 on SQLite, "
                    "which has one writer",
    )
    impact_workers: int | None = Field(
        default=None, ge=1, le=16,
        description="Chunks of a rulebook-impact preview worked out side by side, each in a process of its own (the "
                    "preview is pure Python and only reads). Unset: one per core, at most 4",
    )
    decay_every_hours: float = Field(default=24, gt=0, description="How often the score run also re-decays every lead")
    ooo_feed_refresh_minutes: float = Field(
        default=60, gt=0,
        description="How often route-leads reads again each rep's out-of-office calendar feed (ooo_calendar URL)",
    )
    event_resend_after_minutes: float = Field(
        default=10, gt=0,
        description="A lead event the Prefect server does not hold this long after it was sent is sent again, under "
                    "the same id (the server keeps one event per id)",
    )
    event_burst: int = Field(
        default=2000, ge=1,
        description="Lead events a run sends before it waits for the Prefect server to hold them: a server on its "
                    "in-memory event broker drops what arrives faster than it stores (its queue holds 10,000)",
    )
    event_max_sends: int = Field(
        default=5, ge=1,
        description="Sends of one lead event before the outbox gives up on it (it stays in lead_event, counted in "
                    "every run's log)",
    )
    health_scoring_lag_minutes: float = Field(
        default=30, gt=0,
        description="How long a lead may wait to be scored, or a lead event to be sent, before the health check "
                    "calls it a problem (the score deployment runs every 5 minutes)",
    )
    health_ingest_lag_minutes: float = Field(
        default=60, gt=0,
        description="How long an enabled source may go without a read that finishes (nothing new counts) before "
                    "the health check calls it a problem (the ingest deployment runs every 5 minutes)",
    )
    health_crm_pull_lag_minutes: float = Field(
        default=60, gt=0,
        description="How long the CRM sync, when on, may go without a pull that finishes before the health check "
                    "calls it a problem (crm-sync runs every 5 minutes, and routing and the SLA pull too)",
    )
    health_routing_lag_minutes: float = Field(
        default=30, gt=0,
        description="How long a sales-ready lead may wait for an owner before the health check calls it a problem "
                    "(route-leads runs every 5 minutes and at once on each new MQL)",
    )
    health_sla_lag_minutes: float = Field(
        default=60, gt=0,
        description="How long a running SLA timer's step (reminder, breach, reassignment) may stay due before the "
                    "health check calls it a problem (the sla deployment runs every 15 minutes)",
    )
    health_notify_lag_minutes: float = Field(
        default=60, gt=0,
        description="How long a notification may wait to be sent, retries included, before the health check calls "
                    "it a problem",
    )
    health_feed_lag_hours: float = Field(
        default=24, gt=0,
        description="How long a rep's out-of-office calendar feed may fail to be read before the health check calls "
                    "it a problem (a note before that)",
    )
    batch_size: int = Field(default=5000, ge=1, description="Activities written per database transaction")
    max_payload_bytes: int = Field(default=64 * 1024, ge=1024)
    future_tolerance_minutes: float = Field(default=10, ge=0)
    http_connect_timeout: float = Field(default=5.0, gt=0)
    http_read_timeout: float = Field(default=60.0, gt=0)
    http_max_attempts: int = Field(default=6, ge=1)
    http_backoff_base: float = Field(default=0.5, ge=0, description="First retry waits up to this long")
    http_backoff_cap: float = Field(default=30.0, ge=0, description="Longest backoff between attempts")
    http_max_retry_after: float = Field(default=300.0, ge=0, description="Longest wait honoured from Retry-After")
    fetch_in_subprocess: bool = Field(
        default=True, description="Run each source's ingest (fetch, normalize, write) in a child process of its own"
    )
    ingest_windows: int = Field(
        default=2, ge=1, le=16,
        description="A long backfill of a source that can start its feed at any time (Marketo) is read as up to "
                    "this many time windows side by side, each in its own process (with fetch_in_subprocess)",
    )
    ingest_window_min_hours: float = Field(
        default=12, gt=0, description="The shortest window a split backfill gets: shorter runs are not split"
    )
    ingest_retry_delays: list[float] = Field(
        default=[10.0, 60.0], description="Task-level retries of a source (JSON list of seconds), after HTTP retries"
    )

    webhook_host: str = Field(default="127.0.0.1", description="Where `handoff serve` listens for webhooks")
    webhook_port: int = Field(default=8765, ge=0, le=65535, description="The webhook receiver's port (0: any free one)")
    webhook_max_bytes: int = Field(default=1024 * 1024, ge=1024, description="The largest webhook body taken")
    webhook_public_url: str | None = Field(
        default=None,
        description="The receiver's address as the marketing tools post to it, when a proxy stands between (HubSpot "
                    "signs the URL it posted to), e.g. https://handoff.example.com",
    )

    def resolved_score_workers(self) -> int:
        """As set, else 2 on PostgreSQL (concurrent writers) and 1 on SQLite (one writer)."""
        if self.score_workers is not None:
            return self.score_workers
        return 1 if self.resolved_database_url().startswith("sqlite") else 2

    def event_resend_after(self) -> timedelta:
        return timedelta(minutes=self.event_resend_after_minutes)

    def resolved_impact_workers(self) -> int:
        """As set, else one per core, at most 4."""
        if self.impact_workers is not None:
            return self.impact_workers
        return max(1, min(4, os.cpu_count() or 1))

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'handoff.db').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment; a value a setting cannot take is an InvalidSetting naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name, value = str(first["loc"][0]), first.get("input")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InvalidSetting(f"{ENV_PREFIX}{name.upper()} is {str(value)[:60]!r}: it must be {allowed(name)}{more}") \
            from None
    except UnreadableSetting as exc:  # a list or mapping that is not JSON
        found = re.search(r'field "(\w+)"', str(exc))
        name = found.group(1) if found else "?"
        raise InvalidSetting(f"{ENV_PREFIX}{name.upper()} cannot be read: it must be {allowed(name)}") from None


_KINDS = {int: "a whole number", float: "a finite number", bool: "true or false", str: "text", Path: "a path"}
_BOUNDS = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}


def allowed(name: str) -> str:
    """What the setting `name` takes, as a person reads it: `a whole number, at least 1`."""
    field = Settings.model_fields.get(name)
    if field is None:
        return "valid"
    kinds = [kind for kind in (get_args(field.annotation) if get_origin(field.annotation) in (Union, types.UnionType)
                               else (field.annotation,)) if kind is not type(None)]
    kind = kinds[0] if kinds else str
    text = ("a JSON list of numbers, e.g. [10, 60]" if get_origin(kind) is list else _KINDS.get(kind, "valid"))
    bounds = [f"{words} {getattr(rule, key)}" for rule in field.metadata for key, words in _BOUNDS.items()
              if hasattr(rule, key)]
    what = f" ({field.description.split('. ')[0]})" if field.description else ""
    return ", ".join([text, *bounds]) + what
