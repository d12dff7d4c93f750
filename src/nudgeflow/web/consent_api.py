"""The admin API for the suppression list and a person's consent (bearer admin token).

- GET  /api/profiles/{ref}/consent               per channel, all marketing and each topic: let
                                                 through or not (and why), the choice recorded
- PUT  /api/profiles/{ref}/consent               {"choices": [{"channel", "topic", "subscribed"}]}:
                                                 recorded all or none, source api, each change a
                                                 Consent Updated event
- POST /api/profiles/{ref}/consent/confirmation  {"topic", "template"?}: queue a double opt-in email
- GET  /api/profiles/{ref}/subscriptions         one channel as the preference center reads it
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy import Connection

from nudgeflow.core.clock import to_ms
from nudgeflow.model.nul import no_nul
from nudgeflow.store import consent, consent_records
from nudgeflow.store import profiles as profile_store
from nudgeflow.store.consent_records import ConsentProblem, Person
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import State

Text = Annotated[str, AfterValidator(no_nul)]  # a text column: PostgreSQL cannot store NUL


class NewSuppression(BaseModel):
    channel: Text = Field(default="email", min_length=1, max_length=20)
    address: Text = Field(min_length=1, max_length=320)
    reason: Text = Field(default="manual", min_length=1, max_length=40)
    detail: Text | None = Field(default=None, max_length=2000)


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]  # a topic, as settings take them
ChannelName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,19}$", examples=["email", "push"])]


class ConsentChoice(BaseModel):
    channel: ChannelName = "email"
    topic: Name | Literal["*"] = Field(default="*", description='"*": all marketing of the channel')
    subscribed: bool


class ConsentChoices(BaseModel):
    choices: list[ConsentChoice] = Field(min_length=1, max_length=100)


class ConfirmationRequest(BaseModel):
    topic: Name | Literal["*"] = Field(default="*", description="What the person is asked to confirm")
    template: Name | None = Field(
        default=None,
        description="An email template with {{ links.confirm_subscription }}; "
        "default: the workspace's consent_confirmation_template",
    )


class SuppressionsPage(BaseModel):
    suppressions: list[dict[str, Any]]
    next_after: str | None


def consent_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["consent"])

    @router.get("/suppressions", response_model=SuppressionsPage, summary="The suppression list, by address")
    def list_suppressions(
        state: State,
        workspace_id: Workspace,
        channel: str | None = None,
        address: str | None = Query(default=None, description="one address: is it suppressed?"),
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        after: Annotated[str | None, Query(description="the next_after of the previous page")] = None,
    ) -> SuppressionsPage:
        with state.engine.connect() as conn:
            if address is not None:
                found = consent.suppression_of(conn, workspace_id, channel or "email", address)
                return SuppressionsPage(suppressions=[found] if found else [], next_after=None)
            page = consent.list_suppressions(conn, workspace_id, channel, limit=limit, after=after)
        return SuppressionsPage(suppressions=page, next_after=page[-1]["address"] if len(page) == limit else None)

    @router.post("/suppressions", status_code=201, summary="Suppress an address: nothing more is sent to it")
    async def add_suppression(state: State, body: NewSuppression, workspace_id: Workspace) -> dict[str, Any]:
        now = to_ms(state.clock.now())
        created = await state.committer.run_job(
            lambda conn: consent.suppress(conn, workspace_id, body.channel, body.address, body.reason, now, body.detail)
        )
        return {
            "created": created,
            "channel": body.channel,
            "address": consent.normalize_address(body.channel, body.address),
            "reason": body.reason,
        }

    @router.delete("/suppressions", summary="Lift a suppression")
    async def remove_suppression(
        state: State, workspace_id: Workspace, address: str, channel: str = "email"
    ) -> dict[str, Any]:
        removed = await state.committer.run_job(lambda conn: consent.unsuppress(conn, workspace_id, channel, address))
        if not removed:
            raise HTTPException(404, f"{address!r} is not suppressed on {channel}")
        return {"removed": True, "channel": channel, "address": consent.normalize_address(channel, address)}

    # Declared ahead of the admin router's /profiles/{ref:path}, which would match them too.
    @router.get(
        "/profiles/{ref:path}/subscriptions",
        summary="A person's marketing consent on one channel per topic, and frequency (the preference center's view)",
    )
    def subscriptions(state: State, ref: str, workspace_id: Workspace, channel: str = "email") -> dict[str, Any]:
        with state.engine.connect() as conn:
            profile_id = _profile(conn, workspace_id, ref)
            topics = [t for t, _ in consent.topics_of(consent.get_settings(conn, workspace_id))]
            return {
                "profile_id": profile_id,
                **consent.subscriptions_of(conn, workspace_id, profile_id, topics, channel=channel),
            }

    @router.get(
        "/profiles/{ref:path}/consent",
        summary="A person's consent per channel: for all marketing and each topic, allowed or why not, and the choice",
    )
    def get_consent(state: State, ref: str, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            profile_id = _profile(conn, workspace_id, ref)
            return consent_records.view(conn, workspace_id, profile_id, consent.get_settings(conn, workspace_id))

    @router.put(
        "/profiles/{ref:path}/consent",
        summary="Record choices (all or none, source api); each change is a Consent Updated event on the person",
    )
    async def put_consent(state: State, ref: str, body: ConsentChoices, workspace_id: Workspace) -> dict[str, Any]:
        now = to_ms(state.clock.now())

        def apply(conn: Connection) -> dict[str, Any]:
            person = _person(conn, workspace_id, ref)
            profile_id = person.profile_id
            changed = sum(
                consent_records.record(
                    conn, workspace_id, person, c.channel, c.topic, c.subscribed, now, consent_records.API
                )
                for c in body.choices
            )
            view = consent_records.view(conn, workspace_id, profile_id, consent.get_settings(conn, workspace_id))
            return {"changed": changed, **view}

        result: dict[str, Any] = await state.committer.run_job(apply)
        return result

    @router.post(
        "/profiles/{ref:path}/consent/confirmation",
        status_code=202,
        summary="Send a double opt-in email (transactional) whose link records consent to the topic on email",
    )
    async def request_confirmation(
        state: State, ref: str, body: ConfirmationRequest, workspace_id: Workspace
    ) -> dict[str, Any]:
        now = to_ms(state.clock.now())

        def apply(conn: Connection) -> str:
            profile_id = _profile(conn, workspace_id, ref)
            try:
                return consent_records.request_confirmation(
                    conn, workspace_id, profile_id, body.topic, now, template=body.template
                )
            except ConsentProblem as exc:
                raise HTTPException(422, str(exc)) from exc

        key = await state.committer.run_job(apply)
        return {"queued": True, "message_key": key, "channel": "email", "topic": body.topic}

    return router


def _profile(conn: Connection, workspace_id: str, ref: str) -> str:
    profile_id = profile_store.resolve_profile_id(conn, workspace_id, ref)
    if profile_id is None:
        raise HTTPException(404, f"no profile with id, userId or anonymousId {ref!r}")
    return profile_id


def _person(conn: Connection, workspace_id: str, ref: str) -> Person:
    found = profile_store.id_and_user(conn, _profile(conn, workspace_id, ref))
    if found is None:
        raise HTTPException(404, f"no profile with id, userId or anonymousId {ref!r}")
    return Person(*found)
