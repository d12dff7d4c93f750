"""What a running app holds (AppState), and how a route reaches it: the `app_state`
dependency (`state: State` in a route's parameters, or `app_state(request)`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from nudgeflow.core.clock import Clock
from nudgeflow.ingest.auth import KeyCache
from nudgeflow.ingest.ratelimit import RateLimiter
from nudgeflow.ingest.verification import IdentityGate
from nudgeflow.settings import Settings
from nudgeflow.store.group_commit import GroupCommitter
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
    ready: bool = False
    runtime: Any = None  # the EmbeddedRuntime, when settings.engine_enabled
    bounces: Any = None  # web.bounces.BounceWebhooks: certificate cache, Mailgun tokens
    dev_push: Any = None  # runtime.dev_push.RunningDevPush under `serve --dev`: its origin, for simulated browsers


def app_state(request: Request) -> AppState:
    """The state of the app serving the request (create_app puts it on app.state.nudgeflow)."""
    return request.app.state.nudgeflow


State = Annotated[AppState, Depends(app_state)]
