"""The `handoff` command as people type it: exit codes, messages and output (no Prefect server needed)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from config.settings import CONFIG_DIR, get_settings
from domain.activity import build_activity
from handoff.cli import app
from store import scoring as store
from store.engine import get_engine
from store.ingest import write_batch
from store.migrate import head

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty Handoff home with its own SQLite database; no Prefect server is started by these commands."""
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HANDOFF_DATABASE_URL", raising=False)
    monkeypatch.setenv("HANDOFF_RULEBOOK_DIR", str(CONFIG_DIR))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def handoff(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_db_upgrade_migrates_an_empty_home_and_db_current_says_it_is_at_the_latest_revision(home):
    before = handoff("db", "current")
    assert before.exit_code == 0 and f"revision none (latest {head()})" in before.output
    upgraded = handoff("db", "upgrade")
    assert upgraded.exit_code == 0 and f"is at revision {head()}" in upgraded.output
    assert f"revision {head()} (latest {head()})" in handoff("db", "current").output


def test_rules_check_prints_the_model_and_says_the_rulebook_is_valid(home):
    result = handoff("rules", "check")
    assert result.exit_code == 0
    for text in ("whitepaper_download", "State of RevOps 2026", "Decay:", "Grades:", "Disqualifier: works for a competitor",
                 "The rulebook is valid"):
        assert text in result.output


def test_rules_check_names_the_file_and_line_of_a_mistake_and_exits_non_zero(home, monkeypatch):
    rules = home / "rules"
    shutil.copytree(CONFIG_DIR, rules, ignore=shutil.ignore_patterns("sources.yaml"))
    sheet = rules / "scoring.csv"
    lines = sheet.read_text().splitlines()
    number = next(n for n, text in enumerate(lines, start=1) if text.startswith("email_click,"))
    lines[number - 1] = "email_click,awareness,lots,15,2/day"
    sheet.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("HANDOFF_RULEBOOK_DIR", str(rules))
    get_settings.cache_clear()
    result = handoff("rules", "check")
    assert result.exit_code == 1
    assert f"scoring.csv:{number}: readiness_pct must be a number, not 'lots'" in result.output
    assert "valid" not in result.output


def test_explain_says_when_there_is_no_such_lead(home):
    handoff("db", "upgrade")
    missing = handoff("explain", "nobody@acme.example")
    assert missing.exit_code == 1 and "no lead with the e-mail nobody@acme.example" in missing.output
    assert handoff("explain", "not an address").exit_code == 1


def test_explain_json_gives_the_score_and_contributions_that_add_up_to_it(home):
    from config.rulebook import load_rulebook
    from tasks.scoring import score_chunk

    handoff("db", "upgrade")
    engine = get_engine(get_settings().resolved_database_url())
    records = [build_activity(source="web", external_id=f"w{n}", type_name=kind, occurred_at="2026-11-01T10:00:00Z",
                              raw={"n": n}, email="Ada@Acme.example", asset=asset)
               for n, (kind, asset) in enumerate([("whitepaper_download", "Lead Scoring Playbook"),
                                                  ("page_view", "/pricing"), ("email_open", "November release notes")])]
    write_batch(engine, source="web", activities=records, people=[], rejections=[], checkpoint=None, now=NOW)
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    with engine.connect() as conn:
        dirty = store.dirty_leads(conn, 10)
    leads = [lead_id for lead_id, _ in dirty]
    score_chunk(engine, rulebook, version_id, leads, now=NOW, run_id=None, rebuild=leads, dirty=dirty)

    result = handoff("explain", "ada@acme.example", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["explained_total"] == data["score"] and float(data["score"]) > 0
    assert len(data["contributions"]) == 3
    readable = handoff("explain", "ada@acme.example")
    assert readable.exit_code == 0 and "Lead Scoring Playbook" in readable.output


@pytest.mark.parametrize("command", [["run", "ingest", "--now", "yesterday-ish"], ["run", "score", "--now", "soon"],
                                     ["run", "rescore", "--reason", "test", "--now", "2026-13-45"]])
def test_a_time_that_is_not_iso_8601_is_refused_before_anything_runs(home, command):
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert "not an ISO-8601 time" in result.output
    assert not (home / "home" / "prefect").exists()  # no Prefect server was started for it


def test_a_rescore_needs_a_reason(home):
    result = runner.invoke(app, ["run", "rescore", "--reason", "  "])
    assert result.exit_code == 2 and "say why" in result.output


def test_a_stage_a_person_cannot_move_a_lead_to_is_refused_before_anything_runs(home):
    result = runner.invoke(app, ["lead", "move", "ana@acme.example", "--to", "mql", "--reason", "looks ready"])
    assert result.exit_code == 2
    assert "Invalid value for --to: one of recycled, disqualified" in result.output and "not 'mql'" in result.output
    assert not (home / "home" / "prefect").exists()


@pytest.mark.parametrize("command", [["run", "ingest"], ["run", "score"], ["run", "rescore", "--reason", "new sheet"],
                                     ["lead", "move", "ana@acme.example", "--to", "recycled", "--reason", "not now"],
                                     ["rules", "impact"], ["leads"], ["stages"], ["events"], ["events", "retry"],
                                     ["quarantine"], ["quarantine", "show", "1"]])
def test_a_database_never_migrated_is_refused_with_the_fix_before_any_server_starts(home, command):
    result = handoff(*command)
    assert result.exit_code == 1
    assert f"the database has no Handoff schema; this version needs {head()}: run `handoff db upgrade`" in \
        result.output.replace("\n", "")
    assert not (home / "home" / "prefect").exists()


def scored_segment(home) -> None:
    """Three scored leads: Ada asked for a demo (an MQL), Ben read a white paper in June and nothing since (cold
    by now), and Eve, a poor fit whose form fields read as spreadsheet formulas, viewed a page."""
    from config.rulebook import load_rulebook
    from domain.activity import PersonRecord
    from tasks.scoring import score_chunk
    from tests.test_score_merges import good_fit

    handoff("db", "upgrade")
    engine = get_engine(get_settings().resolved_database_url())
    eve = PersonRecord(source="web", source_contact_id=None, email="eve@free.example", first_name='=HYPERLINK("x")',
                       company="+Evil", title="Student")
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    visits = [("ada@acme.example", "demo_request", None, "2026-11-01T10:00:00Z"),
              ("ben@acme.example", "whitepaper_download", "Lead Scoring Playbook", "2026-06-01T10:00:00Z"),
              ("eve@free.example", "page_view", "/pricing", "2026-11-01T10:00:00Z")]
    for n, (email, kind, asset, at) in enumerate(visits):
        record = build_activity(source="web", external_id=f"v{n}", type_name=kind, occurred_at=at, raw={"n": n},
                                email=email, asset=asset)
        people = [good_fit(email.split("@")[0].title(), email=email, source="web")] if n < 2 else [eve]
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
        write_batch(engine, source="web", activities=[record], people=people, rejections=[], checkpoint=None,
                    now=moment)
        with engine.connect() as conn:
            dirty = store.dirty_leads(conn, 10)
        leads = [lead_id for lead_id, _ in dirty]
        score_chunk(engine, rulebook, version_id, leads, now=moment, run_id=None, rebuild=leads, dirty=dirty)
    with engine.connect() as conn:
        everyone = store.all_lead_ids(conn)
    score_chunk(engine, rulebook, version_id, everyone, now=NOW, run_id=None)


def test_leads_lists_a_segment_highest_score_first_and_the_funnel_counts_the_stages(home):
    scored_segment(home)

    everyone = handoff("leads").output
    assert "3 leads scored, highest score first." in everyone
    assert everyone.index("ada@acme.example") < everyone.index("eve@free.example")
    mqls = handoff("leads", "--stage", "MQL", "--fit", "a").output
    assert "1 lead in stage mql, of fit A, highest score first." in mqls and "ben@" not in mqls
    assert "1 lead scoring at least 50" in handoff("leads", "--min-score", "50").output
    assert "the first 1 shown" in handoff("leads", "--limit", "1").output.replace("\n", "")
    assert "0 leads in stage customer." in handoff("leads", "--stage", "customer").output
    funnel = handoff("stages").output
    assert [line.split()[:2] for line in funnel.splitlines() if line.split()[:1] in (["lead"], ["mql"])] == \
        [["lead", "2"], ["mql", "1"]]


def test_leads_csv_hands_the_cold_leads_to_nurture_with_form_text_that_cannot_run_as_a_formula(home):
    import csv

    scored_segment(home)

    cold = list(csv.DictReader(handoff("leads", "--cold", "--csv").output.splitlines()))
    assert [(row["email"], row["stage"], row["cold"]) for row in cold] == [("ben@acme.example", "lead", "true")]
    assert 0 <= float(cold[0]["score"]) < 5 and cold[0]["handed_over_at"] == ""
    rows = {row["email"]: row for row in csv.DictReader(handoff("leads", "--csv").output.splitlines())}
    assert rows["eve@free.example"]["first_name"] == "\'=HYPERLINK(\"x\")"
    assert rows["eve@free.example"]["company"] == "\'+Evil"
    ada = rows["ada@acme.example"]
    assert ada["stage"] == "mql" and ada["handed_over_at"].startswith("2026-11-01")


@pytest.mark.parametrize("option, value, problem", [
    ("--stage", "hot", "not 'hot'"), ("--fit", "E", "not 'E'"), ("--min-score", "1.234", "at most two decimals"),
    ("--min-score", "lots", "not 'lots'"), ("--limit", "-1", "0 or more")])
def test_leads_refuses_a_filter_it_cannot_apply(home, option, value, problem):
    result = runner.invoke(app, ["leads", option, value])
    assert result.exit_code == 2 and problem in " ".join(result.output.replace("│", " ").split())


def test_events_shows_the_outbox_by_state_and_retry_sends_the_given_up_again(home):
    from store import outbox

    def lines(*args) -> list[str]:
        return [" ".join(line.replace("│", " ").split()) for line in handoff(*args).output.splitlines()]

    scored_segment(home)  # Ada's handover: one MQL event, never sent
    assert "waiting never sent yet 1 mql 1" in lines("events")
    engine = get_engine(get_settings().resolved_database_url())
    long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
    with engine.begin() as conn:
        ids = [row["id"] for row in outbox.events_to_send(conn, long_ago, timedelta(0), 10)]
        for _ in range(get_settings().event_max_sends):
            outbox.mark_sent(conn, ids, long_ago)

    shown = lines("events")
    assert "given up never seen after the most sends allowed 1 mql 1" in shown
    assert any("handoff events retry" in line for line in shown)
    assert any(line.endswith("1 mql 2026-11-01 10:00 5 2000-01-01 00:00") for line in shown), "\n".join(shown)
    assert "1 given-up lead event will be sent again by the next run." in handoff("events", "retry").output
    assert "sent sent, not yet seen on the Prefect server 1 mql 1" in lines("events")
    with engine.connect() as conn:
        assert [row["id"] for row in outbox.events_to_send(conn, datetime.now(timezone.utc), timedelta(minutes=10),
                                                           get_settings().event_max_sends)] == ids


def test_quarantine_groups_reasons_of_a_kind_lists_the_latest_and_shows_one_record_whole(home):
    from domain.activity import Rejection

    def lines(*args) -> list[str]:
        result = handoff(*args)
        return [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]

    assert handoff("db", "upgrade").exit_code == 0
    assert lines("quarantine") == ["No record quarantined."]
    engine = get_engine(get_settings().resolved_database_url())
    bad = [Rejection("hubspot", f"e{n}", f"unknown activity type 'kind{n}'", f'{{"id": "e{n}", "type": "kind{n}"}}')
           for n in range(3)]
    write_batch(engine, source="hubspot", activities=[], people=[], rejections=bad, checkpoint=None, now=NOW)
    write_batch(engine, source="scans", activities=[], people=[], checkpoint=None, now=NOW + timedelta(days=2),
                rejections=[Rejection("scans", None, "scans.jsonl:7: invalid JSON: Expecting value", "{oops | ")])

    shown = lines("quarantine", "--limit", "2")
    assert "4 records quarantined, each kept whole with its reason (handoff quarantine show ID prints one)." in shown
    assert "hubspot unknown activity type … 3 2026-11-02 12:00 2026-11-02 12:00 3" in shown
    assert "scans scans.jsonl:…: invalid JSON: Expecting value 1 2026-11-04 12:00 2026-11-04 12:00 4" in shown
    assert "The latest 2:" in shown
    assert "4 scans — scans.jsonl:7: invalid JSON: Expecting value 2026-11-04 12:00" in shown
    assert "3 hubspot e2 unknown activity type 'kind2' 2026-11-02 12:00" in shown
    assert not any(line.startswith("2 hubspot") for line in shown)
    assert lines("quarantine", "--source", "hubspot", "--since", "2026-11-03") == [
        "No record quarantined from hubspot since 2026-11-03 00:00 UTC."]
    assert "1 record quarantined from scans" in " ".join(lines("quarantine", "--source", "scans"))

    one = handoff("quarantine", "show", "2")
    assert one.exit_code == 0
    assert "reason: unknown activity type 'kind1'" in one.output
    assert 'raw: 29 bytes\n{\n  "id": "e1",\n  "type": "kind1"\n}' in one.output
    assert "raw: 8 bytes\n{oops | " in handoff("quarantine", "show", "4").output  # not JSON: as it arrived
    write_batch(engine, source="scans", activities=[], people=[], checkpoint=None, now=NOW, raw_cap=1024, rejections=[
        Rejection("scans", None, "scans.jsonl:9: invalid JSON: not UTF-8 text", b'{"n": "caf\xe9"}'),
        Rejection("scans", None, "oversized payload", "x" * 5000)])
    bytes_shown = handoff("quarantine", "show", "5").output
    assert 'raw: 13 of 13 bytes kept, shown with escapes' in bytes_shown and '{"n": "caf\\xe9"}' in bytes_shown
    assert "raw: 1,024 of 5,000 bytes kept" in handoff("quarantine", "show", "6").output
    missing = handoff("quarantine", "show", "99")
    assert missing.exit_code == 1 and "No quarantined record has id 99." in missing.output
