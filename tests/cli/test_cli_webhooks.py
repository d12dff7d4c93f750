"""`nudgeflow workspace webhooks …` as real processes: destinations and the workspace secret,
secrets shown once when made and masked ever after."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.support import create_workspace, run


def test_destinations_set_list_remove(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    made = run(
        [
            "workspace",
            "webhooks",
            "destinations",
            "set",
            "crm",
            "-w",
            ws,
            "--url",
            "https://crm.example/hooks",
            "--header",
            "Authorization: Bearer tok-123",
            "--allow-network",
            "10.20.0.0/16",
            "--timeout",
            "5",
            "--json",
        ],
        env,
        tmp_path,
    )
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    secret = shown.pop("secret")
    assert secret.startswith("whsec_")  # made, and shown this once
    assert shown == {
        "name": "crm",
        "url": "https://crm.example/hooks",
        "method": "POST",
        "headers": {"Authorization": "********"},
        "allow_networks": ["10.20.0.0/16"],
        "timeout_s": 5.0,
    }

    # Set again without --secret: the secret is kept (and not shown).
    again = run(
        ["workspace", "webhooks", "destinations", "set", "crm", "-w", ws, "--url", "https://crm.example/v2", "--json"],
        env,
        tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["secret"] == "********"
    listed = run(["workspace", "webhooks", "destinations", "list", "-w", ws, "--json"], env, tmp_path)
    assert json.loads(listed.stdout) == {
        "secret": None,
        "destinations": [{"name": "crm", "url": "https://crm.example/v2", "method": "POST", "secret": "********"}],
    }
    text = run(["workspace", "webhooks", "destinations", "list", "-w", ws], env, tmp_path)
    assert "crm  POST https://crm.example/v2" in text.stdout
    everything = run(["workspace", "settings", "show", ws, "--json"], env, tmp_path).stdout
    for output in (again.stdout, listed.stdout, text.stdout, everything):
        assert secret not in output and "tok-123" not in output
    assert '"webhooks"' in everything

    bad = run(
        ["workspace", "webhooks", "destinations", "set", "x", "-w", ws, "--url", "https://a/", "--header", "Host: a"],
        env,
        tmp_path,
    )
    assert bad.returncode == 1 and "header 'Host' is set by Nudgeflow itself" in bad.stderr

    assert run(["workspace", "webhooks", "destinations", "remove", "crm", "-w", ws], env, tmp_path).returncode == 0
    gone = run(["workspace", "webhooks", "destinations", "remove", "crm", "-w", ws], env, tmp_path)
    assert gone.returncode == 1 and "no webhook destination 'crm'" in gone.stderr


def test_the_workspace_secret_is_shown_masked_unless_revealed(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    none = run(["workspace", "webhooks", "secret", "show", "-w", ws], env, tmp_path)
    assert none.returncode == 0 and "no webhook secret yet" in none.stderr
    rotated = run(["workspace", "webhooks", "secret", "rotate", "-w", ws], env, tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    secret = rotated.stdout.strip()
    assert secret.startswith("whsec_")
    assert run(["workspace", "webhooks", "secret", "show", "-w", ws], env, tmp_path).stdout.strip() == "********"
    revealed = run(["workspace", "webhooks", "secret", "show", "-w", ws, "--reveal"], env, tmp_path)
    assert revealed.stdout.strip() == secret
    bad = run(["workspace", "webhooks", "secret", "rotate", "-w", ws, "--secret", "hunter2"], env, tmp_path)
    assert bad.returncode == 1 and "starts with whsec_" in bad.stderr
