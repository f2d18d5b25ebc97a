"""CPU time of processes, read from Linux's /proc, for benchmarks that share the machine with servers."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _stat(path: Path) -> tuple[int, float]:
    """(process group, CPU seconds used so far) from a /proc/<pid>/stat file."""
    # After the name in parentheses: state, ppid, pgrp, ..., utime (12th), stime (13th), in clock ticks.
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    return _stat(PROC / str(pid) / "stat")[1]


def group_cpu_seconds(group: int) -> float | None:
    """CPU seconds used so far by the processes of a process group; None where there is no /proc."""
    if not (PROC / "self" / "stat").exists():
        return None
    total = 0.0
    for path in PROC.glob("[0-9]*/stat"):
        try:
            pgrp, seconds = _stat(path)
        except OSError:
            continue  # the process ended meanwhile
        if pgrp == group:
            total += seconds
    return total


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all the machine's cores so far, from /proc/stat."""
    values = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)
