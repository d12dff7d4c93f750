"""What the Segment and RudderStack client tests share with their fixtures in conftest.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Errors:
    """The clients' on_error callback: every failed batch, with its exception."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[Exception, int]] = []

    def __call__(self, exc: Exception, batch: list[Any]) -> None:
        with self.lock:
            self.seen.append((exc, len(batch)))


# A fixture that makes clients: keyword arguments are the client's options.
Factory = Callable[..., Any]
