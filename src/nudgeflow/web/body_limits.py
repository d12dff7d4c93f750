"""Size limits on the bodies of the console's forms and the admin API, enforced before anything reads them.

FastAPI reads and parses a route's form or JSON body before it runs the route's
dependencies, so a form that needs a session (`/account/password`, the users API) or none
at all (`/sign-in`, `/sign-out`), and every admin API route with a JSON body (settings,
consent, suppressions, devices, webhooks, keys), is read in full before anyone is
authenticated: Starlette alone would take about a gigabyte from anyone. These bodies hold a
few short fields, so a few KB is plenty; the admin API's documents (catalog imports, journey,
segment, policies and template texts) get the limit their endpoint documents. A larger body
is refused with 413 by its declared Content-Length, or as soon as the bytes received pass
the limit, and is never parsed.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nudgeflow.errors import WebError
from nudgeflow.web.catalog_api import MAX_IMPORT_BYTES
from nudgeflow.web.definitions import MAX_DEFINITION_BYTES
from nudgeflow.web.policies_api import MAX_DOCUMENT_BYTES
from nudgeflow.web.templates_api import MAX_TEMPLATE_BYTES

# Sign-in, the largest: a password of MAX_PASSWORD (1,024) characters, up to 4 bytes each
# in UTF-8 and 3 characters a byte percent-encoded (12 KB at worst), an email, a next path
# (2,000 characters) and the form's token.
FORM_BYTES = 32 * 1024
# Starlette's form parser limits (a route's `form_limits`) within FORM_BYTES: these forms
# have no file and at most six fields; a field (as sent, percent-encoded in a urlencoded
# form) holds at most the 12 KB of the longest password.
FORM_MAX_FIELDS = 10
FORM_MAX_PART = 16 * 1024

# Any other admin API body: the largest JSON body of a settings route is an FCM service
# account (about 2.5 KB) or an APNs key; 64 KB leaves room and stops a flood at the door.
API_BYTES = 64 * 1024

# The endpoints whose bodies are bounded here: a path, or a prefix ending in "/" (the
# longest that matches wins). The console's forms are parsed before any session is checked;
# /api/ routes with a JSON body are parsed before the admin token is.
LIMITED_PATHS = {
    "/sign-in": FORM_BYTES,
    "/sign-out": FORM_BYTES,
    "/account/password": FORM_BYTES,
    "/api/console/users": FORM_BYTES,  # {email, role}
    "/api/console/users/": FORM_BYTES,  # {role, disabled}
    "/api/": API_BYTES,
    # Documents whose endpoints read them after the token is checked, within these limits
    # (each endpoint's own, so an authenticated client sees no difference).
    "/api/catalog/": MAX_IMPORT_BYTES,
    "/api/journeys/": MAX_DEFINITION_BYTES,
    "/api/segments": MAX_DEFINITION_BYTES,
    "/api/segments/": MAX_DEFINITION_BYTES,
    "/api/policies": MAX_DOCUMENT_BYTES,
    "/api/templates/": MAX_TEMPLATE_BYTES,
}
# Bodies that are forms (the console's): named so in the 413's words.
FORM_PATHS = frozenset(("/sign-in", "/sign-out", "/account/password", "/api/console/users", "/api/console/users/"))


def _message(limit: int, form: bool = True) -> str:
    what = "this form" if form else "this endpoint"
    return f"Request body too large: {what} takes at most {limit} bytes."


class _TooLarge(HTTPException, WebError):
    """Raised from `receive` inside the route's body parsing: an HTTPException, so that
    FastAPI passes it on (anything else there becomes a 400 "error parsing the body") and
    its exception handler answers it as any other 413."""

    def __init__(self, limit: int, form: bool) -> None:
        super().__init__(413, _message(limit, form), headers={"Connection": "close"})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (uvicorn, h11) refuses a malformed length before us
    return None


class BodyLimits:
    """An ASGI middleware: a request other than GET to one of `limits`' paths with a body over
    its limit gets 413."""

    def __init__(self, app: ASGIApp, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limits = LIMITED_PATHS if limits is None else limits
        # Longest first: "/api/templates/" wins over "/api/".
        self._prefixes = sorted((p for p in self.limits if p.endswith("/")), key=len, reverse=True)

    def _limit(self, path: str) -> tuple[int, bool] | None:
        """The limit of `path` and whether its body is a form."""
        if path in self.limits:
            return self.limits[path], path in FORM_PATHS
        for prefix in self._prefixes:
            if path.startswith(prefix):
                return self.limits[prefix], prefix in FORM_PATHS
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._limit(scope["path"]) if scope["type"] == "http" and scope["method"] != "GET" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        limit, form = found
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(limit, form)(scope, receive, send)
            return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit, form)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except _TooLarge:
            if started:  # cannot happen for these bodies (read before answering); never a second answer
                raise
            await _refuse(limit, form)(scope, receive, send)


def _refuse(limit: int, form: bool) -> JSONResponse:
    # Connection: close: the rest of the body is not read, so the connection cannot be reused.
    return JSONResponse({"detail": _message(limit, form)}, status_code=413, headers={"Connection": "close"})
