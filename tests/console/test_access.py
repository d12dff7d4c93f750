"""Signing in and out of the console, sessions (cookie flags, idle expiry, revocation), the
sign-in rate limit, CSRF, and roles enforced by the server, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import quote

import httpx

from nudgeflow.store.console_sessions import session_id
from nudgeflow.store.schema import console_sessions
from tests.console.support import PASSWORD, ConsoleApp, console_pages, csrf_of, email_of, form_token, sign_in


def test_every_console_page_needs_a_session(console_app: ConsoleApp) -> None:
    pages = console_pages(console_app.server.running.app)
    assert "/" in pages
    with console_app.client() as client:
        for path in pages:
            response = client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == (
                "/sign-in" if path == "/" else f"/sign-in?next={quote(path, safe='')}"
            )
        assert client.get("/?a=1").headers["location"] == "/sign-in?next=%2F%3Fa%3D1"


def test_sign_in_sets_a_session_cookie_and_goes_where_asked(console_app: ConsoleApp) -> None:
    with console_app.client() as client:
        response = sign_in(client, email="Viewer@Example.com", password=PASSWORD, next="/people?q=a")
        assert response.status_code == 303
        assert response.headers["location"] == "/people?q=a"
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("nf_session="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "path=/", "samesite=lax"} <= flags
        assert "secure" not in flags  # plain http on loopback; https is the next test
        page = client.get("/")
        assert page.status_code == 200
        assert "viewer@example.com" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert page.headers["x-frame-options"] == "DENY"


def test_cookies_are_secure_when_the_public_url_is_https(console_app: ConsoleApp) -> None:
    state = console_app.state
    original = state.settings
    with console_app.client() as client:
        token = form_token(client)  # over http, the form's cookie is not Secure: the client keeps it
        state.settings = original.with_(public_url="https://console.example.com")  # behind a TLS proxy
        try:
            response = client.post(
                "/sign-in", data={"form_token": token, "email": email_of("viewer"), "password": PASSWORD}
            )
        finally:
            state.settings = original
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("nf_session="))
    assert "secure" in cookie.lower()


def test_a_next_of_another_site_goes_home(console_app: ConsoleApp) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        with console_app.client() as client:
            response = sign_in(client, email=email_of("viewer"), password=PASSWORD, next=target)
            assert response.headers["location"] == "/", target


def test_a_wrong_password_or_unknown_email_is_refused_alike(console_app: ConsoleApp) -> None:
    with console_app.client() as client:
        wrong = sign_in(client, email=email_of("editor"), password="not the password")
        unknown = sign_in(client, email="nobody@example.com", password=PASSWORD)
        assert wrong.status_code == unknown.status_code == 401
        assert "Wrong email or password." in wrong.text and "Wrong email or password." in unknown.text
        assert "nf_session" not in client.cookies
        assert client.get("/").status_code == 303


def test_the_sign_in_form_needs_its_own_token(console_app: ConsoleApp) -> None:
    with console_app.client() as client:
        form_token(client)  # the cookie is set, but the posted field is another
        response = client.post(
            "/sign-in", data={"form_token": "forged", "email": email_of("admin"), "password": PASSWORD}
        )
        assert response.status_code == 403
        assert "nf_session" not in client.cookies


def test_an_admin_token_signs_in_as_an_admin(console_app: ConsoleApp) -> None:
    with console_app.client() as client:
        response = sign_in(client, admin_token=console_app.workspace.admin_token)
        assert response.status_code == 303
        page = client.get("/").text
        assert f"admin token {console_app.workspace.admin_token[:8]}" in page
        assert console_app.workspace.admin_token not in page  # the token itself never comes back
        assert 'href="/users"' in page
    with console_app.client() as client:
        bad = sign_in(client, admin_token="nfa_not-a-token")
        assert bad.status_code == 401


def test_sign_out_revokes_the_session_on_the_server(console_app: ConsoleApp) -> None:
    client = console_app.sign_in(email_of("editor"))
    token = client.cookies["nf_session"]
    response = client.post("/sign-out", data={"csrf_token": client.headers["X-CSRF-Token"]})
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in"
    # The same cookie, replayed, opens nothing: the server revoked it.
    with console_app.client(cookies={"nf_session": token}) as replay:
        assert replay.get("/").status_code == 303
        assert replay.get("/api/stats").status_code == 401
    with console_app.state.engine.connect() as conn:
        row = conn.execute(console_sessions.select().where(console_sessions.c.id == session_id(token))).one()
    assert row.revoked_at_ms is not None
    client.close()


def test_sign_out_needs_the_csrf_token(console_app: ConsoleApp) -> None:
    client = console_app.sign_in(email_of("viewer"))
    assert client.post("/sign-out", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    client.close()


def test_the_admin_api_takes_a_session_and_refuses_a_change_without_csrf(
    signed_in: Callable[[str], httpx.Client],
) -> None:
    editor = signed_in("editor")
    assert editor.get("/api/stats").status_code == 200
    csrf = editor.headers.pop("X-CSRF-Token")
    refused = editor.patch("/api/settings", json={"topics": ["news"]})
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["detail"]
    assert (
        editor.patch("/api/settings", json={"topics": ["news"]}, headers={"X-CSRF-Token": "x" + csrf}).status_code
        == 403
    )
    done = editor.patch("/api/settings", json={"topics": ["news"]}, headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200, done.text


def test_a_viewer_is_refused_any_change_by_the_server(signed_in: Callable[[str], httpx.Client]) -> None:
    viewer = signed_in("viewer")
    assert viewer.get("/api/settings").status_code == 200
    for method, path, body in (
        ("PATCH", "/api/settings", {"topics": ["x"]}),
        ("PUT", "/api/policies", {}),
        ("DELETE", "/api/profiles/someone", None),
        ("POST", "/api/keys", {"kind": "server"}),
    ):
        response = viewer.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "viewer" in response.json()["detail"]
    # Checking a document changes nothing: a viewer may.
    assert viewer.post("/api/journeys/validate", content="id: x\n").status_code != 403


def test_an_editor_is_refused_users_keys_and_secrets(signed_in: Callable[[str], httpx.Client]) -> None:
    editor = signed_in("editor")
    for method, path, body in (
        ("POST", "/api/keys", {"kind": "server"}),
        ("POST", "/api/identity/rotate", None),
        ("PUT", "/api/settings/smtp", {"url": "smtp://mail.example.com:25"}),
        ("DELETE", "/api/settings/smtp", None),
        ("POST", "/api/settings/webpush/rotate", None),
        ("POST", "/api/settings/webhooks/secret", None),
        ("PUT", "/api/settings/webhooks/destinations/crm", {"url": "https://crm.example.com/hook"}),
    ):
        response = editor.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "admin" in response.json()["detail"]
    admin = signed_in("admin")
    created = admin.post("/api/keys", json={"kind": "server"})
    assert created.status_code == 201, created.text


def test_a_session_idle_too_long_ends(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    client = app.sign_in(email_of("viewer"))
    idle = timedelta(minutes=app.state.settings.console_idle_minutes)
    app.clock.advance(idle - timedelta(minutes=1))
    assert client.get("/").status_code == 200  # used: the idle time starts again
    app.clock.advance(idle - timedelta(minutes=1))
    assert client.get("/").status_code == 200
    app.clock.advance(idle + timedelta(seconds=1))
    assert client.get("/").status_code == 303
    assert client.get("/api/stats").status_code == 401
    client.close()


def test_disabling_a_user_or_a_new_password_ends_their_sessions(own_console_app: ConsoleApp) -> None:
    from nudgeflow.store import console_users

    app = own_console_app
    editor = app.sign_in(email_of("editor"))
    viewer = app.sign_in(email_of("viewer"))
    with app.state.engine.begin() as conn:
        assert console_users.set_disabled(conn, app.workspace_id, app.users["editor"], True, 0) == 1
        assert console_users.set_password(conn, app.workspace_id, app.users["viewer"], "another good password", 0) == 1
    assert editor.get("/").status_code == 303
    assert viewer.get("/").status_code == 303
    with app.client() as client:
        assert sign_in(client, email=email_of("editor"), password=PASSWORD).status_code == 401
        assert sign_in(client, email=email_of("viewer"), password=PASSWORD).status_code == 401
        assert sign_in(client, email=email_of("viewer"), password="another good password").status_code == 303
    editor.close()
    viewer.close()


def test_a_changed_role_applies_to_the_next_request(own_console_app: ConsoleApp) -> None:
    from nudgeflow.store import console_users

    app = own_console_app
    client = app.sign_in(email_of("editor"))
    assert client.patch("/api/settings", json={"topics": ["a"]}).status_code == 200
    with app.state.engine.begin() as conn:
        console_users.set_role(conn, app.workspace_id, app.users["editor"], "viewer")
    assert client.patch("/api/settings", json={"topics": ["b"]}).status_code == 403
    client.close()


def test_failed_sign_ins_are_limited_per_email_and_per_address(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    with app.client() as client:
        for _ in range(5):
            assert sign_in(client, email=email_of("admin"), password="wrong password").status_code == 401
        limited = sign_in(client, email=email_of("admin"), password=PASSWORD)  # even the right one
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        # Another email from the same address still may, until the address's own limit.
        assert sign_in(client, email=email_of("viewer"), password=PASSWORD).status_code == 303
    app.clock.advance(timedelta(minutes=15, seconds=1))
    with app.client() as client:
        assert sign_in(client, email=email_of("admin"), password=PASSWORD).status_code == 303
    with app.client() as client:
        for n in range(30):
            assert sign_in(client, email=f"guess{n}@example.com", password="wrong password").status_code == 401
        assert sign_in(client, email=email_of("editor"), password=PASSWORD).status_code == 429


def test_sign_ins_sent_at_once_cannot_all_pass_the_limit(own_console_app: ConsoleApp) -> None:
    """Twenty wrong passwords for one email sent at the same moment are five guesses, not
    twenty: each sign-in counts as failed from its start (it was checked against a count
    that the others, still hashing their password, had not added to: all twenty were 401)."""
    app = own_console_app
    clients = [app.client() for _ in range(20)]
    try:
        tokens = [form_token(client) for client in clients]

        def guess(i: int) -> int:
            data = {"form_token": tokens[i], "email": email_of("viewer"), "password": f"guess number {i}"}
            return clients[i].post("/sign-in", data=data, timeout=60).status_code

        with ThreadPoolExecutor(len(clients)) as pool:
            answers = list(pool.map(guess, range(len(clients))))
        assert answers.count(401) <= 5 and answers.count(401) + answers.count(429) == 20, answers
        limited = sign_in(clients[0], email=email_of("viewer"), password=PASSWORD)
        assert limited.status_code == 429, limited.text
    finally:
        for client in clients:
            client.close()
    for _ in range(3):  # successful sign-ins are not counted as failures
        with app.client() as client:
            assert sign_in(client, email=email_of("editor"), password=PASSWORD).status_code == 303
    with app.client() as client:
        for _ in range(5):
            assert sign_in(client, email=email_of("editor"), password="wrong password").status_code == 401
        assert sign_in(client, email=email_of("editor"), password=PASSWORD).status_code == 429


def test_the_pages_carry_the_csrf_token_of_the_session(console_app: ConsoleApp) -> None:
    one = console_app.sign_in(email_of("viewer"))
    two = console_app.sign_in(email_of("viewer"))
    assert csrf_of(one, "/") == one.headers["X-CSRF-Token"]
    assert one.headers["X-CSRF-Token"] != two.headers["X-CSRF-Token"]
    # One session's token does not let another's cookie make a change.
    editor = console_app.sign_in(email_of("editor"))
    stolen = editor.patch("/api/settings", json={"topics": []}, headers={"X-CSRF-Token": one.headers["X-CSRF-Token"]})
    assert stolen.status_code == 403
    for client in (one, two, editor):
        client.close()


def test_console_static_files_stay_inside_their_folder(console_app: ConsoleApp) -> None:
    with console_app.client() as client:
        css = client.get("/console/static/console.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert client.get("/console/static/console.js").status_code == 200
        for path in ("../auth.py", "..%2Fauth.py", "templates/../../access.py", "nothing.css"):
            assert client.get(f"/console/static/{path}").status_code == 404, path


def test_identity_verification_is_an_admins_setting(signed_in: Callable[[str], httpx.Client]) -> None:
    editor = signed_in("editor")
    refused = editor.patch("/api/settings", json={"identity.verification": False, "topics": ["n"]})
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    assert editor.patch("/api/settings", json={"topics": ["n"]}).status_code == 200
    admin = signed_in("admin")
    assert admin.patch("/api/settings", json={"identity.verification": False}).status_code == 200


def test_a_page_above_the_role_is_a_403_page(signed_in: Callable[[str], httpx.Client]) -> None:
    viewer = signed_in("viewer")
    page = viewer.get("/users", headers={"Accept": "text/html"})
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "needs the admin role" in page.text and 'href="/people"' in page.text  # with the navigation
    assert viewer.get("/users", headers={"Accept": "application/json"}).json()["detail"].startswith("This page")


def test_signing_in_again_ends_the_browsers_previous_session(console_app: ConsoleApp) -> None:
    client = console_app.sign_in(email_of("viewer"))
    first = client.cookies["nf_session"]
    client.cookies.delete("nf_sign_in")
    assert sign_in_again(client).status_code == 303
    assert client.cookies["nf_session"] != first
    with console_app.client(cookies={"nf_session": first}) as old:
        assert old.get("/").status_code == 303
    client.close()


def sign_in_again(client: httpx.Client) -> httpx.Response:
    """Post the sign-in form while signed in (its GET would redirect home): the form's token
    comes from a client with no session."""
    with httpx.Client(base_url=str(client.base_url)) as fresh:
        token = form_token(fresh)
    client.cookies.set("nf_sign_in", token)
    return client.post("/sign-in", data={"form_token": token, "email": email_of("editor"), "password": PASSWORD})
