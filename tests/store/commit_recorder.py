"""What the group committer's tests record of its commits (their fixture is in conftest.py)."""

from __future__ import annotations

import threading

from nudgeflow.store.ingest_writer import WriteResult


class Commits:
    """The on_commit callback: one entry per transaction, (events accepted, requests in it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[int, int]] = []

    def __call__(self, total: WriteResult, requests: int) -> None:
        with self.lock:
            self.seen.append((total.accepted, requests))

    @property
    def requests(self) -> list[int]:
        return [r for _, r in self.seen]
