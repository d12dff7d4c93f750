"""A real webhook receiver on loopback, for the webhook channel's tests.

The standard library's threading HTTP server (HTTP/1.1), optionally over TLS with a trustme
certificate for a name of the test's choosing. It records every request as received (method,
path, headers, the raw body) and answers what the test scripts, in order, then 200
`{"ok": true}`. A reply may wait before answering (timeouts), or send a long body slowly
(the size limit: a client that read it all would wait).

The signature is checked by the tests themselves (`verify_signature`), by the Standard
Webhooks recipe, without the channel's code: decode the secret's base64, HMAC-SHA256 over
"{webhook-id}.{webhook-timestamp}.{raw body}", compare with each `v1,` signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay_s: float = 0.0  # wait this long before answering
    stall_after: int | None = None  # send this many bytes of a long body, then hold the connection
    stall_s: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def verify_signature(secret: str, received: Received, tolerance_s: float | None = None, now: float = 0) -> bool:
    """The receiver's check, as Standard Webhooks describes it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = received.headers["webhook-id"]
    timestamp = received.headers["webhook-timestamp"]
    if tolerance_s is not None and abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.".encode() + received.body, hashlib.sha256).digest()
    ).decode()
    return any(
        version == "v1" and hmac.compare_digest(sig, expected)
        for version, _, sig in (part.partition(",") for part in received.headers["webhook-signature"].split())
    )


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up early (the size limit, a refused certificate) is expected here


class Receiver:
    def __init__(self, ca: trustme.CA | None = None, names: tuple[str, ...] = ("hooks.test",)) -> None:
        self.received: list[Received] = []
        self.script: list[Reply] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    reply = receiver.script.pop(0) if receiver.script else Reply()
                if reply.delay_s and receiver.stopping.wait(reply.delay_s):
                    return
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if reply.stall_after is None:
                        self.wfile.write(reply.body)
                        return
                    self.wfile.write(reply.body[: reply.stall_after])
                    self.wfile.flush()
                    receiver.stopping.wait(reply.stall_s)
                    self.wfile.write(reply.body[reply.stall_after :])
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the client stopped reading: what the size limit does

            do_POST = do_PUT = do_GET = _handle

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.scheme = "http"
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        if ca is not None:
            self._dir = tempfile.TemporaryDirectory(prefix="nudgeflow-webhook-")
            cert = ca.issue_cert(*names)
            certfile, keyfile = Path(self._dir.name, "cert.pem"), Path(self._dir.name, "key.pem")
            certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
            cert.private_key_pem.write_to_path(str(keyfile))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certfile), str(keyfile))
            self.sni_seen: list[str | None] = []

            def sni(sock: Any, name: str | None, _ctx: Any) -> None:
                self.sni_seen.append(name)

            context.sni_callback = sni
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def url(self, path: str = "/hooks", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def answer(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} requests received, not {count}")
            time.sleep(0.01)
        return list(self.received)

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        if self._dir is not None:
            self._dir.cleanup()
