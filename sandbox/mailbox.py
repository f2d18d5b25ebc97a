"""Where notifications land locally: an SMTP server that keeps every e-mail it is sent (aiosmtpd), and a webhook
receiver that keeps every post (and can be told to fail the first ones), for the demo and the tests."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.server import BackgroundServer


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""

    def header(self, name: str) -> str | None:
        value = self.message[name]
        return None if value is None else str(value)


class Mailbox:
    """A local SMTP server on a free loopback port; `mails` holds what arrived, in order."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port or _free_port(host)
        self.mails: list[Mail] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname=host, port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's handler hook
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.mails.append(Mail(envelope.mail_from, tuple(envelope.rcpt_tos), message))
        return "250 OK"

    def start(self) -> "Mailbox":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[Mail]:
        with self._lock:
            return [m for m in self.mails if address in m.recipients]

    def __enter__(self) -> "Mailbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class WebhookInbox:
    """A webhook receiver on a free loopback port: each POST's JSON body and headers, kept in order. The first
    `fail_first` posts are answered 503 (and not kept), as a receiver that is briefly down."""

    fail_first: int = 0
    posts: list[tuple[dict, dict]] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

        async def receive(request: Request) -> JSONResponse:
            body = await request.json()
            with self._lock:
                if self.refused < self.fail_first:
                    self.refused += 1
                    return JSONResponse({"error": "try again later"}, status_code=503)
                self.posts.append((body, dict(request.headers)))
            return JSONResponse({"ok": True})

        self._server = BackgroundServer(Starlette(routes=[Route("/hook", receive, methods=["POST"])]))

    @property
    def url(self) -> str:
        return f"{self._server.url}/hook"

    def start(self) -> "WebhookInbox":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "WebhookInbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _free_port(host: str) -> int:
    # aiosmtpd checks its own server by connecting to the port it was given, so it needs a real one up front
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
