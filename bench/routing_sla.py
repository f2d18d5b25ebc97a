"""Routing and SLA benchmark: 10,000 MQLs routed, their owners written to Salesforce and told; then 100,000 open SLA
timers with 5% breached, the scan and the whole escalation; on SQLite and PostgreSQL, beside the targets of issue 27.

    python -m bench.routing_sla [--mqls 10000] [--timers 100000] [--breached 0.05] [--databases sqlite,postgresql]
                                [--parts routing,sla] [--profile DIR]

The Salesforce stand-in and a local SMTP server (sandbox/mailbox.py) each run in a process of their own; routing,
the SLA, the push (tasks/crm.py) and the sending (tasks/notify.py) run here, through the real connector
(simple-salesforce) over HTTP and Apprise's e-mail over SMTP. Each part's setup is untimed and set-wise.
1. n MQLs waiting in the routing queue (as an MQL handover leaves them), spread so every rule has work: companies
   with a CRM account (by e-mail domain, or by name behind a free-mail address), product interests, countries in
   each territory and outside them. Timed: route_waiting; the push of the owners (creating the records); the
   enqueueing of the notifications; their sending. Target: the push in at most ceil(n/200) + 5 calls.
2. t assignments with running timers, a share of them breached, the leads' CRM records present (created by one
   untimed push and read back by one untimed pull). Timed: the scan (timers_to_look_at and the planning), target
   under 1 s; run_sla with its effects; the push of new owners and stages; the enqueueing of the new owners'
   notifications; the sending. Target: the push in about ceil(k/200) + 5 calls for k changed records.
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
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bench.databases import fresh_database
from bench.proc import process_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
INDUSTRIES = ["Software", "Financial Services", "Retail", "Education"]
TITLES = ["VP of Sales", "Head of Revenue Operations", "Marketing Operations Manager", "Consultant"]
CHANNELS = ["Paid Search", "Organic Search", "Webinar", "Referral"]
# (country, weight): both territories of teams.yaml, and countries no team covers (they fall back to the queue)
COUNTRIES = [("US", 25), ("CA", 5), ("BR", 5), ("MX", 3), ("DE", 12), ("GB", 12), ("FR", 8), ("NL", 5), ("ES", 5),
             ("JP", 5), ("IN", 5), ("AU", 5), (None, 5)]
PRODUCTS = [("Scoring", 30), ("Routing", 25), ("SLA", 20), (None, 25)]  # none: the activities or the territory decide
ASSETS = ["State of RevOps 2026", "Lead Scoring Playbook", "SLA Benchmarks Report", "Pipeline Alignment Live"]
BY_DOMAIN, BY_NAME = 0.10, 0.03  # shares of leads whose company has a CRM account: by e-mail domain, by name only
HAND_RAISERS = 0.08  # leads a demo request made sales-ready (the fit A hand-raiser SLA policy)


# ---------------------------------------------------------------- the stand-in and the SMTP server, each in a process

def serve(seed: int) -> None:
    """Serve the Salesforce stand-in over a small world, its people idle (only the benchmark changes the org), print
    how to reach it (one JSON line), serve until stopped."""
    import signal

    from sandbox.stack import start_sandbox
    from sandbox.world import WorldSpec

    box = start_sandbox(WorldSpec(seed=seed, people=200, activities=2000), crm=True, tools=())
    org = box.servers["salesforce"].app.state.salesforce
    org.workforce.rates.update(**{name: 0.0 for name in org.workforce.rates.as_dict()})
    creds = box.credentials["salesforce"]
    print(json.dumps({"url": box.url("salesforce"), "env": box.env, "clock": box.world.now.isoformat(),
                      "client_id": creds["client_id"], "client_secret": creds["client_secret"]}), flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    box.stop()


def serve_mailbox() -> None:
    """A local SMTP server: prints where it listens, then answers 'count' on stdin with what arrived; ends at EOF."""
    from sandbox.mailbox import Mailbox

    with Mailbox() as box:
        print(json.dumps({"host": box.host, "port": box.port}), flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                mails = list(box.mails)
                keys = Counter(m.header("X-Handoff-Notification") for m in mails)
                print(json.dumps({"mails": len(mails), "keys": len(keys), "repeated": sum(n > 1 for n in keys.values()),
                                  "recipients": len({r for m in mails for r in m.recipients})}), flush=True)


class Child:
    """A process of this module's (`--serve`, `--mailbox`) that prints one JSON line when it is ready."""

    def __init__(self, *args: str, stdin: bool = False):
        self.process = subprocess.Popen([sys.executable, "-m", "bench.routing_sla", *args], cwd=ROOT, text=True,
                                        stdout=subprocess.PIPE, stdin=subprocess.PIPE if stdin else None,
                                        start_new_session=True)
        line = self.process.stdout.readline()
        if not line.startswith("{"):
            self.process.terminate()
            raise RuntimeError(f"bench.routing_sla {' '.join(args)} did not start")
        self.info = json.loads(line)

    def cpu(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        else:
            self.process.terminate()
        self.process.wait(timeout=60)


class StandIn(Child):
    def __init__(self, seed: int):
        super().__init__("--serve", "--seed", str(seed))
        self.url = self.info["url"]

    def log(self, reset: bool = False) -> dict:
        import requests

        method = requests.delete if reset else requests.get
        return method(f"{self.url}/_sandbox/salesforce/calls", timeout=30).json()


class SmtpServer(Child):
    def __init__(self):
        super().__init__("--mailbox", stdin=True)

    def count(self) -> dict:
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())


# ---------------------------------------------------------------- the world in Handoff

@dataclass
class World:
    """What a part's setup made, and what the timed steps need."""

    engine: object
    stand_in: StandIn
    config: object  # CrmConfig
    secrets: dict
    rules: object  # tasks.routing.Rules
    t0: datetime  # the stand-in's clock
    version_id: int = 0

    def client(self):  # a fresh one per run, as a scheduled run has, signed in (as the flows' connect step does)
        from connectors.crm.salesforce import SalesforceClient

        client = SalesforceClient(self.config, self.secrets, bulk_poll_seconds=1.0)
        client.authenticate()
        return client


def weighted(rng: random.Random, choices: list[tuple]) -> object:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def load_leads(world: World, ids: range, seed: int, at: datetime, queued: bool) -> dict[str, int]:
    """Leads at MQL with ids `ids`: person, lead_state, the activities and ledger lines that made the score, the move
    to MQL and its reason, and (`queued`) the MQL event with its routing and CRM-sync queue rows, as an MQL handover
    (store.scoring.save_qualifications) writes them; inserted set-wise. Companies with a CRM account (as pulled)
    are drawn in for the account-owner rule. Returns how many leads of each kind."""
    from config.rulebook import load_rulebook
    from config.settings import CONFIG_DIR
    from domain.activity import asset_key
    from store.bulk import db_time, insert_rows
    from store.scoring import ensure_version, rule_ids, set_scoring_state
    from store.tables import Activity, HandoffQueue, Lead, LeadEvent, LeadState, ScoreLedger, StageChange

    rng = random.Random(seed)
    engine = world.engine
    with engine.connect() as conn:
        accounts = conn.exec_driver_sql("SELECT name, domain FROM crm_account WHERE NOT deleted AND name IS NOT NULL "
                                        "ORDER BY crm_id").fetchall()
    with_domain = [a for a in accounts if a[1]]
    kinds: Counter = Counter()
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        world.version_id = version = ensure_version(conn, rulebook, at)
        set_scoring_state(conn, version, at, None)
        numbers = rule_ids(rulebook)
        rule = {r.action: numbers[id(r)] for r in rulebook.rules}
        stamp = db_time(conn)
        t = stamp(at)
        for start in range(ids.start, ids.stop, 20_000):
            chunk = range(start, min(ids.stop, start + 20_000))
            leads, states, activities, ledger, changes, events, queue = [], [], [], [], [], [], []
            for i in chunk:
                roll = rng.random()
                if roll < BY_DOMAIN and with_domain:
                    company, domain = rng.choice(with_domain)
                    email, kind = f"lead{i}@{domain}", "account by domain"
                elif roll < BY_DOMAIN + BY_NAME and accounts:
                    company, email, kind = rng.choice(accounts)[0], f"lead{i}@gmail.com", "account by name"
                else:
                    company, email, kind = f"Company {i % 5000}", f"lead{i}@company{i % 5000}.example", "no account"
                country, product = weighted(rng, COUNTRIES), weighted(rng, PRODUCTS)
                kinds[kind] += 1
                kinds[f"country {'none' if country is None else country}"] += 1
                leads.append((i, email, "Ada", f"Lovelace {i}", company, rng.choice(TITLES), rng.choice(INDUSTRIES),
                              rng.choice([40, 250, 1500]), country, product, rng.choice(CHANNELS), t, t))
                asset = rng.choice(ASSETS)
                when = at - timedelta(hours=rng.randrange(2, 300))
                moved = [(3 * i, "email_open", "November release notes", "email_open", 100, when - timedelta(days=3)),
                         (3 * i + 1, "whitepaper_download", asset, "whitepaper_download", 3000, when)]
                if rng.random() < HAND_RAISERS:
                    moved.append((3 * i + 2, "demo_request", "Demo Request", "demo_request", 10000, when))
                score = 6000 + sum(points for *_, points, _ in moved)
                grade = rng.choice("AABC")
                states.append((i, version, score, score, 20, grade, "mql", t, False, 1, False, t, t))
                for activity_id, kind_, name, action, points, occurred in moved:
                    activities.append((activity_id, "bench", f"a{activity_id}", i, kind_, name, asset_key(name),
                                       "Q4 nurture", stamp(occurred), t, "{}"))
                    ledger.append((i, activity_id, version, rule[action], points, int(occurred.timestamp())))
                changes.append((i, t, "engaged", "mql", f"score {score / 100:.0f} reached the readiness threshold",
                                version, "bench-setup"))
                if queued:
                    events.append((i, str(uuid.uuid4()), i, "mql", 1, t, json.dumps({"reason": "bench"}), "bench"))
                    queue += [(i, "routing", t), (i, "crm_sync", t)]
            insert_rows(conn, Lead.__table__, (
                "id", "email", "first_name", "last_name", "company", "title", "industry", "company_size", "country",
                "product_interest", "lead_source_channel", "created_at", "updated_at"), leads, conflict=("id",))
            insert_rows(conn, LeadState.__table__, (
                "lead_id", "version_id", "score", "peak_score", "fit_points", "fit_grade", "stage", "stage_changed_at",
                "mql_armed", "crossings", "cold", "qualified_at", "scored_at"), states, conflict=("lead_id",))
            insert_rows(conn, Activity.__table__, (
                "id", "source", "external_id", "lead_id", "type", "asset", "asset_key", "campaign", "occurred_at",
                "ingested_at", "raw"), activities, conflict=("source", "external_id"))
            insert_rows(conn, ScoreLedger.__table__, ("lead_id", "activity_id", "version_id", "rule_id", "points",
                                                      "occurred_epoch"), ledger, conflict=("lead_id", "activity_id"))
            insert_rows(conn, StageChange.__table__, ("lead_id", "changed_at", "from_stage", "to_stage", "reason",
                                                      "version_id", "run_id"), changes, conflict=("id",))
            if queued:
                insert_rows(conn, LeadEvent.__table__, ("id", "event_id", "lead_id", "kind", "crossing", "occurred_at",
                                                        "payload", "run_id"), events, conflict=("id",))
                insert_rows(conn, HandoffQueue.__table__, ("lead_event_id", "lead_id", "queue", "created_at"),
                            [(e, e, q, c) for e, q, c in queue], conflict=("lead_event_id", "queue"))
    return dict(kinds)


def settle(engine, tables: tuple[str, ...]) -> None:
    """After rows inserted with their ids: PostgreSQL's sequences moved past them; statistics fresh on both."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            for table in tables:
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")
            conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")


# ---------------------------------------------------------------- measuring

@dataclass
class Step:
    name: str
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)  # what the org wrote, from its call log
    cpu: float = 0.0  # this process
    stand_in_cpu: float = 0.0
    smtp_cpu: float = 0.0
    note: str = ""

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


class Timed:
    """Seconds, CPU, and (with a client) the CRM calls and records written of the code run inside `with`; under
    `--profile DIR`, a cProfile of it in DIR (the profiler's overhead in the seconds)."""

    profile_dir: Path | None = None
    prefix = ""

    def __init__(self, step: Step, stand_in: StandIn, smtp: SmtpServer | None = None, client=None):
        self.step, self.stand_in, self.smtp, self.client = step, stand_in, smtp, client
        self.profiler = None

    def __enter__(self) -> Step:
        if self.profile_dir is not None:
            import cProfile

            self.profiler = cProfile.Profile()
        if self.client is not None:
            self.calls_before = Counter(self.client.calls)
            self.bulk_before = self.stand_in.log(reset=True)["bulk"]
        self.stand_in_before = self.stand_in.cpu()
        self.smtp_before = self.smtp.cpu() if self.smtp else 0.0
        self.cpu_before = time.process_time()
        self.started = time.perf_counter()
        if self.profiler:
            self.profiler.enable()
        return self.step

    def __exit__(self, *exc) -> None:
        step = self.step
        step.seconds = time.perf_counter() - self.started
        if self.profiler:
            self.profiler.disable()
            name = "".join(c if c.isalnum() else "-" for c in step.name.split(" (")[0]).strip("-")
            self.profiler.dump_stats(self.profile_dir / f"{self.prefix}{name}.prof")
        step.cpu = time.process_time() - self.cpu_before
        step.stand_in_cpu = self.stand_in.cpu() - self.stand_in_before
        step.smtp_cpu = (self.smtp.cpu() - self.smtp_before) if self.smtp else 0.0
        if self.client is not None and exc[0] is None:
            step.calls = {k: v for k, v in (Counter(self.client.calls) - self.calls_before).items() if v}
            log = self.stand_in.log()
            step.records = {k: v for k, v in log["records"].items() if v}
            bulk_rows = log["bulk"]["processed"] - self.bulk_before["processed"]
            if bulk_rows:
                failed = log["bulk"]["failed"] - self.bulk_before["failed"]
                step.records["bulk rows written"] = bulk_rows - failed
                if failed:
                    step.records["bulk rows failed"] = failed


def line(step: Step, extra: str = "") -> None:
    calls = f"; CRM calls {step.total_calls} ({', '.join(f'{k} {v}' for k, v in sorted(step.calls.items()))})" \
        if step.calls else ""
    records = f"; org wrote {', '.join(f'{k} {v:,}' for k, v in sorted(step.records.items()))}" if step.records else ""
    smtp = f", SMTP server {step.smtp_cpu:.1f}" if step.smtp_cpu else ""
    print(f"    {step.name}: {step.seconds:.2f} s{calls}{records}{'; ' + step.note if step.note else ''}"
          f"{'; ' + extra if extra else ''} [CPU s: here {step.cpu:.1f}, stand-in {step.stand_in_cpu:.1f}{smtp}]",
          flush=True)


def send_all(engine, notifications, now: datetime) -> tuple[int, int, list[str]]:
    """Send runs one after another (each sends up to its limit) until nothing due is left: (sent, failed, errors)."""
    from tasks.notify import send_notifications

    sent = failed = 0
    errors: list[str] = []
    while True:
        summary = send_notifications(engine, notifications, now=now)
        sent, failed = sent + summary.sent, failed + summary.failed + summary.given_up
        errors += summary.errors
        if summary.sent + summary.failed + summary.given_up == 0 or summary.failed:
            return sent, failed, errors[:3]


def push_target(k: int, config) -> tuple[int, str]:
    """The calls a push of k records may make, and how the configuration writes k records."""
    target = math.ceil(k / 200) + 5
    how = (f"Bulk API 2.0 (k = {k:,} > push.bulk_above {config.push.bulk_above:,})" if k > config.push.bulk_above
           else f"sObject Collections calls of 200 (k = {k:,} <= push.bulk_above {config.push.bulk_above:,})")
    return target, how


# ---------------------------------------------------------------- part 1: MQLs routed

def routing_part(kind: str, n: int, seed: int, workdir: Path) -> dict:
    from tasks import crm
    from tasks.routing import Telling, route_waiting, tell_new_owners

    print(f"  1. {n:,} MQLs routed", flush=True)
    started = time.perf_counter()
    world, smtp, notifications = start_world(kind, "handoff_bench_routing", seed, workdir)
    result = {}
    try:
        kinds = load_leads(world, range(1, n + 1), seed, world.t0 - timedelta(hours=1), queued=True)
        settle(world.engine, ("lead", "activity", "lead_event", "stage_change", "handoff_queue"))
        spread = ", ".join(f"{k} {v:,}" for k, v in kinds.items() if not k.startswith("country"))
        print(f"    setup (untimed): {n:,} MQLs waiting ({spread}) in {time.perf_counter() - started:.1f} s, the "
              f"stand-in's start and one pull of the CRM's users and accounts included", flush=True)
        now = world.t0
        client = world.client()
        routing = Step("route_waiting (decisions, assignments, timers)")
        with Timed(routing, world.stand_in, client=client):
            summary = route_waiting(world.engine, world.rules, now=now, run_id="bench", queue_ids=client.queue_ids)
        decided = [d.lead_id for d in summary.decisions]
        timers = sum(1 for d in summary.decisions if d.due)
        by_rule = ", ".join(f"{rule} {k:,}" for rule, k in summary.by_rule.items())
        routing.note = (f"{len(decided):,} decided ({summary.routed:,} to reps, {summary.to_queue:,} to the queue, "
                        f"{summary.kept:,} kept); {timers:,} timers opened; by rule: {by_rule}; "
                        f"{len(decided) / routing.seconds:,.0f} leads/s")
        line(routing)
        push = Step("push of the owners (creating the records)")
        with Timed(push, world.stand_in, client=client):
            pushed = crm.push(world.engine, client, world.config, now=now, lead_ids=decided)
        target, how = push_target(len(decided), world.config)
        calls = push.total_calls + routing.total_calls
        push.note = (f"created {pushed.created:,}, updated {pushed.updated:,}, linked {pushed.linked:,}, failed "
                     f"{sum(pushed.failed.values())}; written as {how}")
        met = calls <= target and pushed.created + pushed.updated == len(decided) and not pushed.failed
        line(push, f"calls with routing's queue lookup {calls} <= ceil(n/200)+5 = {target}: "
                   f"{'met' if met else 'NOT met'}")
        both = routing.seconds + push.seconds
        print(f"    routed and written: {both:.2f} s, {len(decided) / both:,.0f} leads/s", flush=True)
        enqueue = Step("enqueue the notifications (tell_new_owners)")
        with Timed(enqueue, world.stand_in):
            enqueued = tell_new_owners(world.engine, world.rules, Telling(notifications, client.instance_url), now)
        enqueue.note = f"{enqueued:,} enqueued"
        line(enqueue)
        send = Step("send them to the local SMTP server")
        with Timed(send, world.stand_in, smtp):
            sent, failed, errors = send_all(world.engine, notifications, now)
        box = smtp.count()
        send.note = (f"{sent:,} sent, {failed} failed{' ' + '; '.join(errors) if errors else ''}; the server "
                     f"received {box['mails']:,} ({box['repeated']} keys twice) for {box['recipients']} people; "
                     f"{sent / send.seconds if send.seconds else 0:,.1f} e-mails/s")
        line(send)
        client.close()
        result = {"route": routing, "push": push, "target": target, "calls": calls, "met": met, "enqueue": enqueue,
                  "send": send, "n": len(decided), "sent": sent}
    finally:
        stop_world(world, smtp)
    return result


def start_world(kind: str, name: str, seed: int, workdir: Path):
    """A fresh database, a fresh stand-in and SMTP server, the CRM's users and accounts pulled (untimed)."""
    from config.crm import load_crm_config
    from config.notifications import load_notifications
    from config.rulebook import load_rulebook
    from config.settings import CONFIG_DIR, get_settings
    from store.engine import make_engine
    from tasks import crm
    from tasks.routing import load_rules

    stand_in = StandIn(seed)
    smtp = SmtpServer()
    try:
        url = fresh_database(kind, workdir, name)
        engine = make_engine(url)
        config = load_crm_config(env=stand_in.info["env"])  # push.new_leads_owner: handoff (routing's owner)
        world = World(engine, stand_in, config, {"client_id": stand_in.info["client_id"],
                                                 "client_secret": stand_in.info["client_secret"]},
                      load_rules(get_settings()), datetime.fromisoformat(stand_in.info["clock"]))
        notifications = load_notifications(env={"HANDOFF_SMTP_HOST": smtp.info["host"],
                                                "HANDOFF_SMTP_PORT": str(smtp.info["port"]),
                                                "HANDOFF_NOTIFY_FROM": "handoff@handoff-demo.example"})
        client = world.client()
        crm.pull(engine, client, config, now=world.t0, run_id="bench-setup", rulebook=load_rulebook(CONFIG_DIR))
        client.close()
    except BaseException:
        smtp.stop()
        stand_in.stop()
        raise
    return world, smtp, notifications


def stop_world(world: World, smtp: SmtpServer) -> None:
    world.engine.dispose()
    smtp.stop()
    world.stand_in.stop()


# ---------------------------------------------------------------- part 2: open timers, some breached

@dataclass(frozen=True)
class Mix:
    """Which step each breached timer is due for: its state, how far past its moments `now` is, its reassignments."""

    remind: float = 0.10  # open, the reminder due, the due time ahead
    breach: float = 0.10  # reminded, past due, the reassignment ahead: breached and escalated
    reassign: float = 0.60  # past due and past the reassign time, open, reminded or breached: reassigned
    recycle: float = 0.20  # past the reassign time after the last reassignment allowed: recycled


def load_timers(world: World, t: int, breached: float, seed: int, now: datetime) -> Counter:
    """t leads at MQL, each assigned to a rep with a running SLA timer (the domain timer's JSON beside the columns, as
    store.routing.open_timers writes it); (1 - breached) of them due in the future, the others due for a step by
    `Mix`. The assignments wait for their owner to be written (the setup's push writes them); each was told (its
    notification is sent). Set-wise. Returns the timers by the step due."""
    from domain.routing_decision import Candidate, Owner, RoutingDecision, RuleTried
    from domain.sla import SlaSubject, SlaTimer, TimerState, timer_to_json
    from store.bulk import db_time, insert_rows
    from store.routing import directory, next_step_at
    from store.tables import Assignment, Notification, SlaTimerRow

    rng = random.Random(seed + 1)
    rules = world.rules
    with world.engine.connect() as conn:
        crm = directory(conn)
        hand_raisers = {lead for lead, in conn.exec_driver_sql("SELECT lead_id FROM activity WHERE type = 'demo_request'")}
        grades = dict(conn.exec_driver_sql("SELECT lead_id, fit_grade FROM lead_state").fetchall())
    reps = [r for r in rules.teams.reps if crm.active_user(r.email)]
    mix = Mix()
    due_steps = [("remind", mix.remind), ("breach", mix.breach), ("reassign", mix.reassign), ("recycle", mix.recycle)]
    kinds: Counter = Counter()
    hour = timedelta(hours=1)
    with world.engine.begin() as conn:
        stamp = db_time(conn)
        for start in range(1, t + 1, 20_000):
            assignments, timers, told = [], [], []
            for i in range(start, min(t, start + 19_999) + 1):
                rep = rng.choice(reps)
                user = crm.active_user(rep.email)
                owner = Owner(rep=rep.email, crm_user_id=user.crm_id, name=rep.name)
                policy = rules.sla.policy_for(SlaSubject(fit_grade=grades.get(i), hand_raise="demo_request"
                                                         if i in hand_raisers else None))
                late = rng.random() < breached
                step = weighted(rng, due_steps) if late else "none"
                kinds[step] += 1
                lapsed = tuple(r.email for r in rng.sample([r for r in reps if r is not rep], 2))
                reassignments, state, reminded = 0, TimerState.OPEN, None
                if step == "none":  # the next step (the reminder) ahead of now
                    opened = now - hour * rng.uniform(0.1, 20)
                    due = now + hour * rng.uniform(5, 72)
                elif step == "remind":  # the reminder past, the due time ahead
                    due = now + hour * float(policy.remind_before or 1) * rng.uniform(0.1, 0.9)
                    opened = due - hour * rng.uniform(24, 30)
                elif step == "breach":  # the due time past, the reassignment ahead
                    due, state = now - hour * float(policy.grace) * rng.uniform(0.1, 0.9), TimerState.REMINDED
                    opened = due - hour * rng.uniform(24, 30)
                else:  # the reassignment time past
                    due = now - hour * float(policy.grace) - hour * rng.uniform(1, 26)
                    opened = due - hour * rng.uniform(24, 30)
                    state = rng.choice([TimerState.OPEN, TimerState.REMINDED, TimerState.BREACHED]) \
                        if step == "reassign" else TimerState.BREACHED
                    reassignments = rng.choice([0, 1]) if step == "reassign" else policy.max_reassignments
                if state is not TimerState.OPEN and policy.remind_before:
                    reminded = due - hour * float(policy.remind_before)
                timer = SlaTimer(
                    lead_id=i, owner=owner, team=rep.home_team, policy=policy.name, opened_at=opened, due_at=due,
                    remind_at=due - hour * float(policy.remind_before or 0) if policy.remind_before else None,
                    reassign_at=due + hour * float(policy.grace), manager=rules.teams.manager_of(rep.email),
                    reassignments=reassignments, max_reassignments=policy.max_reassignments,
                    lapsed=lapsed[:reassignments], state=state, reminded_at=reminded,
                    breached_at=due if state is TimerState.BREACHED else None)
                path = (RuleTried("product line, a rep at work", "product_line", True, "bench",
                                  (Candidate(rep.email, rep.home_team, chosen=True),)),)
                decision = RoutingDecision(lead_id=i, email=f"lead{i}", rule="product line, a rep at work",
                                           kind="product_line", owner=owner, notify_only=False, decided_at=opened,
                                           path=path, team=rep.home_team)
                assignments.append((i, i, rep.email, user.crm_id, rep.name, rep.home_team, decision.rule, "routed",
                                    "product line, a rep at work: bench", json.dumps(decision.to_json()), False,
                                    stamp(opened), "bench-setup"))
                timers.append((i, i, rep.email, rep.home_team, policy.name, state.value, stamp(opened), stamp(due),
                               stamp(next_step_at(timer)), json.dumps(timer_to_json(timer), sort_keys=True)))
                told.append((f"routed:{i}", "routed", i, i, rep.email, "New lead", "-", stamp(opened), stamp(opened)))
            insert_rows(conn, Assignment.__table__, (
                "id", "lead_id", "owner_email", "owner_crm_id", "owner_name", "team", "rule", "kind", "reason", "path",
                "notify_only", "decided_at", "run_id"), assignments, conflict=("id",))
            insert_rows(conn, SlaTimerRow.__table__, (
                "lead_id", "assignment_id", "owner_email", "team", "policy", "state", "opened_at", "due_at",
                "next_step_at", "timer"), timers, conflict=("assignment_id",))
            insert_rows(conn, Notification.__table__, (
                "key", "kind", "lead_id", "assignment_id", "recipient", "subject", "body", "created_at", "sent_at"),
                told, conflict=("key",))
    return kinds


def sla_part(kind: str, t: int, breached: float, seed: int, workdir: Path) -> dict:
    from config.rulebook import load_rulebook
    from config.settings import CONFIG_DIR
    from tasks import crm
    from tasks.routing import Telling, tell_new_owners
    from tasks.sla import _plan, run_sla
    from store.routing import timers_to_look_at

    print(f"  2. {t:,} open timers, {breached:.0%} breached", flush=True)
    started = time.perf_counter()
    world, smtp, notifications = start_world(kind, "handoff_bench_sla", seed, workdir)
    result = {}
    try:
        now = world.t0 + timedelta(hours=2)
        load_leads(world, range(1, t + 1), seed, world.t0 - timedelta(days=4), queued=False)
        kinds = load_timers(world, t, breached, seed, now)
        settle(world.engine, ("lead", "activity", "stage_change", "assignment", "sla_timer", "notification"))
        loaded = time.perf_counter()
        # the leads' CRM records: one push creates them with their owners (Bulk API 2.0), one pull reads them back
        client = world.client()
        setup = crm.push(world.engine, client, world.config, now=world.t0)
        created = time.perf_counter()
        crm.pull(world.engine, client, world.config, now=world.t0, run_id="bench-setup",
                 rulebook=load_rulebook(CONFIG_DIR))
        client.close()
        settle(world.engine, ())
        due = ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()))
        print(f"    setup (untimed): {t:,} assigned leads with running timers (step due: {due}) loaded in "
              f"{loaded - started:.1f} s (the stand-in's start and a first pull included); their CRM records created "
              f"by one push ({setup.created:,} created, {sum(setup.failed.values())} failed) in "
              f"{created - loaded:.1f} s and read back by one pull in {time.perf_counter() - created:.1f} s",
              flush=True)
        if setup.created != t:
            raise RuntimeError(f"the setup push created {setup.created:,} of {t:,} records: {setup.failed}")

        scans = []
        for attempt in range(2):  # read only: rolled back
            profiler = None
            if Timed.profile_dir is not None and attempt == 0:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            with world.engine.connect() as conn:
                began = time.perf_counter()
                rows = timers_to_look_at(conn, now, world.rules.sla.contacted.counts_status)  # as _plan asks
                found = time.perf_counter()
                conn.rollback()
                scan = _plan(conn, world.rules, now)
                planned = time.perf_counter()
                conn.rollback()
            if profiler:
                profiler.disable()
                profiler.dump_stats(Timed.profile_dir / f"{Timed.prefix}scan.prof")
            scans.append((found - began, planned - found, len(rows), len(scan.moves)))
        query, plan, looked, moves = scans[0]
        print(f"    (a) the scan: timers_to_look_at {query:.2f} s ({looked:,} timers looked at), the whole planning "
              f"(_plan: the query again, the contact facts, the stages, each timer stepped) {plan:.2f} s, "
              f"{moves:,} timers with steps; again: {scans[1][0]:.2f} s and {scans[1][1]:.2f} s; "
              f"target _plan < 1 s: {'met' if plan < 1.0 else 'NOT met'}", flush=True)

        client = world.client()
        telling = Telling(notifications, client.instance_url)
        escalation = Step("run_sla (steps, events, notifications enqueued, reassignments routed, recycles)")
        with Timed(escalation, world.stand_in, client=client):
            summary = run_sla(world.engine, world.rules, now=now, run_id="bench", queue_ids=client.queue_ids,
                              telling=telling)
        with world.engine.connect() as conn:
            enqueued_steps = conn.exec_driver_sql("SELECT COUNT(*) FROM notification WHERE sent_at IS NULL"
                                                  ).scalar_one()
        steps = ", ".join(f"{k} {v:,}" for k, v in summary.steps.items())
        escalation.note = (f"looked at {summary.looked_at:,}; steps {steps}; escalated {summary.escalated:,}; "
                           f"{len(summary.reassigned_leads):,} reassigned, {len(summary.recycled_leads):,} recycled"
                           f"{', ' + str(len(summary.refused)) + ' refused' if summary.refused else ''}; "
                           f"{enqueued_steps:,} notifications enqueued")
        line(escalation)
        changed = summary.reassigned_leads + summary.recycled_leads
        push = Step("push of the new owners and stages")
        with Timed(push, world.stand_in, client=client):
            pushed = crm.push(world.engine, client, world.config, now=now, lead_ids=changed)
        target, how = push_target(len(changed), world.config)
        calls = push.total_calls + escalation.total_calls
        push.note = (f"{len(changed):,} changed leads: updated {pushed.updated:,}, created {pushed.created:,}, "
                     f"unchanged {pushed.unchanged:,}, failed {sum(pushed.failed.values())}; written as {how}")
        met = calls <= target and pushed.updated == len(changed) and not pushed.failed
        line(push, f"calls with the SLA's queue lookup {calls} <= ceil(k/200)+5 = {target}: "
                   f"{'met' if met else 'NOT met'}")
        enqueue = Step("enqueue the new owners' notifications (tell_new_owners)")
        with Timed(enqueue, world.stand_in):
            told = tell_new_owners(world.engine, world.rules, telling, now)
        enqueue.note = f"{told:,} enqueued"
        line(enqueue)
        send = Step("send every notification to the local SMTP server")
        with Timed(send, world.stand_in, smtp):
            sent, failed, errors = send_all(world.engine, notifications, now)
        box = smtp.count()
        send.note = (f"{sent:,} sent, {failed} failed{' ' + '; '.join(errors) if errors else ''}; the server "
                     f"received {box['mails']:,} ({box['repeated']} keys twice) for {box['recipients']} people; "
                     f"{sent / send.seconds if send.seconds else 0:,.1f} e-mails/s")
        line(send)
        whole = escalation.seconds + push.seconds + enqueue.seconds + send.seconds
        print(f"    (b) the whole escalation: {whole:.1f} s ({escalation.seconds + push.seconds + enqueue.seconds:.1f} s "
              f"without the sending)", flush=True)
        client.close()
        result = {"scan": scans[0], "scan_met": plan < 1.0, "run_sla": escalation, "push": push, "target": target,
                  "calls": calls, "met": met, "enqueue": enqueue, "send": send, "whole": whole, "k": len(changed),
                  "sent": sent}
    finally:
        stop_world(world, smtp)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqls", type=int, default=10_000)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--breached", type=float, default=0.05)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--parts", default="routing,sla", help="routing, sla, or both (comma-separated)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of each timed step into this folder")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mailbox", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.seed)
        return
    if args.mailbox:
        serve_mailbox()
        return
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if args.mqls < 1 or args.timers < 1 or not 0 <= args.breached <= 1 or not parts or parts - {"routing", "sla"}:
        parser.error("--mqls and --timers: at least 1; --breached: a share between 0 and 1; --parts: routing, sla")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        Timed.profile_dir = args.profile

    results = []
    with tempfile.TemporaryDirectory(prefix="handoff-bench-routing-") as tmp:
        for kind in [d.strip() for d in args.databases.split(",") if d.strip()]:
            print(f"{kind}:", flush=True)
            Timed.prefix = f"{kind}-routing-"
            routed = routing_part(kind, args.mqls, args.seed, Path(tmp)) if "routing" in parts else None
            Timed.prefix = f"{kind}-sla-"
            timed = sla_part(kind, args.timers, args.breached, args.seed, Path(tmp)) if "sla" in parts else None
            results.append((kind, routed, timed))

    print()
    routed = [(kind, r) for kind, r, _ in results if r]
    if routed:
        print(f"{args.mqls:,} MQLs routed: push target ceil(n/200)+5 = {math.ceil(args.mqls / 200) + 5} calls")
        print(f"{'database':10} {'route s':>8} {'leads/s':>8} {'push s':>7} {'calls':>5} {'met':>4} {'leads/s':>8} "
              f"{'enqueue s':>9} {'send s':>7} {'e-mails':>7} {'e-mails/s':>9}")
        for kind, r in routed:
            both = r["route"].seconds + r["push"].seconds
            print(f"{kind:10} {r['route'].seconds:>8.2f} {r['n'] / r['route'].seconds:>8,.0f} {r['push'].seconds:>7.2f} "
                  f"{r['calls']:>5} {'yes' if r['met'] else 'NO':>4} {r['n'] / both:>8,.0f} {r['enqueue'].seconds:>9.2f} "
                  f"{r['send'].seconds:>7.1f} {r['sent']:>7,} {r['sent'] / r['send'].seconds:>9.1f}")
        print("(the second leads/s: routed and written to the CRM)")
    timed = [(kind, s) for kind, _, s in results if s]
    if timed:
        print(f"{args.timers:,} open timers, {args.breached:.0%} breached: scan target under 1 s; push target "
              f"ceil(k/200)+5 calls for k changed records")
        print(f"{'database':10} {'query s':>7} {'scan s':>6} {'met':>4} {'run_sla s':>9} {'push s':>7} {'k':>6} "
              f"{'calls':>5} {'target':>6} {'met':>4} {'enqueue s':>9} {'send s':>7} {'e-mails':>7} {'whole s':>7}")
        for kind, s in timed:
            query, plan, _, _ = s["scan"]
            print(f"{kind:10} {query:>7.2f} {plan:>6.2f} {'yes' if s['scan_met'] else 'NO':>4} "
                  f"{s['run_sla'].seconds:>9.2f} {s['push'].seconds:>7.2f} {s['k']:>6,} {s['calls']:>5} "
                  f"{s['target']:>6} {'yes' if s['met'] else 'NO':>4} {s['enqueue'].seconds:>9.2f} "
                  f"{s['send'].seconds:>7.1f} {s['sent']:>7,} {s['whole']:>7.1f}")
    print("\ncalls = the CRM calls of the push with the queue lookup before it (the client signed in beforehand, as "
          "the flows' connect step does); met = within the target and every record written; query = "
          "timers_to_look_at alone; scan = the whole planning (tasks/sla.py _plan: the query, the contact facts, the "
          "stages, every timer looked at stepped); whole = run_sla, the push, the enqueueing and the sending.")


if __name__ == "__main__":
    main()
