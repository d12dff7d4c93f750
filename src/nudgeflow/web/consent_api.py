"""The admin API for the suppression list and a person's subscriptions (bearer admin token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import AfterValidator, BaseModel, Field

from nudgeflow.core.clock import to_ms
from nudgeflow.model.nul import no_nul
from nudgeflow.store import consent
from nudgeflow.store import profiles as profile_store
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import State

Text = Annotated[str, AfterValidator(no_nul)]  # a text column: PostgreSQL cannot store NUL


class NewSuppression(BaseModel):
    channel: Text = Field(default="email", min_length=1, max_length=20)
    address: Text = Field(min_length=1, max_length=320)
    reason: Text = Field(default="manual", min_length=1, max_length=40)
    detail: Text | None = Field(default=None, max_length=2000)


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

    # Declared ahead of the admin router's /profiles/{ref:path}, which would match it too.
    @router.get("/profiles/{ref:path}/subscriptions", summary="A person's marketing consent per topic, and frequency")
    def subscriptions(state: State, ref: str, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            profile_id = profile_store.resolve_profile_id(conn, workspace_id, ref)
            if profile_id is None:
                raise HTTPException(404, f"no profile with id, userId or anonymousId {ref!r}")
            topics = [t for t, _ in consent.topics_of(consent.get_settings(conn, workspace_id))]
            return {"profile_id": profile_id, **consent.subscriptions_of(conn, workspace_id, profile_id, topics)}

    return router
