"""Optimistic concurrency on drafts, as the journeys and segments APIs share it.

`GET /api/journeys/{id}` and `GET /api/segments/{id}` answer the draft's revision as
`draft_revision` and as `ETag: "<revision>"`. A `PUT` with `If-Match: "<revision>"` replaces
the draft only if it is still at that revision (store/journeys.apply_draft compares and sets
it in one UPDATE); otherwise it is answered 412 Precondition Failed, as RFC 9110 §13.1.1
has a failed If-Match answered, with the revision now, in `current_revision`
and the ETag, and nothing is stored. A `PUT` without If-Match replaces the draft whatever its
revision, as before (journeys-as-code: the files are the source); one with
`If-None-Match: *` only creates (412 when the id is taken). The ETag is the draft's
only: publishing, pausing or archiving does not change it, so an editor is not refused for
them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from nudgeflow.web.definitions import Refused

MAX_DIGITS = 9  # a revision fits an INTEGER column
_SPELLED = {"if-match": "If-Match", "if-none-match": "If-None-Match"}


def etag(revision: int) -> str:
    return f'"{revision}"'


def expected_revision(request: Request) -> int | None:
    """The revision If-Match names; None without the header. One tag, as the ETag was given
    (`"3"`); its weak form (`W/"3"`, which a compressing proxy may have turned it into) and
    the bare number are taken as the same revision. Anything else is a 400 naming it."""
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= MAX_DIGITS):
        raise Refused(
            400,
            {
                "detail": "If-Match must be one ETag of the draft, as GET answers it (for example "
                f'"3"), not {raw[:40]!r}'
            },
        )
    return int(value)


def create_only(request: Request) -> bool:
    """`If-None-Match: *`: create the journey or segment, never replace one (412 when the id is
    taken, with its revision). Only `*` is understood; with If-Match as well, a 400."""
    raw = request.headers.get("if-none-match")
    if raw is None:
        return False
    if raw.strip() != "*":
        raise Refused(400, {"detail": f"If-None-Match takes only * (create, never replace), not {raw[:40]!r}"})
    if request.headers.get("if-match") is not None:
        raise Refused(400, {"detail": "send If-Match (replace that revision) or If-None-Match: * (create), not both"})
    return True


def refuse_if_match(request: Request, where: str) -> None:
    """If-Match on a request that replaces no single draft is refused rather than ignored."""
    for header in ("if-match", "if-none-match"):
        if request.headers.get(header) is not None:
            raise Refused(400, {"detail": f"{_SPELLED[header]} applies to {where}, one draft at a time"})


def conflict(detail: str, current: int | None) -> JSONResponse:
    """The 412 of a stale If-Match (or of If-None-Match: * on a taken id): what happened,
    and the revision the draft is at now."""
    body: dict[str, Any] = {"detail": detail, "current_revision": current}
    if current is not None:
        body["detail"] += f'; read it again (its ETag is now "{current}"), and save your change on it'
    return JSONResponse(body, 412, headers={"ETag": etag(current)} if current is not None else None)
