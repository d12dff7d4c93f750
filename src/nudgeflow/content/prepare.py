"""What rendering any message needs first, read in one connection: its template (compiled
once per version, cached), the person's personalization context, the workspace's link
signing secret and public base URL, and which links it trusts for click tracking (the
catalog URLs the context holds, the "links" allowlist). Shared by email (content/email_render.py) and push
(content/push_render.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from nudgeflow.content.errors import RenderError
from nudgeflow.model.outbound import OutboundMessage


@dataclass
class Prepared:
    compiled: Any  # content.templates.CompiledTemplate
    context: dict[str, Any]
    secret: str  # the workspace's link signing secret
    base: str  # the workspace's public base URL (links, pixels, reports)
    links: Any = None  # content.links.LinkPolicy, without the template's literal links


def prepare(engine: Engine, message: OutboundMessage, channel: str, now_ms: int) -> Prepared:
    """Raise RenderError when the message cannot be rendered at all: no database, no
    such template, a template of another channel."""
    from nudgeflow.content.compiled_templates import load_compiled
    from nudgeflow.content.context import build_context
    from nudgeflow.content.links import LinkPolicy, allowed_domains_of
    from nudgeflow.store import consent
    from nudgeflow.store.templates import TemplateNotFound
    from nudgeflow.store.workspace_settings import server_public_url

    if engine is None:
        raise RenderError("no database to render templates from")
    ws = message.workspace_id
    with engine.connect() as conn:
        try:
            compiled = load_compiled(conn, ws, message.template)
        except TemplateNotFound as exc:
            raise RenderError(f"template '{message.template}' not found") from exc
        if compiled.channel != channel:
            raise RenderError(f"template '{message.template}' is a {compiled.channel} template, not {channel}")
        catalog_urls: set[str] = set()
        context = build_context(conn, ws, message.profile_id, message.context, now_ms, catalog_urls=catalog_urls)
        settings = consent.get_settings(conn, ws)  # one read: the document is sealed (~30 us to open)
        secret = consent.tracking_secret_in(settings)
        # the workspace's own public_base_url, else the server's (NUDGEFLOW_PUBLIC_URL / serve)
        base = consent.public_base_url(settings, server_public_url(conn, consent.DEFAULT_BASE_URL))
    if secret is None:
        # The workspace's first message: create its signing secret (a short write).
        with engine.begin() as conn:
            secret = consent.tracking_secret(conn, ws, now_ms)
    policy = LinkPolicy(frozenset(catalog_urls), (), allowed_domains_of(settings))
    return Prepared(compiled, context, secret, base, policy)
