"""Reps' out-of-office calendar feeds given as URLs: read over real HTTP by the route-leads flow's task, kept in the
database, counted by every flow that routes, and never lost or leaked when a feed fails."""

from __future__ import annotations

import logging
import re
import shutil
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config.settings import CONFIG_DIR, Settings
from config.teams import load_teams
from connectors.calendar_feed import feed_url, read_feed
from connectors.http import ConnectorError
from domain.business_hours import UTC
from domain.health import FeedFacts
from tasks.calendar_feeds import refresh_feeds, with_feed_absences
from tasks.health import gather_facts
from tasks.routing import load_rules
from tasks.routing_report import feeds_markdown

DATA = Path(__file__).parent / "data" / "teams"
REP = "jordan.blake@handoff-demo.example"  # in New York
SECRET_PATH = "/private-3f9a1c77e0/basic.ics"  # a private calendar address: its path is its token
ON_VACATION = datetime(2026, 8, 10, 12, tzinfo=UTC)  # the feed's all-day "Vacation", 3 to 14 August
NOW = datetime(2026, 7, 1, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Calendar(BaseHTTPRequestHandler):
    """Serves `body` at SECRET_PATH with `status`, as a calendar host does; counts the reads."""

    body: bytes = (DATA / "ooo.ics").read_bytes()
    status = 200
    reads = 0

    def do_GET(self):  # noqa: N802 - the stdlib's name
        type(self).reads += 1
        status = self.status if self.path == SECRET_PATH else 404
        self.send_response(status)
        self.send_header("Content-Type", "text/calendar; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def calendar():
    handler = type("Host", (Calendar,), {"reads": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
    yield handler
    server.shutdown()
    server.server_close()


def teams_with_feed(folder: Path, url: str) -> Path:
    """The shipped teams file with the rep's feed at `url`."""
    folder.mkdir(exist_ok=True)
    path = folder / "teams.yaml"
    shutil.copy(CONFIG_DIR / "teams.yaml", path)
    text = path.read_text()
    anchor = f"  - email: {REP}\n"
    assert anchor in text
    path.write_text(text.replace(anchor, f"{anchor}    ooo_calendar: {url}\n", 1))
    return path


def test_a_rep_on_vacation_in_their_feed_is_out_of_office_for_every_flow_that_loads_the_rules(
        engine, calendar, tmp_path):
    path = teams_with_feed(tmp_path, calendar.url)
    teams = load_teams(path)
    assert not teams.is_out_of_office(REP, ON_VACATION)  # the file alone says nothing of it

    read = refresh_feeds(engine, teams, now=NOW, every=HOUR)

    assert (read.feeds, read.read, read.failing) == (1, 1, {})
    assert read.absences == 6  # as the file of it reads (test_teams_config)
    merged = load_rules(Settings(teams_file=path), engine).teams  # as routing, the SLA flow and hand-off-now do
    assert merged.is_out_of_office(REP, ON_VACATION)
    assert not merged.is_out_of_office(REP, ON_VACATION + timedelta(days=10))
    assert not load_rules(Settings(teams_file=path)).teams.is_out_of_office(REP, ON_VACATION)  # no database: no feed


def test_a_feed_is_read_again_only_after_the_refresh_interval_or_when_its_address_changes(engine, calendar, tmp_path):
    teams = load_teams(teams_with_feed(tmp_path, calendar.url))
    refresh_feeds(engine, teams, now=NOW, every=HOUR)
    assert refresh_feeds(engine, teams, now=NOW + 59 * timedelta(minutes=1), every=HOUR).read == 0
    assert calendar.reads == 1
    assert refresh_feeds(engine, teams, now=NOW + HOUR, every=HOUR).read == 1
    moved = load_teams(teams_with_feed(tmp_path / "moved", calendar.url + "?v=2"))
    assert refresh_feeds(engine, moved, now=NOW + HOUR, every=HOUR).read == 1
    assert calendar.reads == 3


def test_a_feed_that_fails_keeps_its_last_good_read_and_names_only_its_host(engine, calendar, tmp_path, caplog):
    teams = load_teams(teams_with_feed(tmp_path, calendar.url))
    refresh_feeds(engine, teams, now=NOW, every=HOUR)
    calendar.status = 503
    caplog.set_level(logging.WARNING, logger="handoff.routing")

    failed = refresh_feeds(engine, teams, now=NOW + HOUR, every=HOUR)

    assert calendar.reads == 2  # the fault fired
    assert failed.failing == {REP: "calendar feed at 127.0.0.1: HTTP 503"}
    assert with_feed_absences(engine, teams).is_out_of_office(REP, ON_VACATION)
    assert "its last good read still counts" in caplog.text
    assert "private-3f9a1c77e0" not in caplog.text + str(failed)
    summary = feeds_markdown(failed)  # in the route-leads run's artifact
    assert "1 of 1 read this run" in summary and f"| {REP} | calendar feed at 127.0.0.1: HTTP 503 |" in summary

    calendar.status = 200
    mended = refresh_feeds(engine, teams, now=NOW + 2 * HOUR, every=HOUR)
    assert mended.failing == {}


def test_the_health_check_names_a_failing_feed_of_a_rep_in_the_teams_file(engine, database_url, calendar, tmp_path,
                                                                           handoff_env):
    path = teams_with_feed(tmp_path, calendar.url)
    refresh_feeds(engine, load_teams(path), now=NOW, every=HOUR)
    calendar.status = 500
    refresh_feeds(engine, load_teams(path), now=NOW + HOUR, every=HOUR)
    handoff_env(HANDOFF_TEAMS_FILE=str(path))

    assert gather_facts(NOW + 2 * HOUR).failing_feeds == (
        FeedFacts(REP, NOW + HOUR, "calendar feed at 127.0.0.1: HTTP 500"),)
    handoff_env(HANDOFF_TEAMS_FILE=str(teams_with_feed(tmp_path / "moved", calendar.url + "?v=2")))
    assert gather_facts(NOW + 2 * HOUR).failing_feeds == ()  # a new address: the failure was another feed's


def test_a_new_address_that_fails_counts_none_of_the_old_address_s_absences(engine, calendar, tmp_path):
    refresh_feeds(engine, load_teams(teams_with_feed(tmp_path, calendar.url)), now=NOW, every=HOUR)
    moved = load_teams(teams_with_feed(tmp_path / "moved", calendar.url.replace(SECRET_PATH, "/someone-else.ics")))

    failed = refresh_feeds(engine, moved, now=NOW, every=HOUR)

    assert failed.failing == {REP: "calendar feed at 127.0.0.1: HTTP 404"} and failed.absences == 0
    assert not with_feed_absences(engine, moved).is_out_of_office(REP, ON_VACATION)


@pytest.mark.parametrize("body, problem", [
    (b"<html>Sign in to your calendar</html>", "not an iCalendar feed (no BEGIN:VCALENDAR)"),
    (b"BEGIN:VCALENDAR\r\nSUMMARY:\xff\xfe\r\nEND:VCALENDAR\r\n", "not UTF-8 text"),
    (b"BEGIN:VCALENDAR\r\n" + b"X-FILL:" + b"x" * 2000 + b"\r\nEND:VCALENDAR\r\n", "larger than 1,024 bytes"),
])
def test_what_is_not_a_calendar_is_refused_with_the_reason(calendar, body, problem):
    calendar.body = body
    with pytest.raises(ConnectorError, match=re.escape(problem)) as refused:
        read_feed(calendar.url, max_bytes=1024)
    assert str(refused.value).startswith("calendar feed at 127.0.0.1: ")


def test_a_feed_address_is_read_over_https_or_plain_http_on_this_machine_only():
    assert feed_url("webcal://calendar.example.com/p/abc.ics") == "https://calendar.example.com/p/abc.ics"
    assert feed_url("https://calendar.example.com/p/abc.ics") == "https://calendar.example.com/p/abc.ics"
    assert feed_url("http://localhost:8080/a.ics") == "http://localhost:8080/a.ics"
    with pytest.raises(ConnectorError, match="plain http:// is read from this machine only") as refused:
        feed_url("http://calendar.example.com/private-token/basic.ics")
    assert "private-token" not in str(refused.value)
    with pytest.raises(ConnectorError, match="not an https:// or webcal:// address"):
        feed_url("ftp://calendar.example.com/a.ics")


def test_teams_check_lists_each_feed_s_last_read_and_counts_its_absences_at_a_time(database_url, calendar, tmp_path,
                                                                                  monkeypatch):
    from handoff import cli
    from store.engine import make_engine

    path = teams_with_feed(tmp_path, calendar.url)
    engine = make_engine(database_url)
    refresh_feeds(engine, load_teams(path), now=NOW, every=HOUR)
    engine.dispose()
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    monkeypatch.setenv("HANDOFF_TEAMS_FILE", str(path))
    monkeypatch.setattr(cli.console, "width", 400)  # the reps' table whole, not folded to the terminal

    shown = CliRunner().invoke(cli.app, ["teams", "check", "--at", ON_VACATION.isoformat()], catch_exceptions=False)

    assert shown.exit_code == 0, shown.output
    assert "Out-of-office calendar feeds" in shown.output and "2026-07-01 09:00 UTC" in shown.output
    assert "private-3f9a1c77e0" not in shown.output and "(+ feed from 127.0.0.1)" in shown.output
    [row] = [line for line in shown.output.splitlines() if line.strip().startswith(REP) and "Jordan Blake" in line]
    assert "2026-08-03 to 2026-08-14 (Vacation)" in row and row.rstrip().endswith("yes")  # away then, by the feed
