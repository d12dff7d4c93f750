"""One settings object, built explicitly and passed in; nothing reads the environment on import."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

DEFAULT_DATABASE_FILE = "nudgeflow.db"


# NUDGEFLOW_<name> -> the Settings field <name in lower case>, as given.
_PUSH_ENV = ("FCM_SERVICE_ACCOUNT_FILE", "FCM_API_BASE", "APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID",
             "APNS_TOPIC", "APNS_BASE_URL")


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
    # The embedded runtime (runtime/embedded.py): event processing, timers and dispatch in
    # the serving process. NUDGEFLOW_ENGINE=0 serves ingest and the admin API only.
    engine_enabled: bool = True
    engine_batch_events: int = 1000  # events decided per transaction
    engine_batch_timers: int = 1000  # timers fired per transaction
    dispatch_batch: int = 500  # outbox messages claimed per transaction
    # About how long one engine transaction may hold the writer (and ingest commits behind
    # it); batches shrink below the sizes above to fit. 0: no limit (batch throughput).
    engine_batch_ms: float = 15.0
    engine_poll_ms: float = 250.0  # how often due timers and retries are looked for when idle
    # Woken by an ingest commit, the engine waits until this long after its previous batch
    # ended, so that steady traffic is decided in a few larger transactions rather than one
    # small one per ingest commit (each is an fsync, and holds ingest's writer). 0: at once.
    engine_linger_ms: float = 20.0
    dispatch_max_attempts: int = 8  # transient failures before a message is failed
    # Channel names the `log` channel serves until real channels are configured.
    log_channels: tuple[str, ...] = ("email", "push")
    # The default SMTP server of every workspace (channels/smtp_config.py); a workspace may
    # set its own. With neither, "email" stays on the log channel.
    smtp_url: str | None = None
    # Processes that build emails (render, MIME, DKIM) beside the serving one: 0 builds in
    # it. On a machine with a core to spare, 1 or 2 raise email throughput (channels/workers.py).
    email_build_processes: int = 0
    # `serve --dev`: the dev inbox (an SMTP sink in the process and /dev/inbox). Never in production.
    dev_mode: bool = False
    dev_smtp_host: str = "127.0.0.1"
    dev_smtp_port: int = 1025
    # ... and a local Web Push service (runtime/dev_push.py) whose pushes the dev inbox shows;
    # 0 picks a free port (`serve --dev` prints it).
    dev_push_port: int = 0
    # Web Push hosts accepted beside the browsers' own push services (channels/push_services.py):
    # a self-hosted push server, say. "*" accepts any https host.
    webpush_hosts: tuple[str, ...] = ()
    # Mobile push defaults of every workspace (channels/push_config.py); a workspace may set
    # its own credentials. FCM: a service account JSON file (its project_id, its token_uri);
    # APNs: a .p8 key file, its key id, the team id and the app's bundle id (the topic).
    fcm_service_account_file: str | None = None
    fcm_api_base: str | None = None
    apns_key_file: str | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    apns_base_url: str | None = None  # e.g. https://api.sandbox.push.apple.com for development builds
    # Fernet key(s) sealing workspace secrets at rest (store/secret_box.py), comma-separated,
    # the first seals. Unset: a SQLite database's key file; PostgreSQL stores them unsealed.
    secret_key: str | None = field(default=None, repr=False)

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
        if (engine := env.get("NUDGEFLOW_ENGINE")) is not None and engine.strip():
            values["engine_enabled"] = engine.strip().lower() not in ("0", "false", "no", "off")
        if (channels := env.get("NUDGEFLOW_LOG_CHANNELS")) is not None:
            values["log_channels"] = tuple(c.strip() for c in channels.split(",") if c.strip())
        if batch_ms := env.get("NUDGEFLOW_ENGINE_BATCH_MS", "").strip():
            # How long one engine transaction may hold the writer (ingest waits behind it).
            values["engine_batch_ms"] = float(batch_ms)
        if linger_ms := env.get("NUDGEFLOW_ENGINE_LINGER_MS", "").strip():
            values["engine_linger_ms"] = float(linger_ms)
        if processes := env.get("NUDGEFLOW_EMAIL_BUILD_PROCESSES", "").strip():
            values["email_build_processes"] = int(processes)
        if (hosts := env.get("NUDGEFLOW_WEBPUSH_HOSTS")) is not None:
            values["webpush_hosts"] = tuple(h.strip() for h in hosts.split(",") if h.strip())
        if attempts := env.get("NUDGEFLOW_DISPATCH_MAX_ATTEMPTS", "").strip():
            values["dispatch_max_attempts"] = int(attempts)
        if secret_key := env.get("NUDGEFLOW_SECRET_KEY", "").strip():
            values["secret_key"] = secret_key
        if smtp_url := env.get("NUDGEFLOW_SMTP_URL", "").strip():
            values["smtp_url"] = smtp_url
        for name in _PUSH_ENV:
            if value := env.get(f"NUDGEFLOW_{name}", "").strip():
                values[name.lower()] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
