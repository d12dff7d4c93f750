"""One settings object, built explicitly and passed in; nothing reads the environment on import."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

DEFAULT_DATABASE_FILE = "nudgeflow.db"


def default_database_url(cwd: Path | None = None) -> str:
    path = (cwd or Path.cwd()) / DEFAULT_DATABASE_FILE
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=default_database_url)
    host: str = "127.0.0.1"
    port: int = 8000
    # Ingest limits follow Segment's HTTP Tracking API.
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    # Per-workspace token bucket, counted in events; 0 disables the limit.
    ingest_rate_per_second: float = 5000.0
    ingest_burst: int = 50_000
    # Group commit: the most events one transaction takes, and how long it may wait for more.
    commit_max_events: int = 5000
    commit_max_wait_ms: float = 0.0
    # SQLite durability: FULL fsyncs every commit, which is what "acknowledged after commit" means.
    sqlite_synchronous: str = "FULL"
    log_level: str = "INFO"
    log_requests: bool = False
    auto_migrate: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if url := env.get("NUDGEFLOW_DATABASE_URL"):
            values["database_url"] = url
        if rate := env.get("NUDGEFLOW_INGEST_RATE"):
            values["ingest_rate_per_second"] = float(rate)
        if burst := env.get("NUDGEFLOW_INGEST_BURST"):
            values["ingest_burst"] = int(burst)
        if level := env.get("NUDGEFLOW_LOG_LEVEL"):
            values["log_level"] = level.upper()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
