"""GET/PATCH /api/settings on a live server (SQLite and PostgreSQL): every key of the registry,
secrets masked, a wrong value refused naming its key; and the public URL links are built with."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from nudgeflow.core.clock import to_ms
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.workspace_keys import KEYS
from nudgeflow.store import workspace_settings
from tests.support import start_server


def test_get_lists_every_key_with_defaults_and_masks_secrets(live: Any, ws: Any, api: httpx.Client) -> None:
    with live.state.engine.begin() as conn:
        workspace_settings.set_section(
            conn, ws.workspace_id, "identity", {"verification": True, "secrets": ["cur", "old"]}, 1
        )
        workspace_settings.set_section(conn, ws.workspace_id, "tracking_secret", "tracking-s3cret", 1)
    shown = api.get("/api/settings")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert list(body["keys"]) == [k.name for k in KEYS]
    keys = body["keys"]
    assert keys["public_base_url"] | {} == {**keys["public_base_url"], "value": None, "set": False, "default": None}
    assert keys["links.allowed_domains"]["value"] == [] and keys["topics"]["default"] == []
    assert keys["identity.verification"]["value"] is True
    assert (
        keys["identity.secrets"]["value"] == ["********", "********"] and keys["identity.secrets"]["settable"] is False
    )
    assert keys["tracking_secret"]["value"] == "********"
    assert body["sections"]["webpush"]["value"]["private_key"] == "********"
    assert "tracking-s3cret" not in shown.text and '"cur"' not in shown.text
    assert live.client().get("/api/settings").status_code == 401


def test_patch_sets_clears_and_refuses_naming_the_key_all_or_nothing(live: Any, ws: Any, api: httpx.Client) -> None:
    # Verification with no secret would refuse everyone: refused until a secret exists.
    no_secret = api.patch("/api/settings", json={"identity.verification": True})
    assert (
        no_secret.status_code == 422 and "identity.verification: the workspace has no identity secret" in no_secret.text
    )
    with live.state.engine.begin() as conn:  # what `nudgeflow workspace identity rotate` stores
        workspace_settings.set_section(conn, ws.workspace_id, "identity", {"verification": False, "secrets": ["s1"]}, 1)
    ok = api.patch(
        "/api/settings",
        json={
            "public_base_url": "https://links.shop.example/",
            "topics": ["offers", {"id": "news", "label": "Product news"}],
            "topic_by_journey": {"winback": "offers"},
            "links.allowed_domains": ["Shop.example", "*.shop.example"],
            "identity.verification": True,
        },
    )
    assert ok.status_code == 200, ok.text
    keys = ok.json()["keys"]
    assert keys["public_base_url"]["value"] == "https://links.shop.example"
    assert keys["links.allowed_domains"]["value"] == ["shop.example", "*.shop.example"]
    with live.state.engine.connect() as conn:  # stored with exactly the shapes other parts read
        doc = workspace_settings.get_all(conn, ws.workspace_id)
    assert doc["links"] == {"allowed_domains": ["shop.example", "*.shop.example"]}
    assert doc["identity"]["verification"] is True and doc["topic_by_journey"] == {"winback": "offers"}

    for change, says in [
        (
            {"topics": [], "public_base_url": "https://links.shop.example?utm=1"},
            "public_base_url: must not have a query",
        ),
        ({"identity.verification": "sometimes"}, "identity.verification: 'sometimes' is not a boolean"),
        ({"identity.secrets": ["mine"]}, "identity.secrets: cannot be set here"),
        ({"links.allowed_domains": "shop.example"}, "links.allowed_domains: must be a list of host names"),
        ({"topic_by_template": {"cart": 3}}, "topic_by_template: [cart] 3 is not a name"),
        ({"smtp.from_name": "Shop"}, "smtp.from_name: the workspace has no smtp section"),
        ({"nope": 1}, "nope: no such setting"),
    ]:
        bad = api.patch("/api/settings", json=change)
        assert bad.status_code == 422 and says in bad.json()["detail"], (change, bad.text)
    assert api.get("/api/settings").json()["keys"]["topics"]["value"] == [
        "offers",
        {"id": "news", "label": "Product news"},
    ]

    cleared = api.patch("/api/settings", json={"links.allowed_domains": None, "identity.verification": None})
    assert cleared.status_code == 200
    with live.state.engine.connect() as conn:
        doc = workspace_settings.get_all(conn, ws.workspace_id)
    assert "links" not in doc  # a section emptied by clearing goes away
    assert doc["identity"] == {"secrets": ["s1"]}  # the secrets stay: only verification was cleared
    assert api.patch("/api/settings", json=["public_base_url"]).status_code == 422


def _message(ws: str) -> OutboundMessage:
    return OutboundMessage(
        key="k-1",
        workspace_id=ws,
        profile_id="p-1",
        run_id="r-1",
        journey_id="j",
        step="s",
        channel="email",
        template="hello",
        variant=None,
        marketing=True,
    )


def test_links_use_the_servers_public_url_unless_the_workspace_sets_its_own(settings: Any, clock: Any) -> None:
    from nudgeflow.channels.email.build import build_raw
    from nudgeflow.content.email_render import prepare_email
    from nudgeflow.content.prepare import prepare

    live = start_server(settings.with_(public_url="https://nudge.shop.example"), clock)
    try:
        ws = live.workspace()
        with live.admin(ws.admin_token) as api:
            assert api.put("/api/templates/hello", json={"subject": "Hi", "body": "<p>Hello</p>"}).status_code in (
                200,
                201,
            )
            now = to_ms(clock.now())
            assert (
                prepare(live.state.engine, _message(ws.workspace_id), "email", now).base == "https://nudge.shop.example"
            )
            message = _message(ws.workspace_id)
            message.traits["email"] = "ada@example.com"
            from dataclasses import replace

            raw = build_raw(replace(prepare_email(live.state.engine, message, clock), sender="shop@shop.example"))
            # the one-click unsubscribe header of a marketing email points at the public URL
            assert b"<https://nudge.shop.example/u/" in raw and b"localhost" not in raw

            assert (
                api.patch("/api/settings", json={"public_base_url": "https://links.other.example"}).status_code == 200
            )
            assert (
                prepare(live.state.engine, _message(ws.workspace_id), "email", now).base
                == "https://links.other.example"
            )
    finally:
        live.stop()


def test_without_any_public_url_the_old_default_stays(live: Any, ws: Any, api: httpx.Client, clock: Any) -> None:
    # create_app without a public URL (tests, embedding): links keep the documented default.
    from nudgeflow.content.prepare import prepare

    assert api.put("/api/templates/hello", json={"subject": "Hi", "body": "<p>Hello</p>"}).status_code in (200, 201)
    assert (
        prepare(live.state.engine, _message(ws.workspace_id), "email", to_ms(clock.now())).base
        == "http://localhost:8000"
    )


def test_a_change_waits_for_one_in_progress_and_loses_nothing(live: Any, ws: Any, database_url: str) -> None:
    # Read, change, write of one document: a second change must not read it until the first
    # commits, or it writes back a document without the first one's key (PostgreSQL; SQLite
    # has a single writer).
    import threading
    import time

    from sqlalchemy import text

    from nudgeflow.store.workspace_settings import change_settings

    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: concurrent writers")
    engine = live.state.engine
    first = engine.connect()
    tx = first.begin()
    change_settings(first, ws.workspace_id, {"topics": ["offers"]}, 1)  # not committed yet
    done: list[BaseException | None] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                change_settings(conn, ws.workspace_id, {"links.allowed_domains": ["shop.example"]}, 2)
            done.append(None)
        except BaseException as exc:  # reported below
            done.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    deadline = time.monotonic() + 60  # generous: under a loaded suite the second may take a while to reach the lock
    with engine.connect() as watcher:  # until the second change waits on a lock
        while not watcher.execute(
            text(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar():
            assert time.monotonic() < deadline and thread.is_alive(), done
            # PostgreSQL snapshots pg_stat_activity once per transaction: end it, or a first
            # look taken before the second change reaches the lock is all this loop ever sees.
            watcher.rollback()
            time.sleep(0.01)  # polling another session's state, with a deadline
    tx.commit()
    first.close()
    thread.join(timeout=30)
    assert done == [None]
    with engine.connect() as conn:
        doc = workspace_settings.get_all(conn, ws.workspace_id)
    assert doc["topics"] == ["offers"] and doc["links"] == {"allowed_domains": ["shop.example"]}
