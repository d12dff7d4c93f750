"""The People pages: `/people` finds a person by userId, anonymousId, email or profile id;
`/people/{ref}` shows one: traits, identities and merges, consent, push targets, segments,
pending timers, one timeline (events, runs, decisions, messages with why one was not sent),
and "why did or didn't they get X" for a journey.

A ref is looked up in the signed-in user's workspace only: another workspace's person is a
404, as is no one. Export and erase go through the admin API (GET /api/profiles/{ref}/export,
DELETE /api/profiles/{ref}) from static/people.js, each after a confirmation; the API
checks the role (erasing is an admin's: web/access.py ADMIN_ONLY).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse

from nudgeflow.core.person_why import explain, reason_words
from nudgeflow.store.console_users import ADMIN
from nudgeflow.store.people_search import search_people
from nudgeflow.store.person_timeline import (
    BadCursor,
    journey_facts,
    journey_ids,
    journeys_of_person,
    person_card,
    timeline,
)
from nudgeflow.store.privacy import person_ids
from nudgeflow.store.profiles import resolve_profile_id
from nudgeflow.web.admin import reject_nul
from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.render import page
from nudgeflow.web.state import State

PAGE = 50
MAX_REF = 512  # a userId or anonymousId is at most this long (identities.key, less its prefix)


def _pretty(doc: Any) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _message_text(item: dict[str, Any]) -> str:
    """An event's message (stored JSON, perhaps cut) indented for reading when it is whole."""
    text = str(item.get("message") or "")
    try:
        return _pretty(orjson.loads(text))
    except orjson.JSONDecodeError:
        return text


def router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/people")
    def people(
        request: Request,
        state: State,
        user: Viewer,
        q: Annotated[str, Query(max_length=MAX_REF)] = "",
        erased: Annotated[str, Query(max_length=MAX_REF)] = "",
    ) -> HTMLResponse:
        reject_nul(request)
        found: list[dict[str, Any]] = []
        if q.strip():
            with state.engine.connect() as conn:
                found = search_people(conn, user.workspace_id, q)
        return page(request, user, "people/search.html", title="People", q=q, found=found, erased=erased)

    @router.get("/people/{ref:path}")
    def person(
        request: Request,
        state: State,
        user: Viewer,
        ref: str,
        before: Annotated[str | None, Query(max_length=2000)] = None,
        journey: Annotated[str | None, Query(max_length=80)] = None,
        template: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HTMLResponse:
        reject_nul(request)
        with state.engine.connect() as conn:
            profile_id = resolve_profile_id(conn, user.workspace_id, ref) if len(ref) <= MAX_REF else None
            card = person_card(conn, user.workspace_id, profile_id) if profile_id is not None else None
            if profile_id is None or card is None:
                return page(request, user, "people/missing.html", title="No such person", status_code=404, ref=ref)
            try:
                items, next_before = timeline(
                    conn, user.workspace_id, person_ids(conn, user.workspace_id, profile_id), limit=PAGE, before=before
                )
            except BadCursor as exc:
                return page(request, user, "people/missing.html", title="Bad page", status_code=400, error=str(exc))
            own = journeys_of_person(conn, user.workspace_id, profile_id)
            every = journey_ids(conn, user.workspace_id)
            why = None
            chosen = (journey or "").strip() or None
            if chosen is not None:
                facts = journey_facts(conn, user.workspace_id, profile_id, chosen, (template or "").strip() or None)
                why = explain(facts)
        for item in items:
            if item["kind"] == "event":
                item["message_text"] = _message_text(item)
        return page(
            request,
            user,
            "people/person.html",
            title=card["user_id"] or card["id"],
            card=card,
            traits_text=_pretty(card["traits"]),
            items=items,
            before=before,
            next_before=next_before,
            journeys=[*own, *sorted(set(every) - set(own))],
            chosen=chosen,
            why_template=template or "",
            why=why,
            may_erase=user.may(ADMIN),
            reason_words=reason_words,
        )

    return router
