"""`handoff demo`: the main job end to end on the embedded default, narrated for a first-time reader."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

DEMO_FAULTS = {
    "marketo": {"rate_limit_every": 9, "empty_page_every": 5, "expire_token_every": 13},
    "hubspot": {"rate_limit_every": 7, "expire_token_every": 11},
    "mautic": {"server_error_every": 6},
}


def _fresh_database(home: Path) -> str:
    path = home / "demo.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path.as_posix()}"


def _run_logs_to(path: Path) -> None:
    """Prefect's run logs (and Handoff's, which go through them) into `path` instead of between the demo's tables."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    path.write_text("")
    # Appending: a server started later (uvicorn) reconfigures logging, which closes every handler; one that
    # appends opens its file again on the next record, one that truncates would drop them
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)] + [logging.getLogger()]
    for logger in loggers:
        for console_handler in [h for h in logger.handlers if isinstance(h, PrefectConsoleHandler)]:
            logger.removeHandler(console_handler)
            logger.addHandler(handler)


def run_demo(console: Console, *, people: int, activities: int, seed: int) -> int:
    home = Path(os.environ.get("HANDOFF_HOME", ".handoff"))
    home.mkdir(parents=True, exist_ok=True)
    # The demo owns its database: it never touches the one HANDOFF_DATABASE_URL names.
    os.environ["HANDOFF_DATABASE_URL"] = _fresh_database(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The stand-ins' rate-limit windows are simulated (every Nth call is refused): honour their waits for at
    # most a second, or Marketo's 20-second window would make the demo minutes long.
    os.environ["HANDOFF_HTTP_MAX_RETRY_AFTER"] = "1"

    from handoff.prefect_server import LocalPrefectServer

    server = None
    server_error: list[BaseException] = []
    if not os.environ.get("PREFECT_API_URL"):
        server = LocalPrefectServer(home / "prefect")

        def start_server() -> None:
            try:
                server.start()
            except BaseException as exc:  # reported below, after the world is built
                server_error.append(exc)

        starter = threading.Thread(target=start_server, daemon=True)
        starter.start()
        console.print("Starting a local Prefect server ...")

    import flows.ingest  # noqa: F401 - Prefect sets its logging up on import; the run logs then go to a file
    log_file = home / "demo-runs.log"
    _run_logs_to(log_file)
    console.print(f"Prefect's run logs go to {log_file}.")

    from sandbox.exports import write_badge_scans
    from sandbox.faults import RequestFaults
    from sandbox.stack import start_sandbox
    from sandbox.world import WorldSpec, generate
    from store.migrate import upgrade

    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    world = generate(
        WorldSpec(seed=seed, people=people, activities=activities, end=end,
                  malformed_rate=0.004, duplicate_rate=0.01, late_rate=0.2, late_by_hours=2)
    )
    faults = {tool: RequestFaults(**switches) for tool, switches in DEMO_FAULTS.items()}
    receiver_port = _free_port()  # the stand-ins post their webhooks there once the last act starts the receiver
    box = start_sandbox(world=world, faults=faults, crm=True,
                        webhooks_to=f"http://127.0.0.1:{receiver_port}/webhooks")
    from sandbox.mailbox import Mailbox

    mailbox = Mailbox().start()  # the reps' and managers' inboxes
    os.environ.update({"HANDOFF_SMTP_HOST": mailbox.host, "HANDOFF_SMTP_PORT": str(mailbox.port),
                       "HANDOFF_NOTIFY_FROM": "handoff@handoff-demo.example"})
    try:
        os.environ.update(box.env)
        export = home / "exports" / "revops-summit-scans.jsonl"
        scans = write_badge_scans(world, export)
        os.environ.update({"HANDOFF_JSONL_ENABLED": "true", "HANDOFF_JSONL_PATH": str(export)})
        upgrade(os.environ["HANDOFF_DATABASE_URL"])
        console.print(Text.assemble(
            ("World:", "bold"), f" {people} people, {len(world.events)} activities over {world.spec.weeks} weeks, "
            f"served by Marketo, HubSpot and Mautic stand-ins (rate limits, 5xx, expiring tokens, malformed and "
            f"duplicate records switched on), plus a file of {scans} trade-show badge scans; and a Salesforce "
            f"stand-in whose reps work the leads they own."
        ))
        if server is not None:
            starter.join()
            if server_error:
                raise server_error[0]
            os.environ["PREFECT_API_URL"] = server.api_url
        return _narrate(console, box, mailbox, server.api_url if server else os.environ["PREFECT_API_URL"],
                        receiver_port)
    finally:
        mailbox.stop()
        box.stop()
        if server is not None:
            server.stop()


def _narrate(console: Console, box, mailbox, api_url: str, receiver_port: int) -> int:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from config.settings import get_settings
    from domain.health import assess
    from flows.ingest import IngestFailed, ingest
    from flows.score import score_and_qualify
    from handoff.prefect_server import drain_prefect_clients
    from handoff.report import stage_overview, lead_overview
    from store.engine import get_engine
    from store.reports import example_leads
    from tasks.reporting import score_markdown
    from tasks.explain import explain_lead, explanation_markdown
    from tasks.health import gather_facts, health_markdown, policy_of

    def run(title: str) -> bool:
        console.rule(title)
        try:
            summary = ingest(now=box.world.now)
        except IngestFailed as failed:
            console.print(Markdown(failed.summary.markdown))
            console.print(str(failed), style="red")
            return False
        console.print(Markdown(summary.markdown))
        return True

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        ok = run("Run 1: first ingest")
        ok = run("Run 2: the same data again (exactly once: nothing new)") and ok
        box.world.advance(hours=3)
        ok = run("Run 3: three hours later (late-arriving activities picked up by the overlap window)") and ok
        console.rule("Score and qualify")
        scored = score_and_qualify(now=box.world.now)
        console.print(Markdown(score_markdown(scored.model_dump(mode="json"), limit=5)))
        drain_prefect_clients()
    console.rule("The leads")
    console.print(Markdown(lead_overview()))
    console.rule("Lifecycle stages")
    console.print(Markdown(stage_overview()))
    engine = get_engine(os.environ["HANDOFF_DATABASE_URL"])
    for why, email in example_leads(engine)[:1]:  # one explained in full; `handoff explain EMAIL` for any other
        console.rule(f"Explained: {why}")
        console.print(Markdown(explanation_markdown(explain_lead(engine, email))))
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        from handoff.demo_handoff import hand_over

        hand_over(console, box, engine, mailbox)
        _schedules_ran_on(console, box)
        from handoff.demo_realtime import funnel_against_targets, in_real_time

        in_real_time(console, box, engine, mailbox, receiver_port)
        funnel_against_targets(console, engine, box.world.now, get_settings().home / "funnel.png")
        drain_prefect_clients()
    console.rule("Health: what `handoff status` and the health-check flow report")
    facts = gather_facts(box.world.now, get_settings())
    console.print(Markdown(health_markdown(facts, assess(facts, policy_of(get_settings())))))
    return 0 if ok else 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _schedules_ran_on(console: Console, box) -> None:
    """The ingest and scoring schedules keep running through the three days the demo skipped."""
    from flows.ingest import IngestFailed, ingest
    from flows.score import score_and_qualify

    try:
        ingested = ingest(now=box.world.now)
    except IngestFailed as failed:
        ingested = failed.summary
    new = sum(s.new for s in ingested.sources)
    scored = score_and_qualify(now=box.world.now)
    console.print(f"Meanwhile the schedules ran on: ingest stored {new} new activities, and scoring re-decayed "
                  f"{scored.outcome.leads:,} leads.")
