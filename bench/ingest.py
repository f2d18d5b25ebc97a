"""Ingestion benchmark: activities per second end to end (stand-ins over HTTP -> ingest flow -> database)
on SQLite and PostgreSQL, beside the ceiling of merely fetching and parsing the same pages.

    python -m bench.ingest [--people 100000] [--activities 1000000] [--databases sqlite,postgresql]

The stand-ins run in their own process; each measured phase runs in a fresh process, so its peak
memory (max RSS) is its own. The ceiling replays, with a bare `requests` session and `json` parsing,
exactly the HTTP requests the first end-to-end run made (recorded as they were sent).
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

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN = os.environ.get("HANDOFF_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- phases (each in its own process)

def phase_e2e(record: str | None) -> dict:
    """Run the ingest flow once against the configured database; optionally record every request sent."""
    sent: list[tuple] = []
    if record:
        import requests

        original = requests.Session.send

        def recording_send(self, request, **kwargs):
            response = original(self, request, **kwargs)
            if response.status_code == 200:
                sent.append((request.method, request.url, dict(request.headers), request.body))
            return response

        requests.Session.send = recording_send

    from flows.ingest import ingest

    started = time.perf_counter()
    summary = ingest()
    seconds = time.perf_counter() - started
    if record:
        Path(record).write_bytes(pickle.dumps(sent))
    fetched = sum(s.fetched for s in summary.sources)
    return {
        "phase": "e2e",
        "fetched": fetched,
        "new": sum(s.new for s in summary.sources),
        "seconds": round(seconds, 2),
        "per_second": round(fetched / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
        "sources": {s.source: {"fetched": s.fetched, "seconds": s.seconds} for s in summary.sources},
        "requests": len(sent) if record else None,
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
        "requests": len(sent),
        "errors": errors[:5],
        "seconds": round(seconds, 2),
        "per_second": round(fetched / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
    }


# ---------------------------------------------------------------- the driver

def start_sandbox(people: int, activities: int, seed: int) -> tuple[subprocess.Popen, dict[str, str]]:
    command = [sys.executable, "-m", "handoff.cli", "sandbox", "--people", str(people), "--activities", str(activities),
               "--seed", str(seed), "--port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    env: dict[str, str] = {}
    for line in process.stdout:
        if line.startswith("export "):
            name, value = line[len("export "):].strip().split("=", 1)
            env[name] = value
        if line.startswith("Serving"):
            break
    if not env:
        raise RuntimeError("the sandbox did not start")
    return process, env


def fresh_database(kind: str, workdir: Path) -> str:
    from sqlalchemy import create_engine, text

    from store.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS handoff_bench WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE handoff_bench"))
        url = admin.url.set(database="handoff_bench").render_as_string(hide_password=False)
        admin.dispose()
    upgrade(url)
    return url


def run_phase(args: list[str], env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.ingest", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"phase {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--activities", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--phase", choices=["e2e", "ceiling"], help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    parser.add_argument("--fetched", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "e2e":
        print(json.dumps(phase_e2e(args.record)))
        return
    if args.phase == "ceiling":
        print(json.dumps(phase_ceiling(args.record, args.fetched)))
        return

    from handoff.prefect_server import LocalPrefectServer

    workdir = Path(tempfile.mkdtemp(prefix="handoff-bench-"))
    print(f"world: {args.people:,} people, {args.activities:,} activities (seed {args.seed}); starting stand-ins ...", flush=True)
    started = time.perf_counter()
    sandbox, sandbox_env = start_sandbox(args.people, args.activities, args.seed)
    print(f"stand-ins up in {time.perf_counter() - started:.0f}s; starting a local Prefect server ...", flush=True)
    server = LocalPrefectServer(workdir / "prefect").start()
    record = str(workdir / "requests.pickle")
    results: list[tuple[str, dict]] = []
    try:
        base_env = {**os.environ, **sandbox_env, "PREFECT_API_URL": server.api_url, "HANDOFF_HOME": str(workdir),
                    "PREFECT_LOGGING_LEVEL": "WARNING"}
        first = True
        for kind in [d.strip() for d in args.databases.split(",") if d.strip()]:
            url = fresh_database(kind, workdir)
            env = {**base_env, "HANDOFF_DATABASE_URL": url}
            print(f"end to end into {kind} ...", flush=True)
            result = run_phase(["--phase", "e2e", *(["--record", record] if first else [])], env)
            results.append((f"end to end -> {kind}", result))
            if first:
                print("ceiling: replaying the same requests, fetch + json parse only ...", flush=True)
                ceiling = run_phase(["--phase", "ceiling", "--record", record, "--fetched", str(result["fetched"])], env)
                results.append(("ceiling: fetch + parse", ceiling))
                first = False
    finally:
        server.stop()
        sandbox.terminate()
        sandbox.wait(timeout=30)

    ceiling = next((r for name, r in results if name.startswith("ceiling")), None)
    print()
    print(f"{'phase':28} {'activities':>11} {'seconds':>8} {'activities/s':>13} {'of ceiling':>11} {'peak RSS MB':>12}")
    for name, r in results:
        share = f"{r['per_second'] / ceiling['per_second']:.2f}x" if ceiling else "-"
        count = r.get("fetched") or (ceiling and results[0][1]["fetched"])
        print(f"{name:28} {count:>11,} {r['seconds']:>8.1f} {r['per_second']:>13,} {share:>11} {r['peak_rss_mb']:>12}")
    for name, r in results:
        if r.get("sources"):
            per = ", ".join(f"{k} {v['fetched']:,} in {v['seconds']:.0f}s" for k, v in r["sources"].items())
            print(f"  {name}: {per}")
    if ceiling and ceiling["errors"]:
        print(f"  ceiling replay errors: {ceiling['errors']}")


if __name__ == "__main__":
    main()
