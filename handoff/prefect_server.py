"""A local Prefect server for the demo, the CLI and the tests, unless PREFECT_API_URL already names one."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import requests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPrefectServer:
    """`prefect server start` in its own process group, with its state under `home`."""

    def __init__(self, home: Path, port: int | None = None, database_url: str | None = None):
        self.home = home
        self.database_url = database_url  # Prefect's own database; None: a SQLite file in home
        self.port = port or _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen | None = None
        self.log_path = home / "server.log"

    def start(self, timeout: float = 90.0) -> "LocalPrefectServer":
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home.resolve()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": self.api_url,
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited early (code {self.process.returncode}); see {self.log_path}")
            try:
                if requests.get(f"{self.api_url}/health", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the Prefect server did not answer within {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def drain_prefect_clients(timeout: float = 10.0) -> None:
    """Send the logs and events still queued in this process before the server they go to stops."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


@contextlib.contextmanager
def prefect_api(home: Path) -> Iterator[str]:
    """The API URL to run flows against: PREFECT_API_URL when set, else a local server for the duration."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    server = LocalPrefectServer(home).start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_SERVER_ANALYTICS_ENABLED: False}):
            yield server.api_url
            drain_prefect_clients()
    finally:
        server.stop()
