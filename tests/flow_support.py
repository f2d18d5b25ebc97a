"""Helpers for the end-to-end tests: a Prefect server of their own, and what the store holds versus what the
synthetic world says."""

from __future__ import annotations

import shutil
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from config.settings import CONFIG_DIR
from domain.activity import normalize_email
from sandbox.world import World
from store.tables import Activity, Lead, Quarantine
from tests.expectations import expected_activity


@contextmanager
def prefect_server_at(home: Path):
    """A real local Prefect server with its state in `home`; flows in this process report to it meanwhile."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    from handoff.prefect_server import LocalPrefectServer, drain_prefect_clients

    server = LocalPrefectServer(home).start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_SERVER_ANALYTICS_ENABLED: False}):
            yield server
            drain_prefect_clients()
    finally:
        server.stop()


def rulebook_copy(target: Path, source: Path = CONFIG_DIR, **edits: list[tuple[str, str]]) -> Path:
    """A copy of a rulebook directory (scoring.yaml and scoring.csv), with text replaced in its files:
    scoring_csv=[(old, new), ...]. Each old text must be there."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("scoring.yaml", "scoring.csv"):
        shutil.copy(source / name, target / name)
    for name, pairs in edits.items():
        path = target / name.replace("_", ".")
        text = path.read_text()
        for old, new in pairs:
            assert old in text, old
            text = text.replace(old, new)
        path.write_text(text)
    return target


FAST = {
    "HANDOFF_HTTP_BACKOFF_BASE": "0.001",
    "HANDOFF_HTTP_BACKOFF_CAP": "0.01",
    "HANDOFF_HTTP_MAX_RETRY_AFTER": "0.05",
    "HANDOFF_INGEST_RETRY_DELAYS": "[0, 0]",
    "HANDOFF_BATCH_SIZE": "300",
}


def stored_activities(engine) -> Counter:
    """(source, lead e-mail, type, asset, occurred_at) of every stored activity, as a multiset."""
    a, lead = Activity.__table__, Lead.__table__
    query = select(a.c.source, lead.c.email, a.c.type, a.c.asset, a.c.occurred_at).join(lead, lead.c.id == a.c.lead_id)
    with engine.connect() as conn:
        return Counter(tuple(row) for row in conn.execute(query))


def expected_activities(world: World, tools) -> Counter:
    good = Counter()
    for tool in tools:
        for event in world.expected(tool)[0]:
            e = expected_activity(world, event)
            good[(tool, e.email, e.type.value, e.asset, e.occurred_at)] += 1
    return good


def expected_quarantine(world: World, tools) -> int:
    return sum(len(world.expected(tool)[1]) for tool in tools)


def stored_keys(engine) -> list[tuple[str, str]]:
    a = Activity.__table__
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(a.c.source, a.c.external_id))]


def quarantined(engine) -> list[tuple[str, str | None, str]]:
    q = Quarantine.__table__
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(q.c.source, q.c.external_id, q.c.reason))]


def lead_emails(engine) -> list[str | None]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(Lead.__table__.c.email).where(Lead.__table__.c.merged_into_id.is_(None)))]


def world_emails(world: World) -> set[str]:
    return {normalize_email(p.email) for p in world.people}


def snapshot(engine) -> dict:
    """Everything a rerun must reproduce exactly: activities, their keys, leads and quarantine."""
    return {
        "activities": stored_activities(engine),
        "keys": sorted(stored_keys(engine)),
        "leads": sorted(e or "" for e in lead_emails(engine)),
        "quarantine": sorted((s, e or "", r) for s, e, r in quarantined(engine)),
    }


def run_artifacts(run_id: str) -> dict:
    """The keyed artifacts a flow run published, by key (a failed run's own state artifact has no key)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {artifact.key: artifact for artifact in found if artifact.key}
