"""A scored world beside a Salesforce stand-in of the same world, for the tests of the CRM sync and of routing."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from config.crm import CrmConfig, load_crm_config
from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR, get_settings
from connectors.crm.salesforce import SalesforceClient
from connectors.http import Backoff
from sandbox.salesforce import SalesforceFaults
from sandbox.stack import start_sandbox
from sandbox.world import WorldSpec
from store.engine import make_engine
from store.migrate import upgrade
from tasks import crm
from tests.flow_support import FAST

WORLD = WorldSpec(seed=23, people=300, activities=3000, weeks=6)
QUICK = Backoff(base=0.01, cap=0.05, max_attempts=4)


@pytest.fixture(scope="session")
def scored_world(tmp_path_factory, prefect_server) -> Path:
    """The world's marketing tools ingested and scored once into a SQLite file each test starts from a copy of."""
    from flows.ingest import ingest
    from flows.score import score_and_qualify

    folder = tmp_path_factory.mktemp("crm-world")
    url = f"sqlite:///{folder / 'handoff.db'}"
    upgrade(url)
    box = start_sandbox(WORLD)
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("HANDOFF_") and n.endswith("_ENABLED")]:
            del os.environ[name]
        os.environ.update({**box.env, **FAST, "HANDOFF_FETCH_IN_SUBPROCESS": "false", "HANDOFF_DATABASE_URL": url,
                           "HANDOFF_HOME": str(folder / "home")})
        get_settings.cache_clear()
        ingest(now=box.world.now)
        score_and_qualify(now=box.world.now)
    finally:
        box.stop()
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    return folder / "handoff.db"


@dataclass
class Synced:
    """A copy of the scored world beside a fresh Salesforce stand-in of the same world."""

    box: object
    engine: object
    config: CrmConfig

    @property
    def faults(self) -> SalesforceFaults:
        return self.box.faults["salesforce"]

    @property
    def now(self):
        return self.box.world.now

    def client(self) -> SalesforceClient:
        creds = self.box.credentials["salesforce"]
        return SalesforceClient(self.config, {"client_id": creds["client_id"], "client_secret": creds["client_secret"]},
                                backoff=QUICK)

    def pull(self, client=None) -> crm.PullSummary:
        return crm.pull(self.engine, client or self.client(), self.config, now=self.now, run_id="test",
                        rulebook=load_rulebook(CONFIG_DIR))

    def push(self, client=None, **kwargs) -> crm.PushSummary:
        return crm.push(self.engine, client or self.client(), self.config, now=self.now, **kwargs)

    def sync(self) -> tuple[crm.PullSummary, crm.PushSummary]:
        client = self.client()
        return self.pull(client), self.push(client)

    def calls(self) -> dict:
        return requests.get(self.box.url("salesforce") + "/_sandbox/salesforce/calls", timeout=10).json()

    def org(self, soql: str, deleted: bool = False) -> list[dict]:
        return self.client().call("check", lambda sf: sf.query_all(soql, include_deleted=deleted))["records"]

    def advance(self, hours: float) -> None:
        self.box.world.advance(hours)


def synced_world(scored_world: Path, tmp_path: Path, sandbox_factory, **config_changes) -> Synced:
    """The sync on its own, without Handoff's routing: the org's assignment rule owns the Leads it creates."""
    copy = tmp_path / "handoff.db"
    with sqlite3.connect(scored_world) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # what the write-ahead log holds too
    box = sandbox_factory(WORLD, tools=(), crm=True, faults={"salesforce": SalesforceFaults()})
    config = load_crm_config(env=box.env)
    config = config.model_copy(update={"push": config.push.model_copy(update={"new_leads_owner": "crm_rule"})})
    for part, changes in config_changes.items():
        config = config.model_copy(update={part: getattr(config, part).model_copy(update=changes)})
    return Synced(box, make_engine(f"sqlite:///{copy}"), config)


@pytest.fixture
def world(scored_world, tmp_path, sandbox_factory) -> Synced:
    synced = synced_world(scored_world, tmp_path, sandbox_factory)
    yield synced
    synced.engine.dispose()




@pytest.fixture
def point_at(monkeypatch):
    """Point the product's settings at a world's database and stand-ins (handoff_env without its database
    parameter, which would run the test once per database)."""
    def apply(world: "Synced", **extra: str) -> None:
        for name in [n for n in os.environ if n.startswith("HANDOFF_") and n.endswith("_ENABLED")]:
            monkeypatch.delenv(name)
        values = {**world.box.env, "HANDOFF_DATABASE_URL": world.engine.url.render_as_string(hide_password=False),
                  "HANDOFF_HOME": str(Path(world.engine.url.database).parent / "home"), **extra}
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield apply
    get_settings.cache_clear()
