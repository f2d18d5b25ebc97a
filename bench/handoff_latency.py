"""Handoff latency benchmark: from a hand-raise posted by a marketing tool's webhook to the lead owned by a rep in
Salesforce and that rep's e-mail in the inbox, with the scheduled flows running as usual beside it.

    python -m bench.handoff_latency [--count 100] [--every 2] [--database sqlite|postgresql]
                                    [--prefect-database sqlite|postgresql] [--parts paced,burst,polling]

Everything runs as in production, each in a process of its own: the stand-ins (`handoff sandbox --webhooks`,
Marketo, HubSpot, Mautic and Salesforce over one world, its reps at work), `handoff serve` (every deployment on
its schedule, and the webhook receiver with its hand-off-now runs), a local Prefect server; a local SMTP server
runs here. The org is made ready first (ingest, score, the CRM sync and routing, untimed, as the schedules would).
The reps' daily capacity is lifted (a copy of config/teams.yaml) so every lead can go to a rep at any hour.

The people who raise their hands are good-fit people (fit grade A) Handoff knows from HubSpot or Mautic and who
are not sales-ready yet, so a demo request makes each an MQL that routing gives to a rep. Each is timed from the
request that makes the person ask for a demo in the tool (which posts its webhook at once, and shows the activity
on its API) to the later of: the lead (or the contact sales already has) owned by a user in Salesforce, and the
e-mail telling its owner (a new lead, or their own lead now sales-ready).
- paced: `count` hand-raises, HubSpot's and Mautic's in turn, one every `every` seconds. Target: 95th
  percentile under 10 seconds.
- burst: `count` hand-raises at once. No target.
- polling: the same path with the receiver taking no webhook (its sources' secrets unset) and the schedules every
  `--interval` seconds: the lead waits for ingest, score and route-leads in turn. No target; printed beside one
  schedule interval plus the runs' own time.
Observations are polled every 0.25 s, so each latency is late by up to that much.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import requests
import yaml

from bench.databases import fresh_database

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POLL = 0.25
TOLD = ("New lead", "Your lead is sales-ready")  # routed to a rep; kept by the rep who owns it already


def free_port(span: int = 1) -> int:
    """A port with `span` free ports from it on (the stand-ins take consecutive ones)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + span < 65535 and all(_free(port + n) for n in range(span)):
            return port
    raise RuntimeError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# ---------------------------------------------------------------- the processes

class StandIns:
    """`handoff sandbox --webhooks URL` in a process of its own: the marketing tools and Salesforce over one world."""

    def __init__(self, env: dict, webhooks_to: str, seed: int, people: int, activities: int):
        port = free_port(4)
        end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0).isoformat()
        self.process = subprocess.Popen(
            [str(BIN / "handoff"), "sandbox", "--seed", str(seed), "--people", str(people), "--activities",
             str(activities), "--port", str(port), "--webhooks", webhooks_to, "--end", end],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.env: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        alternative = False  # the JWT grant's variables come after: the client secret is used here
        for line in self.process.stdout:
            if "Serving; Ctrl-C" in line:
                break
            alternative = alternative or line.startswith("Or sign in")
            if line.startswith("export ") and not alternative:
                name, _, value = line[len("export "):].strip().partition("=")
                self.env[name] = value
            found = re.match(r"\s+(\w+)\s+(http://\S+)", line)
            if found:
                self.urls[found.group(1)] = found.group(2)
        if "HANDOFF_SALESFORCE_CLIENT_ID" not in self.env:
            self.stop()
            raise RuntimeError("handoff sandbox did not start")

    def hand_raise(self, tool: str, email: str) -> None:
        """The person asks for a demo in the tool now: the tool posts its webhook (when a receiver takes it) and
        shows the activity on its API."""
        answer = requests.post(f"{self.urls[tool]}/_sandbox/webhooks/activity", timeout=30,
                               json={"email": email, "type": "demo_request"})
        answer.raise_for_status()

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


class Serving:
    """`handoff serve` in a process of its own, its output in a file."""

    def __init__(self, env: dict, port: int, log: Path, deployments: Path | None = None):
        self.log = log
        self.port = port
        chosen = ["--deployments", str(deployments)] if deployments else []
        self.process = subprocess.Popen([str(BIN / "handoff"), "serve", "--port", str(port), *chosen], env=env, cwd=ROOT,
                                        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                return
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"handoff serve did not start: see {log}")
                time.sleep(0.5)

    def answers(self) -> dict:
        return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=10).json()["answers"]

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


# ---------------------------------------------------------------- what is watched

@dataclass
class Lead:
    email: str
    tool: str
    started: float  # wall time: first posted (webhooks) or visible on the tool's API (polling)
    owned_at: float | None = None
    owner: str | None = None
    emailed_at: float | None = None

    @property
    def latency(self) -> float | None:
        if self.owned_at is None or self.emailed_at is None:
            return None
        return max(self.owned_at, self.emailed_at) - self.started


@dataclass
class Watch:
    """Salesforce's leads and contacts and the inbox, looked at every POLL seconds."""

    crm: object  # a signed-in connectors.crm.salesforce.SalesforceClient
    mailbox: object
    users: dict[str, str] = field(default_factory=dict)
    seen_mails: int = 0

    def look(self, leads: dict[str, Lead], now: float) -> None:
        waiting = [lead for lead in leads.values() if lead.owned_at is None]
        for start in range(0, len(waiting), 100):
            emails = ", ".join("'" + lead.email.replace("'", "\\'") + "'" for lead in waiting[start:start + 100])
            # A person sales already has as a contact stays with the contact's owner, who is told
            found = [record for kind in ("Lead", "Contact") for record in self.crm.call(
                "watch", lambda sf: sf.query_all(f"SELECT Email, OwnerId FROM {kind} WHERE Email IN ({emails}) "
                                                 "AND Handoff_Id__c != null"))["records"]]
            for record in found:
                lead = leads.get((record["Email"] or "").lower())
                if lead and lead.owned_at is None and (record["OwnerId"] or "").startswith("005"):
                    lead.owned_at, lead.owner = now, record["OwnerId"]
        mails = list(self.mailbox.mails)
        for mail in mails[self.seen_mails:]:
            if not mail.subject.startswith(TOLD):
                continue
            text = mail.text.lower()
            for lead in leads.values():
                if lead.emailed_at is None and f"<{lead.email}>" in text:
                    lead.emailed_at = now
        self.seen_mails = len(mails)


def hand_raises(stand_ins: StandIns, people: list[tuple[str, str]], every: float) -> dict[str, Lead]:
    """One hand-raise every `every` seconds (all at once when 0), from a thread each; the leads, filled in as they
    are raised, with the wall time of the request to the tool."""
    leads: dict[str, Lead] = {}
    lock = threading.Lock()

    def one(email: str, tool: str, at: float) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        started = time.time()
        stand_ins.hand_raise(tool, email)
        with lock:
            leads[email] = Lead(email, tool, started)

    start = time.monotonic() + 0.5
    for n, (email, tool) in enumerate(people):
        threading.Thread(target=one, args=(email, tool, start + n * every), daemon=True).start()
    return leads


def follow(leads: dict[str, Lead], watch: "Watch", expected: int, timeout: float) -> list[Lead]:
    """Until each of the `expected` leads is owned and e-mailed, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        watch.look(dict(leads), now)
        if len(leads) >= expected and all(lead.latency is not None for lead in list(leads.values())):
            break
        time.sleep(POLL)
    return list(leads.values())


def sales_ready_candidates(database_url: str) -> list[tuple[str, str]]:
    """Good-fit people (fit grade A) Handoff knows from HubSpot or Mautic who are not sales-ready yet: a demo
    request makes each an MQL. Alternating tools."""
    from sqlalchemy import text

    from store.engine import make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT l.email, MIN(a.source) FROM lead l JOIN lead_state s ON s.lead_id = l.id "
            "JOIN activity a ON a.lead_id = l.id WHERE s.stage = 'lead' AND s.fit_grade = 'A' "
            "AND a.source IN ('hubspot', 'mautic') AND l.email IS NOT NULL GROUP BY l.email ORDER BY l.email")).all()
    engine.dispose()
    by_tool = {"hubspot": [r[0] for r in rows if r[1] == "hubspot"], "mautic": [r[0] for r in rows if r[1] == "mautic"]}
    mixed = []
    for pair in itertools.zip_longest(by_tool["hubspot"], by_tool["mautic"]):
        mixed += [(email, tool) for email, tool in zip(pair, ("hubspot", "mautic")) if email]
    return mixed


def summary(name: str, leads: list[Lead], expected: int) -> dict:
    done = [lead.latency for lead in leads if lead.latency is not None]
    row = {"part": name, "hand-raises": expected, "handed over": len(done),
           "not owned by a rep": sum(lead.owned_at is None for lead in leads),
           "not e-mailed": sum(lead.emailed_at is None for lead in leads)}
    if done:
        row.update({"median s": statistics.median(done), "p95 s": percentile(done, 95), "max s": max(done)})
    return row


# ---------------------------------------------------------------- the run

def prepare_config(work: Path) -> dict[str, str]:
    """The bench's own teams file: no daily capacity."""
    teams = yaml.safe_load((ROOT / "config" / "teams.yaml").read_text())
    for rep in (teams.get("reps") or {}).values() if isinstance(teams.get("reps"), dict) else teams.get("reps", []):
        if isinstance(rep, dict) and "daily_capacity" in rep:
            rep["daily_capacity"] = "unlimited"
    (work / "teams.yaml").write_text(yaml.safe_dump(teams, sort_keys=False))
    return {"HANDOFF_TEAMS_FILE": str(work / "teams.yaml")}


def scheduled_every(work: Path, seconds: int) -> Path:
    spec = yaml.safe_load((ROOT / "deployments.yaml").read_text())
    for deployment in spec["deployments"]:
        for schedule in deployment.get("schedules") or []:
            if "interval" in schedule and schedule["interval"] <= 300:
                schedule["interval"] = seconds
    path = work / f"deployments-every-{seconds}s.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def handoff(env: dict, *args: str) -> None:
    done = subprocess.run([str(BIN / "handoff"), *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"handoff {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between hand-raises in the paced part")
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--prefect-database", default="sqlite", choices=("sqlite", "postgresql"),
                        help="the Prefect server's own database (Prefect advises PostgreSQL for production)")
    parser.add_argument("--parts", default="paced,burst,polling")
    parser.add_argument("--interval", type=int, default=60, help="the schedules' interval in the polling part")
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--activities", type=int, default=24000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]

    from config.crm import load_crm_config
    from connectors.crm.salesforce import SalesforceClient
    from bench.databases import empty_postgres_database
    from handoff.prefect_server import LocalPrefectServer
    from sandbox.mailbox import Mailbox

    work = Path(tempfile.mkdtemp(prefix="handoff-latency-"))
    print(f"work folder {work}", flush=True)
    prefect = LocalPrefectServer(work / "prefect", database_url=empty_postgres_database(
        "handoff_latency_prefect", "asyncpg") if args.prefect_database == "postgresql" else None).start()
    mailbox = Mailbox().start()
    receiver_port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_")},
           "PREFECT_API_URL": prefect.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "HANDOFF_HOME": str(work / "home"), "HANDOFF_SMTP_HOST": mailbox.host,
           "HANDOFF_SMTP_PORT": str(mailbox.port), "HANDOFF_NOTIFY_FROM": "handoff@bench.example",
           **prepare_config(work)}
    env["HANDOFF_DATABASE_URL"] = fresh_database(args.database, work, "handoff_latency")
    stand_ins = StandIns(env, f"http://127.0.0.1:{receiver_port}/webhooks", args.seed, args.people, args.activities)
    env.update(stand_ins.env)
    results, serving = [], None
    try:
        started = time.monotonic()
        for step in (("run", "ingest"), ("run", "score"), ("crm", "sync"), ("run", "route")):
            handoff(env, *step)
        print(f"the org made ready (ingest, score, CRM sync, routing) in {time.monotonic() - started:.0f} s",
              flush=True)
        crm = SalesforceClient(load_crm_config(env=env), {"client_id": env["HANDOFF_SALESFORCE_CLIENT_ID"],
                                                          "client_secret": env["HANDOFF_SALESFORCE_CLIENT_SECRET"]})
        crm.authenticate()
        watch = Watch(crm, mailbox)
        candidates = sales_ready_candidates(env["HANDOFF_DATABASE_URL"])
        print(f"{len(candidates)} good-fit people not sales-ready yet to raise their hands", flush=True)
        if "paced" in parts or "burst" in parts:
            serving = Serving(env, receiver_port, work / "serve.log")
            for name, every in (("paced", args.every), ("burst", 0.0)):
                if name not in parts:
                    continue
                people, candidates = candidates[:args.count], candidates[args.count:]
                leads = hand_raises(stand_ins, people, every)
                leads = follow(leads, watch, len(people), timeout=len(people) * every + 300)
                results.append(summary(name, leads, len(people)))
                print(json.dumps(results[-1]), flush=True)
            print(f"receiver answers: {serving.answers()}", flush=True)
            serving.stop()
            serving = None
        if "polling" in parts:
            polling_env = {k: v for k, v in env.items() if not k.endswith("_WEBHOOK_SECRET")}
            serving = Serving(polling_env, receiver_port, work / "serve-polling.log",
                              scheduled_every(work, args.interval))
            people = candidates[:max(10, args.count // 5)]
            leads = hand_raises(stand_ins, people, args.every)
            leads = follow(leads, watch, len(people), timeout=8 * args.interval + 600)
            results.append(summary(f"polling (every {args.interval} s)", leads, len(people)))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if serving is not None:
            serving.stop()
        stand_ins.stop()
        mailbox.stop()
        prefect.stop()
    print()
    print(f"{'part':24} {'raised':>6} {'handed':>6} {'median s':>9} {'p95 s':>7} {'max s':>7}")
    for row in results:
        print(f"{row['part']:24} {row['hand-raises']:>6} {row['handed over']:>6} {row.get('median s', 0):>9.1f} "
              f"{row.get('p95 s', 0):>7.1f} {row.get('max s', 0):>7.1f}")
    print("target: the paced part's 95th percentile under 10 s")


if __name__ == "__main__":
    main()
