"""The event stream's settings: which servers, which stream, how many partitions and how durable.

One frozen value, checked when it is made, so a wrong setting fails at start with a message that
names it rather than as a strange error from the cluster later. What each setting risks is in
docs/event-stream.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from nudgeflow.stream.errors import InvalidStreamRequest, StreamSettingError

DEFAULT_STREAM = "NUDGEFLOW_EVENTS"
DEFAULT_SUBJECT_PREFIX = "nudgeflow.events"
DEFAULT_PARTITIONS = 64
MAX_PARTITIONS = 4096
REPLICA_CHOICES = (1, 3, 5)  # an even count adds a node to every write and tolerates no more failures
DEFAULT_DUPLICATE_WINDOW_SECONDS = 120.0  # JetStream's default; PostgreSQL's unique key covers the rest
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600.0
STORAGE_FILE = "file"

# JetStream stream names: no whitespace, no subject wildcards or separators, no path characters.
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
# A subject prefix: dot-separated literal tokens (no wildcards: each partition is one literal subject).
_SUBJECT_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_SCHEMES = {"nats", "tls", "ws", "wss"}
_CREDENTIALS = re.compile(r"//[^/@]*@")


@dataclass(frozen=True)
class StreamSettings:
    """Where the event log lives and how it is kept.

    `servers` are the cluster's URLs (any subset will do: the client learns the rest). They may carry
    credentials, so they are left out of repr(); `redacted_servers()` is what to show.
    """

    servers: tuple[str, ...] = field(default=("nats://127.0.0.1:4222",), repr=False)
    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    partitions: int = DEFAULT_PARTITIONS
    replicas: int = 3
    duplicate_window_seconds: float = DEFAULT_DUPLICATE_WINDOW_SECONDS
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS  # 0 keeps events forever
    storage: str = STORAGE_FILE
    connect_timeout_seconds: float = 2.0
    request_timeout_seconds: float = 5.0  # a publish (or stream request) not acknowledged by then is unavailable

    def __post_init__(self) -> None:
        if isinstance(self.servers, str):
            # A bare string would be taken apart letter by letter; parse_servers() splits a list.
            object.__setattr__(self, "servers", parse_servers(self.servers))
        else:
            object.__setattr__(self, "servers", tuple(self.servers))
        if not self.servers:
            raise StreamSettingError("servers: at least one NATS server URL is needed")
        for url in self.servers:
            _check_server(url)
        if not _STREAM_NAME.fullmatch(self.stream):
            raise StreamSettingError(
                f"stream: {self.stream!r} is not a JetStream stream name (letters, digits, '_' and '-', at most 255)"
            )
        tokens = self.subject_prefix.split(".")
        if not all(_SUBJECT_TOKEN.fullmatch(t) for t in tokens):
            raise StreamSettingError(
                f"subject_prefix: {self.subject_prefix!r} must be dot-separated tokens of letters, digits, "
                "'_' and '-' (no wildcards, no empty token)"
            )
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int):
            raise StreamSettingError(f"partitions: {self.partitions!r} is not a whole number")
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise StreamSettingError(f"partitions: {self.partitions} is outside 1..{MAX_PARTITIONS}")
        if self.replicas not in REPLICA_CHOICES or isinstance(self.replicas, bool):
            raise StreamSettingError(
                f"replicas: {self.replicas!r} is not one of 1, 3 or 5 (an odd count: a majority must store each event)"
            )
        if self.storage != STORAGE_FILE:
            raise StreamSettingError(
                f"storage: {self.storage!r} is not 'file'; memory storage loses every acknowledged event "
                "when the nodes restart"
            )
        _positive("duplicate_window_seconds", self.duplicate_window_seconds)
        _positive("connect_timeout_seconds", self.connect_timeout_seconds)
        _positive("request_timeout_seconds", self.request_timeout_seconds)
        if self.max_age_seconds < 0:
            raise StreamSettingError(f"max_age_seconds: {self.max_age_seconds} is negative (0 keeps events forever)")
        if 0 < self.max_age_seconds < self.duplicate_window_seconds:
            raise StreamSettingError(
                f"max_age_seconds: {self.max_age_seconds} is shorter than the duplicate window "
                f"({self.duplicate_window_seconds} s); JetStream refuses such a stream"
            )

    @property
    def subjects(self) -> str:
        """The stream's subject filter: every partition's subject."""
        return f"{self.subject_prefix}.*"

    def subject(self, partition: int) -> str:
        """The subject of one partition: `nudgeflow.events.<partition>`."""
        return partition_subject(partition, self.partitions, self.subject_prefix)

    def redacted_servers(self) -> tuple[str, ...]:
        """The server URLs without user names, passwords or tokens, for logs and errors."""
        return tuple(redact_url(u) for u in self.servers)


def partition_subject(
    partition: int, partitions: int = DEFAULT_PARTITIONS, prefix: str = DEFAULT_SUBJECT_PREFIX
) -> str:
    """The subject a partition's events are published to; a partition outside 0..partitions-1 is an error."""
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise InvalidStreamRequest(f"partition: {partition!r} is not a whole number")
    if not 0 <= partition < partitions:
        raise InvalidStreamRequest(f"partition: {partition} is outside 0..{partitions - 1}")
    return f"{prefix}.{partition}"


def parse_servers(text: str) -> tuple[str, ...]:
    """Comma-separated server URLs (as `--nats` takes them) into a tuple; blanks are dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def redact_url(url: str) -> str:
    """The URL with whatever stands before an '@' (user, password, token) replaced by ***."""
    return _CREDENTIALS.sub("//***@", url)


def _check_server(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it is the check: a port that is not a number raises
    except ValueError as exc:
        raise StreamSettingError(f"servers: {redact_url(url)!r} is not a URL: {exc}") from exc
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise StreamSettingError(
            f"servers: {redact_url(url)!r} is not a NATS URL (nats://host:port, tls://, ws:// or wss://)"
        )


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise StreamSettingError(f"{name}: {value!r} must be more than 0")
