"""The dev inbox pages (`serve --dev` only): what the SMTP sink of runtime/dev_smtp.py received.

GET /dev/inbox            the messages, newest first: from, to, subject, time
GET /dev/inbox/{id}       one message: its HTML in a sandboxed iframe (srcdoc; no scripts,
                          no same origin), its text part, all its headers
GET /dev/inbox/{id}.eml   the raw message
"""

from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_string, policy
from email.message import EmailMessage
from html import escape

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from nudgeflow.store.schema import inbox_messages

_CSP = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; frame-src 'self'"
_STYLE = """<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}th{background:#f6f6f6}
iframe{width:100%;height:70vh;border:1px solid #ccc}pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}</style>"""


def _page(title: str, body: str) -> HTMLResponse:
    html = f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title>{_STYLE}</head><body>{body}</body></html>"
    return HTMLResponse(html, headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"})


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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


def dev_inbox_router() -> APIRouter:
    router = APIRouter(prefix="/dev/inbox", tags=["dev"], include_in_schema=False)

    def engine(request: Request):  # type: ignore[no-untyped-def]
        return request.app.state.nudgeflow.engine

    def load(request: Request, message_id: int) -> str:
        with engine(request).connect() as conn:
            raw = conn.execute(select(inbox_messages.c.raw).where(inbox_messages.c.id == message_id)).scalar_one_or_none()
        if raw is None:
            raise HTTPException(404, "no such message")
        return raw

    @router.get("")
    def inbox(request: Request) -> HTMLResponse:
        t = inbox_messages.c
        with engine(request).connect() as conn:
            rows = conn.execute(
                select(t.id, t.mail_from, t.rcpt_to, t.subject, t.received_at_ms).order_by(t.id.desc()).limit(500)
            ).all()
        body = "".join(
            f"<tr><td>{_time(r.received_at_ms)}</td><td>{escape(r.mail_from)}</td><td>{escape(r.rcpt_to)}</td>"
            f'<td><a href="/dev/inbox/{r.id}">{escape(r.subject or "(no subject)")}</a></td></tr>'
            for r in rows
        )
        empty = "" if rows else "<p>No messages yet. Everything sent by email while serving with --dev arrives here.</p>"
        return _page(
            "Dev inbox",
            f"<h1>Dev inbox</h1>{empty}<table><tr><th>received</th><th>from</th><th>to</th><th>subject</th></tr>{body}</table>",
        )

    @router.get("/{message_id:int}.eml")
    def raw(request: Request, message_id: int) -> Response:
        return Response(
            load(request, message_id).encode(),
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="message-{message_id}.eml"'},
        )

    @router.get("/{message_id:int}")
    def show(request: Request, message_id: int) -> HTMLResponse:
        msg = message_from_string(load(request, message_id), policy=policy.default)
        html, text = _parts(msg)  # type: ignore[arg-type]
        headers = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in msg.items())
        frame = (
            f'<iframe sandbox="" referrerpolicy="no-referrer" srcdoc="{escape(html, quote=True)}"></iframe>'
            if html is not None else "<p>(no HTML part)</p>"
        )
        return _page(
            str(msg.get("Subject", "message")),
            f'<p><a href="/dev/inbox">&larr; inbox</a> · <a href="/dev/inbox/{message_id}.eml">raw .eml</a></p>'
            f"<h1>{escape(str(msg.get('Subject', '(no subject)')))}</h1>"
            f"<h2>HTML</h2>{frame}<h2>Text</h2><pre>{escape(text or '(no text part)')}</pre>"
            f"<h2>Headers</h2><table>{headers}</table>",
        )

    return router
