"""What the email channel's tests share: a renderer with fixed content, an outbound message,
and a pending email queued straight into the outbox."""

from __future__ import annotations

from typing import Any

from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.model.outbound import OutboundMessage

HTML = """<html><head><style>p{color:red}</style><title>t</title></head><body>
<h1>Hello   Ada</h1><p>You left <b>2 items</b> in your cart.</p>
<ul><li>Red shoes</li><li>Blue hat</li></ul>
<p><a href="https://shop.example.com/cart?u=1">Back to your cart</a></p>
<script>alert(1)</script><div style="display:none">hidden</div>
</body></html>"""

UNSUB = {
    "List-Unsubscribe": "<https://t.example.com/u/abc>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


class FixedRenderer:
    def __init__(self, **kw: Any) -> None:
        self.kw = kw

    async def render_email(self, message: OutboundMessage) -> RenderedEmail:
        return RenderedEmail(
            subject=self.kw.get("subject", "Your cart"),
            html=HTML,
            preheader=self.kw.get("preheader", "Still thinking?"),
            headers=dict(self.kw.get("headers", UNSUB)),
            marketing=message.marketing,
        )


def outbound(key: str = "run1:step1:1", email: str | None = "ada@example.org", ws: str = "ws_1") -> OutboundMessage:
    traits = {"email": email} if email else {}
    return OutboundMessage(
        key=key,
        workspace_id=ws,
        profile_id="p1",
        run_id="run1",
        journey_id="j",
        step="s",
        channel="email",
        template="cart",
        variant=None,
        marketing=True,
        traits=traits,
    )


def queue_email(engine: Any, ws: str, key: str, email: str, now_ms: int) -> None:
    """A pending marketing email in the outbox for a new profile with this address."""
    import orjson
    from sqlalchemy import insert

    from nudgeflow.store.schema import outbox, profiles

    with engine.begin() as conn:
        conn.execute(
            insert(profiles).values(
                id=f"p_{key}",
                workspace_id=ws,
                user_id=f"u_{key}",
                traits=orjson.dumps({"email": email}).decode(),
                created_at_ms=now_ms,
                updated_at_ms=now_ms,
            )
        )
        conn.execute(
            insert(outbox).values(
                workspace_id=ws,
                idempotency_key=key,
                profile_id=f"p_{key}",
                run_id="r1",
                journey_id="j1",
                journey_version=1,
                step="s1",
                channel="email",
                template="cart",
                variant=None,
                marketing=1,
                payload="{}",
                status="pending",
                attempts=0,
                next_attempt_at_ms=now_ms,
                created_at_ms=now_ms,
                updated_at_ms=now_ms,
            )
        )
