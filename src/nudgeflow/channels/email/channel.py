"""The `email` channel: its renderers, its per-workspace SMTP settings, and the channel
that builds each message (build.py) and hands it to the SMTP pool of its settings (pool.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from email.utils import formataddr, parseaddr
from typing import Any, Protocol, cast

from nudgeflow.channels.base import NoTarget, PermanentError, RemoteChannel, TransientError
from nudgeflow.channels.common import Sleep, WorkspaceCache, permanent_from_render
from nudgeflow.channels.email.build import build_raw, finish
from nudgeflow.channels.email.pool import SmtpPool
from nudgeflow.channels.email.signing import ED25519_SHA256, RSA_SHA256, DkimKey, DkimKeyError, algorithm, load_key
from nudgeflow.content.email_jobs import EmailJob, TemplateNotLoaded, slim
from nudgeflow.content.email_render import prepare_email
from nudgeflow.content.errors import RenderError
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.smtp_config import SmtpConfig, SmtpConfigError
from nudgeflow.store.consent import tracking_secret
from nudgeflow.store.workspace_settings import get_smtp

# -- content ------------------------------------------------------------------------------


class Renderer(Protocol):
    async def render_email(self, message: OutboundMessage) -> RenderedEmail:
        """The content of one message; raise RenderError (or PermanentError) when it cannot be rendered."""


class DefaultRenderer:
    """The templates of content/: `content.email_render.prepare_email(engine, message)`
    reads what a message needs (on a thread of the event loop's pool) and returns an
    EmailJob, which the channel builds (render, MIME, DKIM: build.build_raw) here or in a
    worker process. The template stack itself
    (Liquid, MJML) loads when the first email is rendered."""

    def __init__(self, engine: Any = None) -> None:
        self.engine = engine

    async def prepare_email(self, message: OutboundMessage) -> EmailJob:
        # Its reads (the template, the person, the workspace's settings: several round trips
        # to the database) on a thread, as the push channel's: on the event loop they held
        # every other send's network exchange behind them, one message after another.
        return await asyncio.to_thread(prepare_email, self.engine, message)


# -- configuration per workspace ------------------------------------------------------------


class ConfigSource(Protocol):
    async def for_workspace(self, workspace_id: str) -> SmtpConfig | None: ...

    async def tracking_secret(self, workspace_id: str) -> str | None:
        """The workspace's tracking secret, which signs its bounce addresses
        (model/bounce_address.py); None when there is none to be had."""


class StaticConfig:
    """One configuration for every workspace; `tracking_secret` (if any) signs bounce
    addresses for all of them (no database to keep one per workspace)."""

    def __init__(self, config: SmtpConfig | None, tracking_secret: str | None = None) -> None:
        self.config = config
        self._secret = tracking_secret

    async def for_workspace(self, workspace_id: str) -> SmtpConfig | None:
        return self.config

    async def tracking_secret(self, workspace_id: str) -> str | None:
        return self._secret


class WorkspaceConfigs:
    """A workspace's own SMTP settings, else the default; cached for `ttl_s`."""

    def __init__(self, engine: Any, default: SmtpConfig | None, clock: Clock, ttl_s: float = 30.0) -> None:
        self.engine = engine
        self.default = default
        self.clock = clock
        self.ttl_s = ttl_s
        self._own: WorkspaceCache[SmtpConfig] = WorkspaceCache(
            self._load, clock, "SMTP settings", SmtpConfigError, ttl_s
        )
        # Never changes once made (links and bounce addresses already sent depend on it).
        self._secrets: dict[str, str] = {}

    def invalidate(self, workspace_id: str | None = None) -> None:
        self._own.invalidate(workspace_id)

    def _load(self, workspace_id: str) -> SmtpConfig | None:
        with self.engine.connect() as conn:
            return get_smtp(conn, workspace_id)

    async def for_workspace(self, workspace_id: str) -> SmtpConfig | None:
        return await self._own.get(workspace_id) or self.default

    def _tracking_secret(self, workspace_id: str) -> str:
        with self.engine.begin() as conn:  # created on the workspace's first message
            return tracking_secret(conn, workspace_id, to_ms(self.clock.now()))

    async def tracking_secret(self, workspace_id: str) -> str | None:
        secret = self._secrets.get(workspace_id)
        if secret is None:
            secret = self._secrets[workspace_id] = await asyncio.to_thread(self._tracking_secret, workspace_id)
        return secret


# -- the channel ----------------------------------------------------------------------------


class EmailChannel(RemoteChannel):
    name = "email"
    delivered_on_send = False  # the server's acceptance is "Message Sent"

    def __init__(
        self,
        configs: ConfigSource | SmtpConfig | None,
        renderer: Renderer | DefaultRenderer | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        workers: Any = None,
    ) -> None:
        self.configs: ConfigSource = (
            StaticConfig(configs) if configs is None or isinstance(configs, SmtpConfig) else configs
        )
        # channels/workers.WorkerPool: builds (render, MIME, DKIM) in other processes.
        # None: in this one.
        self.workers = workers
        self.renderer: Renderer | DefaultRenderer = renderer or DefaultRenderer()
        self.clock = clock or SystemClock()
        self.sleep: Sleep = sleep or asyncio.sleep
        self.pools: dict[SmtpConfig, SmtpPool] = {}
        self._dkim_keys: dict[SmtpConfig, tuple[DkimKey, ...]] = {}

    def check(self, message: OutboundMessage) -> None:
        email = message.traits.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise NoTarget("profile has no email")
        # The suppression list was checked against the trait as it is (store/consent), and
        # the message would go to the address parsed out of it (mime.py, aiosmtplib): a
        # trait that is more than that address ("Ada <ada@x>", "ada@x, bo@y") would take a
        # suppressed address past the list. Only a bare address is sent to.
        if parseaddr(email)[1] != email.strip():
            raise PermanentError(
                "the email trait is not a bare address (a name or a list): set it to the address alone"
            )

    def pool(self, config: SmtpConfig) -> SmtpPool:
        pool = self.pools.get(config)
        if pool is None:
            pool = self.pools[config] = SmtpPool(config, self.clock, self.sleep)
        return pool

    def _dkim(self, config: SmtpConfig) -> tuple[DkimKey, ...]:
        """The keys a message of this config is signed with (read and checked once)."""
        keys = self._dkim_keys.get(config)
        if keys is None:
            try:
                keys = config.dkim_keys()
                algorithms = [algorithm(load_key(pem)) for _, _, pem in keys]
                if config.dkim_ed25519_selector and algorithms != [RSA_SHA256, ED25519_SHA256]:
                    raise SmtpConfigError("dual DKIM signing needs an RSA dkim_key and an Ed25519 dkim_ed25519_key")
            except (SmtpConfigError, DkimKeyError) as exc:
                raise TransientError(str(exc)) from None
            self._dkim_keys[config] = keys
        return keys

    def _sender(self, config: SmtpConfig) -> str:
        if not config.from_address:
            raise PermanentError("no From address configured for email (the SMTP settings' from)")
        return formataddr((config.from_name, config.from_address)) if config.from_name else config.from_address

    async def build(self, message: OutboundMessage, config: SmtpConfig) -> tuple[str, str, bytes]:
        """(envelope sender, recipient, signed bytes) for one message."""
        prepare = getattr(self.renderer, "prepare_email", None)
        if prepare is not None:
            return await self._build_job(message, config, prepare)
        to = message.traits.get("email")
        try:
            # No prepare_email: a Renderer, which renders the whole message itself.
            rendered = await cast(Renderer, self.renderer).render_email(message)
        except RenderError as exc:
            raise permanent_from_render(exc) from exc
        except (PermanentError, TransientError):
            raise
        except Exception as exc:
            raise PermanentError(f"render failed: {type(exc).__name__}: {exc}") from None
        recipient = rendered.to or to
        if not isinstance(recipient, str) or "@" not in recipient:
            raise PermanentError("profile has no email")
        raw = finish(
            rendered,
            recipient,
            self._sender(config),
            f"{message.workspace_id}:{message.key}",
            config.reply_to,
            self.clock.now(),
            self._dkim(config),
        )
        secret = await self.configs.tracking_secret(message.workspace_id) if config.bounce_domain else None
        return self._envelope_sender(config, message, recipient, secret), recipient, raw

    async def _build_job(
        self, message: OutboundMessage, config: SmtpConfig, prepare: Callable[[OutboundMessage], Awaitable[Any]]
    ) -> tuple[str, str, bytes]:
        """The renderer's reads here; the build (build.build_raw) here or in
        a worker process, with the same errors either way."""
        try:
            job = await prepare(message)
        except RenderError as exc:
            raise permanent_from_render(exc) from exc
        except (PermanentError, TransientError):
            raise
        except Exception as exc:
            raise PermanentError(f"render failed: {type(exc).__name__}: {exc}") from None
        job = dataclasses.replace(
            job, sender=self._sender(config), reply_to=config.reply_to, date=self.clock.now(), dkim=self._dkim(config)
        )
        if self.workers is None:
            raw = build_raw(job)
        else:
            try:  # without the template: the worker has most likely parsed it already
                raw = await self.workers.run(build_raw, slim(job))
            except TemplateNotLoaded:
                raw = await self.workers.run(build_raw, job)
        return self._envelope_sender(config, message, job.to, job.secret), job.to, raw

    def _envelope_sender(self, config: SmtpConfig, message: OutboundMessage, to: str, secret: str | None) -> str:
        try:
            sender = config.envelope_sender(message.workspace_id, message.key, to, secret)
        except SmtpConfigError as exc:
            raise PermanentError(str(exc)) from None
        # _sender refused a config without a From address before this is asked.
        return sender or cast(str, config.from_address)

    async def send(self, message: OutboundMessage) -> None:
        config = await self.configs.for_workspace(message.workspace_id)
        if config is None:
            raise PermanentError("no SMTP server configured for this workspace")
        mail_from, rcpt, raw = await self.build(message, config)
        await self.pool(config).send(mail_from, rcpt, raw, message.send_by_ms)

    async def aclose(self) -> None:
        for pool in list(self.pools.values()):
            await pool.aclose()
        if self.workers is not None:
            await asyncio.to_thread(self.workers.close)
