"""The `push` channel: one journey message to every push target the person has.

A send step with `channel: push` queues one outbox message. This channel renders it once
(content/push_render.py), finds the person's targets (store/push_targets.py: Web Push
subscriptions, FCM and APNs device tokens) and hands the same content to each target's
sender (channels/webpush.py, fcm.py, apns.py), concurrently:

- a target its service reports gone (Web Push 404/410, FCM UNREGISTERED, APNs 410) is
  deleted, and counts as not delivered; a refusal that is the channel's own problem (APNs
  BadDeviceToken: most likely the wrong environment, see apns.py) keeps the target, and when
  it is every target's answer the message fails as a ChannelProblem;
- when a target failed transiently (or its sender raised an unexpected error, which is
  logged with its traceback), the message is retried with backoff (the longest
  Retry-After wins), and the retry goes only to the targets that have not taken it: those
  that did are remembered in `push_deliveries`, so no device shows the notification twice;
- the message is sent once every target took it or failed for good, with at least one
  taker; when its retries run out or it expires with some targets reached, it is sent
  too (the stragglers are logged). When all failed for good, it fails with their reasons;
- a person with no target at all is not sent the message (NoTarget: it is recorded
  `suppressed`, reason `no_target`); one whose targets this server cannot reach (a
  provider not configured) fails it with "no push target this server can reach";
- a message whose expiry has passed (its template's `ttl` after it was queued: a retry
  that comes too late, an outage) is never sent: it fails as expired.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from nudgeflow.channels.base import (
    ChannelError,
    ChannelProblem,
    NoTarget,
    PermanentError,
    PushOptedOut,
    RemoteChannel,
    TransientError,
)
from nudgeflow.channels.common import TargetGone, permanent_from_render
from nudgeflow.content.errors import RenderError
from nudgeflow.content.push_render import PushContent, render_push
from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.store.push_targets import (
    PushTarget,
    delete_target,
    delivered_targets,
    forget_deliveries,
    record_deliveries,
    targets_of,
)

log = logging.getLogger("nudgeflow.push")


class PushSender(Protocol):
    """Sends one rendered message to one target of its provider ("webpush", "fcm", "apns")."""

    provider: str

    async def send(self, workspace_id: str, target: PushTarget, content: PushContent) -> None:
        """Raise TargetGone, TransientError (with retry_after_s) or PermanentError on failure."""

    async def aclose(self) -> None: ...


class PushRenderer(Protocol):
    async def render_push(self, message: OutboundMessage) -> PushContent: ...


class PushTargets(Protocol):
    async def targets(self, workspace_id: str, profile_id: str) -> list[PushTarget]: ...

    async def drop(self, workspace_id: str, target: PushTarget) -> None: ...

    async def delivered(self, workspace_id: str, message_key: str) -> set[str]:
        """Keys of the targets that took this message on an earlier try."""

    async def remember(self, message: OutboundMessage, target_keys: list[str]) -> None:
        """Record targets that took the message, before the rest are retried."""

    async def forget(self, workspace_id: str, message_key: str) -> None:
        """Drop what `remember` recorded: the message is done."""


class DatabasePush:
    """Rendering and targets from the database (the default)."""

    def __init__(self, engine: Any, clock: Clock) -> None:
        self.engine, self.clock = engine, clock

    async def render_push(self, message: OutboundMessage) -> PushContent:
        return await asyncio.to_thread(render_push, self.engine, message, self.clock)

    async def targets(self, workspace_id: str, profile_id: str) -> list[PushTarget]:
        def read() -> list[PushTarget]:
            with self.engine.connect() as conn:
                return targets_of(conn, workspace_id, profile_id)

        return await asyncio.to_thread(read)

    async def drop(self, workspace_id: str, target: PushTarget) -> None:
        def write() -> None:
            with self.engine.begin() as conn:
                delete_target(conn, workspace_id, target)

        await asyncio.to_thread(write)

    async def delivered(self, workspace_id: str, message_key: str) -> set[str]:
        def read() -> set[str]:
            with self.engine.connect() as conn:
                return delivered_targets(conn, workspace_id, message_key)

        return await asyncio.to_thread(read)

    async def remember(self, message: OutboundMessage, target_keys: list[str]) -> None:
        def write() -> None:
            with self.engine.begin() as conn:
                record_deliveries(
                    conn, message.workspace_id, message.key, message.profile_id, target_keys, to_ms(self.clock.now())
                )

        await asyncio.to_thread(write)

    async def forget(self, workspace_id: str, message_key: str) -> None:
        def write() -> None:
            with self.engine.begin() as conn:
                forget_deliveries(conn, workspace_id, message_key)

        await asyncio.to_thread(write)


class PushChannel(RemoteChannel):
    name = "push"
    delivered_on_send = False  # a push service's acceptance is "Message Sent"

    def __init__(
        self,
        senders: Mapping[str, PushSender],
        renderer: PushRenderer,
        targets: PushTargets,
        clock: Clock | None = None,
    ) -> None:
        self.senders = dict(senders)
        self.renderer = renderer
        self.targets = targets
        self.clock = clock or SystemClock()

    async def send(self, message: OutboundMessage) -> None:
        try:
            content = await self.renderer.render_push(message)
        except ChannelError:
            raise
        except RenderError as exc:
            raise permanent_from_render(exc) from exc
        except Exception as exc:
            raise PermanentError(f"render failed: {type(exc).__name__}: {exc}") from None
        # Targets reached by an earlier try of this message. Only a try that left some
        # targets to retry records any, so a first try need not look; a first try whose
        # earlier claim ran out (its dispatcher died after recording them) does.
        earlier: set[str] = set()
        if message.attempt > 1 or message.claim > 1:
            try:
                earlier = await self.targets.delivered(message.workspace_id, message.key)
            except Exception as exc:
                raise TransientError(f"cannot read the message's earlier deliveries: {type(exc).__name__}") from None
        if content.expired(to_ms(self.clock.now())):
            if earlier:
                await self._done(message, earlier, f"expired before the rest were reached ({len(earlier)} were)")
                return
            raise PermanentError(f"expired: its ttl of {content.ttl_s} s after it was queued has passed")
        try:
            targets = await self.targets.targets(message.workspace_id, message.profile_id)
        except Exception as exc:
            raise TransientError(f"cannot read the person's push targets: {type(exc).__name__}") from None
        usable = [t for t in targets if t.provider in self.senders]
        todo = [t for t in usable if t.key not in earlier]
        if not todo:
            if earlier:  # the rest were reached before, or are gone since
                await self._done(message, earlier, None)
                return
            have = sorted({t.provider for t in targets})
            if not have:
                raise NoTarget("no push target: the person has no push subscription or device token")
            # Targets this server is not set up for: a configuration to fix, so a failure.
            raise PermanentError(f"no push target this server can reach (has {', '.join(have)}; not configured)")
        results = await asyncio.gather(
            *(self.senders[t.provider].send(message.workspace_id, t, content) for t in todo), return_exceptions=True
        )
        reached: list[str] = []
        transient: list[TransientError] = []
        reasons: list[str] = []
        for target, result in zip(todo, results, strict=True):
            if result is None:
                reached.append(target.key)
            elif isinstance(result, TargetGone):
                reasons.append(f"{target.redacted()}: {result.reason}")
                try:
                    await self.targets.drop(message.workspace_id, target)
                except Exception as exc:  # it will be reported gone again next time
                    log.warning("could not delete a gone push target", extra={"error": type(exc).__name__})
            elif isinstance(result, TransientError):
                transient.append(result)
                reasons.append(f"{target.redacted()}: {result.reason}")
            elif isinstance(result, ChannelError):
                reasons.append(f"{target.redacted()}: {result.reason}")
            elif isinstance(result, BaseException):
                # No service's answer but a bug (ours or a library's): retried, as the
                # dispatcher retries a channel that raises one, and logged with its traceback.
                log.error(
                    "push sender raised an unexpected error",
                    extra={"provider": target.provider, "target": target.redacted(), "error": type(result).__name__},
                    exc_info=result,
                )
                transient.append(TransientError(f"{target.provider} sender error: {type(result).__name__}"))
                reasons.append(f"{target.redacted()}: {type(result).__name__}")
        taken = len(earlier) + len(reached)
        if transient and not (taken and message.last_attempt):
            waits = [t.retry_after_s for t in transient if t.retry_after_s is not None]
            if reached:
                try:
                    await self.targets.remember(message, reached)
                except Exception as exc:
                    # Retrying without the record would show the notification twice on the
                    # targets just reached: count the message sent and leave the rest.
                    log.warning(
                        "could not record a partial push; the rest are not retried",
                        extra={"error": type(exc).__name__, "failed": "; ".join(reasons)[:500]},
                    )
                    return
            prefix = f"reached {taken} of {taken + len(transient)} targets, retrying the rest: " if taken else ""
            raise TransientError((prefix + "; ".join(reasons))[:1000], retry_after_s=max(waits) if waits else None)
        if taken:
            await self._done(message, earlier, "; ".join(reasons) if reasons else None, delivered=taken)
            return
        if todo and all(isinstance(result, TargetGone) for result in results):
            raise PushOptedOut("; ".join(reasons)[:1000])
        if todo and all(isinstance(result, ChannelProblem) for result in results):
            raise ChannelProblem("; ".join(reasons)[:1000])
        raise PermanentError("; ".join(reasons)[:1000] or "no target took the message")

    async def _done(self, message: OutboundMessage, earlier: set[str], failed: str | None, delivered: int = 0) -> None:
        """The message counts as sent: log what did not take it, drop the partial record."""
        if failed:
            log.info(
                "push reached some targets",
                extra={"message_key": message.key, "delivered": delivered or len(earlier), "failed": failed[:500]},
            )
        if earlier:
            try:
                await self.targets.forget(message.workspace_id, message.key)
            except Exception as exc:  # a leftover row only skips a target of a message already done
                log.warning("could not drop a finished push's delivery record", extra={"error": type(exc).__name__})

    async def aclose(self) -> None:
        for sender in self.senders.values():
            await sender.aclose()
