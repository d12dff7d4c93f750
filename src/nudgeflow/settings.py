"""One settings object, built explicitly and passed in; nothing reads the environment on import."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nudgeflow.errors import NudgeflowError

DEFAULT_DATABASE_FILE = "nudgeflow.db"


class ConfigError(NudgeflowError, ValueError):
    """A setting that cannot be used; the message starts with the variable's or option's name."""


# -- how each kind of value is read from its text (ValueError: what is wrong, not where) ------


def _number(minimum: float = 0.0) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        if value < minimum:
            raise ValueError(f"{text!r} is below {minimum:g}")
        return value

    return parse


def _integer(minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            span = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            raise ValueError(f"{text!r} is out of range ({span})")
        return value

    return parse


AUTO = "auto"


def _processes_or_auto(text: str) -> int | str:
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return _integer(0, 64)(text)
    except ValueError as exc:
        raise ValueError(f"{exc} and not 'auto'") from None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def email_build_processes_for(setting: int | str, cores: int | None = None) -> int:
    """How many email build processes `setting` means on a machine with `cores` cores
    (None: this one's). `auto`: one when there are 2 or more, none on a single core, where
    a build process would only take turns with the serving one and add the pipe."""
    if setting != AUTO:
        return int(setting)
    return 1 if (usable_cores() if cores is None else cores) >= 2 else 0


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper()
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return parse


def parse_public_url(text: str) -> str:
    from nudgeflow.model.workspace_keys import check_public_url

    try:
        return check_public_url(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} {exc}") from None


def _http_url(text: str) -> str:
    from urllib.parse import urlsplit

    value = text.strip()
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(ord(c) < 33 for c in value):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return value


def _smtp_url(text: str) -> str:
    from nudgeflow.model.smtp_config import SmtpConfigError, parse_smtp_url

    try:
        parse_smtp_url(text.strip())
    except (SmtpConfigError, ValueError, TypeError) as exc:
        raise ValueError(f"not a usable SMTP URL: {exc}") from None
    return text.strip()


def _database_url(text: str) -> str:
    value = text.strip()
    if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
        raise ValueError(f"{_redact(value)!r} is not a database URL (sqlite:///path or postgresql://…)")
    return value


def _redact(url: str) -> str:
    # a database URL may carry a password: never echo it
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
            raise ValueError(f"{name!r} is not a channel name (lower-case letters, digits, _)")
    return names


def _hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in text.split(",") if h.strip())
    for host in hosts:
        if host != "*" and not re.fullmatch(r"(\*\.)?[A-Za-z0-9.-]{1,253}(:\d{1,5})?", host):
            raise ValueError(f"{host!r} is not a host name")
    return hosts


def _text(text: str) -> str:
    value = text.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


def _secret_key(text: str) -> str:
    # checked by the secret box when the database opens, with a message that never shows the key
    return text.strip()


@dataclass(frozen=True)
class EnvVar:
    name: str
    field: str
    parse: Callable[[str], Any]
    doc: str
    empty_means_none: bool = False  # an empty NUDGEFLOW_LOG_CHANNELS means "none", not "unset"


# Every variable the server reads, with how it is checked and what it does: from_env reads
# this list and docs/settings.md lists it.
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "NUDGEFLOW_DATABASE_URL",
        "database_url",
        _database_url,
        "sqlite:///path or postgresql://user:pass@host/db (default: ./nudgeflow.db).",
    ),
    EnvVar(
        "NUDGEFLOW_PUBLIC_URL",
        "public_url",
        parse_public_url,
        "The address the outside world reaches this server at (links, pixel, unsubscribe, push report_url); "
        "a workspace's public_base_url wins.",
    ),
    EnvVar(
        "NUDGEFLOW_INGEST_RATE",
        "ingest_rate_per_second",
        _number(0),
        "Events per second per workspace (token bucket); 0 disables the limit. Default 5000.",
    ),
    EnvVar("NUDGEFLOW_INGEST_BURST", "ingest_burst", _integer(1), "The bucket's size in events. Default 50000."),
    EnvVar(
        "NUDGEFLOW_INGEST_MAX_FUTURE_SECONDS",
        "ingest_max_future_seconds",
        _integer(1),
        "How far after its receipt an event's timestamp may be; a later one is stored at the time received "
        "(with a warning). Default 86400 (1 day).",
    ),
    EnvVar(
        "NUDGEFLOW_LOG_LEVEL",
        "log_level",
        _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        "DEBUG, INFO, WARNING, ERROR or CRITICAL. Default INFO.",
    ),
    EnvVar(
        "NUDGEFLOW_SQLITE_SYNCHRONOUS",
        "sqlite_synchronous",
        _choice("OFF", "NORMAL", "FULL", "EXTRA"),
        "SQLite's synchronous pragma: FULL (default) fsyncs every commit.",
    ),
    EnvVar(
        "NUDGEFLOW_ENGINE",
        "engine_enabled",
        parse_bool,
        "0 serves ingest and the admin API only (no event processing, timers or dispatch). Default 1.",
    ),
    EnvVar(
        "NUDGEFLOW_LOG_CHANNELS",
        "log_channels",
        _names,
        "Channel names the log channel serves until a real channel is configured. Default email,push.",
        empty_means_none=True,
    ),
    EnvVar(
        "NUDGEFLOW_ENGINE_BATCH_MS",
        "engine_batch_ms",
        _number(0),
        "About how long one engine transaction may hold the writer; 0: no limit. Default 15.",
    ),
    EnvVar(
        "NUDGEFLOW_ENGINE_STATE_CACHE_MB",
        "engine_state_cache_mb",
        _number(0),
        "Megabytes of state documents the engine keeps parsed between batches (about six times "
        "that in memory); 0: none. Default 0 (docs/settings.md says when it pays).",
    ),
    EnvVar(
        "NUDGEFLOW_ENGINE_LINGER_MS",
        "engine_linger_ms",
        _number(0),
        "How long after its previous batch the engine waits for more events. Default 20.",
    ),
    EnvVar(
        "NUDGEFLOW_EMAIL_BUILD_PROCESSES",
        "email_build_processes",
        _processes_or_auto,
        "Processes that build emails (render, MIME, DKIM) beside the serving one, 0 to 64, or auto: one "
        "when the machine has 2 or more cores, else 0 (docs/email.md). Default auto.",
    ),
    EnvVar(
        "NUDGEFLOW_RENDER_TIMEOUT_MS",
        "render_timeout_ms",
        _integer(1, 600_000),
        "Wall-clock budget of one template render (preview or send), in ms. Default 2000.",
    ),
    EnvVar(
        "NUDGEFLOW_WEBPUSH_HOSTS",
        "webpush_hosts",
        _hosts,
        "Web Push hosts accepted beside the browsers' own push services; * accepts any.",
        empty_means_none=True,
    ),
    EnvVar(
        "NUDGEFLOW_DISPATCH_MAX_ATTEMPTS",
        "dispatch_max_attempts",
        _integer(1, 100),
        "Transient failures before a message is failed. Default 8.",
    ),
    EnvVar(
        "NUDGEFLOW_DISPATCH_MAX_LOST_CLAIMS",
        "dispatch_max_lost_claims",
        _integer(1, 10_000),
        "Claims whose lease ran out with no outcome (the dispatcher died) before a message is failed. Default 32.",
    ),
    EnvVar(
        "NUDGEFLOW_DISPATCH_LEASE_SECONDS",
        "dispatch_lease_seconds",
        _number(1),
        "How long a claimed send may go unrecorded before it is tried again. Default 300.",
    ),
    EnvVar(
        "NUDGEFLOW_DRAIN_SECONDS",
        "drain_seconds",
        _number(0),
        "On SIGTERM, how long sends already under way may take to finish before they are handed back "
        "(docs/roles.md). Default 10.",
    ),
    EnvVar(
        "NUDGEFLOW_EXPERIMENT_LOOK_SECONDS",
        "experiment_look_seconds",
        _number(0),
        "How often experiments are looked at to pause guardrail breaches and route to winners; 0: never. Default 3600.",
    ),
    EnvVar(
        "NUDGEFLOW_CONSOLE_IDLE_MINUTES",
        "console_idle_minutes",
        _number(1),
        "A web console session unused this long is signed out (docs/console.md). Default 480 (8 hours).",
    ),
    EnvVar(
        "NUDGEFLOW_SECRET_KEY",
        "secret_key",
        _secret_key,
        "Fernet key(s), comma-separated, sealing workspace secrets at rest (docs/settings.md).",
    ),
    EnvVar("NUDGEFLOW_SMTP_URL", "smtp_url", _smtp_url, "The default SMTP server of every workspace (docs/email.md)."),
    EnvVar(
        "NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE",
        "fcm_service_account_file",
        _text,
        "The default FCM service account JSON file (docs/push.md).",
    ),
    EnvVar("NUDGEFLOW_FCM_API_BASE", "fcm_api_base", _http_url, "Another FCM endpoint (a proxy, a test server)."),
    EnvVar("NUDGEFLOW_APNS_KEY_FILE", "apns_key_file", _text, "The default APNs .p8 key file."),
    EnvVar("NUDGEFLOW_APNS_KEY_ID", "apns_key_id", _text, "Its key id."),
    EnvVar("NUDGEFLOW_APNS_TEAM_ID", "apns_team_id", _text, "The Apple team id."),
    EnvVar("NUDGEFLOW_APNS_TOPIC", "apns_topic", _text, "The app's bundle id."),
    EnvVar(
        "NUDGEFLOW_BOT_CLICK_SECONDS",
        "bot_click_seconds",
        _number(0),
        "A click this soon after its email was sent, with no open before it, is flagged as a link "
        "scanner's (docs/consent.md); 0 turns the rule off. Default 10.",
    ),
    EnvVar(
        "NUDGEFLOW_APPLE_RELAY_RANGES",
        "apple_relay_ranges_file",
        _text,
        "A local copy of Apple's iCloud Private Relay egress ranges (CSV): opens fetched from them are "
        "flagged as Mail Privacy Protection's (docs/consent.md). Read at start, never fetched.",
    ),
    EnvVar(
        "NUDGEFLOW_REUSE_PORT",
        "reuse_port",
        parse_bool,
        "1: `serve --role api` listens with SO_REUSEPORT, so several API processes share one --host/--port "
        "(Linux; docs/roles.md). The same as `serve --reuse-port`. Default 0.",
    ),
    EnvVar(
        "NUDGEFLOW_APNS_BASE_URL",
        "apns_base_url",
        _http_url,
        "Another APNs endpoint, e.g. https://api.sandbox.push.apple.com for development builds.",
    ),
)


# The roles of `serve --role` (docs/roles.md). ALL is the embedded runtime.
ROLE_ALL, ROLE_API, ROLE_ENGINE, ROLE_DISPATCH = "all", "api", "engine", "dispatch"
ROLES = (ROLE_ALL, ROLE_API, ROLE_ENGINE, ROLE_DISPATCH)
# Roles that serve no API: only /healthz and /metrics on their port.
OPS_ONLY_ROLES = (ROLE_ENGINE, ROLE_DISPATCH)


def default_database_url(cwd: Path | None = None) -> str:
    path = (cwd or Path.cwd()) / DEFAULT_DATABASE_FILE
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=default_database_url)
    host: str = "127.0.0.1"
    port: int = 8000
    # The address the outside world opens links at (tracked links, the open pixel,
    # unsubscribe and preference pages, push report_url). A workspace's own
    # `public_base_url` wins; None: `serve` uses its own loopback address, or refuses.
    public_url: str | None = None
    # Ingest limits follow Segment's HTTP Tracking API.
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    # Per-workspace token bucket, counted in events; 0 disables the limit.
    ingest_rate_per_second: float = 5000.0
    ingest_burst: int = 50_000
    # An event timestamped further than this after it was received is stored at the time
    # received, with a warning (model/events.py clamp_future; docs/ingest-limits.md).
    ingest_max_future_seconds: int = 86_400
    # Group commit: the most events one transaction takes (it never waits for more: a
    # transaction starts as soon as the one before has committed; store/group_commit.py).
    commit_max_events: int = 5000
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
    # The people whose states the engine saved last, kept parsed for their next batch
    # (runtime/state_cache.py), by megabytes of their documents.
    engine_state_cache_mb: float = 0.0  # off: see runtime/state_cache.py for when it pays
    engine_poll_ms: float = 250.0  # how often due timers and retries are looked for when idle
    # Woken by an ingest commit, the engine waits until this long after its previous batch
    # ended, so that steady traffic is decided in a few larger transactions rather than one
    # small one per ingest commit (each is an fsync, and holds ingest's writer). 0: at once.
    engine_linger_ms: float = 20.0
    dispatch_max_attempts: int = 8  # transient failures before a message is failed
    # Claims lost to a dispatcher that died before recording (not attempts): a message that
    # kills every dispatcher that takes it is failed after this many (runtime/dispatcher.py).
    dispatch_max_lost_claims: int = 32
    # A remote send claimed and not recorded within this (its process died) is tried again;
    # an engine starting with the engine lock tries such sends at once (runtime/dispatcher.py).
    dispatch_lease_seconds: float = 300.0
    # On SIGTERM (`serve` stopping), sends already under way get this long to finish; sends
    # not started, and those still running then, are handed back: due at once, their lease
    # released (docs/roles.md).
    drain_seconds: float = 10.0
    # `serve --role api` listening with SO_REUSEPORT: several API processes on one host and
    # port, the kernel spreading new connections between them (docs/roles.md).
    reuse_port: bool = False
    # What `serve` runs (docs/roles.md): "all" (the embedded runtime: API, engine and
    # dispatch in one process), "api", "engine" or "dispatch". `serve --role` sets it.
    role: str = "all"
    # How often the experiment evaluator (runtime/experiments.py) looks at live experiments to
    # pause guardrail breaches and route to winners; 0: never. Its tests are always-valid, so
    # looking more often costs a query per experiment, never validity.
    experiment_look_seconds: float = 3600.0
    # Channel names the `log` channel serves until real channels are configured.
    log_channels: tuple[str, ...] = ("email", "push")
    # The default SMTP server of every workspace (model/smtp_config.py); a workspace may
    # set its own. With neither, "email" stays on the log channel.
    smtp_url: str | None = None
    # Processes that build emails (render, MIME, DKIM) beside the serving one: 0 builds in
    # it. On a machine with a core to spare, 1 or 2 raise email throughput (channels/workers.py).
    # "auto" (email_build_processes_for): one when the machine has 2 or more cores, else 0.
    email_build_processes: int | str = AUTO
    # The wall-clock budget of one template render, preview or send (content/templates.py):
    # past it the render fails with that reason (a send is recorded as failed).
    render_timeout_ms: int = 2000
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
    # Machine opens and bot clicks (model/engagement_signals.py): a click sooner than this
    # after its email was sent, with no open before it, is a link scanner's (0: rule off);
    # opens from the ranges in this file (Apple's Private Relay egress list) are MPP's.
    bot_click_seconds: float = 10.0
    apple_relay_ranges_file: str | None = None
    # The web console (web/console/): a session unused this long is signed out.
    console_idle_minutes: float = 480.0
    # Fernet key(s) sealing workspace secrets at rest (store/secret_box.py), comma-separated,
    # the first seals. Unset: a SQLite database's key file; PostgreSQL stores them unsealed.
    secret_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from NUDGEFLOW_* variables (ENV_VARS), then `overrides`. A value that cannot
        be used raises ConfigError naming the variable: `NUDGEFLOW_INGEST_RATE: 'fast' is not
        a number`. An empty variable counts as unset."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for var in ENV_VARS:
            raw = env.get(var.name)
            if raw is None or (not raw.strip() and not var.empty_means_none):
                continue
            try:
                values[var.field] = var.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{var.name}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
