"""FCM and APNs credentials in the admin API, on SQLite and PostgreSQL: set, shown masked,
the mask sent back keeps the stored secret, a key that does not load is refused naming the
field, cleared back to none; what is stored is what the senders read (push_config)."""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nudgeflow.channels import push_config
from nudgeflow.store.workspaces import NewWorkspace
from tests.channels.push_accounts import APNS_KEY_ID, PROJECT, TEAM, TOPIC, service_account
from tests.channels.push_servers import p8_pem
from tests.support import LiveServer

MASK = push_config.MASK


def test_fcm_credentials_go_in_masked_and_stay_when_the_mask_comes_back(
    live: LiveServer, ws: NewWorkspace, api: httpx.Client
) -> None:
    assert api.get("/api/settings/fcm").json() == {"source": None, "config": None}
    account = service_account(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), "https://oauth2.test/token"
    )
    put = api.put("/api/settings/fcm", json={"service_account": account})
    assert put.status_code == 200, put.text
    shown = put.json()
    assert shown["source"] == "workspace" and shown["config"]["project_id"] == PROJECT
    assert shown["config"]["service_account"] == MASK
    for answer in (put, api.get("/api/settings/fcm"), api.get("/api/settings")):
        assert account["private_key"].splitlines()[1] not in answer.text
    # A form sends back what it was shown, with another project id: the key stays.
    again = api.put("/api/settings/fcm", json={"service_account": MASK, "project_id": "other-project"})
    assert again.status_code == 200, again.text
    with live.state.engine.connect() as conn:
        stored = push_config.get_fcm(conn, ws.workspace_id)
    assert stored is not None and stored.project_id == "other-project"
    assert stored.service_account["private_key"] == account["private_key"]
    bad = api.put("/api/settings/fcm", json={"service_account": {**account, "private_key": "not a key"}})
    assert bad.status_code == 422 and "fcm.service_account" in bad.json()["detail"]
    assert api.put("/api/settings/fcm", json={"service_account": "{not json"}).status_code == 422
    assert api.delete("/api/settings/fcm").json() == {"source": None, "config": None}
    assert api.put("/api/settings/fcm", json={"service_account": MASK}).status_code == 422  # nothing to keep


def test_apns_credentials_go_in_masked_and_stay_when_the_mask_comes_back(
    live: LiveServer, ws: NewWorkspace, api: httpx.Client
) -> None:
    pem = p8_pem(ec.generate_private_key(ec.SECP256R1()))
    body: dict[str, Any] = {"team_id": TEAM, "key_id": APNS_KEY_ID, "private_key": pem, "topic": TOPIC}
    put = api.put("/api/settings/apns", json=body)
    assert put.status_code == 200, put.text
    config = put.json()["config"]
    assert config["private_key"] == MASK and config["team_id"] == TEAM and config["sandbox"] is False
    assert pem.splitlines()[1] not in api.get("/api/settings/apns").text
    assert api.put("/api/settings/apns", json={**body, "private_key": MASK, "sandbox": True}).status_code == 200
    with live.state.engine.connect() as conn:
        stored = push_config.get_apns(conn, ws.workspace_id)
    assert stored is not None and stored.private_key == pem and stored.sandbox is True
    rsa_pem = p8_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    bad = api.put("/api/settings/apns", json={**body, "private_key": rsa_pem})
    assert bad.status_code == 422 and "apns.private_key" in bad.json()["detail"]
    assert api.put("/api/settings/apns", json={**body, "team_id": "not an id!"}).status_code == 422
    assert api.delete("/api/settings/apns").json()["config"] is None


def test_each_workspace_its_own_and_a_token_needed(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    pem = p8_pem(ec.generate_private_key(ec.SECP256R1()))
    assert api.put("/api/settings/apns", json={"team_id": TEAM, "key_id": APNS_KEY_ID, "private_key": pem}).is_success
    other = live.workspace("other")
    with live.admin(other.admin_token) as theirs:
        assert theirs.get("/api/settings/apns").json()["config"] is None
    with live.client() as anonymous:
        assert anonymous.put("/api/settings/apns", json={}).status_code == 401
