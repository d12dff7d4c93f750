"""Previews of a template as it is being written (the console's editor): the push payload check.

POST /api/templates/{name}/preview (web/templates_api.py) compiles and renders an unsaved
source as a send would render it (content/templates.py); for a push template,
`push_sizes` says how big its payload is for each push service (channels/push_sizes.py),
with a message key and report link as long as a journey's.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection

from nudgeflow.channels.push_sizes import payload_checks
from nudgeflow.content import links
from nudgeflow.content.push_render import content_from
from nudgeflow.content.rendered import RenderedPush
from nudgeflow.core.steps import run_id_for
from nudgeflow.store import consent
from nudgeflow.store.workspace_settings import server_public_url

# A placeholder of a real secret's length: a link's signature is as long whatever the key,
# and the workspace's own secret stays where it is.
_SIZE_SECRET = "0" * 43


def report_base(conn: Connection, workspace_id: str) -> str:
    """The public base URL the workspace's links use (for a report link's length)."""
    settings = consent.get_settings(conn, workspace_id)
    return consent.public_base_url(settings, server_public_url(conn, consent.DEFAULT_BASE_URL))


def push_sizes(
    rendered: RenderedPush, workspace_id: str, name: str, profile_id: str, base: str, now_ms: int
) -> list[dict[str, Any]]:
    """Each service's payload size for this rendered notification, as a journey would send it."""
    key = f"{run_id_for(profile_id, 1, now_ms)}:{name}:1"
    report = links.push_report_url(base, _SIZE_SECRET, workspace_id, key, profile_id)
    content = content_from(rendered, key, now_ms, report_url=report)
    return [asdict(check) for check in payload_checks(content)]
