"""What a running app holds (AppState), and how a route reaches it: `state: State` in the
route's parameters (a FastAPI dependency)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from nudgeflow.core.clock import Clock
from nudgeflow.ingest.auth import KeyCache
from nudgeflow.ingest.ratelimit import RateLimiter
from nudgeflow.ingest.verification import IdentityGate
from nudgeflow.model.engagement_signals import Rules
from nudgeflow.settings import Settings
from nudgeflow.store.group_commit import GroupCommitter
from nudgeflow.web.link_limits import LinkLimits
from nudgeflow.web.metrics import Metrics


@dataclass
class AppState:
    settings: Settings
    clock: Clock
    engine: Engine
    committer: GroupCommitter
    metrics: Metrics
    limiter: RateLimiter
    keys: KeyCache
    identity: IdentityGate  # identity verification settings, cached (ingest/verification.py)
    link_limits: LinkLimits  # the public links' rate limits (web/link_limits.py)
    ready: bool = False
    runtime: Any = None  # the EmbeddedRuntime, when settings.engine_enabled
    bounces: Any = None  # web.bounces.BounceWebhooks: certificate cache, Mailgun tokens
    dev_push: Any = None  # runtime.dev_push.RunningDevPush under `serve --dev`: its origin, for simulated browsers
    # workspace -> its link-signing secret (web/tracking.py), read once: a secret is made on
    # first use and never changed, since changing it would break every link already sent
    tracking_secrets: dict[str, str] = field(default_factory=dict)
    # How opens and clicks are told apart from machines' (web/tracking.py): the settings'
    # click window and, when configured, Apple's relay ranges, read once at start
    engagement_rules: Rules = field(default_factory=Rules)


def app_state(request: Request) -> AppState:
    """The state of the app serving the request (create_app puts it on app.state.nudgeflow).

    Route handlers and their dependencies take `state: State` instead. This plain function
    is for code FastAPI injects nothing into (a middleware, an exception handler), and
    nothing in web/ or ingest/ needs it today: create_app's middleware (_Timing) and
    lifespan close over the objects they use, its exception handlers use no state, and the
    ingest routes (ingest/api.py) are plain Starlette endpoints, kept off FastAPI's
    dependency machinery because they are the hot path, given the state when create_app
    builds them. Outside a request, app.state.nudgeflow is read directly (cli/serve.py,
    demo/run.py, tests)."""
    return request.app.state.nudgeflow


async def _injected(request: Request) -> AppState:
    # A coroutine on purpose: FastAPI runs a plain function dependency in the thread pool,
    # a thread hop per request for an attribute lookup; a coroutine runs inline.
    return app_state(request)


State = Annotated[AppState, Depends(_injected)]
