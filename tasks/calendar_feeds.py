"""Reps' out-of-office calendar feeds (a rep's `ooo_calendar` given as a URL): read by the route-leads flow every
so often and kept, so that every flow that routes, reassigns or counts a rep's time sees the absences of their last
good read. A feed that fails keeps its last good read counting, and says so in the logs and the run's summary."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine

from config.settings import get_settings
from connectors.calendar_feed import feed_host, read_feed
from connectors.http import ConnectorError
from domain.teams import Absence, Rep, SalesTeams, absence_from_json, absence_to_json, parse_ical_absences
from store import calendar_feeds as store
from store.calendar_feeds import FeedRead
from store.engine import get_engine
from tasks.markdown import cell

log = logging.getLogger("handoff.routing")

HORIZON = timedelta(days=400)  # how far ahead an endless recurring absence is read


class FeedsSummary(BaseModel):
    feeds: int = 0  # reps with a feed
    read: int = 0  # read by this run
    absences: int = 0  # of the reps with a feed, counting now
    failing: dict[str, str] = Field(default_factory=dict)  # rep -> the error of their feed's last try


def url_digest(url: str) -> str:
    return hashlib.sha256(url.strip().encode()).hexdigest()


def current_reads(conn: Connection, teams: SalesTeams) -> list[tuple[Rep, FeedRead | None]]:
    """Each rep with a feed, and the stored read of the address the teams file gives now (None: never read, or
    read from another address, whose absences no longer count)."""
    reps = [rep for rep in teams.reps if rep.ooo_calendar_url]
    stored = store.feed_reads(conn) if reps else {}
    current = lambda read, rep: read is not None and read.url_digest == url_digest(rep.ooo_calendar_url)  # noqa: E731
    return [(rep, stored[rep.email] if current(stored.get(rep.email), rep) else None) for rep in reps]


def refresh_feeds(engine: Engine, teams: SalesTeams, *, now: datetime, every: timedelta,
                  read: Callable[[str], str] = read_feed) -> FeedsSummary:
    """Read again each feed last tried `every` ago or more, or whose address changed; keep what each read found."""
    with engine.connect() as conn:
        feeds = current_reads(conn, teams)
    fresh = {rep.email: _read(rep, teams, before, now, read)
             for rep, before in feeds if before is None or now - before.tried_at >= every}
    if fresh:
        with engine.begin() as conn:
            store.save_feed_reads(conn, list(fresh.values()))
    rows = [fresh.get(rep.email) or before for rep, before in feeds]
    return FeedsSummary(feeds=len(feeds), read=len(fresh), absences=sum(len(json.loads(r.absences)) for r in rows),
                        failing={r.rep_email: r.error for r in rows if r.error})


def _read(rep: Rep, teams: SalesTeams, before: FeedRead | None, now: datetime,
          read: Callable[[str], str]) -> FeedRead:
    digest = url_digest(rep.ooo_calendar_url)
    try:
        text = read(rep.ooo_calendar_url)
        absences = parse_ical_absences(text, teams.calendar_of(rep).zone, horizon=(now + HORIZON).date())
    except (ConnectorError, ValueError) as exc:  # ValueError: no absence could be read from its text
        log.warning("Out-of-office feed of %s not read (%s); %s", rep.email, exc,
                    "its last good read still counts" if before and before.read_at else "no absence of it counts yet")
        return FeedRead(rep.email, digest, before.absences if before else "[]", before.read_at if before else None,
                        now, str(exc), before.failing_since if before and before.failing_since else now)
    log.info("Out-of-office feed of %s read from %s: %d absences", rep.email, feed_host(rep.ooo_calendar_url),
             len(absences))
    return FeedRead(rep.email, digest, json.dumps([absence_to_json(a) for a in absences]), now, now)


def with_feed_absences(engine: Engine, teams: SalesTeams) -> SalesTeams:
    """The organisation with each feed's absences (of its last good read of the address in the file) added."""
    if not any(rep.ooo_calendar_url for rep in teams.reps):
        return teams
    with engine.connect() as conn:
        return teams.with_absences(feed_absences(current_reads(conn, teams)))


def feed_absences(feeds: list[tuple[Rep, FeedRead | None]]) -> dict[str, list[Absence]]:
    return {rep.email: [absence_from_json(a) for a in json.loads(row.absences)] for rep, row in feeds if row}


def feed_reads_markdown(feeds: list[tuple[Rep, FeedRead | None]]) -> str:
    """Each feed as last read (current_reads), for `handoff teams check`."""
    lines = ["## Out-of-office calendar feeds", "", "| rep | from | last good read | absences | failing |",
             "|---|---|---|---:|---|"]
    for rep, row in feeds:
        read_at = f"{row.read_at:%Y-%m-%d %H:%M} UTC" if row and row.read_at else "never"
        failing = f"since {row.failing_since:%Y-%m-%d %H:%M} UTC: {row.error}" if row and row.error else ""
        absences = len(json.loads(row.absences)) if row else 0
        lines.append(f"| {cell(rep.email)} | {cell(feed_host(rep.ooo_calendar_url))} | {read_at} | {absences} | "
                     f"{cell(failing)} |")
    return "\n".join(lines) + "\n\nThe route-leads flow reads them; their absences are in the reps' table above.\n"


@task(cache_policy=NO_CACHE)
def read_calendar_feeds(now: datetime) -> FeedsSummary:
    from config.teams import load_teams

    settings = get_settings()
    return refresh_feeds(get_engine(settings.resolved_database_url()), load_teams(settings.teams_file), now=now,
                         every=timedelta(minutes=settings.ooo_feed_refresh_minutes))
