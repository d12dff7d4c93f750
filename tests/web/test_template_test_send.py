"""POST /api/templates/{name}/test-send: an email template sent for real over SMTP (the dev
server's sink) to an address or a person, rendered with the sample context or theirs."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_string, policy

import httpx
import pytest
from sqlalchemy import text

from nudgeflow.content.sample import sample_context
from nudgeflow.settings import Settings
from nudgeflow.store import dev_inbox
from tests.support import LiveServer, free_port, start_server

WELCOME = {
    "subject": "Welcome, {{ profile.first_name | default: 'friend' }}",
    "body": "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ profile.first_name | default: 'you' }}"
    "</mj-text></mj-column></mj-section></mj-body></mjml>",
}


@pytest.fixture
def dev_server(settings: Settings) -> Iterator[LiveServer]:
    """A server whose default SMTP server is the dev sink (serve --dev)."""
    server = start_server(settings.with_(dev_mode=True, dev_smtp_port=free_port(), engine_enabled=True))
    yield server
    server.stop()


def _inbox(server: LiveServer, addresses: set[str]) -> list[tuple[str, str, str]]:
    """What the dev inbox received for these addresses (on PostgreSQL the tests share one
    database, so other tests' mail is there too)."""
    with server.state.engine.connect() as conn:
        rows = [row for row in dev_inbox.received(conn, "email") if row.rcpt_to in addresses]
    out = []
    for row in rows:
        mail = message_from_string(row.raw, policy=policy.default)
        html = mail.get_body(preferencelist=("html",))
        out.append((row.rcpt_to, row.subject, html.get_content() if html is not None else ""))
    return out


def test_a_test_send_goes_to_an_address_or_a_person(dev_server: LiveServer) -> None:
    ws = dev_server.workspace()
    qa, ada = f"qa-{ws.workspace_id}@example.com", f"ada-{ws.workspace_id}@example.org"
    with dev_server.client(auth=(ws.write_key, "")) as ingest:
        traits = {"first_name": "Ada", "email": ada}
        assert ingest.post("/v1/identify", json={"userId": "ada", "traits": traits}).status_code == 200
        assert ingest.post("/v1/identify", json={"userId": "bo", "traits": {"first_name": "Bo"}}).status_code == 200
    dev_server.state.runtime.run_until_idle()
    with dev_server.admin(ws.admin_token) as api:
        assert api.put("/api/templates/welcome", json=WELCOME).status_code == 201
        sent = api.post("/api/templates/welcome/test-send", json={"to": qa})
        assert sent.status_code == 200, sent.text
        assert sent.json()["to"] == qa and sent.json()["context"] == "sample"
        theirs = api.post("/api/templates/welcome/test-send", json={"profile": "ada"})
        assert theirs.status_code == 200 and theirs.json()["to"] == ada, theirs.text
        elsewhere = api.post("/api/templates/welcome/test-send", json={"profile": "ada", "to": qa})
        assert elsewhere.status_code == 200

        no_email = api.post("/api/templates/welcome/test-send", json={"profile": "bo"})
        assert no_email.status_code == 422 and "no email address" in no_email.json()["detail"]
        for bad, status in (({}, 422), ({"to": "not an address"}, 422), ({"profile": "nobody"}, 404)):
            answer = api.post("/api/templates/welcome/test-send", json=bad)
            assert answer.status_code == status, (bad, answer.text)
        assert api.post("/api/templates/nope/test-send", json={"to": qa}).status_code == 404
    got = _inbox(dev_server, {qa, ada})
    assert [(to, subject) for to, subject, _ in got] == [
        (qa, f"[Test] Welcome, {sample_context()['profile']['first_name']}"),
        (ada, "[Test] Welcome, Ada"),
        (qa, "[Test] Welcome, Ada"),
    ]
    assert "Hi Ada" in got[1][2]


def test_without_smtp_a_test_send_says_so(live: LiveServer, api: httpx.Client) -> None:
    assert api.put("/api/templates/welcome", json=WELCOME).status_code == 201
    answer = api.post("/api/templates/welcome/test-send", json={"to": "qa@example.com"})
    assert answer.status_code == 409 and "no SMTP server" in answer.json()["detail"], answer.text


def test_a_push_test_send_reaches_the_persons_devices(dev_server: LiveServer) -> None:
    """A push template's test goes to each of a person's push targets, for real: here a
    simulated browser subscribed at the dev server's local Web Push service, which decrypts
    it into the dev inbox. The answer says what each target did."""
    state = dev_server.state
    assert state.dev_push is not None
    ws = dev_server.workspace()
    with httpx.Client(timeout=10) as plain:
        browser = plain.post(f"{state.dev_push.url}/subscriptions").json()
    with dev_server.client(auth=(ws.write_key, "")) as ingest:
        traits = {"first_name": "Ada", "email": "ada@example.org"}
        assert ingest.post("/v1/identify", json={"userId": "ada", "traits": traits}).status_code == 200
        assert ingest.post("/v1/identify", json={"userId": "bo", "traits": {"first_name": "Bo"}}).status_code == 200
        subscription = {"endpoint": browser["endpoint"], "keys": browser["keys"]}
        reg = ingest.post("/v1/push/subscriptions", json={"userId": "ada", "subscription": subscription})
        assert reg.status_code == 200, reg.text
    state.runtime.run_until_idle()
    push = {"channel": "push", "title": "Hi {{ profile.first_name }}", "body": "Your cart misses you"}
    with dev_server.admin(ws.admin_token) as api:
        assert api.put("/api/templates/ping", json=push).status_code == 201
        sent = api.post("/api/templates/ping/test-send", json={"profile": "ada"})
        assert sent.status_code == 200, sent.text
        [target] = sent.json()["targets"]
        assert target["result"] == "sent" and target["target"].startswith("webpush:…")
        assert browser["endpoint"] not in sent.text  # the endpoint is a credential: redacted
        # A push goes to a person's devices: no address, and someone with none is told so.
        for misdirected in ({"to": "qa@example.com"}, {"profile": "ada", "to": "qa@example.com"}):
            assert api.post("/api/templates/ping/test-send", json=misdirected).status_code == 422
        none = api.post("/api/templates/ping/test-send", json={"profile": "bo"})
        assert none.status_code == 409 and "no push target" in none.json()["detail"]
    with state.engine.connect() as conn:
        mine = f"subscription {browser['id']}" if "id" in browser else None
        pushes = [row for row in dev_inbox.received(conn, "push") if mine is None or row.rcpt_to == mine]
        queued = conn.execute(
            text("SELECT count(*) FROM outbox WHERE workspace_id = :ws"), {"ws": ws.workspace_id}
        ).scalar_one()
    assert "[Test] Hi Ada" in [row.subject for row in pushes]
    assert queued == 0  # no journey's message: nothing queued or counted
