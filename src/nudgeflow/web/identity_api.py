"""Write keys and identity verification in the admin API (bearer admin token):

    GET    /api/keys                          the workspace's keys, by hint and kind
    POST   /api/keys {kind: public|server}    a new write key, shown once
    DELETE /api/keys/{hint}                   revoke a write key
    GET    /api/identity                      {verification, secrets (how many), rotating}
    POST   /api/identity/enable               on; answers the new secret once if there was none
    POST   /api/identity/disable              off (the secrets are kept)
    POST   /api/identity/rotate               a new current secret, shown once; the old one stays valid
    POST   /api/identity/finish-rotation      the previous secret stops being valid

The same as `nudgeflow workspace keys …` and `nudgeflow workspace identity …` (cli/identity.py).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from nudgeflow.core.clock import to_ms
from nudgeflow.store import identity_settings as identity
from nudgeflow.store import workspaces as keys
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import AppState, State

SECRET_NOTE = (
    "Shown once: put it in your backend, which sends context.userHash = hex HMAC-SHA256(secret, userId) "
    "with the user's calls (docs/identity.md)."
)


class KeyIn(BaseModel):
    kind: Literal["public", "server"] = Field(description="public: for browsers and apps; server: a backend's secret")


def identity_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["admin"])

    def _now(state: AppState) -> int:
        return to_ms(state.clock.now())

    @router.get("/keys", summary="The workspace's write keys and admin tokens, by hint (the keys are not kept)")
    def list_keys(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            return {"keys": keys.list_keys(conn, workspace_id)}

    @router.post("/keys", status_code=201, summary="Create a write key (public or server), shown once")
    def create_key(state: State, body: KeyIn, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.begin() as conn:
            key = keys.create_write_key(conn, workspace_id, body.kind, _now(state))
        return {"key": key, "hint": key[:8], "kind": body.kind}

    @router.delete("/keys/{hint}", summary="Revoke a write key by its hint (its first 8 characters)")
    def revoke_key(state: State, hint: str, workspace_id: Workspace) -> dict[str, Any]:
        try:
            with state.engine.begin() as conn:
                kind = keys.revoke_write_key(conn, workspace_id, hint)
        except keys.KeyProblem as exc:
            raise HTTPException(404, str(exc)) from exc
        return {
            "revoked": hint[:8],
            "kind": kind,
            "note": "a running server stops accepting it within 30 seconds (its key cache)",
        }

    def _changed(state: AppState, workspace_id: str) -> None:
        state.identity.forget(workspace_id)  # this process's ingest sees it at once

    @router.get("/identity", summary="Identity verification: on or off, how many secrets are valid")
    def get_identity(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            return identity.read(conn, workspace_id).view()

    @router.post("/identity/enable", summary="Turn identity verification on (makes the first secret if needed)")
    def enable(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.begin() as conn:
            settings, made = identity.enable(conn, workspace_id, _now(state))
        _changed(state, workspace_id)
        return {**settings.view(), **({"secret": made, "note": SECRET_NOTE} if made else {})}

    @router.post("/identity/disable", summary="Turn identity verification off (the secrets are kept)")
    def disable(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.begin() as conn:
            settings = identity.disable(conn, workspace_id, _now(state))
        _changed(state, workspace_id)
        return settings.view()

    @router.post("/identity/rotate", summary="A new identity secret, shown once; the previous stays valid")
    def rotate(state: State, workspace_id: Workspace) -> dict[str, Any]:
        try:
            with state.engine.begin() as conn:
                settings, made = identity.rotate(conn, workspace_id, _now(state))
        except identity.IdentityProblem as exc:
            raise HTTPException(409, str(exc)) from exc
        _changed(state, workspace_id)
        return {**settings.view(), "secret": made, "note": SECRET_NOTE}

    @router.post("/identity/finish-rotation", summary="End a rotation: only the newest secret stays valid")
    def finish_rotation(state: State, workspace_id: Workspace) -> dict[str, Any]:
        try:
            with state.engine.begin() as conn:
                settings = identity.finish_rotation(conn, workspace_id, _now(state))
        except identity.IdentityProblem as exc:
            raise HTTPException(409, str(exc)) from exc
        _changed(state, workspace_id)
        return settings.view()

    return router
