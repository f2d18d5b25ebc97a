"""Run an ASGI stand-in on a loopback port in a background thread."""

from __future__ import annotations

import errno
import socket
import threading
import time

import uvicorn


class CannotListen(OSError):
    """A stand-in cannot listen where it was asked to: the port is taken, or the host is not this machine's."""


class BackgroundServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, date_header: bool = True):
        self.app = app
        self.host = host
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only for sockets whose
        # proto says TCP; without it every response waits ~40 ms for a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            taken = exc.errno == errno.EADDRINUSE
            raise CannotListen(f"{host}:{port} is already in use" if taken else
                               f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30,
                                date_header=date_header)  # off for an app that dates its answers by its own clock
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"stand-in server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
