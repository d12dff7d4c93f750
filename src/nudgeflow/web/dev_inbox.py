"""The dev inbox pages (`serve --dev` only): what the SMTP sink of runtime/dev_smtp.py and
the local Web Push service of runtime/dev_push_inbox.py received.

GET /dev/inbox            the messages, newest first: channel, from, to, subject or title, time
GET /dev/inbox/{id}       an email: its HTML in a sandboxed iframe (srcdoc; no scripts, no same
                          origin), its text part, all its headers; a push: the notification as
                          a browser would show it, its TTL, Urgency and Topic, the JSON
GET /dev/inbox/{id}.eml   the raw email (or the push's JSON)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import message_from_string, policy
from email.message import EmailMessage
from html import escape
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

from nudgeflow.store import dev_inbox
from nudgeflow.web.state import AppState, State

_CSP = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; frame-src 'self'"
_STYLE = """<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}th{background:#f6f6f6}
iframe{width:100%;height:70vh;border:1px solid #ccc}pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}</style>"""


def _page(title: str, body: str) -> HTMLResponse:
    html = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title>{_STYLE}</head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"})


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _parts(msg: EmailMessage) -> tuple[str | None, str | None]:
    html = text = None
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        try:
            content = part.get_content()
        except Exception:
            continue
        if kind == "text/html" and html is None:
            html = content
        elif kind == "text/plain" and text is None:
            text = content
    return html, text


def _push_page(message_id: int, raw: str) -> HTMLResponse:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {}
    note = doc.get("notification") if isinstance(doc.get("notification"), dict) else {}
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(str(note[name]))}</td></tr>"
        for name in ("title", "body", "url", "image", "icon", "key")
        if note.get(name)
    )
    actions = ", ".join(escape(str(a.get("title", ""))) for a in note.get("actions") or [] if isinstance(a, dict))
    if actions:
        rows += f"<tr><th>actions</th><td>{actions}</td></tr>"
    for name in ("ttl", "urgency", "topic"):
        if doc.get(name) is not None:
            rows += f"<tr><th>{escape(name)}</th><td>{escape(str(doc[name]))}</td></tr>"
    return _page(
        str(note.get("title") or "push"),
        f'<p><a href="/dev/inbox">&larr; inbox</a></p><h1>{escape(str(note.get("title") or "(no title)"))}</h1>'
        f"<p>{escape(str(note.get('body') or ''))}</p><h2>Notification</h2><table>{rows}</table>"
        f"<h2>As received (decrypted)</h2><pre>{escape(raw)}</pre>",
    )


def dev_inbox_router() -> APIRouter:
    router = APIRouter(prefix="/dev/inbox", tags=["dev"], include_in_schema=False)

    def load_row(state: AppState, message_id: int) -> Any:
        with state.engine.connect() as conn:
            row = dev_inbox.get(conn, message_id)
        if row is None:
            raise HTTPException(404, "no such message")
        return row

    def load(state: AppState, message_id: int) -> str:
        return str(load_row(state, message_id).raw)

    @router.get("")
    def inbox(state: State) -> HTMLResponse:
        with state.engine.connect() as conn:
            rows = dev_inbox.newest(conn, 500)
        body = "".join(
            f"<tr><td>{_time(r.received_at_ms)}</td><td>{escape(r.channel)}</td><td>{escape(r.mail_from)}</td>"
            f"<td>{escape(r.rcpt_to)}</td>"
            f'<td><a href="/dev/inbox/{r.id}">{escape(r.subject or "(no subject)")}</a></td></tr>'
            for r in rows
        )
        empty = (
            ""
            if rows
            else "<p>No messages yet. Everything sent by email or Web Push while serving with --dev arrives here.</p>"
        )
        dev_push = state.dev_push
        push_note = (
            f"<p>Simulated browsers subscribe at the local Web Push service <code>{escape(dev_push.url)}</code> "
            "(<code>POST /subscriptions</code>), then register the subscription with "
            "<code>POST /v1/push/subscriptions</code>.</p>"
            if dev_push is not None
            else ""
        )
        return _page(
            "Dev inbox",
            f"<h1>Dev inbox</h1>{push_note}{empty}<table><tr><th>received</th><th>channel</th><th>from</th><th>to</th>"
            f"<th>subject / title</th></tr>{body}</table>",
        )

    @router.get("/{message_id:int}.eml")
    def raw(state: State, message_id: int) -> Response:
        return Response(
            load(state, message_id).encode(),
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="message-{message_id}.eml"'},
        )

    @router.get("/{message_id:int}")
    def show(state: State, message_id: int) -> HTMLResponse:
        row = load_row(state, message_id)
        if row.channel == "push":
            return _push_page(message_id, str(row.raw))
        msg = message_from_string(str(row.raw), policy=policy.default)
        html, text = _parts(msg)
        headers = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in msg.items())
        frame = (
            f'<iframe sandbox="" referrerpolicy="no-referrer" srcdoc="{escape(html, quote=True)}"></iframe>'
            if html is not None
            else "<p>(no HTML part)</p>"
        )
        return _page(
            str(msg.get("Subject", "message")),
            f'<p><a href="/dev/inbox">&larr; inbox</a> · <a href="/dev/inbox/{message_id}.eml">raw .eml</a></p>'
            f"<h1>{escape(str(msg.get('Subject', '(no subject)')))}</h1>"
            f"<h2>HTML</h2>{frame}<h2>Text</h2><pre>{escape(text or '(no text part)')}</pre>"
            f"<h2>Headers</h2><table>{headers}</table>",
        )

    return router
