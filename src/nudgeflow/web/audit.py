"""The audit log's writer: every successful change through the admin API, by a token or a
console session, is recorded with who made it (request.state.actor), what (the method and
route), on what (the path), when (the app's clock), and for documents (journeys, templates,
segments, policies, settings, console users) the document before and after, as the API
shows it: secrets masked.

admin_workspace (web/admin.py) calls `begin` once it knows the caller: the document is read
before the route runs. AuditMiddleware records the entry when the answer is a success
(status below 400), reading the document again; a refused or failed request records nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nudgeflow.core.clock import to_ms
from nudgeflow.store import audit_log, consent
from nudgeflow.web.access import READ_ONLY, SAFE_METHODS, route_template
from nudgeflow.web.state import AppState

log = logging.getLogger("nudgeflow.web.audit")

Reader = Callable[[Connection, str, dict[str, str]], Any]


def _journey(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    from nudgeflow.store.journeys import get_journey

    found = get_journey(conn, workspace_id, params["journey_id"])
    return None if found is None else {k: found[k] for k in ("status", "live_version", "draft") if k in found}


def _template(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    from nudgeflow.store.templates import get_template

    found = get_template(conn, workspace_id, params["name"])
    return None if found is None else {k: found[k] for k in ("channel", "current_version", "source")}


def _segment(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    from nudgeflow.store.segments import get_segment

    found = get_segment(conn, workspace_id, params["segment_id"])
    keep = ("status", "live_version", "draft", "definition")
    return None if found is None else {k: found[k] for k in keep if k in found}


def _segments(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    """Every segment's document: POST /api/segments applies several at once, named in its body."""
    from nudgeflow.store.segments import list_segments

    return {
        found["id"]: _segment(conn, workspace_id, {"segment_id": found["id"]})
        for found in list_segments(conn, workspace_id)
    }


def _policies(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    from nudgeflow.store.policies import get

    found = get(conn, workspace_id)
    return None if found is None else {"version": found.version, "source": found.source}


def _settings(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    from nudgeflow.store.workspace_settings import show_settings

    shown = show_settings(conn, workspace_id)  # secrets masked
    return {name: key["value"] for name, key in shown["keys"].items() if key["set"]}


def _smtp(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    from nudgeflow.store.workspace_settings import smtp_settings_masked

    return smtp_settings_masked(conn, workspace_id)


def _webhooks(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    from nudgeflow.store import webhook_destinations

    try:
        return webhook_destinations.load(conn, workspace_id).masked()
    except Exception:  # a document that does not parse: the entry says so rather than failing
        return {"unreadable": True}


def _console_user(conn: Connection, workspace_id: str, params: dict[str, str]) -> Any:
    from nudgeflow.store.console_users import get_user

    found = get_user(conn, workspace_id, params["user_id"])
    return None if found is None else {"email": found.email, "role": found.role, "disabled": found.disabled}


# The documents of routes, by the route's path template (or its start, for the routes under
# a document: /api/journeys/{journey_id}/publish reads the journey).
DOCUMENTS: tuple[tuple[str, Reader], ...] = (
    ("/api/journeys/{journey_id}", _journey),
    ("/api/templates/{name}", _template),
    ("/api/segments/{segment_id}", _segment),
    ("/api/segments", _segments),  # exactly: the routes under it are the one above's
    ("/api/policies", _policies),
    ("/api/settings/smtp", _smtp),
    ("/api/settings/webhooks", _webhooks),
    ("/api/console/users/{user_id}", _console_user),
    ("/api/settings", _settings),
)


def document_reader(template: str) -> Reader | None:
    for start, reader in DOCUMENTS:
        if template == start or template.startswith(start + "/"):
            return reader
    return None


def audited(method: str, template: str) -> bool:
    """Whether a request is a change the log records: not a read, nor a POST that only computes."""
    return method not in SAFE_METHODS and (method, template) not in READ_ONLY


# What the workspace's link-signing secret is turned into before it keys the log's digests
# of people: a key of its own, so a digest is never also a valid link signature.
_REF_KEY_LABEL = b"nudgeflow audit: person ref"


def ref_key(conn: Connection, workspace_id: str, now_ms: int) -> bytes:
    """The workspace's key for digests of people's refs (from its link-signing secret)."""
    secret = consent.tracking_secret(conn, workspace_id, now_ms)
    return hmac.new(secret.encode(), _REF_KEY_LABEL, hashlib.sha256).digest()


def target_of(request: Request, key: bytes | None) -> str:
    """The path changed. A person's ref (a userId, an email…) is kept as a keyed digest: the
    log outlives an erasure, and must not keep who was erased in clear, nor a plain hash
    that anyone who reads the log could test a guessed email against."""
    path = request.url.path
    ref = request.path_params.get("ref")
    if isinstance(ref, str) and ref and key is not None:
        digest = hmac.new(key, ref.encode(), hashlib.sha256).hexdigest()[:16]
        path = path.replace(ref, f"person:{digest}", 1)
    return path


@dataclass
class Pending:
    """A change under way: recorded when its answer is a success."""

    workspace_id: str
    actor: str
    action: str
    target: str
    params: dict[str, str]
    reader: Reader | None
    before: Any


def begin(request: Request, state: AppState, workspace_id: str, actor: str) -> None:
    """Called by admin_workspace once the caller may make the request: note it, and read the
    document before the route changes it."""
    method = request.method
    template = route_template(request)
    if not audited(method, template):
        return
    params = {k: str(v) for k, v in request.path_params.items()}
    reader = document_reader(template)
    before = None
    if reader is not None:
        with state.engine.connect() as conn:
            before = reader(conn, workspace_id, params)
    key = None
    if "ref" in request.path_params:
        with state.engine.begin() as conn:  # begin: the secret is made on first use
            key = ref_key(conn, workspace_id, to_ms(state.clock.now()))
    request.state.audit = Pending(
        workspace_id, actor, f"{method} {template}", target_of(request, key), params, reader, before
    )


def created(request: Request, target: str, template: str, params: dict[str, str]) -> None:
    """A route that made a document at a path of its own (POST /api/console/users makes
    /api/console/users/{user_id}): the entry names it, with the document as made."""
    pending = getattr(request.state, "audit", None)
    if isinstance(pending, Pending):
        pending.target = target
        pending.params = params
        pending.reader = document_reader(template)


def record_now(state: AppState, pending: Pending) -> None:
    with state.engine.begin() as conn:
        after = pending.reader(conn, pending.workspace_id, pending.params) if pending.reader else None
        audit_log.record(
            conn,
            pending.workspace_id,
            pending.actor,
            pending.action,
            pending.target,
            pending.before,
            after,
            to_ms(state.clock.now()),
        )


class AuditMiddleware:
    """Records the change a request noted (request.state.audit) once its answer is a success,
    before the answer goes out: a client that saw the success finds the entry."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        # The request's state lives in this dict, whatever copies of the scope the routers make.
        noted: dict[str, Any] = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                pending = noted.pop("audit", None)
                if isinstance(pending, Pending):
                    try:
                        await run_in_threadpool(record_now, self.state, pending)
                    except Exception:  # the change is made: say the entry is missing, do not hide the change
                        log.exception("audit entry not recorded", extra={"action": pending.action})
            await send(message)

        await self.app(scope, receive, send_wrapper)
