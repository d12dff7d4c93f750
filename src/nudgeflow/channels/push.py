"""The `push` channel: one journey message to every push target the person has.

A send step with `channel: push` queues one outbox message. This channel renders it once
(content/push_render.py), finds the person's targets (store/push_targets.py: Web Push
subscriptions, FCM and APNs device tokens) and hands the same content to each target's
sender (channels/webpush.py, fcm.py, apns.py), concurrently:

- a target its service reports gone (Web Push 404/410, FCM UNREGISTERED, APNs 410 /
  BadDeviceToken) is deleted, and counts as not delivered;
- the message is sent when at least one target took it. A target that failed transiently
  while another took it is not tried again: retrying the message would show the
  notification twice on the devices that have it (logged, with the reason);
- when none took it and one failed transiently, the message is retried with backoff (the
  longest Retry-After wins); when all failed for good, it fails with their reasons;
- a person with no target at all fails the message with "no push target";
- a message whose expiry has passed (its template's `ttl` after it was queued: a retry
  that comes too late, an outage) is never sent: it fails as expired.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping, Protocol

from nudgeflow.channels.base import (
    ChannelError,
    ChannelRegistry,
    OutboundMessage,
    PermanentError,
    RemoteChannel,
    TransientError,
)
from nudgeflow.content.push_render import PushContent
from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.store.push_targets import PushTarget

log = logging.getLogger("nudgeflow.push")


class TargetGone(PermanentError):
    """The service says this subscription or token will never work again: delete it."""


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


class DatabasePush:
    """Rendering and targets from the database (the default)."""

    def __init__(self, engine: Any, clock: Clock) -> None:
        self.engine, self.clock = engine, clock

    async def render_push(self, message: OutboundMessage) -> PushContent:
        from nudgeflow.content.push_render import render_push

        return await asyncio.to_thread(render_push, self.engine, message, self.clock)

    async def targets(self, workspace_id: str, profile_id: str) -> list[PushTarget]:
        from nudgeflow.store.push_targets import targets_of

        def read() -> list[PushTarget]:
            with self.engine.connect() as conn:
                return targets_of(conn, workspace_id, profile_id)

        return await asyncio.to_thread(read)

    async def drop(self, workspace_id: str, target: PushTarget) -> None:
        from nudgeflow.store.push_targets import delete_target

        def write() -> None:
            with self.engine.begin() as conn:
                delete_target(conn, workspace_id, target)

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
        except Exception as exc:
            raise PermanentError(f"render failed: {type(exc).__name__}: {exc}") from None
        if content.expired(to_ms(self.clock.now())):
            raise PermanentError(f"expired: its ttl of {content.ttl_s} s after it was queued has passed")
        try:
            targets = await self.targets.targets(message.workspace_id, message.profile_id)
        except Exception as exc:
            raise TransientError(f"cannot read the person's push targets: {type(exc).__name__}") from None
        usable = [t for t in targets if t.provider in self.senders]
        if not usable:
            have = sorted({t.provider for t in targets})
            raise PermanentError(
                "no push target: the person has no push subscription or device token"
                if not have else f"no push target this server can reach (has {', '.join(have)}; not configured)"
            )
        results = await asyncio.gather(
            *(self.senders[t.provider].send(message.workspace_id, t, content) for t in usable), return_exceptions=True
        )
        delivered = 0
        transient: list[TransientError] = []
        reasons: list[str] = []
        for target, result in zip(usable, results):
            if result is None:
                delivered += 1
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
                reasons.append(f"{target.redacted()}: {type(result).__name__}")
        if delivered:
            if reasons:
                log.info("push reached some targets", extra={"delivered": delivered, "failed": "; ".join(reasons)[:500]})
            return
        if transient:
            waits = [t.retry_after_s for t in transient if t.retry_after_s is not None]
            raise TransientError("; ".join(reasons)[:1000], retry_after_s=max(waits) if waits else None)
        raise PermanentError("; ".join(reasons)[:1000] or "no target took the message")

    async def aclose(self) -> None:
        for sender in self.senders.values():
            await sender.aclose()


# -- assembling the channel -----------------------------------------------------------------


def push_in_use(engine: Any, settings: Any) -> bool:
    """Whether push is set up anywhere: a Web Push subscription or a device token stored, or
    FCM / APNs credentials (the server's default or a workspace's). Until then the `push`
    name stays with the development log channel, as `email` does until SMTP is configured."""
    from nudgeflow.channels import push_config

    if push_config.configured(engine, settings, push_config.FCM_SECTION) or push_config.configured(
        engine, settings, push_config.APNS_SECTION
    ):
        return True
    if engine is None:
        return False
    try:
        from sqlalchemy import select

        from nudgeflow.store.schema import device_tokens, push_subscriptions

        with engine.connect() as conn:
            for table in (push_subscriptions, device_tokens):
                if conn.execute(select(table.c.profile_id).limit(1)).first() is not None:
                    return True
    except Exception:  # not migrated yet
        return False
    return False


def configure_push(registry: ChannelRegistry, engine: Any, settings: Any, clock: Clock | None = None,
                   *, force: bool = False) -> PushChannel | None:
    """Serve "push" with a PushChannel (Web Push always; FCM and APNs where credentials
    exist) once push is in use (`push_in_use`), or at once with `force`; returns the channel,
    or None while push stays with the log channel."""
    current = registry.get("push")
    if isinstance(current, PushChannel):
        return current
    if not force and not push_in_use(engine, settings):
        return None
    from nudgeflow.channels import push_config
    from nudgeflow.channels.apns import ApnsSender
    from nudgeflow.channels.fcm import FcmSender
    from nudgeflow.channels.webpush import WebPushSender

    clock = clock or SystemClock()
    senders: dict[str, PushSender] = {"webpush": WebPushSender(engine, settings, clock)}
    if push_config.configured(engine, settings, push_config.FCM_SECTION):
        senders["fcm"] = FcmSender(engine, settings, clock)
    if push_config.configured(engine, settings, push_config.APNS_SECTION):
        senders["apns"] = ApnsSender(engine, settings, clock)
    database = DatabasePush(engine, clock)
    channel = PushChannel(senders, database, database, clock)
    registry.register("push", channel)
    log.info("push goes out to push services", extra={"providers": ",".join(sorted(senders))})
    return channel
