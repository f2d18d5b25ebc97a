"""Ingestion benchmark: activities per second end to end (stand-ins over HTTP -> ingest flow -> database)
on SQLite and PostgreSQL, beside the ceiling of merely fetching and parsing the same pages.

    python -m bench.ingest [--people 100000] [--activities 1000000] [--databases sqlite,postgresql]

Each stand-in runs in its own process; each measured phase runs in a fresh process, so its peak
memory (max RSS, the largest of the phase process and its worker processes) is its own, and CPU time
is counted for the phase (with its workers) and for the stand-ins during it. The connectors-alone
phase records every request it sends; the ceiling replays exactly those with a bare `requests`
session and JSON parsing.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from bench.databases import fresh_database
from bench.proc import machine_jiffies, process_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of the largest worker process it waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, workers) / 1024


def cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


# ---------------------------------------------------------------- phases (each in its own process)

def _record_requests(sent: list[tuple]) -> None:
    """Keep every successful request as it went on the wire, for the ceiling to replay."""
    import requests

    original = requests.Session.send

    def recording_send(self, request, **kwargs):
        response = original(self, request, **kwargs)
        if response.status_code == 200:
            sent.append((request.method, request.url, dict(request.headers), request.body))
        return response

    requests.Session.send = recording_send


def phase_connectors(record: str) -> dict:
    """The connectors alone, one thread per source: fetch, parse and normalize, nothing stored."""
    from config.settings import get_settings
    from config.sources import load_sources
    from connectors.marketing import build_source
    from tasks.secrets import resolve_secrets

    sent: list[tuple] = []
    _record_requests(sent)
    counts: dict[str, int] = {}

    def drain(config) -> None:
        source = build_source(config, resolve_secrets(config))
        counts[config.name] = sum(page.fetched for page in source.pages(None))
        source.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=drain, args=(c,)) for c in load_sources(get_settings().sources_file)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    Path(record).write_bytes(pickle.dumps(sent))
    fetched = sum(counts.values())
    return {"phase": "connectors", "fetched": fetched, "seconds": round(seconds, 2), "per_second": round(fetched / seconds),
            "peak_rss_mb": round(peak_rss_mb()), "cpu_seconds": round(cpu_seconds(), 1), "requests": len(sent)}


def phase_e2e() -> dict:
    """Run the ingest flow once against the configured database."""
    from flows.ingest import ingest

    started = time.perf_counter()
    summary = ingest()
    seconds = time.perf_counter() - started
    cpu = cpu_seconds()
    fetched = sum(s.fetched for s in summary.sources)
    return {
        "phase": "e2e",
        "fetched": fetched,
        "new": sum(s.new for s in summary.sources),
        "seconds": round(seconds, 2),
        "per_second": round(fetched / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
        "cpu_seconds": round(cpu, 1),
        "sources": {s.source: {"fetched": s.fetched, "seconds": s.seconds} for s in summary.sources},
    }


def phase_ceiling(record: str, fetched: int) -> dict:
    """Replay the recorded requests, one thread per stand-in as the flow runs one task per source."""
    import requests

    sent = pickle.loads(Path(record).read_bytes())
    by_server: dict[str, list[tuple]] = defaultdict(list)
    for method, url, headers, body in sent:
        by_server[url.split("/")[2]].append((method, url, headers, body))
    errors: list[str] = []

    def replay(requests_for_server: list[tuple]) -> None:
        session = requests.Session()
        for method, url, headers, body in requests_for_server:
            response = session.request(method, url, headers=headers, data=body, timeout=60)
            if response.status_code != 200:
                errors.append(f"{method} {url.split('?')[0]}: {response.status_code}")
            response.json()

    started = time.perf_counter()
    threads = [threading.Thread(target=replay, args=(group,)) for group in by_server.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {
        "phase": "ceiling",
        "cpu_seconds": round(cpu_seconds(), 1),
        "requests": len(sent),
        "errors": errors[:5],
        "seconds": round(seconds, 2),
        "per_second": round(fetched / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
    }


# ---------------------------------------------------------------- the driver

def start_sandbox(people: int, activities: int, seed: int) -> tuple[list[subprocess.Popen], dict[str, str]]:
    """One stand-in process per tool over the same world, as the real services would not share one
    interpreter (and its lock) with each other."""
    from sandbox.world import TOOLS

    end = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime())
    processes = [
        subprocess.Popen([sys.executable, "-m", "handoff.cli", "sandbox", "--people", str(people), "--activities",
                          str(activities), "--seed", str(seed), "--port", "0", "--tool", tool, "--end", end],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
        for tool in TOOLS
    ]
    env: dict[str, str] = {}
    for process in processes:
        found = {}
        for line in process.stdout:
            if line.startswith("export "):
                name, value = line[len("export "):].strip().split("=", 1)
                found[name] = value
            if line.startswith("Serving"):
                break
        if not found:
            stop_sandbox(processes)
            raise RuntimeError("a stand-in did not start")
        env.update(found)
    return processes, env


def stop_sandbox(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def run_phase(args: list[str], env: dict[str, str], sandbox_pids: list[int]) -> dict:
    server_before = sum(process_cpu_seconds(pid) for pid in sandbox_pids)
    busy_before, total_before = machine_jiffies()
    result = subprocess.run([sys.executable, "-m", "bench.ingest", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"phase {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    measured = json.loads(lines[-1])
    measured["stand_in_cpu_seconds"] = round(sum(process_cpu_seconds(pid) for pid in sandbox_pids) - server_before, 1)
    busy_after, total_after = machine_jiffies()
    measured["machine_busy"] = round((busy_after - busy_before) / max(1, total_after - total_before), 2)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--activities", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--phase", choices=["connectors", "e2e", "ceiling"], help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    parser.add_argument("--fetched", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "connectors":
        print(json.dumps(phase_connectors(args.record)))
        return
    if args.phase == "e2e":
        print(json.dumps(phase_e2e()))
        return
    if args.phase == "ceiling":
        print(json.dumps(phase_ceiling(args.record, args.fetched)))
        return

    from handoff.prefect_server import LocalPrefectServer

    workdir = Path(tempfile.mkdtemp(prefix="handoff-bench-"))
    print(f"world: {args.people:,} people, {args.activities:,} activities (seed {args.seed}); starting stand-ins ...", flush=True)
    started = time.perf_counter()
    sandbox, sandbox_env = start_sandbox(args.people, args.activities, args.seed)
    stand_ins = [process.pid for process in sandbox]
    print(f"stand-ins up in {time.perf_counter() - started:.0f}s; starting a local Prefect server ...", flush=True)
    server = LocalPrefectServer(workdir / "prefect").start()
    record = str(workdir / "requests.pickle")
    results: list[tuple[str, dict]] = []
    try:
        base_env = {**os.environ, **sandbox_env, "PREFECT_API_URL": server.api_url, "HANDOFF_HOME": str(workdir),
                    "PREFECT_LOGGING_LEVEL": "WARNING"}
        print("connectors alone (fetch + parse + normalize), recording the requests ...", flush=True)
        connectors = run_phase(["--phase", "connectors", "--record", record], base_env, stand_ins)
        print(f"  {connectors}", flush=True)
        print("ceiling: replaying the same requests, fetch + json parse only ...", flush=True)
        ceiling = run_phase(["--phase", "ceiling", "--record", record, "--fetched", str(connectors["fetched"])],
                            base_env, stand_ins)
        print(f"  {ceiling}", flush=True)
        results += [("ceiling: fetch + parse", ceiling), ("connectors: + normalize", connectors)]
        for kind in [d.strip() for d in args.databases.split(",") if d.strip()]:
            env = {**base_env, "HANDOFF_DATABASE_URL": fresh_database(kind, workdir, "handoff_bench")}
            print(f"end to end into {kind} ...", flush=True)
            result = run_phase(["--phase", "e2e"], env, stand_ins)
            results.append((f"end to end -> {kind}", result))
            print(f"  {result}", flush=True)
    finally:
        server.stop()
        stop_sandbox(sandbox)

    ceiling = results[0][1]
    print()
    print(f"{'phase':26} {'activities':>11} {'seconds':>8} {'activities/s':>13} {'of ceiling':>11} "
          f"{'peak RSS MB':>12} {'client CPU s':>13} {'stand-in CPU s':>15} {'machine busy':>13}")
    for name, r in results:
        count = r.get("fetched") or results[1][1]["fetched"]
        print(f"{name:26} {count:>11,} {r['seconds']:>8.1f} {r['per_second']:>13,} "
              f"{r['per_second'] / ceiling['per_second']:>10.2f}x {r['peak_rss_mb']:>12} "
              f"{r.get('cpu_seconds', '-'):>13} {r['stand_in_cpu_seconds']:>15} {r['machine_busy']:>12.0%}")
    for name, r in results:
        if r.get("sources"):
            per = ", ".join(f"{k} {v['fetched']:,} in {v['seconds']:.0f}s" for k, v in r["sources"].items())
            print(f"  {name}: {per}")
    if ceiling["errors"]:
        print(f"  ceiling replay errors: {ceiling['errors']}")


if __name__ == "__main__":
    main()
