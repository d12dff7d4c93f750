"""Checkpointing SQLite's write-ahead log beside the writer, not in its way.

In WAL mode every commit appends pages to the log, and a checkpoint copies them back into
the database file and syncs it. SQLite's default runs that checkpoint inside the commit
that crosses the size threshold, so one request in a few hundred waits for megabytes of
copying and a second fsync: that is the tail of ingest latency, and a good share of its
cost. Here a thread of its own runs a PASSIVE checkpoint (one that never blocks or waits
for the writer) a few times a second, on its own connection, while the writer goes on
committing.

The log can only start over from its beginning when a write transaction begins with
every frame already copied back. The background thread cannot arrange that moment while
commits keep arriving, so the writer's own automatic checkpoint stays on, at a higher
threshold (database.WAL_AUTOCHECKPOINT_PAGES): when the log reaches it, the writer's
checkpoint finds nearly everything copied already, finishes in a moment, and the log
restarts. Without this thread (the CLI, tests) that same setting checkpoints as usual.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger(__name__)


class WalCheckpointer:
    def __init__(self, engine: Engine, interval: float = 0.05) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def applies_to(engine: Engine) -> bool:
        database = engine.url.database
        return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nudgeflow-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        try:
            conn = self._engine.connect()
        except Exception:  # the writer will report an unusable database; checkpoints just stop
            log.exception("WAL checkpointer cannot connect")
            return
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    conn.commit()
                except Exception:  # a checkpoint that fails is retried on the next tick
                    log.warning("WAL checkpoint failed", exc_info=True)
                    conn.rollback()
        finally:
            conn.close()
