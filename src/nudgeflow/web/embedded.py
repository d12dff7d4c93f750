"""Running the app on uvicorn in a background thread: for the demo and the tests."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from nudgeflow.errors import WebError


class ServerStartError(WebError, RuntimeError):
    """The server stopped while starting, or did not become ready in time."""


@dataclass
class ThreadedServer:
    url: str
    app: Any
    server: Any  # uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_in_thread(app: Any, *, name: str = "nudgeflow-server", timeout: float = 30.0) -> ThreadedServer:
    """Serve `app` on a free loopback port and return once /healthz answers 200."""
    import uvicorn

    # Bind first and hand the socket over: no window in which another process takes the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            sock.close()
            raise ServerStartError("the server stopped while starting; see the log above")
        if server.started:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    return ThreadedServer(url, app, server, thread)
            except httpx.TransportError:
                pass
        time.sleep(0.02)
    server.should_exit = True
    thread.join(timeout=10)
    raise ServerStartError(f"the server did not become ready within {timeout:g} s")
