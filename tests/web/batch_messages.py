"""Messages for /v1/batch, each with a messageId of its own, and a send of them; shared by
test_admin.py and its fixture in conftest.py."""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count(1)


def msg(type_: str, **fields: Any) -> dict[str, Any]:
    """A message of `type_` (a track is a Product Viewed unless `event` says otherwise)."""
    out: dict[str, Any] = {"type": type_, "messageId": f"adm-{next(_ids)}", **fields}
    if type_ == "track":
        out.setdefault("event", "Product Viewed")
    return out


def send(live: Any, write_key: str, *messages: dict[str, Any]) -> None:
    """One /v1/batch of `messages` with the write key; it must be taken."""
    with live.client(auth=(write_key, "")) as client:
        answer = client.post("/v1/batch", json={"batch": list(messages)})
    assert answer.status_code == 200, answer.text
