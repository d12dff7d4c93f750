"""/api/settings/webhooks on a live server: destinations and the workspace secret, masked in
every answer but the one that makes a secret; a change reaches the running channel at once."""

from __future__ import annotations

from typing import Any

import httpx

from nudgeflow.model.webhooks import MASK, new_secret
from nudgeflow.store import webhook_destinations


def stored(live: Any, ws: str) -> webhook_destinations.WebhookSettings:
    with live.state.engine.connect() as conn:
        return webhook_destinations.load(conn, ws)


def test_destinations_are_set_shown_masked_and_removed(live: Any, ws: Any, api: httpx.Client) -> None:
    assert api.get("/api/settings/webhooks").json() == {"secret": None, "destinations": []}
    made = api.put(
        "/api/settings/webhooks/destinations/crm",
        json={"url": "https://crm.example/hooks", "method": "PUT", "headers": {"Authorization": "Bearer tok-1"}},
    )
    assert made.status_code == 200, made.text
    secret = made.json()["secret"]
    assert secret.startswith("whsec_") and stored(live, ws.workspace_id).destinations["crm"].secret == secret

    shown = api.get("/api/settings/webhooks")
    assert shown.json() == {
        "secret": None,
        "destinations": [
            {
                "name": "crm",
                "url": "https://crm.example/hooks",
                "method": "PUT",
                "secret": MASK,
                "headers": {"Authorization": MASK},
            }
        ],
    }
    # A form sends back what it was shown (the name too, which the path gives): the masks keep what is stored.
    again = api.put(
        "/api/settings/webhooks/destinations/crm",
        json={**shown.json()["destinations"][0], "url": "https://crm.example/v2"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["secret"] == MASK
    kept = stored(live, ws.workspace_id).destinations["crm"]
    assert (kept.url, kept.secret, dict(kept.headers)) == (
        "https://crm.example/v2",
        secret,
        {"Authorization": "Bearer tok-1"},
    )
    everything = api.get("/api/settings").text
    for answer in (shown.text, again.text, everything):
        assert secret not in answer and "tok-1" not in answer

    bad = api.put("/api/settings/webhooks/destinations/crm", json={"url": "http://a/", "headers": {"Webhook-Id": "x"}})
    assert bad.status_code == 422 and "set by Nudgeflow itself" in bad.json()["detail"]
    assert api.put("/api/settings/webhooks/destinations/x y", json={"url": "http://a/"}).status_code == 422
    assert api.delete("/api/settings/webhooks/destinations/crm").json() == {"removed": "crm"}
    assert api.delete("/api/settings/webhooks/destinations/crm").status_code == 404


def test_the_workspace_secret_is_made_or_set(live: Any, ws: Any, api: httpx.Client) -> None:
    made = api.post("/api/settings/webhooks/secret")
    assert made.status_code == 200, made.text
    assert made.json()["secret"].startswith("whsec_") and stored(live, ws.workspace_id).secret == made.json()["secret"]
    assert api.get("/api/settings/webhooks").json()["secret"] == MASK
    given = new_secret()
    assert api.post("/api/settings/webhooks/secret", json={"secret": given}).json() == {"secret": MASK}
    assert stored(live, ws.workspace_id).secret == given
    assert api.post("/api/settings/webhooks/secret", json={"secret": "hunter2"}).status_code == 422


def test_the_settings_need_the_admin_token(live: Any) -> None:
    with live.client() as anonymous:
        assert anonymous.get("/api/settings/webhooks").status_code == 401
