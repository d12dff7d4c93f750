"""Channels set up from the server's `Settings`: the one module that reads them for channels.

- "email" is served by an EmailChannel once SMTP is configured (NUDGEFLOW_SMTP_URL, or a
  workspace's own settings); until then the development log channel keeps the name.
- "push" is served by a PushChannel (Web Push always; FCM and APNs where credentials
  exist) once push is in use: a subscription or a device token stored, or credentials.
- "webhook" is served by a WebhookChannel from the first run on (it needs no settings),
  unless NUDGEFLOW_LOG_CHANNELS names it.

`ChannelSetup` is what a runtime holds: it decides when the runtime first runs (building
the app must not open the database, which may not be migrated yet), and looks for push
again now and then, since the first browser may subscribe while the server runs.
"""

from __future__ import annotations

import logging
from typing import Any

from nudgeflow.channels import push_config
from nudgeflow.channels.apns import ApnsSender
from nudgeflow.channels.base import ChannelRegistry
from nudgeflow.channels.email.channel import DefaultRenderer, EmailChannel, Renderer, WorkspaceConfigs
from nudgeflow.channels.fcm import FcmSender
from nudgeflow.channels.push import DatabasePush, PushChannel, PushSender
from nudgeflow.channels.webhook import WebhookChannel
from nudgeflow.channels.webpush import WebPushSender
from nudgeflow.channels.workers import WorkerPool
from nudgeflow.core.clock import Clock, SystemClock
from nudgeflow.model.smtp_config import parse_smtp_url
from nudgeflow.settings import Settings, email_build_processes_for
from nudgeflow.store.push_targets import any_target_stored
from nudgeflow.store.workspace_settings import SMTP, any_workspace_has

# The loggers these lines have always gone to: the email channel's, the push channel's, the runtime's.
email_log = logging.getLogger("nudgeflow.email")
push_log = logging.getLogger("nudgeflow.push")
runtime_log = logging.getLogger("nudgeflow.runtime")

PUSH_CHECK_S = 30.0  # how often a server without push looks again whether push is now in use


# -- email ----------------------------------------------------------------------------------


def configure_email(
    registry: ChannelRegistry,
    engine: Any,
    settings: Settings,
    clock: Clock | None = None,
    renderer: Renderer | None = None,
) -> EmailChannel | None:
    """Serve "email" with an EmailChannel when SMTP is configured (NUDGEFLOW_SMTP_URL, or a
    workspace's own settings); otherwise leave the registry as it is (the log channel).
    Returns the channel when there is one."""
    current = registry.get("email")
    if isinstance(current, EmailChannel):
        return current
    default = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
    if default is None and not any_workspace_has(engine, SMTP):
        return None
    processes = email_build_processes_for(settings.email_build_processes)
    workers = WorkerPool(processes) if processes > 0 else None
    channel = EmailChannel(
        WorkspaceConfigs(engine, default, clock or SystemClock()),
        renderer or DefaultRenderer(engine),
        clock,
        workers=workers,
    )
    registry.register("email", channel)
    email_log.info("email goes out over SMTP", extra={"smtp": str(default) if default else "per workspace"})
    return channel


# -- push -----------------------------------------------------------------------------------


def fcm_default(settings: Settings) -> push_config.FcmConfig | None:
    """The server's FCM credentials (NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE), or None."""
    if not settings.fcm_service_account_file:
        return None
    return push_config.fcm_from_file(
        settings.fcm_service_account_file, api_base=settings.fcm_api_base, what="NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE"
    )


def apns_default(settings: Settings) -> push_config.ApnsConfig | None:
    """The server's APNs credentials (NUDGEFLOW_APNS_KEY_FILE and friends), or None."""
    if not settings.apns_key_file:
        return None
    return push_config.apns_from_file(
        settings.apns_key_file,
        team_id=settings.apns_team_id or "",
        key_id=settings.apns_key_id or "",
        topic=settings.apns_topic,
        base_url=settings.apns_base_url,
        what="NUDGEFLOW_APNS_KEY_FILE",
    )


def push_credentials_configured(engine: Any, settings: Settings, section: str) -> bool:
    """Whether the server's default or any workspace has credentials for this service ("fcm",
    "apns"): what assembling the push channel asks before adding its sender."""
    env_set = settings.fcm_service_account_file if section == push_config.FCM_SECTION else settings.apns_key_file
    if env_set:
        return True
    return any_workspace_has(engine, section)


def push_in_use(engine: Any, settings: Settings) -> bool:
    """Whether push is set up anywhere: a Web Push subscription or a device token stored, or
    FCM / APNs credentials (the server's default or a workspace's). Until then the `push`
    name stays with the development log channel, as `email` does until SMTP is configured."""
    if push_credentials_configured(engine, settings, push_config.FCM_SECTION) or push_credentials_configured(
        engine, settings, push_config.APNS_SECTION
    ):
        return True
    return any_target_stored(engine)


def push_senders(engine: Any, settings: Settings, clock: Clock) -> dict[str, PushSender]:
    """A sender per push service: Web Push, FCM and APNs. The caller closes them (aclose).

    FCM and APNs senders are made whether or not credentials exist yet: each reads a
    workspace's own (within 30 s of a change) or the server's default at the send, and
    fails the target with "no … credentials configured" when there are none. Made only
    where credentials existed when the channel was set up, a workspace that set its own
    later had its tokens refused ("not configured") until the server restarted."""
    # The server's credentials are read at the first send that needs them: a file that
    # cannot be read fails those messages, not the server's start.
    return {
        "webpush": WebPushSender(engine, clock),
        "fcm": FcmSender(engine, clock, default=lambda: fcm_default(settings)),
        "apns": ApnsSender(engine, clock, default=lambda: apns_default(settings)),
    }


def configure_push(
    registry: ChannelRegistry, engine: Any, settings: Settings, clock: Clock | None = None, *, force: bool = False
) -> PushChannel | None:
    """Serve "push" with a PushChannel (Web Push always; FCM and APNs where credentials
    exist) once push is in use (`push_in_use`), or at once with `force`; returns the channel,
    or None while push stays with the log channel."""
    current = registry.get("push")
    if isinstance(current, PushChannel):
        return current
    if not force and not push_in_use(engine, settings):
        return None
    clock = clock or SystemClock()
    senders = push_senders(engine, settings, clock)
    database = DatabasePush(engine, clock)
    channel = PushChannel(senders, database, database, clock)
    registry.register("push", channel)
    push_log.info("push goes out to push services", extra={"providers": ",".join(sorted(senders))})
    return channel


# -- webhook --------------------------------------------------------------------------------


def configure_webhook(
    registry: ChannelRegistry, engine: Any, settings: Settings, clock: Clock | None = None
) -> WebhookChannel | None:
    """Serve "webhook" with a WebhookChannel: it needs no configuration (a step may give its
    URL). Unless the deployment asked for webhooks to be logged (NUDGEFLOW_LOG_CHANNELS
    names "webhook"): then the log channel keeps the name. Returns the channel."""
    current = registry.get("webhook")
    if isinstance(current, WebhookChannel):
        return current
    if "webhook" in settings.log_channels:
        return None
    channel = WebhookChannel(engine, clock or SystemClock())
    registry.register("webhook", channel)
    return channel


# -- what a runtime holds -------------------------------------------------------------------


class ChannelSetup:
    """Serves "email", "push" and "webhook" of a runtime's registry with their real channels
    once they are configured. `pending` False (the runtime was given its channels): nothing to do."""

    def __init__(
        self, registry: ChannelRegistry, engine: Any, settings: Settings, clock: Clock, *, pending: bool
    ) -> None:
        self.registry, self.engine, self.settings, self.clock = registry, engine, settings, clock
        self.email_pending = pending
        self.push_pending = pending
        self.push_checked_at = -1e9

    def email(self) -> None:
        if self.email_pending:
            self.email_pending = False
            configure_email(self.registry, self.engine, self.settings, self.clock)
            configure_webhook(self.registry, self.engine, self.settings, self.clock)

    def push(self) -> None:
        if not self.push_pending:
            return
        now = self.clock.monotonic()
        if now - self.push_checked_at < PUSH_CHECK_S:
            return
        self.push_checked_at = now
        try:
            # `serve --dev` runs a local Web Push service for simulated browsers: push is in use.
            force = bool(self.settings.dev_mode)
            if configure_push(self.registry, self.engine, self.settings, self.clock, force=force) is not None:
                self.push_pending = False
        except Exception as exc:  # a broken credential must not stop the dispatcher
            runtime_log.warning("push channel not set up", extra={"error": type(exc).__name__})

    def look_for_push_now(self) -> None:
        """The next `push()` looks, however recently the last did."""
        self.push_checked_at = -1e9
