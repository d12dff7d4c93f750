"""A harness for runtime tests, a small scriptable engine standing in for the core, and a
flaky remote channel.

The fake engine has the core's two methods and its contract (state changed in place,
effects returned, deterministic), with behaviour chosen by event name, so a test can say
exactly which decisions it expects and make one chosen event or timer fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from nudgeflow.channels.base import ChannelRegistry, PermanentError, RemoteChannel, TransientError
from nudgeflow.core.catalog import Catalog
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.core.effects import (
    CancelTimer,
    Effect,
    MessageFailed,
    RunChanged,
    ScheduleTimer,
    SendMessage,
    UpdateProfile,
)
from nudgeflow.core.inputs import EventInput, TimerInput
from nudgeflow.core.state import ProfileState
from nudgeflow.model.events import normalize, parse_message
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.runtime.dispatcher import RetryPolicy
from nudgeflow.runtime.embedded import EmbeddedRuntime
from nudgeflow.runtime.processor import EngineCache
from nudgeflow.settings import Settings
from nudgeflow.store import database
from nudgeflow.store.group_commit import GroupCommitter
from nudgeflow.store.workspaces import create_workspace

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

_ids = itertools.count(1)


class FakeEngine:
    """Decisions by event name:

    - "Signed Up": a run starts: a message now (channel/template from the properties,
      default email/welcome), a reminder timer a day later, a RunChanged;
    - "Boom": raises (after changing the state, as a half-done decision would);
    - "Cancel": cancels every reminder timer of the person;
    - "Set Trait": UpdateProfile(set=properties["set"], unset=properties["unset"]);
    - "Fail Step": a MessageFailed for a message that could not be built;
    - anything else: only counted.
    Timers: payload {"step": "reminder"} sends the reminder; {"rearm": n} re-arms the same
    key an hour later n more times; {"boom": true} raises.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []  # (kind, profile, event name or timer key)

    def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]:
        self.calls.append(("event", state.profile_id, event.name))
        state.counters["events"] = state.counters.get("events", 0) + 1
        state.counters.setdefault("seen", []).append(event.name)
        name = event.name
        props = event.properties
        if name == "Boom":
            state.counters["poisoned"] = True
            raise RuntimeError("boom on purpose")
        if name == "Signed Up":
            state.run_seq += 1
            run = f"r{state.run_seq}_{state.profile_id[-16:]}"
            state.counters.setdefault("runs", []).append(run)
            return [
                SendMessage(
                    key=f"{run}:welcome:1",
                    run_id=run,
                    journey_id="welcome",
                    version=1,
                    step="welcome",
                    channel=props.get("channel", "email"),
                    template=props.get("template", "welcome"),
                    variant=None,
                    marketing=True,
                    at_ms=now_ms,
                    context={"trigger": {"event": name, "plan": props.get("plan")}},
                ),
                ScheduleTimer(
                    f"run:{run}", now_ms + DAY_MS, {"step": "reminder", "run": run, **props.get("timer", {})}
                ),
                RunChanged(
                    {
                        "id": run,
                        "journey_id": "welcome",
                        "version": 1,
                        "profile_id": state.profile_id,
                        "status": "active",
                        "step": "wait",
                        "holdout": 0,
                        "entered_at_ms": now_ms,
                        "ended_at_ms": None,
                        "exit_reason": None,
                        "converted_at_ms": None,
                        "revenue": None,
                    }
                ),
            ]
        if name == "Cancel":
            return [CancelTimer(f"run:{run}") for run in state.counters.get("runs", [])]
        if name == "Set Trait":
            return [UpdateProfile(set=props.get("set", {}), unset=props.get("unset", []))]
        if name == "Fail Step":
            return [
                MessageFailed(
                    key=f"x_{state.profile_id[-8:]}:s:1",
                    run_id="x",
                    journey_id="welcome",
                    step="s",
                    reason="template 'nope' not found",
                )
            ]
        if name in ("Message Delivered", "Message Failed", "Message Sent", "Message Logged"):
            state.counters.setdefault("engagement", []).append([name, props.get("message_key"), props.get("reason")])
        return []

    def on_timer(self, state: ProfileState, timer: TimerInput, now_ms: int) -> list[Effect]:
        self.calls.append(("timer", state.profile_id, timer.key))
        state.counters.setdefault("fired", []).append([timer.key, timer.due_ms, now_ms])
        if timer.payload.get("boom"):
            raise RuntimeError("timer boom on purpose")
        effects: list[Effect] = []
        run = timer.payload.get("run", "r")
        if timer.payload.get("step") == "reminder":
            effects.append(
                SendMessage(
                    key=f"{run}:reminder:1",
                    run_id=run,
                    journey_id="welcome",
                    version=1,
                    step="reminder",
                    channel="email",
                    template="reminder",
                    variant=None,
                    marketing=True,
                    at_ms=now_ms,
                )
            )
        rearm = int(timer.payload.get("rearm", 0))
        if rearm > 0:
            effects.append(
                ScheduleTimer(timer.key, now_ms + HOUR_MS, {**timer.payload, "rearm": rearm - 1, "step": None})
            )
        return effects


class FlakyRemote(RemoteChannel):
    """A remote provider that fails transiently `failures` times per message, then accepts."""

    name = "flaky"

    def __init__(self, failures: int = 0, retry_after_s: float | None = None, permanent: str | None = None) -> None:
        self.failures = failures
        self.retry_after_s = retry_after_s
        self.permanent = permanent
        self.sent: list[tuple[str, int]] = []
        self.last: list[bool] = []  # each try's message.last_attempt

    async def send(self, message: OutboundMessage) -> None:
        self.sent.append((message.key, message.attempt))
        self.last.append(message.last_attempt)
        if self.permanent:
            raise PermanentError(self.permanent)
        if message.attempt <= self.failures:
            raise TransientError(f"503 from provider (try {message.attempt})", self.retry_after_s)


def registry(**channels: Any) -> ChannelRegistry:
    reg = ChannelRegistry.development()
    for name, channel in channels.items():
        reg.register(name, channel)
    return reg


def fake_cache(engine: Any) -> EngineCache:
    return EngineCache(
        load_catalog=lambda conn, ws: Catalog(), fingerprint=lambda conn, ws: 0, make_engine=lambda catalog: engine
    )


@dataclass
class Harness:
    url: str
    db: Engine
    clock: VirtualClock
    writer: GroupCommitter
    ws: str
    runtimes: list[EmbeddedRuntime] = field(default_factory=list)

    @classmethod
    def open(cls, url: str, clock: VirtualClock) -> Harness:
        db = database.create_db_engine(url, sqlite_synchronous="NORMAL")
        writer = GroupCommitter(db, clock)
        writer.start()
        with db.begin() as conn:
            ws = create_workspace(conn, "runtime", to_ms(clock.now())).workspace_id
        return cls(url, db, clock, writer, ws)

    def close(self) -> None:
        for rt in self.runtimes:
            rt.stop()
        self.writer.stop()
        self.db.dispose()

    def settings(self, **changes: Any) -> Settings:
        return Settings(database_url=self.url, sqlite_synchronous="NORMAL", ingest_rate_per_second=0, **changes)

    def runtime(
        self,
        engine: Any = None,
        *,
        channels: ChannelRegistry | None = None,
        policy: RetryPolicy | None = None,
        engines: EngineCache | None = None,
        **settings: Any,
    ) -> EmbeddedRuntime:
        rt = EmbeddedRuntime(
            self.db,
            self.writer,
            self.clock,
            self.settings(**settings),
            channels=channels,
            engines=engines or fake_cache(engine if engine is not None else FakeEngine()),
            policy=policy,
        )
        self.runtimes.append(rt)
        return rt

    # -- events ---------------------------------------------------------------------------

    def send(self, *messages: dict[str, Any], ws: str | None = None) -> None:
        records = []
        for message in messages:
            message = {"messageId": f"m-{next(_ids)}", **message}
            records.append(normalize(parse_message(message), self.clock.now(), max_event_bytes=32 * 1024))
        self.writer.submit_events(ws or self.ws, records).result(timeout=60)

    def track(self, user: str, event: str, ws: str | None = None, **properties: Any) -> None:
        self.send({"type": "track", "userId": user, "event": event, "properties": properties}, ws=ws)

    def identify(self, user: str, **traits: Any) -> None:
        self.send({"type": "identify", "userId": user, "traits": traits})

    # -- reading back -------------------------------------------------------------------------

    def q(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.db.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def profile_id(self, user: str) -> str:
        return self.scalar("SELECT profile_id FROM identities WHERE key = :k", k="u:" + user)

    def state(self, user: str) -> ProfileState:
        pid = self.profile_id(user)
        doc = self.scalar("SELECT state FROM profile_state WHERE profile_id = :p", p=pid)
        return ProfileState.from_json(pid, doc)

    def outbox(self) -> list[Any]:
        return self.q("SELECT * FROM outbox ORDER BY id")

    def log_messages(self) -> list[Any]:
        return self.q("SELECT * FROM log_channel_messages ORDER BY id")

    def timers(self) -> list[Any]:
        return self.q('SELECT profile_id, "key", due_at_ms, payload FROM timers ORDER BY due_at_ms, "key"')

    def events_named(self, name: str) -> list[Any]:
        return self.q("SELECT * FROM events WHERE event = :e ORDER BY seq", e=name)

    def cursor(self) -> int:
        return int(self.scalar("SELECT position FROM engine_cursors WHERE name = 'events'") or 0)

    def in_transaction(self, fn: Callable[[Any], Any]) -> Any:
        return self.writer.submit_job(fn).result(timeout=60)
