"""VAPID settings over HTTP on a live server: admin read / subject / rotate, and the public key
browsers subscribe with (write key auth). The private key never comes out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from nudgeflow.store import vapid, workspace_settings
from nudgeflow.store.schema import workspace_settings as settings_table
from nudgeflow.store.secret_box import box_of


def stored(live: Any, ws: str) -> vapid.VapidKeys:
    with live.state.engine.connect() as conn:
        keys = vapid.get_vapid_keys(conn, ws)
    assert keys is not None
    return keys


def test_admin_reads_sets_subject_and_rotates(live: Any, ws: Any) -> None:
    keys = stored(live, ws.workspace_id)
    with live.admin(ws.admin_token) as client:
        shown = client.get("/api/settings/webpush")
        assert shown.status_code == 200, shown.text
        assert shown.json() == {
            "public_key": keys.public_key,
            "subject": vapid.DEFAULT_SUBJECT,
            "rotated_at_ms": keys.rotated_at_ms,
            "subject_is_placeholder": True,
            "note": None,
        }

        bad = client.put("/api/settings/webpush", json={"subject": "ops@shop.example"})
        assert bad.status_code == 422 and "mailto:" in bad.json()["detail"]
        ok = client.put("/api/settings/webpush", json={"subject": "mailto:ops@shop.example"})
        assert ok.status_code == 200 and ok.json()["subject"] == "mailto:ops@shop.example"
        assert ok.json()["public_key"] == keys.public_key and not ok.json()["subject_is_placeholder"]

        rotated = client.post("/api/settings/webpush/rotate")
        assert rotated.status_code == 200, rotated.text
        body = rotated.json()
        assert body["public_key"] != keys.public_key and body["subject"] == "mailto:ops@shop.example"
        assert "subscribes again" in body["note"]
    assert stored(live, ws.workspace_id).public_key == body["public_key"]
    for answer in (shown, ok, rotated):
        assert keys.private_key not in answer.text and stored(live, ws.workspace_id).private_key not in answer.text
        assert "private" not in answer.text


def test_admin_routes_need_the_admin_token(live: Any, ws: Any) -> None:
    with live.client() as client:
        assert client.get("/api/settings/webpush").status_code == 401
        assert client.post("/api/settings/webpush/rotate").status_code == 401
    with live.admin(ws.write_key) as client:  # a write key is not an admin token
        assert client.post("/api/settings/webpush/rotate").status_code == 401
    other = live.workspace("other")
    before = stored(live, ws.workspace_id)
    with live.admin(other.admin_token) as client:
        assert client.post("/api/settings/webpush/rotate").status_code == 200
    assert stored(live, ws.workspace_id) == before  # only its own workspace


def test_public_key_for_browsers(live: Any, ws: Any) -> None:
    keys = stored(live, ws.workspace_id)
    with live.client(auth=(ws.write_key, "")) as client:
        answer = client.get("/v1/push/vapid-public-key")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"publicKey": keys.public_key}
    assert answer.headers["access-control-allow-origin"] == "*" and answer.headers["cache-control"] == "no-cache"
    with live.client() as client:
        by_query = client.get("/v1/push/vapid-public-key", params={"writeKey": ws.write_key})
        assert by_query.json() == {"publicKey": keys.public_key}
        missing = client.get("/v1/push/vapid-public-key")
        assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
        assert missing.headers["access-control-allow-origin"] == "*"  # the page can read why
        assert client.get("/v1/push/vapid-public-key", params={"writeKey": "wk_nope"}).status_code == 401
        assert client.get("/v1/push/vapid-public-key", params={"writeKey": ws.admin_token}).status_code == 401
        preflight = client.options(
            "/v1/push/vapid-public-key",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 204 and "Authorization" in preflight.headers["access-control-allow-headers"]
    assert keys.private_key not in answer.text


def test_public_key_follows_a_rotation(live: Any, ws: Any) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        before = client.get("/v1/push/vapid-public-key").json()["publicKey"]
        with live.admin(ws.admin_token) as admin_client:
            after = admin_client.post("/api/settings/webpush/rotate").json()["public_key"]
        assert client.get("/v1/push/vapid-public-key").json()["publicKey"] == after != before


def test_a_workspace_without_keys_gets_them_on_first_use(live: Any, ws: Any) -> None:
    with live.state.engine.begin() as conn:  # as made before keys came with workspaces
        workspace_settings.set_section(conn, ws.workspace_id, vapid.SECTION, None, 1)
    with live.client(auth=(ws.write_key, "")) as client:
        key = client.get("/v1/push/vapid-public-key").json()["publicKey"]
    assert stored(live, ws.workspace_id).public_key == key
    with live.admin(ws.admin_token) as client:
        assert client.get("/api/settings/webpush").json()["public_key"] == key
    with live.state.engine.connect() as conn:
        raw = conn.execute(
            select(settings_table.c.settings).where(settings_table.c.workspace_id == ws.workspace_id)
        ).scalar_one()
        opened = box_of(conn).open(raw)
    # Stored, as the sender needs it (sealed where the server has a key); only the API keeps it in.
    assert '"private_key"' in opened and (
        raw.startswith("nf1:") or live.state.settings.database_url.startswith("postgresql")
    )


def test_openapi_lists_the_routes(live: Any) -> None:
    with live.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert "/api/settings/webpush/rotate" in paths and "/v1/push/vapid-public-key" in paths
    assert paths["/api/settings/webpush"]["get"]["security"] == [{"adminToken": []}]
