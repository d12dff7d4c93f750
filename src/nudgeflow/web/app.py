"""The application factory. Everything the app needs is built here from the settings passed in."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import nudgeflow
from nudgeflow.core.clock import Clock, SystemClock
from nudgeflow.ingest.api import CORS, IngestEndpoint, ingest_endpoints, ingest_routes
from nudgeflow.ingest.auth import KeyCache
from nudgeflow.ingest.ratelimit import RateLimiter
from nudgeflow.ingest.shared_limits import SharedRateLimiter, keep_in_step, process_id
from nudgeflow.ingest.verification import IdentityGate
from nudgeflow.settings import OPS_ONLY_ROLES, ROLE_ALL, Settings
from nudgeflow.store import database
from nudgeflow.store.group_commit import GroupCommitter
from nudgeflow.store.secret_box import OPTION, SecretBox, SecretKeyError
from nudgeflow.store.workspace_settings import stored_documents
from nudgeflow.web.admin import admin_router
from nudgeflow.web.bounces import BounceWebhooks, bounces_router
from nudgeflow.web.catalog_api import catalog_router
from nudgeflow.web.consent_api import consent_router
from nudgeflow.web.journeys_api import journeys_router
from nudgeflow.web.link_limits import LinkLimits, LinkThrottled
from nudgeflow.web.metrics import CONTENT_TYPE, Metrics
from nudgeflow.web.openapi import build_openapi
from nudgeflow.web.state import AppState, State
from nudgeflow.web.templates_api import templates_router
from nudgeflow.web.tracking import engagement_rules, throttled_answer, tracking_router

log = logging.getLogger("nudgeflow.web")


# Routes timed under their own path besides /v1's; any other path is a group (see `label`).
_FIXED_ROUTES = ("/healthz", "/metrics", "/openapi.json")


class RequestTimer:
    """The latency histogram by route, and the request log line: what every request records,
    whether _Timing or the ingest fast path (NudgeflowAPI) served it.

    A route is labelled with its path only when the path is one the app serves (its /v1 and
    fixed routes): a label per path a client makes up would add a histogram child per random
    /v1/<x>, and the registry would grow without bound. /api/... is one group (its paths hold
    ids), anything else "other"."""

    def __init__(self, metrics: Metrics, log_requests: bool) -> None:
        self._metrics = metrics
        self._log_requests = log_requests
        self._known: frozenset[str] = frozenset(_FIXED_ROUTES)
        self._latency: dict[str, Any] = {}  # label -> its histogram child, looked up once

    def know(self, paths: Iterable[str]) -> None:
        """Label these paths (the ingest endpoints', answered ahead of the router) with themselves."""
        self._known = self._known | frozenset(paths)

    def label(self, scope: Scope) -> str:
        path: str = scope["path"]
        if path in self._known:
            return path
        if path.startswith("/api/"):
            return "/api"
        # Another /v1 route (the SDK's) is its path when the router matched it as it is,
        # no parameter in it: the matched route is in the scope (FastAPI puts it there).
        if path.startswith("/v1/") and getattr(scope.get("route"), "path", None) == path:
            return path
        return "other"

    def record(self, scope: Scope, status: int, start: float) -> None:
        """`status`: the one sent (499: none, the client went away first)."""
        elapsed = time.perf_counter() - start
        route = self.label(scope)
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = self._metrics.request_latency.labels(route)
        latency.observe(elapsed)
        if self._log_requests:
            # The route only: never headers, which carry keys and tokens.
            log.info(
                "request",
                extra={"method": scope["method"], "route": route, "status": status, "ms": round(elapsed * 1000, 2)},
            )


class _Timing:
    """Times every request but the ingest POSTs (NudgeflowAPI times those, with the same timer)."""

    def __init__(self, app: ASGIApp, timer: RequestTimer) -> None:
        self.app = app
        self.timer = timer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.timer.record(scope, status, start)


INGEST_PREFLIGHT = {
    **CORS,  # ingest answers any origin (ingest/api.py)
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}
_PREFLIGHT = Response(status_code=204, headers=INGEST_PREFLIGHT)


class NudgeflowAPI(FastAPI):
    """FastAPI, with the Segment ingest routes answered ahead of its middleware and router.

    Ingest is the hot path: a busy server answers thousands of small /v1/track requests a
    second, and the layers in front of a FastAPI route (error and exception middleware,
    dependency exit stacks, body limits, telemetry, route matching) cost more than the
    ingest work itself. The ingest endpoints need none of them: each turns every failure
    into its own 4xx or 503 answer and reads its body within its own limits. They are timed
    as _Timing times every other route (inline: the endpoint returns the status it sent),
    and stay in the router for everything else (the OpenAPI document, a 405 for another
    method).
    """

    _ingest: Mapping[str, IngestEndpoint] = {}
    timer: RequestTimer

    def route_ingest(self, endpoints: Mapping[str, IngestEndpoint]) -> None:
        self._ingest = endpoints
        self.timer.know(endpoints)

    async def _timed(self, endpoint: IngestEndpoint | None, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500
        try:
            if endpoint is None:
                # A browser's preflight: the browser SDK posts from the site's own origin.
                await _PREFLIGHT(scope, receive, send)
                status = 204
            else:
                status = await endpoint(scope, receive, send)
        finally:
            self.timer.record(scope, status, start)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self._ingest.get(scope["path"])
            if endpoint is not None:
                method = scope["method"]
                if method == "POST" or method == "OPTIONS":
                    scope["app"] = self
                    await self._timed(endpoint if method == "POST" else None, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def check_secrets(engine: Any) -> None:
    """At start: every workspace's settings open with this server's key (else SecretKeyError,
    logged: a server with the wrong key would fail every email, push and tracked link), and
    a warning when settings will be stored unsealed."""
    box = engine.get_execution_options().get(OPTION)
    if not isinstance(box, SecretBox):
        return
    with engine.connect() as conn:
        for stored in stored_documents(conn):
            try:
                box.open(stored or "")
            except SecretKeyError as exc:
                log.error("workspace settings cannot be opened", extra={"reason": str(exc)})
                raise
    if not box.seals:
        log.warning("workspace secrets are stored unsealed: set NUDGEFLOW_SECRET_KEY (README: Secrets at rest)")


def _say_unconfigured(names: list[str], settings: Settings) -> None:
    """At start (not with --dev): which channels have no real implementation configured, in
    the log and on stderr, since their messages will be logged, never sent."""
    if not names or settings.dev_mode:
        return
    line = (
        f"not configured: {', '.join(names)}: their messages go to the log channel (status logged, "
        "never sent); docs/settings.md says how to configure them"
    )
    log.warning("channels not configured", extra={"channels": ",".join(names)})
    print(line, file=sys.stderr, flush=True)


def _limiter(settings: Settings, clock: Clock) -> RateLimiter:
    """The ingest rate limit: shared with the other serving processes on the database
    (ingest/shared_limits.py), unless it is off."""
    if settings.ingest_rate_per_second <= 0:
        return RateLimiter(clock, settings.ingest_rate_per_second, settings.ingest_burst)
    return SharedRateLimiter(clock, settings.ingest_rate_per_second, settings.ingest_burst, process_id(clock))


class _SharedLimits:
    """The exchange loop of a shared rate limit, as a task of the serving process's event loop."""

    def __init__(self, limiter: SharedRateLimiter, engine: Engine) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(keep_in_step(limiter, engine, lambda: self._stopping))

    async def stop(self) -> None:
        self._stopping = True  # the loop ends after its next exchange, and makes one more
        try:
            await asyncio.wait_for(self._task, timeout=5)
        except Exception:  # a last exchange that could not be made: counted by no one, logged
            log.warning("rate limit: the last exchange did not finish")


def _share_limits(limiter: RateLimiter, engine: Engine, ops_only: bool) -> _SharedLimits | None:
    if ops_only or not isinstance(limiter, SharedRateLimiter):
        return None  # an engine or dispatch process takes no events
    return _SharedLimits(limiter, engine)


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    if settings.dev_mode and not settings.smtp_url:
        # serve --dev: email goes to the dev inbox's SMTP sink (started in the lifespan)
        from nudgeflow.runtime.dev_smtp import dev_smtp_url

        settings = settings.with_(smtp_url=dev_smtp_url(settings.dev_smtp_host, settings.dev_smtp_port))
    from nudgeflow.content.templates import set_render_budget

    set_render_budget(settings.render_timeout_ms)  # every render of this process, preview or send
    rules = engagement_rules(settings)  # a bad relay ranges file: ConfigError, before the database is opened
    metrics = Metrics()
    engine = database.create_db_engine(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous, secret_key=settings.secret_key
    )
    from nudgeflow.store.workspace_settings import set_server_public_url

    set_server_public_url(engine, settings.public_url)  # what links point at, unless a workspace sets its own
    warn_if_one_click_unsubscribe_is_off(settings)
    state = AppState(
        settings=settings,
        clock=clock,
        engine=engine,
        committer=GroupCommitter(engine, clock, max_events=settings.commit_max_events, on_commit=metrics.on_commit),
        metrics=metrics,
        limiter=_limiter(settings, clock),
        keys=KeyCache(engine, clock),
        identity=IdentityGate(engine, clock),
        link_limits=LinkLimits.on(clock),
    )
    state.engagement_rules = rules
    state.bounces = BounceWebhooks()
    # The runtime's loops are the role's (docs/roles.md): "all" runs both unless
    # NUDGEFLOW_ENGINE=0 (then it is "api"), "engine" and "dispatch" one each, "api" none.
    ops_only = settings.role in OPS_ONLY_ROLES
    if ops_only or (settings.role == ROLE_ALL and settings.engine_enabled):
        from nudgeflow.runtime.embedded import EmbeddedRuntime

        state.runtime = EmbeddedRuntime(engine, state.committer, clock, settings)
        metrics.watch_runtime(state.runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database.prepare_database(settings, engine)
        check_secrets(engine)
        dev_smtp = None
        if settings.dev_mode:
            from nudgeflow.runtime.dev_smtp import start_dev_smtp

            dev_smtp = start_dev_smtp(engine, settings.dev_smtp_host, settings.dev_smtp_port, clock)
            from nudgeflow.runtime.dev_push_inbox import start_dev_push

            state.dev_push = start_dev_push(engine, settings.dev_smtp_host, settings.dev_push_port, clock)
        state.committer.start()
        if state.runtime is not None:
            state.runtime.start()
            _say_unconfigured(state.runtime.unconfigured_channels(), settings)
        limits = _share_limits(state.limiter, engine, ops_only)
        state.ready = True
        log.info("ready", extra={"database": engine.url.render_as_string(hide_password=True)})
        try:
            yield
        finally:
            state.ready = False
            if limits is not None:
                await limits.stop()
            if state.runtime is not None:
                state.runtime.stop()  # its current batch is finished through the writer
            state.committer.stop()
            if dev_smtp is not None:
                dev_smtp.stop()
            if state.dev_push is not None:
                state.dev_push.stop()
                state.dev_push = None
            engine.dispose()

    app = NudgeflowAPI(
        title="Nudgeflow",
        version=nudgeflow.__version__,
        description="Segment-compatible event ingestion and the Nudgeflow admin API.",
        lifespan=lifespan,
    )
    app.state.nudgeflow = state
    app.timer = RequestTimer(metrics, settings.log_requests)
    if not ops_only:  # an engine or dispatch process serves /healthz and /metrics only
        _api_routes(app, state, settings)

    @app.get("/healthz", tags=["ops"], summary="200 once the service is ready")
    def healthz(state: State) -> Response:
        if not state.ready or not state.committer.running:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            database.ping(state.engine)
        except Exception:
            log.exception("health check failed")
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        body: dict[str, Any] = {"status": "ok"}
        if state.runtime is not None:
            # Messages of these channels go to the log channel (recorded `logged`, not sent).
            body["channels_not_configured"] = state.runtime.unconfigured_channels()
        return JSONResponse(body)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    def metrics_endpoint(state: State) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p not in ("query", "path", "body")), "message": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors[0]["message"] if errors else "invalid request", "errors": errors}, 422)

    @app.exception_handler(SecretKeyError)
    async def secret_key_error(_request: Request, exc: SecretKeyError) -> JSONResponse:
        # The operator's to fix (a key not set or not the one the settings were sealed
        # with), not the caller's: 503, and the same words as the server log.
        log.error("workspace settings cannot be opened", extra={"reason": str(exc)})
        return JSONResponse({"detail": str(exc)}, 503)

    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    if not ops_only:
        from nudgeflow.web.audit import AuditMiddleware  # every successful admin API change, in the audit log

        app.add_middleware(AuditMiddleware, state=state)
        from nudgeflow.web.body_limits import BodyLimits  # the console's forms, bounded before they are read

        app.add_middleware(BodyLimits)
    app.add_middleware(_Timing, timer=app.timer)
    return app


def _api_routes(app: NudgeflowAPI, state: AppState, settings: Settings) -> None:
    """The HTTP API: ingest (answered ahead of the middleware), admin, tracking, the SDK,
    the console; the dev inbox with --dev. Not served by an engine or dispatch process."""
    endpoints = ingest_endpoints(state)
    for route in ingest_routes(endpoints):
        app.router.routes.append(route)
    app.route_ingest(endpoints)
    app.include_router(consent_router())  # before admin_router: its /profiles/{ref:path} would shadow ours
    from nudgeflow.web.devices_api import devices_router

    app.include_router(devices_router())  # before admin_router too: its DELETE /profiles/{ref:path} erases
    from nudgeflow.web.send_time_api import send_time_router

    app.include_router(send_time_router())  # before admin_router too
    app.include_router(admin_router())
    app.include_router(tracking_router())  # public: the signed token is the authority
    app.add_exception_handler(LinkThrottled, throttled_answer)  # its links' rate limits (web/link_limits.py)
    from nudgeflow.web.sdk_api import sdk_router  # the browser SDK: /sdk/*.js, /v1/push/subscriptions, /t/n

    app.include_router(sdk_router())
    app.include_router(journeys_router())
    from nudgeflow.web.policies_api import policies_router

    app.include_router(policies_router())
    from nudgeflow.web.reports_api import reports_router

    app.include_router(reports_router())
    from nudgeflow.web.segments_api import segments_router

    app.include_router(segments_router())
    from nudgeflow.web.settings_api import settings_router

    app.include_router(settings_router())
    from nudgeflow.web.push_settings_api import push_settings_router  # VAPID keys; /v1/push/vapid-public-key

    app.include_router(push_settings_router())
    from nudgeflow.web.mobile_push_api import mobile_push_router  # FCM and APNs credentials

    app.include_router(mobile_push_router())
    from nudgeflow.web.webhooks_api import webhooks_router  # the webhook step's destinations and secret

    app.include_router(webhooks_router())
    from nudgeflow.web.exports_api import exports_router  # exposures, messages, conversions for a warehouse

    app.include_router(exports_router())
    from nudgeflow.web.identity_api import identity_router  # write keys, identity verification

    app.include_router(identity_router())
    if settings.dev_mode:  # never in production mode
        from nudgeflow.web.dev_inbox import dev_inbox_router

        app.include_router(dev_inbox_router())
    app.include_router(catalog_router())
    app.include_router(bounces_router())  # /webhooks/<provider>/<workspace>: each signed by its provider
    app.include_router(templates_router())
    from nudgeflow.web.console import console_router, refused_page  # the web console: /, /sign-in, its pages
    from nudgeflow.web.console.auth import PageRefused

    app.include_router(console_router())
    app.add_exception_handler(PageRefused, refused_page)


def warn_if_one_click_unsubscribe_is_off(settings: Settings) -> None:
    """At startup: email is configured but the public URL (the unsubscribe link's) is plain
    http, so marketing email goes out without List-Unsubscribe-Post: RFC 8058's one-click
    URI must be https (content/links.list_unsubscribe_headers). The dev inbox is left alone.
    Only the URL's host is logged, never anything before an '@' in it."""
    from urllib.parse import urlsplit

    from nudgeflow.content.links import one_click_allowed

    base = settings.public_url
    if not settings.smtp_url or settings.dev_mode or not base or one_click_allowed(base):
        return
    log.warning(
        "the public URL (http://%s) is not https: marketing email carries List-Unsubscribe without"
        " List-Unsubscribe-Post, since RFC 8058 one-click unsubscribe needs an https URL",
        urlsplit(base).hostname or "",
    )
