"""The audit log: every successful change through the admin API, by token or session, with
who, what, on what, when, and documents before and after; refused or failed requests and
reads leave nothing; the /audit page shows it, paged, to editors and admins."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from nudgeflow.store import audit_log
from tests.console.support import ConsoleApp, email_of

TEMPLATE = {"channel": "email", "subject": "Hello {{ profile.first_name }}", "body": "<p>Hi</p>"}


def entries(app: ConsoleApp) -> list[dict[str, object]]:
    with app.state.engine.connect() as conn:
        return audit_log.entries(conn, app.workspace_id, limit=200)[0]


def test_changes_are_recorded_with_who_what_and_the_document(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    with app.admin() as admin:
        assert admin.put("/api/templates/welcome", json=TEMPLATE).status_code == 201
    editor = app.sign_in(email_of("editor"))
    app.clock.advance(timedelta(minutes=5))
    changed = editor.put("/api/templates/welcome", json={**TEMPLATE, "subject": "Welcome"})
    assert changed.status_code == 200, changed.text
    # Not recorded: a read, a preview, a refused change, a change that failed.
    assert editor.get("/api/templates/welcome").status_code == 200
    assert editor.post("/api/templates/welcome/render", json={}).status_code < 500
    assert editor.put("/api/settings/smtp", json={"url": "smtp://x.example.com"}).status_code == 403
    assert editor.put("/api/templates/welcome", json={"subject": "{% if %}"}).status_code == 422

    found = [e for e in entries(app) if e["action"] != "sign-in"]
    assert [(e["actor"], e["action"], e["target"]) for e in found] == [
        ("editor@example.com", "PUT /api/templates/{name}", "/api/templates/welcome"),
        (f"admin token {app.workspace.admin_token[:8]}…", "PUT /api/templates/{name}", "/api/templates/welcome"),
    ]
    newest, first = found
    assert first["before"] is None
    assert first["after"]["source"]["subject"] == TEMPLATE["subject"]  # type: ignore[index]
    assert newest["before"]["source"]["subject"] == TEMPLATE["subject"]  # type: ignore[index]
    assert newest["after"]["source"]["subject"] == "Welcome"  # type: ignore[index]
    assert newest["at_ms"] == first["at_ms"] + 5 * 60_000  # type: ignore[operator]
    assert app.workspace.admin_token not in str(found)
    editor.close()


def test_secrets_never_reach_the_log(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    admin = app.sign_in(email_of("admin"))
    done = admin.put("/api/settings/smtp", json={"url": "smtp://mailer:s3cret-pass@mail.example.com:587"})
    assert done.status_code == 200, done.text
    [entry] = [e for e in entries(app) if e["action"] == "PUT /api/settings/smtp"]
    assert entry["actor"] == "admin@example.com"
    assert "s3cret-pass" not in str(entry)
    assert entry["after"] is not None
    admin.close()


def test_an_erased_person_is_not_named_in_the_log(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    with app.server.client() as client:
        tracked = client.post(
            "/v1/identify",
            json={"userId": "jane@example.com", "traits": {"email": "jane@example.com"}},
            auth=(app.workspace.write_key, ""),
        )
        assert tracked.status_code == 200, tracked.text
    with app.admin() as admin:
        assert admin.delete("/api/profiles/jane@example.com").status_code == 200
    [entry] = [e for e in entries(app) if e["action"].startswith("DELETE")]  # type: ignore[union-attr]
    assert "jane" not in str(entry)
    assert entry["target"].startswith("/api/profiles/person:")  # type: ignore[union-attr]
    # Keyed by the workspace's secret: whoever reads the log cannot test a guessed email by
    # hashing it (a plain SHA-256 of the ref would let them).
    plain = hashlib.sha256(b"jane@example.com").hexdigest()[:16]
    assert entry["target"] != f"/api/profiles/person:{plain}"


def test_sign_in_and_out_are_recorded(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    client = app.sign_in(email_of("viewer"))
    client.post("/sign-out", data={"csrf_token": client.headers["X-CSRF-Token"]})
    assert [(e["actor"], e["action"]) for e in entries(app)] == [
        ("viewer@example.com", "sign-out"),
        ("viewer@example.com", "sign-in"),
    ]
    client.close()


def test_the_audit_page_is_paged_and_for_editors_and_admins(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    with app.state.engine.begin() as conn:
        for n in range(60):
            audit_log.record(conn, app.workspace_id, "a@example.com", "PUT /api/policies", f"/t/{n}", None, {"n": n}, n)
    viewer = app.sign_in(email_of("viewer"))
    assert viewer.get("/audit").status_code == 403
    editor = app.sign_in(email_of("editor"))
    first = editor.get("/audit")
    assert first.status_code == 200
    # Newest first: the two sign-ins, then the records from the highest n.
    assert first.text.count('data-testid="audit-entry"') == 50
    assert "/t/59" in first.text and "/t/11" not in first.text
    older = first.text.split('href="/audit?before=')[1].split('"')[0]
    second = editor.get(f"/audit?before={older}")
    assert second.text.count('data-testid="audit-entry"') == 12
    assert "/t/11" in second.text and "/t/0<" in second.text and "/t/59" not in second.text
    assert 'data-testid="older"' not in second.text
    assert editor.get("/audit?before=nonsense").status_code == 422
    viewer.close()
    editor.close()


def test_a_policies_change_by_a_session_names_its_user(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    editor = app.sign_in(email_of("editor"))
    caps = {"frequency_caps": [{"id": "daily", "channel": "email", "limit": 2, "calendar": "day"}]}
    put = editor.put("/api/policies", json=caps)
    assert put.status_code == 200, put.text
    assert put.json()["updated_by"] == "api (editor@example.com)"
    [entry] = [e for e in entries(app) if e["action"] == "PUT /api/policies"]
    assert entry["actor"] == "editor@example.com" and entry["before"] is None
    assert entry["after"]["version"] == 1 and "daily" in entry["after"]["source"]  # type: ignore[index,operator]
    editor.close()


def test_segments_applied_together_are_recorded_before_and_after(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    first = {"id": "buyers", "name": "Buyers", "when": {"performed": "Order Completed", "within": "30d"}}
    second = {"id": "browsers", "name": "Browsers", "when": {"performed": "Product Viewed", "within": "7d"}}
    with app.admin() as admin:
        assert admin.put("/api/segments/buyers", json=first).status_code < 300
        changed = {**first, "when": {"performed": "Order Completed", "within": "60d"}}
        answer = admin.post("/api/segments", json=[changed, second])
        assert answer.status_code < 300, answer.text
    [entry] = [e for e in entries(app) if e["action"] == "POST /api/segments"]
    before, after = entry["before"], entry["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert set(before) == {"buyers"} and set(after) == {"buyers", "browsers"}
    assert before["buyers"]["definition"]["when"]["within"] == "30d"
    assert after["buyers"]["definition"]["when"]["within"] == "60d"
