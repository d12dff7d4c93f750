"""The suppression list's admin API: what it refuses (its use is tested with tracking and the admin API)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize("field", ["address", "channel", "reason", "detail"])
def test_a_nul_character_in_a_suppression_is_a_422_naming_the_field(live: Any, ws: Any, field: str) -> None:
    """PostgreSQL text cannot hold NUL: this was a 500 there."""
    body = {"address": "ann@example.com", "channel": "email", "reason": "manual", "detail": "by hand"}
    body[field] = body[field][:3] + "\x00" + body[field][3:]
    with live.admin(ws.admin_token) as client:
        answer = client.post("/api/suppressions", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == field
        assert "NUL" in answer.json()["detail"]
        lifted = client.delete("/api/suppressions", params={"address": "ann@example.com", "channel": "em\x00ail"})
        assert lifted.status_code == 422 and lifted.json()["errors"][0]["field"] == "channel"
        assert client.get("/api/suppressions").json()["suppressions"] == []
