"""`nudgeflow demo --keep-serving` prints a console sign-in: the user it makes is an admin of
the demo's workspace, and the email and password it prints sign in."""

from __future__ import annotations

from pathlib import Path

from nudgeflow.demo.run import DEMO_ADMIN, console_sign_in
from nudgeflow.settings import Settings
from tests.console.support import sign_in
from tests.support import start_server


def test_the_demo_console_user_signs_in_as_an_admin(tmp_path: Path) -> None:
    server = start_server(Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}", engine_enabled=False))
    try:
        workspace = server.workspace("demo")
        email, password = console_sign_in(server.running, workspace.workspace_id)
        assert email == DEMO_ADMIN and len(password) >= 20
        with server.client() as client:
            assert sign_in(client, email=email, password=password).status_code == 303
            page = client.get("/users")
            assert page.status_code == 200 and DEMO_ADMIN in page.text
    finally:
        server.stop()
