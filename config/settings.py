"""Runtime settings from the environment (HANDOFF_*), with defaults that run the embedded set-up."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_DIR = Path(__file__).resolve().parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANDOFF_", extra="ignore")

    home: Path = Field(default=Path(".handoff"), description="Working directory for the embedded database and logs")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default is a SQLite file in home")
    sources_file: Path = Field(default=CONFIG_DIR / "sources.yaml")
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
    return Settings()
