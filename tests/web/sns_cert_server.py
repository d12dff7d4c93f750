"""A loopback HTTP server standing in for Amazon SNS's certificate host and subscription
confirmations (test_bounces.py, its fixtures in conftest.py)."""

from __future__ import annotations

import http.server
import threading
from typing import Any


class SnsCertServer:
    """Serves the signing certificate and counts SubscribeURL confirmations, on loopback."""

    def __init__(self, pem: bytes) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                body = pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
