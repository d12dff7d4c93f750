"""`serve --bounce-smtp` and `workspace bounce-webhooks`, as real processes."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from nudgeflow.store import database
from tests.cli.support import NUDGEFLOW, create_workspace, run
from tests.content.bounce_samples import POSTFIX_HARD
from tests.runtime.bounce_support import signed_bounce_address
from tests.support import free_port


def test_bounce_webhooks_set_show_clear(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    done = run(["workspace", "bounce-webhooks", "set", "mailgun", "signing_key=key-abc", "-w", ws], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"/webhooks/mailgun/{ws}" in done.stderr
    assert (
        run(
            ["workspace", "bounce-webhooks", "set", "ses", "topic_arns=arn:a,arn:b", "-w", ws], env, tmp_path
        ).returncode
        == 0
    )
    shown = run(["workspace", "bounce-webhooks", "show", "-w", ws], env, tmp_path)
    assert json.loads(shown.stdout) == {"mailgun": {"signing_key": "***"}, "ses": {"topic_arns": ["arn:a", "arn:b"]}}
    assert "key-abc" not in shown.stdout + shown.stderr
    bad = run(["workspace", "bounce-webhooks", "set", "postmark", "user=x", "-w", ws], env, tmp_path)
    assert bad.returncode != 0 and "not a postmark field" in bad.stderr
    assert run(["workspace", "bounce-webhooks", "clear", "mailgun", "-w", ws], env, tmp_path).returncode == 0
    shown = run(["workspace", "bounce-webhooks", "show", "-w", ws], env, tmp_path)
    assert json.loads(shown.stdout) == {"ses": {"topic_arns": ["arn:a", "arn:b"]}}


def test_serve_receives_a_dsn_by_smtp(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    port, smtp_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [
                NUDGEFLOW,
                "serve",
                "--port",
                str(port),
                "--bounce-smtp",
                f"127.0.0.1:{smtp_port}",
                "--bounce-domain",
                "bounce.shop.test",
            ],
            env=env,
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)  # polling a subprocess for readiness, with a deadline
        signing = database.create_db_engine(env["NUDGEFLOW_DATABASE_URL"])  # opens sealed settings
        rcpt = signed_bounce_address(signing, ws, "run-81:cart-email:1", "nobody@example.net")
        signing.dispose()
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.sendmail("<>", [rcpt], POSTFIX_HARD.replace(b"\n", b"\r\n"))
        engine = create_engine(env["NUDGEFLOW_DATABASE_URL"])
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT address, reason FROM suppressions WHERE workspace_id = :w"), {"w": ws}
            ).all()
        engine.dispose()
        assert [tuple(r) for r in rows] == [("nobody@example.net", "hard_bounce")]
        assert f"bounces: SMTP on 127.0.0.1:{smtp_port}" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_bad_bounce_listen_address(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["serve", "--bounce-smtp", "nowhere", "--bounce-domain", "b.test"], env, tmp_path, timeout=60)
    assert done.returncode != 0 and "HOST:PORT" in done.stderr
    done = run(["serve", "--bounce-smtp", f"127.0.0.1:{free_port()}"], env, tmp_path, timeout=60)
    assert done.returncode != 0 and "--bounce-domain" in done.stderr
