"""Loading the funnel's targets (funnel.yaml): the month's stage counts, the time to first contact, SLA compliance and
time to customer, the timezone months are counted in and the months the daily report covers; every problem named
by file, line and what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import tzinfo
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.settings import CONFIG_DIR
from config.yaml_checks import ConfigProblems, FileProblems, line_of, read_document, shown
from domain.funnel import FUNNEL_STAGES, WORKED_EXAMPLE, FunnelTargets
from domain.lifecycle import Stage

FUNNEL_FILE = CONFIG_DIR / "funnel.yaml"

TOP_KEYS = ("timezone", "months", "targets")
STAGE_KEYS = {"leads": Stage.LEAD, "mqls": Stage.MQL, "sqls": Stage.SQL, "opportunities": Stage.OPPORTUNITY,
              "customers": Stage.CUSTOMER}
TARGET_KEYS = (*STAGE_KEYS, "first_contact_hours", "contacted_in_time", "lead_to_customer_days")
MOST_MONTHS = 36
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class FunnelConfigError(ConfigProblems):
    """funnel.yaml is invalid."""


@dataclass(frozen=True)
class FunnelConfig:
    targets: FunnelTargets = WORKED_EXAMPLE
    zone: tzinfo = field(default_factory=lambda: ZoneInfo("UTC"))
    months: int = 6
    source: str = field(default="", compare=False)


def load_funnel(path: Path = FUNNEL_FILE, text: str | None = None) -> FunnelConfig:
    """The funnel's targets and months of `path` (or of `text`, named `path`); what the file leaves out is the
    worked example's. Raises FunnelConfigError listing every problem found."""
    problems = FileProblems(path, FunnelConfigError)
    document = read_document(path, text)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise FunnelConfigError([f"{path}: expected a mapping with targets"])
    problems.keys(document, TOP_KEYS, "the funnel file")
    zone = _zone(problems, document)
    months = _months(problems, document)
    targets = _targets(problems, document)
    problems.raise_any()
    return FunnelConfig(targets, zone, months, source=str(path))


def _zone(problems: FileProblems, document: dict) -> tzinfo:
    name = problems.text(document.get("timezone", "UTC"), line_of(document, "timezone"), "timezone")
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        problems.add(line_of(document, "timezone"), f"timezone {name!r} is not a timezone name (UTC, Europe/Berlin, "
                                                    "America/New_York)")
        return ZoneInfo("UTC")


def _months(problems: FileProblems, document: dict) -> int:
    value = document.get("months", 6)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MOST_MONTHS:
        problems.add(line_of(document, "months"), f"months must be a whole number from 1 to {MOST_MONTHS}, not "
                                                  f"{shown(value)}")
        return 6
    return value


def _targets(problems: FileProblems, document: dict) -> FunnelTargets:
    node = problems.mapping(document.get("targets") or {}, line_of(document, "targets"), "targets")
    if node is None:
        return WORKED_EXAMPLE
    problems.keys(node, TARGET_KEYS, "targets")
    counts = {stage: _count(problems, node, key, WORKED_EXAMPLE.per_month[stage]) for key, stage in STAGE_KEYS.items()}
    names = {stage: key for key, stage in STAGE_KEYS.items()}
    for before, stage in zip(FUNNEL_STAGES, FUNNEL_STAGES[1:]):
        if counts[stage] > counts[before]:
            problems.add(line_of(node, names[stage]), f"targets {names[stage]} {counts[stage]} is more than "
                                                      f"{names[before]} {counts[before]}: a funnel narrows, each stage "
                                                      "at most the one before")
    hours = problems.hours(node, "first_contact_hours", "targets", Decimal(str(WORKED_EXAMPLE.first_contact_hours)))
    return FunnelTargets(counts, float(hours), _share(problems, node, "contacted_in_time"), _days(problems, node))


def _count(problems: FileProblems, node: dict, key: str, default: int) -> int:
    value = node.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
        problems.add(line_of(node, key), f"targets {key} must be a whole number of leads a month, at least 1, not "
                                         f"{shown(value)}")
        return default
    return value


def _days(problems: FileProblems, node: dict) -> float:
    value = node.get("lead_to_customer_days", WORKED_EXAMPLE.lead_to_customer_days)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3650:
        problems.add(line_of(node, "lead_to_customer_days"), "targets lead_to_customer_days must be a number of days "
                                                             f"above zero (at most ten years), not {shown(value)}")
        return WORKED_EXAMPLE.lead_to_customer_days
    return float(value)


def _share(problems: FileProblems, node: dict, key: str) -> float:
    """A share written as a percentage ("90%") or a fraction (0.9)."""
    value = node.get(key, WORKED_EXAMPLE.contacted_in_time)
    percent = _PERCENT.match(value) if isinstance(value, str) else None
    share = float(percent.group(1)) / 100 if percent else value
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        problems.add(line_of(node, key), f"targets {key} must be a share above 0 and at most 100% (\"90%\" or 0.9), "
                                         f"not {shown(value)}")
        return WORKED_EXAMPLE.contacted_in_time
    return float(share)
