"""A person's mistakes in using `handoff` are told in a line or two, what is wrong and what to do, with exit code 2
when what was typed or set must change and 1 when the work itself failed; never a traceback, unless asked for
with `handoff --debug`. No message shows a password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config.settings import CONFIG_DIR, get_settings
from handoff.cli import app

HANDOFF = str(Path(sys.executable).parent / "handoff")
SECRET = "s3cret-pw"
runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty Handoff home and the shipped rulebook; HANDOFF_* settings from the outside are not seen."""
    for name in list(os.environ):
        if name.startswith("HANDOFF_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HANDOFF_RULEBOOK_DIR", str(CONFIG_DIR))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def handoff(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def told(result) -> str:
    """The output as one line, as a person reads it, whatever the width it was wrapped at."""
    return " ".join(result.output.replace("│", " ").split())


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """`handoff` as a separate process, for mistakes met while it starts."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_")}
    return subprocess.run([HANDOFF, *args], env={**clean, **env}, capture_output=True, text=True, timeout=timeout)


def no_prefect_server_started(home: Path) -> bool:
    return not (home / "home" / "prefect").exists()


# ------------------------------------------------------------------------------------------ the database URL

@pytest.mark.parametrize("url, code, problem", [
    (f"postgresql://ada:{SECRET}@no-such-host.invalid/handoff", 2, "its host is not known; correct the host"),
    (f"postgresql://ada:{SECRET}@127.0.0.1:1/handoff", 1,
     "the server refused the connection; is it running on that host and port?"),
    (f"mysql://ada:{SECRET}@db.example/handoff", 2, "names a 'mysql' database; Handoff runs on PostgreSQL or SQLite"),
    (f"postgresql+asyncpg://ada:{SECRET}@db.example/handoff", 2,
     "names the driver 'asyncpg'; Handoff connects with psycopg"),
    (f"postgresql://ada:{SECRET}@db.example:fivefourthreetwo/handoff", 2,
     "the database URL is not a URL Handoff can read; write it as postgresql://"),
    (f"{SECRET}", 2, "the database URL is not a URL Handoff can read"),
], ids=["unknown host", "refused port", "unsupported database", "another driver", "malformed port", "not a URL"])
def test_a_database_url_that_cannot_work_is_told_without_its_password(home, monkeypatch, url, code, problem):
    monkeypatch.setenv("HANDOFF_DATABASE_URL", url)
    for command in (["leads"], ["db", "upgrade"]):
        result = handoff(*command)
        assert result.exit_code == code, result.output
        assert problem in told(result) and "HANDOFF_DATABASE_URL" in result.output
        assert SECRET not in result.output


def test_a_database_that_does_not_exist_on_the_server_is_told_with_what_to_do(home, monkeypatch):
    from sqlalchemy.engine import make_url

    from tests.conftest import POSTGRES_ADMIN_URL, _postgres_available

    if _postgres_available():
        pytest.skip("PostgreSQL is not available")
    missing = make_url(POSTGRES_ADMIN_URL).set(database="handoff_never_created", password=SECRET)
    monkeypatch.setenv("HANDOFF_DATABASE_URL", missing.render_as_string(hide_password=False))
    result = handoff("status")
    assert result.exit_code == 2
    assert "that database does not exist on the server; create it (createdb) or correct its name" in told(result)
    assert SECRET not in result.output


def test_a_sqlite_file_in_a_directory_that_does_not_exist_is_refused_not_created(home, monkeypatch):
    missing = home / "no" / "such" / "dir"
    monkeypatch.setenv("HANDOFF_DATABASE_URL", f"sqlite:///{missing / 'handoff.db'}")
    result = handoff("db", "upgrade")
    assert result.exit_code == 2
    assert f"the SQLite database {missing / 'handoff.db'} is in a directory that does not exist" in told(result)
    assert not (home / "no").exists()


def test_the_default_home_is_made_on_purpose(home):
    assert handoff("db", "upgrade").exit_code == 0
    assert (home / "home" / "handoff.db").is_file()


# ------------------------------------------------------------------------------------------ settings

@pytest.mark.parametrize("name, value, allowed", [
    ("HANDOFF_BATCH_SIZE", "abc", "HANDOFF_BATCH_SIZE is 'abc': it must be a whole number, at least 1"),
    ("HANDOFF_BATCH_SIZE", "0", "HANDOFF_BATCH_SIZE is '0': it must be a whole number, at least 1"),
    ("HANDOFF_SCORE_WORKERS", "9", "it must be a whole number, at least 1, at most 8"),
    ("HANDOFF_FETCH_IN_SUBPROCESS", "maybe", "HANDOFF_FETCH_IN_SUBPROCESS is 'maybe': it must be true or false"),
    ("HANDOFF_HTTP_READ_TIMEOUT", "inf", "HANDOFF_HTTP_READ_TIMEOUT is 'inf': it must be a finite number"),
    ("HANDOFF_INGEST_RETRY_DELAYS", "[10,", "HANDOFF_INGEST_RETRY_DELAYS cannot be read: it must be a JSON list"),
])
def test_a_setting_given_a_value_it_cannot_take_names_the_variable_and_what_it_takes(home, monkeypatch, name, value,
                                                                                       allowed):
    monkeypatch.setenv(name, value)
    result = handoff("leads")
    assert result.exit_code == 2
    assert allowed in told(result) and "unset it for the default" in result.output


def test_a_bad_setting_met_as_the_command_starts_is_told_in_two_lines(tmp_path):
    done = run("stages", env={"HANDOFF_HOME": str(tmp_path), "HANDOFF_BATCH_SIZE": "abc"})
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert done.stderr.splitlines() == [
        "Error: HANDOFF_BATCH_SIZE is 'abc': it must be a whole number, at least 1 (Activities written per database "
        "transaction)", "Set it to a value it takes, or unset it for the default."]


# ------------------------------------------------------------------------------------------ sources and rulebook

def test_an_unknown_source_lists_the_enabled_ones_before_any_server_starts(home, monkeypatch):
    sources = home / "sources.yaml"
    sources.write_text("sources:\n  - name: scans\n    kind: jsonl\n    path: scans.jsonl\n"
                       "  - name: booth\n    kind: jsonl\n    path: booth.jsonl\n")
    monkeypatch.setenv("HANDOFF_SOURCES_FILE", str(sources))
    monkeypatch.setenv("COLUMNS", "400")  # the error panel would fold a long temporary path inside a word
    result = handoff("run", "ingest", "--source", "scans", "--source", "marketo")
    assert result.exit_code == 2
    assert f"'marketo' is not an enabled source of {sources}; enabled: scans, booth" in told(result)
    assert no_prefect_server_started(home)


def test_a_broken_sources_file_is_refused_with_its_line_before_any_server_starts(home, monkeypatch):
    sources = home / "sources.yaml"
    sources.write_text("sources:\n  - name: scans\n    kind: jsonl\n    path: a.jsonl\n    path: b.jsonl\n")
    monkeypatch.setenv("HANDOFF_SOURCES_FILE", str(sources))
    result = handoff("run", "ingest")
    assert result.exit_code == 2
    assert f"{sources}:5: 'path' is given twice, on lines 4 and 5: keep one" in told(result)
    assert no_prefect_server_started(home)


@pytest.mark.parametrize("command", [["run", "score"], ["run", "rescore", "--reason", "new sheet"]])
def test_a_broken_rulebook_is_refused_at_a_scoring_run_before_any_server_starts(home, monkeypatch, command):
    import shutil

    rules = home / "rules"
    shutil.copytree(CONFIG_DIR, rules)
    (rules / "scoring.yaml").write_text((rules / "scoring.yaml").read_text().replace(
        "readiness_threshold: 100 ", "readiness_threshold: 1e12 "))
    monkeypatch.setenv("HANDOFF_RULEBOOK_DIR", str(rules))
    result = handoff(*command)
    assert result.exit_code == 2
    assert f"{rules / 'scoring.yaml'}:5: readiness_threshold must be at most 100,000 points, not 1E+12" in told(result)
    assert no_prefect_server_started(home)


# ------------------------------------------------------------------------------------------ the stand-ins

@pytest.mark.parametrize("options, problem", [
    (["--people", "-5"], "Invalid value for '--people': Input should be greater than or equal to 1"),
    (["--weeks", "0"], "Invalid value for '--weeks': Input should be greater than or equal to 1"),
    (["--malformed-rate", "1.5"], "Invalid value for '--malformed-rate': Input should be less than or equal to 1"),
    (["--late-rate", "-0.1"], "Invalid value for '--late-rate': Input should be greater than or equal to 0"),
    (["--people", "10", "--activities", "5"], "Invalid value for --activities: at least one per person: 10 or more, "
                                              "not 5"),
    (["--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65533"),
])
def test_a_sandbox_of_a_size_or_rate_that_makes_no_sense_is_refused_before_it_starts(home, monkeypatch, options,
                                                                                      problem):
    def never(*args, **kwargs):
        raise AssertionError("the stand-ins were started")

    monkeypatch.setattr("sandbox.stack.start_sandbox", never)
    result = handoff("sandbox", *options)
    assert result.exit_code == 2 and problem in told(result)


def test_a_sandbox_port_already_in_use_is_told_with_what_to_do(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("sandbox", "--tool", "marketo", "--port", str(port), "--people", "20", "--activities", "40",
                   env={"HANDOFF_HOME": str(tmp_path)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"Error: 127.0.0.1:{port} is already in use",
        "Choose another --port (0 takes any free ports) or --host, or stop what holds it."]


# ------------------------------------------------------------------------------------------ anything else

def test_an_unexpected_error_is_one_line_and_the_way_to_see_more(home, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the segment query broke\nsecond line of detail")

    assert handoff("db", "upgrade").exit_code == 0
    monkeypatch.setattr("store.reports.lead_segment", broken)
    result = handoff("leads")
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: RuntimeError: the segment query broke",
                                          "Rerun with --debug (handoff --debug ...) to see the full traceback."]
    debugged = runner.invoke(app, ["--debug", "leads"])
    assert isinstance(debugged.exception, RuntimeError)  # left to Python, which prints the traceback


def test_debug_shows_the_traceback_and_still_no_password(tmp_path):
    env = {"HANDOFF_HOME": str(tmp_path), "HANDOFF_DATABASE_URL": f"postgresql://ada:{SECRET}@127.0.0.1:1/handoff"}
    quiet = run("leads", env=env)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    loud = run("--debug", "leads", env=env)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "Connection refused" in loud.stderr
    assert SECRET not in loud.stderr + loud.stdout
