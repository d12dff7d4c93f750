"""EventStream: the event log on NATS JetStream, as a building block (issue 17, first phase).

What it does: connects to a cluster, makes sure the stream exists with the durability asked for
(and refuses a weaker existing one), publishes one event to a partition's subject and waits for
JetStream's acknowledgement, and reads a partition's events after a stream sequence.

What it leaves to the caller: positions. An engine worker keeps the stream sequence of the last
event it decided in PostgreSQL, in the same transaction as what it decided, and asks `read` for
what comes after it. So no consumer state or acknowledgement in JetStream is relied on: each read
is a short-lived ephemeral consumer that starts at a sequence and acknowledges nothing.

Nothing connects at import time; `connect()` does.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.manager import JetStreamManager

from nudgeflow.stream.config import StreamSettings
from nudgeflow.stream.errors import InvalidStreamRequest, StreamError, StreamRefused, StreamUnavailable

log = logging.getLogger("nudgeflow.stream")

MSG_ID_HEADER = "Nats-Msg-Id"
MAX_MSG_ID_LENGTH = 512
MAX_READ = 10_000
# How long JetStream keeps a read's consumer if the reader vanishes before deleting it.
_CONSUMER_IDLE_SECONDS = 30.0
# JetStream's error code for "stream name already in use with a different configuration".
_STREAM_NAME_IN_USE = 10058
_RECONNECT_WAIT_SECONDS = 1
_RETRY_SECONDS = 0.02


@dataclass(frozen=True)
class Published:
    """JetStream's acknowledgement: the event's stream sequence, and whether it was a duplicate
    (the same message id inside the duplicate window: stored once, at `seq`)."""

    seq: int
    duplicate: bool


@dataclass(frozen=True)
class StreamMessage:
    """One event read back: its stream sequence (the position a worker stores), its partition,
    the message id it was published with, and its payload."""

    seq: int
    partition: int
    msg_id: str | None
    payload: bytes


@dataclass(frozen=True)
class StreamState:
    """What the cluster says about the stream: its durable configuration and where it stands."""

    name: str
    subjects: tuple[str, ...]
    replicas: int
    storage: str
    retention: str
    duplicate_window_seconds: float
    max_age_seconds: float
    messages: int
    last_seq: int
    leader: str | None
    current_replicas: int  # the leader plus the followers that are current


class EventStream:
    """An async client of the event stream. One per process; not shared between event loops."""

    def __init__(self, settings: StreamSettings, *, client_name: str = "nudgeflow") -> None:
        self.settings = settings
        self._client_name = client_name
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._jsm: JetStreamManager | None = None
        self._closing = False

    async def __aenter__(self) -> EventStream:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect to the cluster. No server answering within the connect timeout is StreamUnavailable."""
        if self._nc is not None:
            return
        s = self.settings
        nc = Client()
        # Once connected, the client keeps trying the cluster's nodes for ever: a node restarting is
        # routine, and a publish during the gap fails on its own timeout (StreamUnavailable). The first
        # connection is bounded here instead: about one try of each server.
        deadline = s.connect_timeout_seconds * len(s.servers) + _RECONNECT_WAIT_SECONDS
        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=list(s.servers),
                    name=self._client_name,
                    connect_timeout=math.ceil(s.connect_timeout_seconds),
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=_RECONNECT_WAIT_SECONDS,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                timeout=deadline,
            )
        except (nats.errors.Error, OSError) as exc:  # TimeoutError (wait_for's) is an OSError
            await _abandon(nc)
            why = f"within {deadline:g} s" if isinstance(exc, TimeoutError) else f"({_describe(exc)})"
            raise StreamUnavailable(f"no NATS server of {', '.join(s.redacted_servers())} answered {why}") from exc
        self._nc = nc
        self._js = nc.jetstream(timeout=s.request_timeout_seconds)
        self._jsm = nc.jsm(timeout=s.request_timeout_seconds)

    async def close(self) -> None:
        nc = self._nc
        if nc is not None and not nc.is_closed:
            self._closing = True  # the disconnection that follows is ours, not news
            try:
                await nc.close()
            except (nats.errors.Error, OSError) as exc:
                # Closing a connection to a cluster that is gone: nothing is left to flush that matters
                # (every publish that counted was acknowledged before it returned).
                log.warning("closing the NATS connection failed: %s", _describe(exc))
        self._nc, self._js, self._jsm, self._closing = None, None, None, False

    async def ensure_stream(self) -> StreamState:
        """Create the stream if it does not exist; if it does, check it is at least as durable as asked.

        An existing stream with fewer replicas, memory storage, a shorter duplicate window or max age,
        a retention that deletes events, or subjects that miss the partitions is refused with a
        StreamRefused naming the setting. It is never changed here: an operator decides.
        """
        jsm = self._manager()
        s = self.settings
        try:
            try:
                info = await jsm.stream_info(s.stream)
            except nats.js.errors.NotFoundError:
                try:
                    info = await jsm.add_stream(self._wanted_config())
                    log.info("created stream %s with %d replicas", s.stream, s.replicas)
                except nats.js.errors.APIError as exc:
                    if exc.err_code != _STREAM_NAME_IN_USE:
                        raise
                    # Another process created it first, with other settings: check what it made.
                    info = await jsm.stream_info(s.stream)
        except (nats.errors.Error, OSError) as exc:
            raise _translate(exc, f"looking up stream {s.stream}") from exc
        problems = self._weaker(info.config)
        if problems:
            raise StreamRefused(
                f"stream {s.stream} exists with a weaker configuration than asked: {'; '.join(problems)}. "
                "Nudgeflow does not change an existing stream; change it with `nats stream edit` (or "
                "delete it) if that is what you mean, or ask for what it has."
            )
        return _state(info)

    async def describe(self) -> StreamState:
        """The stream's configuration and state as the cluster reports it now."""
        try:
            info = await self._manager().stream_info(self.settings.stream)
        except (nats.errors.Error, OSError) as exc:
            raise _translate(exc, f"reading stream {self.settings.stream}") from exc
        return _state(info)

    async def publish(self, partition: int, msg_id: str, payload: bytes) -> Published:
        """Publish one event to its partition's subject and wait for JetStream's acknowledgement.

        Returning means the stream's quorum stored it. Any doubt (timeout, no responders, no leader)
        raises StreamUnavailable; the caller retries with the same msg_id, which JetStream stores
        once inside the duplicate window.
        """
        subject = self.settings.subject(partition)
        _check_msg_id(msg_id)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise InvalidStreamRequest(f"payload: {type(payload).__name__} is not bytes")
        js = self._context()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.settings.request_timeout_seconds
        try:
            while True:
                try:
                    ack = await js.publish(
                        subject, bytes(payload), stream=self.settings.stream, headers={MSG_ID_HEADER: msg_id}
                    )
                    break
                except nats.js.errors.NoStreamResponseError:
                    # No responders: nobody received it, so it is certainly not stored. Just after the
                    # stream is made, or while a new leader takes over, its interest has not yet
                    # crossed the routes to our node: try again within the request timeout.
                    if loop.time() + _RETRY_SECONDS >= give_up:
                        raise
                    await asyncio.sleep(_RETRY_SECONDS)
        except nats.errors.MaxPayloadError as exc:
            raise InvalidStreamRequest(f"payload: {len(payload)} bytes is more than the server accepts") from exc
        except (nats.errors.Error, OSError) as exc:
            raise _translate(exc, f"publishing to {subject}") from exc
        return Published(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def read(
        self, partition: int, after_seq: int, max_messages: int = 100, timeout: float = 1.0
    ) -> list[StreamMessage]:
        """The partition's events with a stream sequence above `after_seq`, in stream order, at most
        `max_messages`. Waits up to `timeout` seconds for the first one; an empty list if none came.

        Each call makes an ephemeral consumer starting at after_seq + 1 that acknowledges nothing,
        fetches, and deletes it: the position lives with the caller, not in JetStream.
        """
        subject = self.settings.subject(partition)
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise InvalidStreamRequest(f"after_seq: {after_seq!r} is not a stream sequence (0 or more)")
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or not 1 <= max_messages <= MAX_READ:
            raise InvalidStreamRequest(f"max_messages: {max_messages!r} is outside 1..{MAX_READ}")
        if not timeout > 0:
            raise InvalidStreamRequest(f"timeout: {timeout!r} must be more than 0")
        js, jsm = self._context(), self._manager()
        stream = self.settings.stream
        config = ConsumerConfig(
            name=f"nf_read_{self._connection().new_inbox().rsplit('.', 1)[-1]}",
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after_seq + 1,
            ack_policy=AckPolicy.NONE,
            filter_subject=subject,
            inactive_threshold=_CONSUMER_IDLE_SECONDS,
            # The consumer lives for one fetch and holds no position worth keeping: one copy, in memory.
            num_replicas=1,
            mem_storage=True,
        )
        try:
            await jsm.add_consumer(stream, config)
        except (nats.errors.Error, OSError) as exc:
            raise _translate(exc, f"reading {subject}") from exc
        assert config.name is not None
        try:
            sub = await js.pull_subscribe_bind(consumer=config.name, stream=stream)
            try:
                fetched = await _fetch(sub, max_messages, timeout, self.settings.request_timeout_seconds)
            except TimeoutError:
                # nats-py raises its TimeoutError or asyncio's, depending on where the wait ended. The
                # consumer was just made, so the stream answered: nothing came within the timeout. (Were
                # the cluster to vanish in between, an empty read is still true: the caller asks again
                # from the same position.)
                fetched = []
            finally:
                await sub.unsubscribe()
        except (nats.errors.Error, OSError) as exc:
            raise _translate(exc, f"reading {subject}") from exc
        finally:
            await self._delete_consumer(stream, config.name)
        out: list[StreamMessage] = []
        last = after_seq
        for msg in fetched:
            seq = msg.metadata.sequence.stream
            if seq <= last:
                continue  # never hand back a position twice or out of order
            last = seq
            headers = msg.headers or {}
            out.append(StreamMessage(seq=seq, partition=partition, msg_id=headers.get(MSG_ID_HEADER), payload=msg.data))
        return out

    def _wanted_config(self) -> StreamConfig:
        s = self.settings
        return StreamConfig(
            name=s.stream,
            subjects=[s.subjects],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=s.replicas,
            duplicate_window=s.duplicate_window_seconds,
            max_age=s.max_age_seconds,
            discard=DiscardPolicy.OLD,
        )

    def _weaker(self, have: StreamConfig) -> list[str]:
        """Each way the existing stream is weaker than asked, named by its setting."""
        s = self.settings
        problems = []
        replicas = have.num_replicas or 1
        if replicas < s.replicas:
            problems.append(f"replicas is {replicas}, asked {s.replicas}")
        storage = _value(have.storage) or "file"
        if storage != "file":
            problems.append(f"storage is {storage}, asked file")
        retention = _value(have.retention) or "limits"
        if retention != "limits":
            problems.append(f"retention is {retention} (it deletes events once consumed), asked limits")
        if have.duplicate_window < s.duplicate_window_seconds:
            problems.append(f"duplicate_window is {have.duplicate_window:g} s, asked {s.duplicate_window_seconds:g} s")
        max_age = have.max_age or 0.0
        if max_age and (not s.max_age_seconds or max_age < s.max_age_seconds):
            asked = f"{s.max_age_seconds:g} s" if s.max_age_seconds else "unlimited"
            problems.append(f"max_age is {max_age:g} s, asked {asked}")
        if have.no_ack:
            problems.append("no_ack is set (publishes would not be acknowledged)")
        if s.subjects not in (have.subjects or []):
            problems.append(f"subjects are {have.subjects}, which do not include {s.subjects}")
        return problems

    async def _delete_consumer(self, stream: str, name: str) -> None:
        jsm = self._jsm
        if jsm is None:
            return
        try:
            await jsm.delete_consumer(stream, name)
        except (nats.errors.Error, OSError) as exc:
            # It expires on its own after _CONSUMER_IDLE_SECONDS; the read itself is done.
            log.debug("could not delete read consumer %s: %s", name, _describe(exc))

    def _connection(self) -> Client:
        if self._nc is None:
            raise StreamError("the event stream is not connected: call connect() first")
        return self._nc

    def _context(self) -> JetStreamContext:
        self._connection()
        assert self._js is not None
        return self._js

    def _manager(self) -> JetStreamManager:
        self._connection()
        assert self._jsm is not None
        return self._jsm

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS connection error: %s", _describe(exc))

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        log.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        nc = self._nc
        where = nc.connected_url.netloc.rsplit("@", 1)[-1] if nc is not None and nc.connected_url else "?"
        log.info("reconnected to NATS at %s", where)


async def _fetch(
    sub: JetStreamContext.PullSubscription, max_messages: int, timeout: float, answer_within: float
) -> list[Msg]:
    """Fetch from a consumer just made. Its pull requests may meet "no responders" (503) for a moment:
    the consumer can live on another node than ours, and its interest takes a moment to cross the
    routes (longer on a loaded machine). That is retried for up to `answer_within` seconds (the request
    timeout: how long the cluster may take to answer at all), apart from `timeout` (how long to wait for
    an event); after it, it is StreamUnavailable."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + max(timeout, answer_within)
    while True:
        try:
            return await sub.fetch(max_messages, timeout=timeout)
        except nats.js.errors.ServiceUnavailableError:
            if loop.time() + _RETRY_SECONDS >= give_up:
                raise
            await asyncio.sleep(_RETRY_SECONDS)


async def _abandon(nc: Client) -> None:
    """Stop a client whose first connection failed, so no reconnect loop outlives connect()."""
    try:
        await nc.close()
    except (nats.errors.Error, OSError):
        pass  # it never connected: there is nothing to flush or tell the server


def _translate(exc: BaseException, what: str) -> StreamError:
    """A NATS client error as this layer's: the kinds that mean "JetStream did not answer" become
    StreamUnavailable; an API error JetStream answered with stays a StreamError with its text."""
    if isinstance(exc, nats.js.errors.APIError) and not isinstance(exc, nats.js.errors.ServiceUnavailableError):
        if exc.code == 503:  # no stream leader, no quorum, JetStream not ready
            return StreamUnavailable(f"{what}: JetStream is unavailable: {_describe(exc)}")
        return StreamError(f"{what}: JetStream refused: {_describe(exc)}")
    if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError):
        return StreamUnavailable(f"{what}: JetStream did not answer in time (the event is not known to be stored)")
    return StreamUnavailable(f"{what}: JetStream is unavailable: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_msg_id(msg_id: str) -> None:
    if not isinstance(msg_id, str) or not msg_id:
        raise InvalidStreamRequest(f"msg_id: {msg_id!r} is not a non-empty string")
    if len(msg_id) > MAX_MSG_ID_LENGTH:
        raise InvalidStreamRequest(f"msg_id: {len(msg_id)} characters, more than {MAX_MSG_ID_LENGTH}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in msg_id):
        # A header value cannot hold CR, LF or other control characters.
        raise InvalidStreamRequest(f"msg_id: {msg_id!r} holds a control character")


def _value(x: Any) -> str | None:
    if x is None:
        return None
    return str(getattr(x, "value", x))


def _state(info: StreamInfo) -> StreamState:
    c, st = info.config, info.state
    cluster = info.cluster
    leader = cluster.leader if cluster is not None else None
    current = (1 if leader else 0) + sum(1 for p in (cluster.replicas or []) if p.current) if cluster else 1
    return StreamState(
        name=c.name or "",
        subjects=tuple(c.subjects or ()),
        replicas=c.num_replicas or 1,
        storage=_value(c.storage) or "file",
        retention=_value(c.retention) or "limits",
        duplicate_window_seconds=c.duplicate_window,
        max_age_seconds=c.max_age or 0.0,
        messages=st.messages,
        last_seq=st.last_seq,
        leader=leader,
        current_replicas=current,
    )
