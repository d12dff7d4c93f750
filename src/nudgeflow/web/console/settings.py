"""The console's settings pages (`/settings/...`): email (SMTP and DKIM), push (Web Push's
VAPID key and contact, FCM and APNs credentials), the workspace (public URL, link domains,
topics), send policies (the policies.yaml document, edited and checked by the server) and
write keys.

The pages read through the store's and push_config's own functions, which mask every secret
(the SMTP password, the DKIM key, the FCM service account, the APNs key, identity and
tracking secrets): a secret never reaches the page, and nothing in it can ask for one. Every
change goes through the existing admin API (/api/settings, /api/settings/smtp,
/api/settings/webpush, /api/settings/fcm, /api/settings/apns, /api/policies, /api/keys) from
the page's script (static/settings.js), where roles and the CSRF token are checked; their
answers are masked as well. A new write key is the one value shown, once, in the answer that
made it (it is not kept: only its hint is)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Connection

from nudgeflow.channels import push_config, wiring
from nudgeflow.model.iso_time import iso
from nudgeflow.model.smtp_config import MASK, parse_smtp_url
from nudgeflow.settings import Settings
from nudgeflow.store import policies as policy_store
from nudgeflow.store import vapid, workspaces
from nudgeflow.store import workspace_settings as settings_store
from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.render import page
from nudgeflow.web.state import AppState, State

# The settings pages, in the order the sub-navigation lists them: (path, title).
SECTIONS = (
    ("email", "Email (SMTP and DKIM)"),
    ("push", "Push credentials"),
    ("workspace", "Public URL, link domains and topics"),
    ("policies", "Send policies"),
    ("keys", "Write keys"),
)
# The role the admin API asks of a change on each page (web/access.py: secrets and keys are
# an admin's). The page only greys out its forms for the others; the API refuses them.
CHANGED_BY = {"email": "admin", "push": "admin", "workspace": "editor", "policies": "editor", "keys": "admin"}
# What a workspace with no policies is shown to start from: every section, commented.
EMPTY_POLICIES = """\
# Send policies (docs/policies.md): nothing is capped, deferred or dropped until you apply some.
# timezone: UTC
# frequency_caps:
#   - {id: email-daily, channel: email, limit: 2, calendar: day}
# quiet_hours:
#   - {channel: push, start: "21:00", end: "08:00"}
"""


def _default_smtp(state: AppState) -> Any:
    url = state.settings.smtp_url
    return parse_smtp_url(url) if url else None


def email_view(conn: Connection, workspace_id: str, default: Any) -> dict[str, Any]:
    smtp = settings_store.smtp_settings_masked(conn, workspace_id, default)
    return {"smtp": smtp, "mask": MASK}


def push_view(conn: Connection, workspace_id: str, settings: Settings) -> dict[str, Any]:
    keys = vapid.get_vapid_keys(conn, workspace_id)
    return {
        "webpush": None if keys is None else {**keys.public_view(), "rotated_at": iso(keys.rotated_at_ms)},
        # What /api/settings/fcm and /api/settings/apns answer: the credentials in effect, the
        # service account and the key masked.
        "fcm": push_config.masked(conn, workspace_id, push_config.FCM_SECTION, lambda: wiring.fcm_default(settings)),
        "apns": push_config.masked(conn, workspace_id, push_config.APNS_SECTION, lambda: wiring.apns_default(settings)),
    }


def workspace_view(conn: Connection, workspace_id: str) -> dict[str, Any]:
    keys = settings_store.show_settings(conn, workspace_id)["keys"]
    topics = keys["topics"]["value"] or []
    return {
        "public_base_url": keys["public_base_url"],
        "allowed_domains": keys["links.allowed_domains"],
        "topics": keys["topics"],
        "topic_lines": [t if isinstance(t, str) else f"{t['id']} | {t.get('label', '')}".rstrip(" |") for t in topics],
    }


def policies_view(conn: Connection, workspace_id: str) -> dict[str, Any]:
    found = policy_store.get(conn, workspace_id)
    return {
        "version": found.version if found is not None else 0,
        "updated_at": iso(found.created_at_ms, milliseconds=False) if found is not None else None,
        "updated_by": found.created_by if found is not None else None,
        "source": found.source if found is not None else EMPTY_POLICIES,
    }


def keys_view(conn: Connection, workspace_id: str) -> dict[str, Any]:
    return {
        "keys": [
            {**key, "created_at": iso(int(str(key["created_at_ms"])), milliseconds=False)}
            for key in workspaces.list_keys(conn, workspace_id)
        ]
    }


def router() -> APIRouter:
    pages = APIRouter()

    def show(request: Request, user: Any, section: str, view: dict[str, Any]) -> HTMLResponse:
        title = dict(SECTIONS)[section]
        return page(
            request,
            user,
            f"settings/{section}.html",
            title=title,
            sections=SECTIONS,
            section=section,
            changed_by=CHANGED_BY[section],
            **view,
        )

    @pages.get("/settings", name="console_settings", include_in_schema=False)
    def settings_index(user: Viewer) -> RedirectResponse:
        return RedirectResponse("/settings/email", 303)

    @pages.get("/settings/email", response_class=HTMLResponse, name="console_settings_email", include_in_schema=False)
    def email(request: Request, state: State, user: Viewer) -> HTMLResponse:
        with state.engine.connect() as conn:
            view = email_view(conn, user.workspace_id, _default_smtp(state))
        return show(request, user, "email", view)

    @pages.get("/settings/push", response_class=HTMLResponse, name="console_settings_push", include_in_schema=False)
    def push(request: Request, state: State, user: Viewer) -> HTMLResponse:
        with state.engine.connect() as conn:
            view = push_view(conn, user.workspace_id, state.settings)
        return show(request, user, "push", view)

    @pages.get(
        "/settings/workspace", response_class=HTMLResponse, name="console_settings_workspace", include_in_schema=False
    )
    def workspace(request: Request, state: State, user: Viewer) -> HTMLResponse:
        with state.engine.connect() as conn:
            view = workspace_view(conn, user.workspace_id)
        return show(request, user, "workspace", view)

    @pages.get(
        "/settings/policies", response_class=HTMLResponse, name="console_settings_policies", include_in_schema=False
    )
    def policies(request: Request, state: State, user: Viewer) -> HTMLResponse:
        with state.engine.connect() as conn:
            view = policies_view(conn, user.workspace_id)
        return show(request, user, "policies", view)

    @pages.get("/settings/keys", response_class=HTMLResponse, name="console_settings_keys", include_in_schema=False)
    def keys(request: Request, state: State, user: Viewer) -> HTMLResponse:
        with state.engine.connect() as conn:
            view = keys_view(conn, user.workspace_id)
        return show(request, user, "keys", view)

    return pages
