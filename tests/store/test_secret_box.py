"""Workspace secrets at rest (store/secret_box.py): sealed in the database, opened only
with the key, rotated without loss, never read as empty when the key is wrong."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from nudgeflow.cli import app as cli_app
from nudgeflow.store import consent, database, workspace_settings
from nudgeflow.store.schema import workspace_settings as settings_table
from nudgeflow.store.secret_box import PREFIX, SecretBox, SecretKeyError, new_key
from tests.support import make_workspace, start_server

PASSWORD = "hunter2-smtp-password"


def stored(engine: Any, ws: str) -> str:
    with engine.connect() as conn:
        return conn.execute(select(settings_table.c.settings).where(settings_table.c.workspace_id == ws)).scalar_one()


def forget(engine: Any, ws: str) -> None:
    """Drop a workspace's sealed settings: on PostgreSQL the tests share one database, whose
    every workspace a starting server checks it can open."""
    with engine.begin() as conn:
        conn.execute(delete(settings_table).where(settings_table.c.workspace_id == ws))


def unseal_all(engine: Any, keys: list[str]) -> None:
    """Undo a test's reseal: every workspace of the shared PostgreSQL database back as it was
    stored (unsealed), so that later servers of the session, which have no key, can open them."""
    box = SecretBox(keys)
    with engine.begin() as conn:
        for ws, raw in conn.execute(select(settings_table.c.workspace_id, settings_table.c.settings)).all():
            if SecretBox.is_sealed(raw):
                conn.execute(
                    update(settings_table).where(settings_table.c.workspace_id == ws).values(settings=box.open(raw))
                )


def engine_for(url: str, key: str | None = None) -> Any:
    engine = database.create_db_engine(url, sqlite_synchronous="NORMAL", secret_key=key)
    database.upgrade(engine)
    return engine


def test_a_sqlite_database_seals_with_a_key_file_made_beside_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nf.db'}"
    engine = engine_for(url)
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        workspace_settings.set_section(conn, ws, "smtp", {"password": PASSWORD}, 1)
    raw = stored(engine, ws)
    assert raw.startswith(PREFIX) and PASSWORD not in raw
    key_file = tmp_path / "nf.db.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    with engine.connect() as conn:
        assert workspace_settings.get_section(conn, ws, "smtp") == {"password": PASSWORD}
    engine.dispose()
    # Another process on the same file finds the same key; without the file, nobody does.
    again = engine_for(url)
    with again.connect() as conn:
        assert workspace_settings.get_section(conn, ws, "smtp") == {"password": PASSWORD}
    again.dispose()
    key_file.rename(tmp_path / "elsewhere.key")
    lost = engine_for(url)
    with lost.connect() as conn, pytest.raises(SecretKeyError, match="restore the key file"):
        workspace_settings.get_section(conn, ws, "smtp")
    lost.dispose()


def test_settings_stored_unsealed_are_read_and_sealed_on_their_next_write(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'nf.db'}")
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:  # as an older version left it
        consent.update_settings(conn, ws, {"tracking_secret": "abc"}, 1)
        conn.execute(update(settings_table).values(settings=f'{{"smtp": {{"password": "{PASSWORD}"}}}}'))
    with engine.begin() as conn:
        assert workspace_settings.get_section(conn, ws, "smtp") == {"password": PASSWORD}
        consent.update_settings(conn, ws, {"tracking_secret": "abc"}, 2)
    assert PASSWORD not in stored(engine, ws)
    with engine.connect() as conn:
        assert consent.get_settings(conn, ws) == {"smtp": {"password": PASSWORD}, "tracking_secret": "abc"}
    engine.dispose()


def test_with_a_key_set_every_backend_seals_and_a_rotation_loses_nothing(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    old, new = new_key(), new_key()
    engine = engine_for(database_url, old)
    ws = make_workspace(engine).workspace_id
    request.addfinalizer(lambda: (forget(engine, ws), engine.dispose()))  # whatever the outcome
    with engine.begin() as conn:
        workspace_settings.set_section(conn, ws, "apns", {"key": PASSWORD}, 1)
    sealed_with_old = stored(engine, ws)
    assert sealed_with_old.startswith(PREFIX) and PASSWORD not in sealed_with_old

    # The wrong key is an error that names the remedy, and a write does not replace the secrets.
    wrong = engine_for(database_url, new)
    with wrong.begin() as conn, pytest.raises(SecretKeyError, match="NUDGEFLOW_SECRET_KEY"):
        consent.update_settings(conn, ws, {"tracking_secret": "x"}, 2)
    assert stored(wrong, ws) == sealed_with_old
    wrong.dispose()

    rotating = engine_for(database_url, f"{new},{old}")
    if database_url.startswith("postgresql"):  # reseal_all seals every workspace of the database
        request.addfinalizer(lambda: unseal_all(rotating, [new, old]))
    with rotating.begin() as conn:
        total, _unsealed = workspace_settings.reseal_all(conn)
    assert total >= 1 and stored(rotating, ws) != sealed_with_old
    only_new = engine_for(database_url, new)
    with only_new.connect() as conn:
        assert workspace_settings.get_section(conn, ws, "apns") == {"key": PASSWORD}
    only_new.dispose()


def test_postgresql_without_a_key_stores_settings_unsealed(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        workspace_settings.set_section(conn, ws, "smtp", {"password": PASSWORD}, 1)
    assert PASSWORD in stored(engine, ws)  # `serve` warns about this
    engine.dispose()


def test_a_malformed_key_is_named_without_being_shown() -> None:
    with pytest.raises(SecretKeyError, match=r"NUDGEFLOW_SECRET_KEY \(key 2\) is not a Fernet key") as info:
        SecretBox([new_key(), "not-a-key-s3cret"])
    assert "s3cret" not in str(info.value)


def test_the_cli_makes_keys_reseals_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'nf.db'}"
    engine = engine_for(url)
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        workspace_settings.set_section(conn, ws, "smtp", {"password": PASSWORD}, 1)
    engine.dispose()
    runner = CliRunner()
    made = runner.invoke(cli_app, ["secrets", "new-key"])
    assert made.exit_code == 0
    key = made.stdout.strip()
    SecretBox([key])  # a valid key

    # Moving from the key file to NUDGEFLOW_SECRET_KEY: the new key first, the file's after it.
    file_key = (tmp_path / "nf.db.key").read_text().strip()
    monkeypatch.setenv("NUDGEFLOW_SECRET_KEY", f"{key},{file_key}")
    resealed = runner.invoke(cli_app, ["secrets", "reseal", "--database", url])
    assert resealed.exit_code == 0, resealed.output
    assert "resealed 1 workspaces' settings with NUDGEFLOW_SECRET_KEY (0 were unsealed)" in resealed.output
    monkeypatch.setenv("NUDGEFLOW_SECRET_KEY", key)
    shown = runner.invoke(cli_app, ["secrets", "status", "--database", url])
    assert (
        shown.exit_code == 0 and "key: NUDGEFLOW_SECRET_KEY" in shown.stdout and "1 sealed, 0 unsealed" in shown.stdout
    )
    check = engine_for(url, key)
    with check.connect() as conn:
        assert workspace_settings.get_section(conn, ws, "smtp") == {"password": PASSWORD}
    check.dispose()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn's exit
def test_a_server_with_the_wrong_key_refuses_to_start_and_says_why(
    tmp_path: Path, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from nudgeflow.settings import Settings
    from nudgeflow.web.embedded import ServerStartError

    url = f"sqlite:///{tmp_path / 'nf.db'}"
    engine = engine_for(url, new_key())
    new = make_workspace(engine)
    with engine.begin() as conn:
        workspace_settings.set_section(conn, new.workspace_id, "smtp", {"url": "smtp://mx.example.com"}, 1)
    engine.dispose()
    with pytest.raises(ServerStartError):
        start_server(Settings(database_url=url, sqlite_synchronous="NORMAL", secret_key=new_key()), clock)
    [record] = [r for r in caplog.records if r.getMessage() == "workspace settings cannot be opened"]
    assert "sealed with a key other than NUDGEFLOW_SECRET_KEY" in record.reason  # type: ignore[attr-defined]


def test_settings_that_stop_opening_while_serving_answer_503_naming_the_remedy(
    live: Any, ws: Any, request: pytest.FixtureRequest
) -> None:
    engine = live.state.engine
    original = engine.get_execution_options()["nudgeflow_secrets"]

    def restore() -> None:  # the server's own key again, for whatever it writes until it stops
        engine.update_execution_options(nudgeflow_secrets=original)
        forget(engine, ws.workspace_id)

    request.addfinalizer(restore)
    # Settings sealed with one key (the row made anew, whatever sealed it before) ...
    forget(engine, ws.workspace_id)
    engine.update_execution_options(nudgeflow_secrets=SecretBox([new_key()]))
    with engine.begin() as conn:
        workspace_settings.set_section(conn, ws.workspace_id, "smtp", {"url": "smtp://mx.example.com"}, 1)
    # ... then this server holds another key, as if another process resealed the settings.
    engine.update_execution_options(nudgeflow_secrets=SecretBox([new_key()]))
    with live.admin(ws.admin_token) as http:
        answer = http.get("/api/settings/smtp")
    assert answer.status_code == 503, answer.text
    assert "NUDGEFLOW_SECRET_KEY" in answer.json()["detail"]
