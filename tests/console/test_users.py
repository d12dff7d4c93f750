"""Console users managed by an admin through /api/console/users (what the /users page
calls): made passwords shown once, roles, disabling, resets; all refused to editors."""

from __future__ import annotations

from nudgeflow.store import audit_log
from tests.console.support import ConsoleApp, email_of, sign_in


def test_an_admin_adds_a_user_who_signs_in_with_the_password_shown_once(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    admin = app.sign_in(email_of("admin"))
    made = admin.post("/api/console/users", json={"email": "New@Example.com", "role": "editor"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["email"], body["role"], body["disabled"]) == ("new@example.com", "editor", False)
    with app.client() as client:
        assert sign_in(client, email="new@example.com", password=body["password"]).status_code == 303
    listed = admin.get("/api/console/users").json()["users"]
    assert [u["email"] for u in listed] == [
        "admin@example.com",
        "editor@example.com",
        "new@example.com",
        "viewer@example.com",
    ]
    assert all("password" not in u and "password_hash" not in str(u) for u in listed)
    # The password is in no audit entry.
    with app.state.engine.connect() as conn:
        logged = audit_log.entries(conn, app.workspace_id)[0]
    [entry] = [e for e in logged if e["action"] == "POST /api/console/users"]
    assert entry["target"] == f"/api/console/users/{body['id']}"
    assert entry["before"] is None
    assert entry["after"] == {"email": "new@example.com", "role": "editor", "disabled": False}
    assert body["password"] not in str(logged)
    assert admin.post("/api/console/users", json={"email": "new@example.com"}).status_code == 422
    assert admin.post("/api/console/users", json={"email": "x@example.com", "role": "owner"}).status_code == 422
    admin.close()


def test_role_changes_disabling_and_resets(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    admin = app.sign_in(email_of("admin"))
    viewer = app.sign_in(email_of("viewer"))
    vid = app.users["viewer"]
    changed = admin.patch(f"/api/console/users/{vid}", json={"role": "editor"})
    assert changed.json()["role"] == "editor"
    with app.state.engine.connect() as conn:
        [entry] = [e for e in audit_log.entries(conn, app.workspace_id)[0] if e["action"].startswith("PATCH")]
    assert entry["before"] == {"email": "viewer@example.com", "role": "viewer", "disabled": False}
    assert entry["after"] == {"email": "viewer@example.com", "role": "editor", "disabled": False}
    assert viewer.patch("/api/settings", json={"topics": ["a"]}).status_code == 200  # the new role, at once

    reset = admin.post(f"/api/console/users/{vid}/reset-password")
    assert reset.status_code == 200 and reset.json()["sessions_ended"] == 1
    assert viewer.get("/").status_code == 303  # signed out
    with app.client() as client:
        assert sign_in(client, email=email_of("viewer"), password=reset.json()["password"]).status_code == 303

    assert admin.patch(f"/api/console/users/{vid}", json={"disabled": True}).json()["disabled"] is True
    with app.client() as client:
        assert sign_in(client, email=email_of("viewer"), password=reset.json()["password"]).status_code == 401

    me = app.users["admin"]
    assert admin.patch(f"/api/console/users/{me}", json={"disabled": True}).status_code == 409
    assert admin.patch(f"/api/console/users/{me}", json={"role": "viewer"}).status_code == 409
    assert admin.patch("/api/console/users/cu_nobody", json={"role": "viewer"}).status_code == 404
    viewer.close()
    admin.close()


def test_another_workspaces_user_is_not_found(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    other = app.server.workspace("other")
    with app.state.engine.begin() as conn:
        from nudgeflow.store import console_users

        stranger = console_users.create_user(conn, other.workspace_id, "s@example.com", "viewer", "a long password", 0)
    admin = app.sign_in(email_of("admin"))
    assert admin.patch(f"/api/console/users/{stranger.id}", json={"disabled": True}).status_code == 404
    assert admin.post(f"/api/console/users/{stranger.id}/reset-password").status_code == 404
    assert "s@example.com" not in admin.get("/users").text
    admin.close()


def test_only_admins_manage_users(console_app: ConsoleApp) -> None:
    editor = console_app.sign_in(email_of("editor"))
    assert editor.get("/users").status_code == 403
    assert editor.get("/api/console/users").status_code == 403
    assert editor.post("/api/console/users", json={"email": "e@example.com"}).status_code == 403
    page = console_app.sign_in(email_of("admin")).get("/users")
    assert page.status_code == 200 and "editor@example.com" in page.text
    editor.close()
