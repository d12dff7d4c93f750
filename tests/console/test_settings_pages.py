"""The settings pages over HTTP: every secret the workspace holds (SMTP password, DKIM key,
FCM service account, APNs key, VAPID private key, identity and tracking secrets, write keys)
is in no page and in no answer a page fetches, for any role; the email form's masked values
keep what is stored; the pages show what the API changed; a viewer reads only."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from nudgeflow.core.clock import to_ms
from nudgeflow.model.smtp_config import MASK
from nudgeflow.store import consent, vapid
from nudgeflow.store import workspace_settings as settings_store
from tests.channels.push_accounts import PROJECT, service_account
from tests.channels.push_servers import p8_pem

PAGES = ("/settings/email", "/settings/push", "/settings/workspace", "/settings/policies", "/settings/keys")
# What the settings pages' scripts call (static/settings.js) and what the pages link to.
FETCHED = (
    "/api/settings",
    "/api/settings/smtp",
    "/api/settings/webpush",
    "/api/settings/fcm",
    "/api/settings/apns",
    "/api/policies",
    "/api/keys",
)
TOKEN_URI = "https://oauth2.example.com/token"
SMTP_PASSWORD = "smtp-Secret-pw-4242"


@pytest.fixture(scope="module")
def secrets(console_app: Any) -> list[str]:
    """Every kind of secret set in the workspace, through the API where it has a way in."""
    ws = console_app.workspace_id
    dkim = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    dkim_ed25519 = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    fcm_account = service_account(rsa.generate_private_key(public_exponent=65537, key_size=2048), TOKEN_URI)
    apns_key = p8_pem(ec.generate_private_key(ec.SECP256R1()))
    with console_app.admin() as admin:
        smtp = {
            "url": f"smtp+starttls://mailer:{SMTP_PASSWORD}@smtp.example.com:587",
            "from_address": "shop@example.com",
            "dkim_selector": "s1",
            "dkim_domain": "example.com",
            "dkim_private_key": dkim,
            "dkim_ed25519_selector": "e1",
            "dkim_ed25519_private_key": dkim_ed25519,
        }
        assert admin.put("/api/settings/smtp", json=smtp).is_success
        assert admin.put("/api/settings/fcm", json={"service_account": fcm_account}).is_success
        apns = {"team_id": "TEAM1", "key_id": "KEY123", "private_key": apns_key, "topic": "com.example.shop"}
        assert admin.put("/api/settings/apns", json=apns).is_success
        identity = admin.post("/api/identity/enable").json()
        write_key = admin.post("/api/keys", json={"kind": "server"}).json()["key"]
    now = to_ms(console_app.clock.now())
    with console_app.state.engine.begin() as conn:
        tracking = consent.tracking_secret(conn, ws, now)
        keys = vapid.ensure_vapid_keys(conn, ws, now)
    pem_lines = [
        line
        for pem in (dkim, dkim_ed25519, fcm_account["private_key"], apns_key)
        for line in pem.splitlines()
        if "-----" not in line
    ]
    return [SMTP_PASSWORD, tracking, keys.private_key, write_key, identity["secret"], *pem_lines]


@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
def test_no_secret_reaches_a_page_or_what_a_page_fetches(secrets: list[str], signed_in: Any, role: str) -> None:
    client = signed_in(role)
    for path in (*PAGES, *FETCHED):
        response = client.get(path)
        assert response.status_code in (200, 403), (path, response.status_code)
        for secret in secrets:
            assert secret not in response.text, f"a secret in {path} for a {role}"
    email = client.get("/settings/email").text
    assert MASK in email and "smtp.example.com" in email
    push = client.get("/settings/push").text
    assert MASK in push and PROJECT in push and "KEY123" in push and "com.example.shop" in push


def test_the_email_form_sends_back_the_masks_and_keeps_the_secrets(
    secrets: list[str], console_app: Any, signed_in: Any
) -> None:
    client = signed_in("admin")
    shown = client.get("/api/settings/smtp").json()["config"]
    # What the form holds, as the page rendered it, with one field changed.
    form = {
        "url": shown["url"],
        "from_address": "hello@example.com",
        "dkim_selector": shown["dkim_selector"],
        "dkim_domain": shown["dkim_domain"],
        "dkim_private_key": shown["dkim_private_key"],
        "dkim_ed25519_selector": shown["dkim_ed25519_selector"],
        "dkim_ed25519_private_key": shown["dkim_ed25519_private_key"],
    }
    assert MASK in form["url"] and form["dkim_private_key"] == MASK == form["dkim_ed25519_private_key"]
    answer = client.put("/api/settings/smtp", json=form)
    assert answer.status_code == 200 and not any(secret in answer.text for secret in secrets)
    with console_app.state.engine.connect() as conn:
        stored = settings_store.get_smtp(conn, console_app.workspace_id)
    assert stored is not None and stored.password == SMTP_PASSWORD and stored.from_address == "hello@example.com"
    assert stored.dkim_private_key and "PRIVATE KEY" in stored.dkim_private_key
    assert stored.dkim_ed25519_private_key and "PRIVATE KEY" in stored.dkim_ed25519_private_key
    assert stored.dkim_ed25519_selector == "e1"
    assert 'value="hello@example.com"' in client.get("/settings/email").text
    # An editor may look, not change a secret: the API refuses, the page greys its form out.
    assert signed_in("editor").put("/api/settings/smtp", json=form).status_code == 403
    as_editor = signed_in("editor").get("/settings/email").text
    assert 'data-testid="read-only"' in as_editor and '<fieldset class="nf-plain" disabled>' in as_editor


def test_policies_are_shown_as_applied_and_a_bad_document_is_refused(signed_in: Any) -> None:
    editor = signed_in("editor")
    bad = editor.put(
        "/api/policies",
        content="frequency_caps:\n  - id: daily\n    channel: email\n    limit: -1\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert bad.status_code == 422 and bad.json()["problems"]
    source = "# ours\nfrequency_caps:\n  - id: console-daily\n    channel: email\n    limit: 2\n    calendar: day\n"
    good = editor.put("/api/policies", content=source, headers={"Content-Type": "application/yaml"})
    assert good.status_code == 200, good.text
    page = signed_in("viewer").get("/settings/policies").text
    assert "console-daily" in page and f"Version {good.json()['version']}" in page
    assert 'data-testid="read-only"' in page
    assert 'data-testid="read-only"' not in editor.get("/settings/policies").text


def test_the_workspace_page_shows_what_was_saved(signed_in: Any) -> None:
    editor = signed_in("editor")
    saved = editor.patch(
        "/api/settings",
        json={
            "public_base_url": "https://nudge.shop.example",
            "links.allowed_domains": ["shop.example", "*.cdn.example"],
            "topics": ["offers", {"id": "news", "label": "Product <news>"}],
        },
    )
    assert saved.status_code == 200, saved.text
    page = editor.get("/settings/workspace").text
    assert 'value="https://nudge.shop.example"' in page
    assert "shop.example\n*.cdn.example" in page
    assert "offers\nnews | Product &lt;news&gt;" in page


def test_the_keys_page_lists_hints_only(secrets: list[str], console_app: Any, signed_in: Any) -> None:
    with console_app.admin() as admin:
        made = admin.post("/api/keys", json={"kind": "public"}).json()
    page = signed_in("admin").get("/settings/keys").text
    assert f'data-hint="{made["hint"]}"' in page and made["key"] not in page
    index = signed_in("viewer").get("/settings")
    assert index.status_code == 303 and index.headers["location"] == "/settings/email"
