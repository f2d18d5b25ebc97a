"""CRM sync benchmark: API calls and time of the two-way sync with Salesforce at scale, beside the targets of
issue 26, on SQLite and PostgreSQL, with composite calls and with Bulk API 2.0.

    python -m bench.crm_sync [--leads 100000] [--databases sqlite,postgresql] [--mode composite,bulk]

The Salesforce stand-in runs in a process of its own; the sync (tasks/crm.py) runs here, through the real
connector (simple-salesforce) over HTTP. For each database and mode, on a fresh database and a fresh org:
n leads whose CRM records exist (made by one untimed bulk push, then one untimed pull), then the timed phases:
1. push of n changed records: every score changes, one push (composite mode: push.bulk_above above n; bulk mode:
   below it), target ceil(n/200) + 5 calls (composite) or 10 (bulk);
2. a sync with no change right after: pull + push with a fresh client, token included, target no write call and
   at most 3 calls; and (2b) the same in the steady state: the org's clock moves on 15 minutes, one more sync
   runs untimed, then the timed one, nothing having changed anywhere since the sync before it;
3. a pull of n leads changed in the org: an admin sets every lead's status to one that maps to a stage (a Bulk
   API 2.0 job of their own, untimed), then one pull takes them in, target ceil(n/2000) + 10 calls.
Calls are the client's, by kind; records written are the stand-in's call log's; CPU seconds are this process's
(the sync, with SQLite inside it) and the stand-in's.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bench.databases import fresh_database
from bench.proc import process_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
WORKING = "Working - Contacted"  # a lead status config/crm.yaml maps to SQL
INDUSTRIES = ["Software", "Financial Services", "Retail", "Education"]
TITLES = ["VP of Sales", "Head of Revenue Operations", "Marketing Operations Manager", "Consultant"]
CHANNELS = ["Paid Search", "Organic Search", "Webinar", "Referral"]
PRODUCTS = ["Scoring", "Routing", "SLA"]
COUNTRIES = ["US", "DE", "GB", "FR", "BR"]
ASSETS = ["State of RevOps 2026", "Lead Scoring Playbook", "SLA Benchmarks Report"]
QUIET_LATER = timedelta(minutes=15)  # three runs of the every-5-minutes schedule


# ---------------------------------------------------------------- the stand-in, in a process of its own

def serve(seed: int) -> None:
    """Serve the Salesforce stand-in over a small world, print how to reach it (one JSON line), serve until stopped.
    Its people stay idle (their plans dropped, their work rates zero): only the benchmark and its admin change the
    org, however its clock moves."""
    import signal

    from sandbox.stack import start_sandbox
    from sandbox.world import WorldSpec

    box = start_sandbox(WorldSpec(seed=seed, people=200, activities=2000), crm=True, tools=())
    org = box.servers["salesforce"].app.state.salesforce
    org.workforce.rates.update(**{name: 0.0 for name in org.workforce.rates.as_dict()})
    org.workforce.queue.clear()
    creds = box.credentials["salesforce"]
    print(json.dumps({"url": box.url("salesforce"), "env": box.env, "clock": box.world.now.isoformat(),
                      "client_id": creds["client_id"], "client_secret": creds["client_secret"],
                      "private_key_pem": creds["private_key_pem"], "admin": org.staff["admin"]["username"]}),
          flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    box.stop()


@dataclass
class StandIn:
    process: subprocess.Popen
    info: dict

    @classmethod
    def start(cls, seed: int) -> "StandIn":
        process = subprocess.Popen([sys.executable, "-m", "bench.crm_sync", "--serve", "--seed", str(seed)], cwd=ROOT,
                                   stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = process.stdout.readline()
        if not line.startswith("{"):
            process.terminate()
            raise RuntimeError("the Salesforce stand-in did not start")
        return cls(process, json.loads(line))

    @property
    def url(self) -> str:
        return self.info["url"]

    def cpu(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def advance(self, by: timedelta) -> None:
        """Move the org's clock (the SystemModstamp of what is written from then on)."""
        import requests

        requests.post(f"{self.url}/_sandbox/clock", json={"advance_hours": by.total_seconds() / 3600},
                      timeout=30).raise_for_status()

    def log(self, reset: bool = False) -> dict:
        import requests

        method = requests.delete if reset else requests.get
        return method(f"{self.url}/_sandbox/salesforce/calls", timeout=30).json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# ---------------------------------------------------------------- the world in Handoff

def load(engine, leads: int, seed: int, at: datetime) -> None:
    """n leads at MQL, each with a lead_state row and the white-paper download that last moved its score (its
    ledger row), inserted set-wise with ids 1..n."""
    from store.bulk import db_time, insert_rows
    from store.tables import Activity, Lead, LeadState, ScoreLedger

    rng = random.Random(seed)
    with engine.begin() as conn:
        stamp = db_time(conn)
        t = stamp(at)
        epoch = int(at.timestamp())
        for start in range(1, leads + 1, 50_000):
            ids = range(start, min(leads, start + 49_999) + 1)
            insert_rows(conn, Lead.__table__, (
                "id", "email", "first_name", "last_name", "company", "title", "industry", "company_size", "country",
                "product_interest", "lead_source_channel", "created_at", "updated_at"),
                [(i, f"lead{i}@company{i % 5000}.example", "Ada", f"Lovelace {i}", f"Company {i % 5000}",
                  rng.choice(TITLES), rng.choice(INDUSTRIES), rng.choice([40, 250, 1500]), rng.choice(COUNTRIES),
                  rng.choice(PRODUCTS), rng.choice(CHANNELS), t, t) for i in ids], conflict=("id",))
            insert_rows(conn, LeadState.__table__, (
                "lead_id", "version_id", "score", "peak_score", "fit_points", "fit_grade", "stage", "stage_changed_at",
                "mql_armed", "crossings", "cold", "qualified_at", "scored_at"),
                [(i, 1, score, score, 20, rng.choice("ABC"), "mql", t, False, 1, False, t, t)
                 for i in ids for score in (rng.randrange(6000, 12000),)], conflict=("lead_id",))
            insert_rows(conn, Activity.__table__, (
                "id", "source", "external_id", "lead_id", "type", "asset", "asset_key", "campaign", "occurred_at",
                "ingested_at", "raw"),
                [(i, "bench", f"a{i}", i, "whitepaper_download", asset, asset.lower(), "Q4 nurture", t, t, "{}")
                 for i in ids for asset in (rng.choice(ASSETS),)], conflict=("source", "external_id"))
            insert_rows(conn, ScoreLedger.__table__, ("lead_id", "activity_id", "version_id", "rule_id", "points",
                                                      "occurred_epoch"),
                        [(i, i, 1, 1, 3000, epoch) for i in ids], conflict=("lead_id", "activity_id"))
    analyse(engine)


def analyse(engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")


def change_every_score(engine, at: datetime) -> None:
    from store.bulk import db_time

    with engine.begin() as conn:
        t = db_time(conn)(at)
        p = "?" if engine.dialect.name == "sqlite" else "%s"
        conn.exec_driver_sql(f"UPDATE lead_state SET score = score + 150, peak_score = peak_score + 150, "
                             f"scored_at = {p}", (t,))
    analyse(engine)


def admin_sets_status(stand_in: StandIn, ids: list[str], status: str) -> dict:
    """What an admin does with a data loader: sign in (JWT bearer, as the org's admin), one Bulk API 2.0 update job
    of Id,Status for these leads, wait for it. Returns the job's final state."""
    import jwt
    import requests

    info = stand_in.info
    assertion = jwt.encode({"iss": info["client_id"], "sub": info["admin"], "aud": info["url"],
                            "exp": int(time.time()) + 300}, info["private_key_pem"], algorithm="RS256")
    token = requests.post(f"{info['url']}/services/oauth2/token", timeout=30, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}).json()["access_token"]
    base = f"{info['url']}/services/data/v62.0/jobs/ingest"
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        job = session.post(base, json={"object": "Lead", "operation": "update", "contentType": "CSV",
                                       "lineEnding": "LF"}, timeout=60).json()
        data = "Id,Status\n" + "".join(f"{crm_id},{status}\n" for crm_id in ids)
        session.put(f"{base}/{job['id']}/batches", data=data.encode(), headers={"Content-Type": "text/csv"},
                    timeout=300).raise_for_status()
        session.patch(f"{base}/{job['id']}", json={"state": "UploadComplete"}, timeout=60).raise_for_status()
        while True:
            state = session.get(f"{base}/{job['id']}", timeout=60).json()
            if state["state"] in ("JobComplete", "Failed", "Aborted"):
                return state
            time.sleep(1.0)


# ---------------------------------------------------------------- measuring a phase

@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    writes: int = 0  # write calls the stand-in saw
    records: dict[str, int] = field(default_factory=dict)  # records the org wrote (or refused), by outcome
    client_cpu: float = 0.0
    stand_in_cpu: float = 0.0
    target: int = 0
    target_text: str = ""
    met: bool = False
    done: str = ""  # what the sync said it did

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class Measured:
    """Calls, records and CPU of the code run inside `with` (the stand-in's call log reset at the start)."""

    def __init__(self, stand_in: StandIn, phase: Phase):
        self.stand_in, self.phase = stand_in, phase

    def __enter__(self) -> Phase:
        self.bulk_before = self.stand_in.log(reset=True)["bulk"]
        self.stand_in_before, self.cpu_before = self.stand_in.cpu(), time.process_time()
        self.started = time.perf_counter()
        return self.phase

    def __exit__(self, *exc) -> None:
        phase = self.phase
        phase.seconds = time.perf_counter() - self.started
        phase.client_cpu = time.process_time() - self.cpu_before
        phase.stand_in_cpu = self.stand_in.cpu() - self.stand_in_before
        log = self.stand_in.log()
        phase.writes = log["writes"]
        phase.records = dict(log["records"])
        bulk_rows = log["bulk"]["processed"] - self.bulk_before["processed"]
        if bulk_rows:
            failed = log["bulk"]["failed"] - self.bulk_before["failed"]
            phase.records["bulk rows written"] = bulk_rows - failed
            if failed:
                phase.records["bulk rows failed"] = failed


# ---------------------------------------------------------------- one database, one mode

def run(kind: str, mode: str, leads: int, seed: int, workdir: Path) -> list[Phase]:
    from config.crm import load_crm_config
    from config.rulebook import load_rulebook
    from config.settings import CONFIG_DIR
    from connectors.crm.salesforce import SalesforceClient
    from store.engine import make_engine
    from tasks import crm

    started = time.perf_counter()
    stand_in = StandIn.start(seed)
    engine = None
    try:
        url = fresh_database(kind, workdir, f"handoff_bench_crm_{mode}")  # a new file for SQLite
        engine = make_engine(url)
        base = load_crm_config(env=stand_in.info["env"])
        # The org's assignment rule owns the Leads the setup creates (no routing here); updates never run it
        bulk_above = leads + 1 if mode == "composite" else max(1, min(base.push.bulk_above, leads - 1))
        setup_config = base.model_copy(update={"push": base.push.model_copy(update={
            "new_leads_owner": "crm_rule", "bulk_above": max(1, min(base.push.bulk_above, leads - 1))})})
        config = setup_config.model_copy(update={"push": setup_config.push.model_copy(update={"bulk_above": bulk_above})})
        rulebook = load_rulebook(CONFIG_DIR)
        secrets = {"client_id": stand_in.info["client_id"], "client_secret": stand_in.info["client_secret"]}

        def client() -> SalesforceClient:  # a fresh one per run, as a scheduled run has: its token included
            return SalesforceClient(config, secrets, bulk_poll_seconds=1.0)

        t0 = datetime.fromisoformat(stand_in.info["clock"])
        load(engine, leads, seed, t0 - timedelta(days=1))
        loaded = time.perf_counter()
        setup = crm.push(engine, client(), setup_config, now=t0)
        created = time.perf_counter()
        first_pull = crm.pull(engine, client(), config, now=t0 + timedelta(minutes=1), run_id="bench", rulebook=rulebook)
        pulled = time.perf_counter()
        print(f"  setup: {leads:,} leads loaded in {loaded - started:.1f}s (stand-in start included); "
              f"{setup.created:,} CRM records created by one bulk push in {created - loaded:.1f}s; the first pull "
              f"linked {first_pull.linked:,} in {pulled - created:.1f}s", flush=True)
        if setup.created != leads or setup.failed:
            raise RuntimeError(f"the setup push created {setup.created} of {leads}: {setup.failed}")

        phases: list[Phase] = []
        change_every_score(engine, t0 + timedelta(minutes=2))
        phase = Phase("1. push of n changed records")
        if mode == "composite":
            phase.target, phase.target_text = math.ceil(leads / 200) + 5, "<= ceil(n/200)+5 calls"
        else:
            phase.target, phase.target_text = 10, "<= 10 calls"
        pushing = client()
        with Measured(stand_in, phase):
            pushed = crm.push(engine, pushing, config, now=t0 + timedelta(minutes=3))
        phase.calls = dict(pushing.calls)
        phase.done = f"updated {pushed.updated:,}, failed {sum(pushed.failed.values())}"
        phase.met = phase.total <= phase.target and pushed.updated == leads and not pushed.failed
        phases.append(phase)
        report(phase)

        def quiet_sync(name: str, now: datetime) -> None:
            phase = Phase(name, target=3, target_text="no write call, <= 3 calls")
            syncing = client()
            with Measured(stand_in, phase):
                pulled = crm.pull(engine, syncing, config, now=now, run_id="bench", rulebook=rulebook)
                pushed = crm.push(engine, syncing, config, now=now)
            phase.calls = dict(syncing.calls)
            phase.done = (f"pulled {pulled.pulled.get('people', 0):,} people, moved {sum(pulled.moves.values())}; "
                          f"pushed {pushed.updated + pushed.created}")
            phase.met = phase.total <= 3 and phase.writes == 0
            phases.append(phase)
            report(phase)

        quiet_sync("2. sync with no change", t0 + timedelta(minutes=4))
        # The steady state: the org's clock moves on, one more sync runs (untimed), and the next has nothing at all
        # changed since the sync before it
        stand_in.advance(QUIET_LATER)
        later = t0 + timedelta(minutes=4) + QUIET_LATER
        between = client()
        crm.pull(engine, between, config, now=later, run_id="bench", rulebook=rulebook)
        crm.push(engine, between, config, now=later)
        quiet_sync("2b. no-change sync, steady state", later + timedelta(minutes=1))

        with engine.connect() as conn:
            ids = [row[0] for row in conn.exec_driver_sql("SELECT crm_id FROM crm_record WHERE crm_id IS NOT NULL "
                                                          "ORDER BY lead_id")]
        changing = time.perf_counter()
        job = admin_sets_status(stand_in, ids, WORKING)
        print(f"  the org's admin set {len(ids):,} leads to {WORKING!r} in one bulk job ({job['state']}, "
              f"{job['numberRecordsFailed']} failed) in {time.perf_counter() - changing:.1f}s", flush=True)
        phase = Phase("3. pull of n leads changed in the org", target=math.ceil(leads / 2000) + 10,
                      target_text="<= ceil(n/2000)+10 calls")
        pulling = client()
        with Measured(stand_in, phase):
            changed = crm.pull(engine, pulling, config, now=t0 + timedelta(minutes=20), run_id="bench", rulebook=rulebook)
        phase.calls = dict(pulling.calls)
        moved = changed.moves.get("sql", 0)
        phase.done = (f"pulled {changed.pulled.get('people', 0):,} people, moved {moved:,} to sql, "
                      f"{len(changed.refused_moves)} refused, {changed.quarantined} quarantined")
        phase.met = phase.total <= phase.target and moved == leads
        phases.append(phase)
        report(phase)
        return phases
    finally:
        if engine is not None:
            engine.dispose()
        stand_in.stop()


def report(phase: Phase) -> None:
    calls = ", ".join(f"{kind} {n}" for kind, n in sorted(phase.calls.items()))
    records = ", ".join(f"{kind} {n:,}" for kind, n in sorted(phase.records.items())) or "none"
    print(f"  {phase.name}: {phase.seconds:.1f}s; calls {phase.total} ({calls}); target {phase.target_text}: "
          f"{'met' if phase.met else 'NOT met'}; write calls {phase.writes}; org records {records}; "
          f"{phase.done}; CPU s: sync {phase.client_cpu:.1f}, stand-in {phase.stand_in_cpu:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--mode", default="composite,bulk", help="composite, bulk, or both (comma-separated)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.seed)
        return
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    unknown = sorted(set(modes) - {"composite", "bulk"})
    if unknown or args.leads < 2:
        parser.error(f"unknown mode {unknown[0]!r}" if unknown else "--leads: at least 2")

    results: list[tuple[str, str, list[Phase]]] = []
    with tempfile.TemporaryDirectory(prefix="handoff-bench-crm-") as tmp:
        for kind in [d.strip() for d in args.databases.split(",") if d.strip()]:
            for mode in modes:
                print(f"{kind}, {mode}: {args.leads:,} leads ...", flush=True)
                results.append((kind, mode, run(kind, mode, args.leads, args.seed, Path(tmp))))

    n = args.leads
    print()
    print(f"n = {n:,} leads. Targets (issue 26): push ceil(n/200)+5 = {math.ceil(n / 200) + 5} calls with composite, "
          f"10 with Bulk 2.0; no-change sync no write call and <= 3 calls; pull ceil(n/2000)+10 = "
          f"{math.ceil(n / 2000) + 10} calls.")
    print(f"{'database':10} {'mode':9} {'phase':38} {'seconds':>8} {'calls':>6} {'target':>7} {'met':>4} "
          f"{'writes':>6} {'records written':>16} {'sync CPU s':>10} {'stand-in CPU s':>14}  calls by kind")
    for kind, mode, phases in results:
        for phase in phases:
            written = sum(v for k, v in phase.records.items() if "fail" not in k)
            by_kind = ", ".join(f"{k} {v}" for k, v in sorted(phase.calls.items()))
            print(f"{kind:10} {mode:9} {phase.name:38} {phase.seconds:>8.1f} {phase.total:>6} {phase.target:>7} "
                  f"{'yes' if phase.met else 'NO':>4} {phase.writes:>6} {written:>16,} {phase.client_cpu:>10.1f} "
                  f"{phase.stand_in_cpu:>14.1f}  {by_kind}")
    print("\ncalls = the API calls the client made (token included); writes = write calls the stand-in saw; records"
          " written = records the org wrote (sObject Collections results, bulk rows); sync CPU = this process (the"
          " sync, SQLite inside it; PostgreSQL's server not counted); met = within the target and the work done"
          " (every record updated; the no-change sync also writing nothing; every lead moved to SQL).")


if __name__ == "__main__":
    main()
