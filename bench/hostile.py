"""Hostile-input benchmark: a JSON Lines file with a bad line every 1,000 ingests as completely, and nearly as
fast, as the same file clean.

    python -m bench.hostile [--lines 100000] [--every 1000] [--databases sqlite,postgresql] [--rounds 2]

Each round ingests the clean file and the hostile one into fresh databases, in turn, through the ingest path a
scheduled run takes (the source read in a child process of its own, batches written as they fill); it prints
the seconds, lines per second, the hostile file's speed as a share of the clean one's, and what was stored and
quarantined, checked against what the files hold. The bad lines cycle through the kinds that once failed a
whole batch: nesting past the parser, numbers past a double or the column, NaN, NUL in text, bytes that are
not UTF-8, a lone surrogate, zero and negative epochs, keys too long, a 2,000-character page URL (stored).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.databases import fresh_database

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
# (bad line, whether its activity is stored (a refused person or a long asset leaves it in), whether it is quarantined)
BAD_KINDS: list[tuple[bytes, bool, bool]] = [
    (b'{"id": "bad-%d", "email": "x@acme.example", "type": "page_view", "p": ' + b"[" * 2000 + b"]" * 2000 + b"}", False, True),
    (b'{"id": "bad-%d", "email": "x@acme.example", "type": "page_view", "occurred_at": 1e400}', False, True),
    (b'{"id": "bad-%d", "email": "x@acme.example", "type": "page_view", "occurred_at": NaN}', False, True),
    (b'{"id": "bad-%d", "email": "x\\u0000@acme.example", "type": "page_view", "occurred_at": "2026-11-01T10:00:00Z"}',
     False, True),
    (b'{"id": "bad-%d", "email": "caf\xe9@acme.example", "type": "page_view", "occurred_at": "2026-11-01T10:00:00Z"}',
     False, True),
    (b'{"id": "bad-%d", "email": "x@acme.example", "type": "page_view", "asset": "\\ud800", '
     b'"occurred_at": "2026-11-01T10:00:00Z"}', False, True),
    (b'{"id": "bad-%d", "email": "x@acme.example", "type": "page_view", "occurred_at": 0}', False, True),
    (b'{"id": "bad-%d", "email": "x@acme.example", "type": "page_view", "occurred_at": -86400}', False, True),
    (b'{"id": "bad-%d' + b"x" * 250 + b'", "email": "x@acme.example", "type": "page_view", '
     b'"occurred_at": "2026-11-01T10:00:00Z"}', False, True),
    (b'{"id": "bad-%d", "email": "big-%d@acme.example", "type": "page_view", "company_size": 12345678901234, '
     b'"occurred_at": "2026-11-01T10:00:00Z"}', True, True),
    (b'{"id": "bad-%d", "email": "name-%d@acme.example", "type": "page_view", "first_name": "A\\u0000", '
     b'"occurred_at": "2026-11-01T10:00:00Z"}', True, True),
    (b'{"id": "bad-%d", "email": "url-%d@acme.example", "type": "page_view", "asset": "/p?' + b"u=1&" * 500 +
     b'", "occurred_at": "2026-11-01T10:00:00Z"}', True, False),
]


def good_line(n: int) -> bytes:
    return json.dumps({
        "id": f"a-{n}", "email": f"person-{n % 20000}@acme.example", "type": ("page_view", "email_open", "email_click")[n % 3],
        "occurred_at": (NOW - timedelta(minutes=n)).isoformat(), "asset": f"/pages/{n % 300}", "campaign": "Q4 nurture",
        "first_name": "Ada", "company": f"Company {n % 5000}", "company_size": 250, "title": "VP Sales",
    }).encode()


def write_files(folder: Path, lines: int, every: int) -> tuple[Path, Path, int, int]:
    """The clean file and the hostile one (the same lines, with a bad one after every `every`), and how many of
    the bad lines are meant to be stored and quarantined."""
    clean, hostile = folder / "clean", folder / "hostile"
    clean.mkdir()
    hostile.mkdir()
    stored_bad = quarantined_bad = 0
    with (clean / "export.jsonl").open("wb") as c, (hostile / "export.jsonl").open("wb") as h:
        for n in range(lines):
            line = good_line(n) + b"\n"
            c.write(line)
            h.write(line)
            if (n + 1) % every == 0:
                bad, stored, quarantined = BAD_KINDS[(n // every) % len(BAD_KINDS)]
                h.write(bad.replace(b"%d", str(n).encode()) + b"\n")
                stored_bad += stored
                quarantined_bad += quarantined
    return clean, hostile, stored_bad, quarantined_bad


def ingest(kind: str, folder: Path, workdir: Path, name: str) -> tuple[float, object, int, int]:
    from config.settings import Settings
    from config.sources import SourceConfig
    from sqlalchemy import func, select

    from store.engine import get_engine
    from store.tables import Activity, Quarantine
    from tasks.source_ingest import ingest_source_once

    url = fresh_database(kind, workdir, name)
    config = SourceConfig(name="files", kind="jsonl", path=str(folder))
    started = time.perf_counter()
    summary = ingest_source_once(config, {}, now=NOW, run_id="bench", settings=Settings(database_url=url))
    seconds = time.perf_counter() - started
    engine = get_engine(url)
    with engine.connect() as conn:
        activities = conn.execute(select(func.count()).select_from(Activity.__table__)).scalar_one()
        quarantined = conn.execute(select(func.count()).select_from(Quarantine.__table__)).scalar_one()
    engine.dispose()
    return seconds, summary, activities, quarantined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="handoff-bench-hostile-") as tmp:
        workdir = Path(tmp)
        clean, hostile, stored_bad, quarantined_bad = write_files(workdir, args.lines, args.every)
        bad_lines = args.lines // args.every
        print(f"{args.lines:,} good lines; the hostile file adds {bad_lines} bad ones ({len(BAD_KINDS)} kinds in turn: "
              f"{stored_bad} stored, {quarantined_bad} quarantined, a refused person's activity being both)\n")
        print(f"{'database':10} {'round':>5} {'clean s':>8} {'hostile s':>9} {'clean lines/s':>13} "
              f"{'hostile lines/s':>15} {'hostile/clean':>13}  complete")
        for kind in args.databases.split(","):
            for round_ in range(1, args.rounds + 1):
                clean_s, clean_summary, clean_rows, _ = ingest(kind, clean, workdir, f"bench_clean_{round_}")
                bad_s, summary, rows, quarantined = ingest(kind, hostile, workdir, f"bench_hostile_{round_}")
                complete = (summary.status == "ok" and clean_rows == args.lines and rows == args.lines + stored_bad
                            and quarantined == quarantined_bad)
                clean_rate = args.lines / clean_s
                bad_rate = (args.lines + bad_lines) / bad_s
                print(f"{kind:10} {round_:>5} {clean_s:>8.2f} {bad_s:>9.2f} {clean_rate:>13,.0f} {bad_rate:>15,.0f} "
                      f"{bad_rate / clean_rate:>12.0%}  {'yes' if complete else 'NO'}: {rows:,} stored, "
                      f"{quarantined} quarantined")


if __name__ == "__main__":
    main()
