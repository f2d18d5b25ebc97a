"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and the sandbox stand-ins."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text

from sandbox.faults import RequestFaults
from sandbox.stack import start_sandbox
from sandbox.world import WorldSpec
from store.engine import make_engine
from store.migrate import upgrade
from tests.flow_support import prefect_server_at

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get("HANDOFF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)


def _postgres_available() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def postgres_template():
    """A migrated template database; each test gets a fresh copy of it."""
    problem = _postgres_available()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not available: {problem}")
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"handoff_tmpl_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield admin, name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _postgres_copy(template) -> tuple[str, callable]:
    admin, template_name = template
    name = f"handoff_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return admin.url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A freshly migrated, empty database: a SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'handoff.db'}"
        upgrade(url)
        yield url
        return
    url, drop = _postgres_copy(request.getfixturevalue("postgres_template"))
    yield url
    drop()


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sandbox_factory():
    """Start stand-ins over a world: `sandbox_factory(WorldSpec(...), faults={"marketo": RequestFaults(...)})`."""
    started = []

    def start(spec: WorldSpec | None = None, **kwargs):
        box = start_sandbox(spec or WorldSpec(), **kwargs)
        started.append(box)
        return box

    yield start
    for box in started:
        box.stop()


__all__ = ["NOW", "RequestFaults", "WorldSpec"]


def pytest_runtest_setup(item):
    """Before a Hypothesis test, stop this process's Prefect event and log workers (flows earlier in the session
    started them; the next flow starts them again). The events client keeps a websocket open whose keepalive
    ping draws its mask from the module-level `random` every 20 seconds, on a thread of its own: landing while
    Hypothesis draws an example, it read as a strategy using `random` (an intermittent deprecation warning)."""
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        from handoff.prefect_server import drain_prefect_clients

        drain_prefect_clients()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real local Prefect server for the whole session."""
    with prefect_server_at(tmp_path_factory.mktemp("prefect")) as server:
        yield server


@pytest.fixture
def handoff_env(monkeypatch, tmp_path, database_url):
    """Point the product's settings at this test's database and home; returns a function that also applies a
    sandbox's variables (and anything else) to the environment the sources file reads."""
    from config.settings import get_settings

    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    for name in list(os.environ):
        if name.startswith("HANDOFF_") and name.endswith("_ENABLED"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()

    def apply(*envs: dict[str, str], **extra: str) -> dict[str, str]:
        merged: dict[str, str] = {}
        for env in envs:
            merged.update(env)
        merged.update(extra)
        for name, value in merged.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return merged

    yield apply
    get_settings.cache_clear()
