"""Size limits on the bodies of the console's forms, enforced before anything reads them.

FastAPI reads and parses a route's form or JSON body before it runs the route's
dependencies, so a form that needs a session (`/account/password`, the users API) or none
at all (`/sign-in`, `/sign-out`) is read in full before anyone is authenticated: Starlette alone
would take about a gigabyte from anyone. These forms hold a few short fields, so a few KB
is plenty; a larger body is refused with 413 by its declared Content-Length, or as soon as
the bytes received pass the limit, and is never parsed.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nudgeflow.errors import WebError

# Sign-in, the largest: a password of MAX_PASSWORD (1,024) characters, up to 4 bytes each
# in UTF-8 and 3 characters a byte percent-encoded (12 KB at worst), an email, a next path
# (2,000 characters) and the form's token.
FORM_BYTES = 32 * 1024
# Starlette's form parser limits (a route's `form_limits`) within FORM_BYTES: these forms
# have no file and at most six fields; a field (as sent, percent-encoded in a urlencoded
# form) holds at most the 12 KB of the longest password.
FORM_MAX_FIELDS = 10
FORM_MAX_PART = 16 * 1024

# The console's endpoints whose bodies FastAPI parses before any session is checked: a
# path, or a prefix ending in "/" (its ids follow).
LIMITED_PATHS = {
    "/sign-in": FORM_BYTES,
    "/sign-out": FORM_BYTES,
    "/account/password": FORM_BYTES,
    "/api/console/users": FORM_BYTES,  # {email, role}
    "/api/console/users/": FORM_BYTES,  # {role, disabled}
}


def _message(limit: int) -> str:
    return f"Request body too large: this form takes at most {limit} bytes."


class _TooLarge(HTTPException, WebError):
    """Raised from `receive` inside the route's body parsing: an HTTPException, so that
    FastAPI passes it on (anything else there becomes a 400 "error parsing the body") and
    its exception handler answers it as any other 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit), headers={"Connection": "close"})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (uvicorn, h11) refuses a malformed length before us
    return None


class BodyLimits:
    """An ASGI middleware: a POST to one of `limits`' paths with a body over its limit gets 413."""

    def __init__(self, app: ASGIApp, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limits = LIMITED_PATHS if limits is None else limits

    def _limit(self, scope: Scope) -> int | None:
        path: str = scope["path"]
        found = self.limits.get(path)
        if found is None and "/" in path[1:]:
            found = self.limits.get(path[: path.rindex("/") + 1])
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._limit(scope) if scope["type"] == "http" and scope["method"] != "GET" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except _TooLarge:
            if started:  # cannot happen for these forms (read before answering); never a second answer
                raise
            await _refuse(limit)(scope, receive, send)


def _refuse(limit: int) -> JSONResponse:
    # Connection: close: the rest of the body is not read, so the connection cannot be reused.
    return JSONResponse({"detail": _message(limit)}, status_code=413, headers={"Connection": "close"})
