"""Text from leads reaches a terminal shown, never obeyed: escape sequences, hyperlinks, carriage returns, bells,
bidi overrides and rich markup in names, companies, titles, assets, stage reasons and quarantined records are
written out visibly by every command that prints them, and stay recognisable."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from config.settings import CONFIG_DIR, get_settings
from domain.activity import PersonRecord, Rejection, build_activity
from handoff.cli import app
from store.engine import get_engine
from store.ingest import record_read, write_batch

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
# An SGR colour, an OSC-8 hyperlink, an OSC title, a carriage return that would overwrite the line, a BEL, a
# backspace, a bidi override, a C1 CSI and rich markup: each one a way lead text could take over a terminal.
HOSTILE = ("Eve\x1b[31mRED\x1b[0m \x1b]8;;https://evil.example\x07link\x1b]8;;\x07 \x1b]0;title\x07 back\rOVER "
           "bell\x07 bs\x08 \u202eexe.pdf [red]markup[/red] \x9b2J")
# How each part reads once shown: the same text, its controls written out
SHOWN = ["Eve\\x1b[31mRED", "\\x1b]8;;https://evil.example\\x07link", "\\x1b]0;title\\x07", "back\\rOVER",
         "bell\\x07", "bs\\x08", "\\u202eexe.pdf", "[red]markup[/red]", "\\x9b2J"]
# What a terminal would obey: C0 controls but line break and tab, DEL, C1, bidi controls, line separators
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
runner = CliRunner()


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """A migrated home holding Eve, whose every text field carries HOSTILE, scored, with a stage change for a
    HOSTILE reason; two quarantined records carrying it in their external id, reason and payload; and a source
    whose last read failed with it."""
    from sqlalchemy import insert

    from config.rulebook import load_rulebook
    from store import scoring as store
    from store.tables import StageChange
    from tasks.scoring import score_chunk

    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  - name: web\n    kind: jsonl\n    path: scans.jsonl\n")
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HANDOFF_DATABASE_URL", raising=False)
    monkeypatch.setenv("HANDOFF_RULEBOOK_DIR", str(CONFIG_DIR))
    monkeypatch.setenv("HANDOFF_SOURCES_FILE", str(sources))
    get_settings.cache_clear()
    assert handoff("db", "upgrade").exit_code == 0
    engine = get_engine(get_settings().resolved_database_url())
    eve = PersonRecord(source="web", source_contact_id=None, email="eve@evil.example", first_name=HOSTILE,
                       last_name="Q\x1b[2J", company=HOSTILE, title=HOSTILE, industry="Software", company_size=500)
    download = build_activity(source="web", external_id="w1", type_name="whitepaper_download",
                              occurred_at="2026-11-01T10:00:00Z", raw={"n": 1}, email="eve@evil.example",
                              asset=HOSTILE, campaign="camp\x1b[5mBLINK")
    rejected = [Rejection("web", "ext\x1b[1mBOLD", HOSTILE, json.dumps({"name": HOSTILE}, ensure_ascii=False)),
                Rejection("web", "e2", f"not JSON: {HOSTILE}", f"{{oops {HOSTILE}")]
    write_batch(engine, source="web", activities=[download], people=[eve], rejections=rejected, checkpoint=None,
                now=NOW)
    rulebook = load_rulebook(CONFIG_DIR)
    with engine.begin() as conn:
        version_id = store.ensure_version(conn, rulebook, NOW)
    with engine.connect() as conn:
        dirty = store.dirty_leads(conn, 10)
    leads = [lead_id for lead_id, _ in dirty]
    score_chunk(engine, rulebook, version_id, leads, now=NOW, run_id=None, rebuild=leads, dirty=dirty)
    with engine.begin() as conn:
        conn.execute(insert(StageChange.__table__).values(lead_id=leads[0], changed_at=NOW, from_stage="lead",
                                                          to_stage="recycled", reason=HOSTILE))
    record_read(engine, "web", NOW, None, error=HOSTILE)
    yield engine
    get_settings.cache_clear()


def handoff(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def assert_shown(output: str, *, parts: list[str] = SHOWN) -> None:
    """No control character reaches the output, and each part of the hostile text is there, written out."""
    assert not RAW_CONTROL.search(output), repr(RAW_CONTROL.search(output).group())
    for part in parts:
        assert part in output, f"{part!r} not in the output:\n{output}"


def test_the_leads_table_shows_names_and_companies_with_their_controls_written_out(hostile):
    result = handoff("leads")
    assert result.exit_code == 0
    assert_shown(result.output)
    assert "Q\\x1b[2J" in result.output


def test_a_lead_explained_shows_its_asset_campaign_title_and_stage_reason_written_out(hostile):
    result = handoff("explain", "eve@evil.example")
    assert result.exit_code == 0
    assert_shown(result.output)
    assert "camp\\x1b[5mBLINK" in result.output
    assert "recycled" in result.output  # the stage change whose reason is hostile


def test_a_lead_explained_as_json_escapes_every_control(hostile):
    result = handoff("explain", "eve@evil.example", "--json")
    assert result.exit_code == 0 and not RAW_CONTROL.search(result.output)
    data = json.loads(result.output)
    assert data["profile"]["company"] == HOSTILE and data["stages"][-1]["reason"] == HOSTILE  # exact, once parsed


def test_the_quarantine_lists_reasons_and_external_ids_written_out(hostile):
    result = handoff("quarantine")
    assert result.exit_code == 0
    assert_shown(result.output)
    assert "ext\\x1b[1mBOLD" in result.output


@pytest.mark.parametrize("record_id", ["1", "2"])
def test_one_quarantined_record_shows_its_reason_and_raw_payload_written_out(hostile, record_id):
    result = handoff("quarantine", "show", record_id)
    assert result.exit_code == 0
    assert_shown(result.output)
    assert result.output.count("[red]markup[/red]") == 2  # in the reason and in the payload


def test_the_health_report_shows_a_source_error_written_out(hostile):
    result = handoff("status", "--now", (NOW + timedelta(minutes=5)).isoformat())
    assert "web" in result.output
    assert_shown(result.output)


@pytest.mark.parametrize("command", [["events"], ["stages"], ["status", "--json"], ["leads", "--fit", "A"]])
def test_other_views_of_the_store_carry_no_control_character(hostile, command):
    assert not RAW_CONTROL.search(handoff(*command).output)


def test_leads_as_csv_into_a_file_keep_the_text_as_it_came_and_into_a_terminal_show_it(hostile, monkeypatch):
    to_file = handoff("leads", "--csv").output
    [eve] = list(csv.DictReader(io.StringIO(to_file, newline="")))  # a carriage return in a field is quoted
    assert eve["company"] == HOSTILE  # a list import matches the lead exactly

    monkeypatch.setattr("handoff.cli._to_terminal", lambda stream: True)
    to_terminal = handoff("leads", "--csv").output
    assert_shown(to_terminal)


def test_run_summaries_printed_on_a_real_terminal_show_lead_text_and_emit_only_the_consoles_own_colours():
    from handoff.cli import Terminal
    from tasks.ingest import SourceSummary
    from tasks.reporting import ingest_markdown, score_markdown

    screen = io.StringIO()
    terminal = Terminal(file=screen, force_terminal=True, width=300)
    from rich.markdown import Markdown

    terminal.print(Markdown(ingest_markdown(NOW, [SourceSummary(source="web", status="failed", error=HOSTILE)],
                                            [("web", HOSTILE, 1)])))
    mql = {"lead_id": 1, "email": "eve@evil.example", "score": "100", "fit_grade": "A", "reason": HOSTILE,
           "top_reasons": [HOSTILE]}
    terminal.print(Markdown(score_markdown({
        "now": NOW.isoformat(), "mode": "incremental", "version_id": 1, "rulebook_digest": "0" * 64,
        "outcome": {"leads": 1, "score_changed": 1, "stage_changes": {}, "new_mqls": [mql], "cold": 0,
                    "ledger_rows": 1},
        "events": {"sent": 0, "resent": 0, "confirmed": 0, "given_up": 0}})))
    terminal.print(f"a message quoting {HOSTILE}")
    written = screen.getvalue()
    own = re.sub(r"\x1b\[[0-9;]*m", "", written)  # the console's own colours: Select Graphic Rendition only
    assert "\x1b]" not in written  # no hyperlink nor title: the console makes none, and lead text cannot
    assert_shown(own)


def test_markdown_in_lead_text_is_shown_as_typed_not_rendered_as_links_or_emphasis():
    from tasks.markdown import cell

    typed = "[click](https://evil.example) <https://evil.example> *bold* _em_ AT&T &#27; a|b demo_request \\*"
    assert cell(typed) == ("\\[click\\](https://evil.example) \\<https://evil.example\\> \\*bold\\* \\_em\\_ AT\\&T "
                           "\\&#27; a/b demo_request \\\\\\*")
    from handoff.cli import Terminal
    from rich.markdown import Markdown

    screen = io.StringIO()
    Terminal(file=screen, width=300).print(Markdown(f"| text |\n|---|\n| {cell(typed)} |"))
    assert "[click](https://evil.example) <https://evil.example> *bold* _em_ AT&T &#27; a/b demo_request \\*" in \
        screen.getvalue()


def test_the_rulebook_table_shows_an_asset_with_brackets_as_written(tmp_path, monkeypatch):
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(CONFIG_DIR, rules)
    sheet = rules / "scoring.csv"
    sheet.write_text(sheet.read_text().replace("page_view:/security,", "page_view:/sec[red]urity[/red],"))
    monkeypatch.setenv("HANDOFF_RULEBOOK_DIR", str(rules))
    get_settings.cache_clear()
    try:
        result = handoff("rules", "check")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0 and "page_view:/sec[red]urity[/red]" in result.output
