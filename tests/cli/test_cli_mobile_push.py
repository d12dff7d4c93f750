"""`nudgeflow workspace fcm|apns set|show|clear`, as real processes: keys stored, never shown."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.channels.push_servers import p8_pem, service_account_json
from tests.cli.support import create_workspace, run


def test_fcm_set_show_clear(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    sa = service_account_json(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "https://oauth2.googleapis.com/token",
        "shop-prod",
        "push@shop-prod.iam.gserviceaccount.com",
        "k1",
    )
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(sa))

    done = run(["workspace", "fcm", "show", "-w", ws, "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"source": None, "config": None}

    done = run(["workspace", "fcm", "set", "-w", ws, "--service-account", str(key_file), "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["source"] == "workspace"
    assert shown["config"] == {
        "project_id": "shop-prod",
        "client_email": "push@shop-prod.iam.gserviceaccount.com",
        "private_key_id": "k1",
        "service_account": "********",
        "token_uri": "https://oauth2.googleapis.com/token",
        "api_base": "https://fcm.googleapis.com",
    }
    done = run(["workspace", "fcm", "show", "-w", ws], env, tmp_path)
    assert done.returncode == 0 and "shop-prod" in done.stdout
    assert "PRIVATE KEY" not in done.stdout + done.stderr

    done = run(["workspace", "fcm", "clear", "-w", ws], env, tmp_path)
    assert done.returncode == 0 and "cleared" in done.stderr
    # Back to the server's default, from the environment.
    done = run(
        ["workspace", "fcm", "show", "-w", ws, "--json"],
        {**env, "NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE": str(key_file)},
        tmp_path,
    )
    assert json.loads(done.stdout)["source"] == "default"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**sa, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}))
    done = run(["workspace", "fcm", "set", "-w", ws, "--service-account", str(bad)], env, tmp_path)
    assert done.returncode != 0 and "private key does not load" in done.stderr and "Traceback" not in done.stderr


def test_apns_set_show(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    p8 = tmp_path / "AuthKey_ABCDE12345.p8"
    p8.write_text(p8_pem(ec.generate_private_key(ec.SECP256R1())))
    done = run(
        [
            "workspace",
            "apns",
            "set",
            "-w",
            ws,
            "--key-file",
            str(p8),
            "--key-id",
            "ABCDE12345",
            "--team-id",
            "TEAM123456",
            "--topic",
            "com.example.shop",
            "--sandbox",
            "--json",
        ],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["config"] == {
        "team_id": "TEAM123456",
        "key_id": "ABCDE12345",
        "private_key": "********",
        "topic": "com.example.shop",
        "sandbox": True,
        "base_url": "https://api.sandbox.push.apple.com",
    }
    done = run(["workspace", "apns", "show", "-w", ws], env, tmp_path)
    assert done.returncode == 0 and "TEAM123456" in done.stdout and "PRIVATE KEY" not in done.stdout

    done = run(
        ["workspace", "apns", "set", "-w", ws, "--key-file", str(p8), "--key-id", "bad id", "--team-id", "TEAM123456"],
        env,
        tmp_path,
    )
    assert done.returncode != 0 and "key_id" in done.stderr
    done = run(
        [
            "workspace",
            "apns",
            "set",
            "-w",
            "ws_nope",
            "--key-file",
            str(p8),
            "--key-id",
            "ABCDE12345",
            "--team-id",
            "TEAM123456",
        ],
        env,
        tmp_path,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
