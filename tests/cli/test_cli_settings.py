"""Configuration from the command line, run as a user runs it (a real process per command):
environment variables and options that name themselves when wrong, the public URL `serve`
builds links with, `workspace settings show|set`, and what `serve` says about channels that
are not configured."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from nudgeflow.settings import ENV_VARS
from tests.support import NUDGEFLOW, free_port


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NUDGEFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# -- environment variables and options name themselves ---------------------------------------

BAD_ENV = [
    ("NUDGEFLOW_INGEST_RATE", "fast", "'fast' is not a number"),
    ("NUDGEFLOW_INGEST_RATE", "-5", "'-5' is below 0"),
    ("NUDGEFLOW_INGEST_BURST", "lots", "'lots' is not an integer"),
    ("NUDGEFLOW_INGEST_MAX_FUTURE_SECONDS", "0", "'0' is out of range (1 or more)"),
    ("NUDGEFLOW_ENGINE", "maybe", "'maybe' is not a boolean"),
    ("NUDGEFLOW_REUSE_PORT", "sometimes", "'sometimes' is not a boolean"),
    ("NUDGEFLOW_LOG_LEVEL", "loud", "'loud' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("NUDGEFLOW_SQLITE_SYNCHRONOUS", "sometimes", "'sometimes' is not one of OFF, NORMAL, FULL, EXTRA"),
    ("NUDGEFLOW_ENGINE_BATCH_MS", "15ms", "'15ms' is not a number"),
    ("NUDGEFLOW_ENGINE_STATE_CACHE_MB", "-1", "'-1' is below 0"),
    ("NUDGEFLOW_ENGINE_LINGER_MS", "nan", "'nan' is not a finite number"),
    ("NUDGEFLOW_EMAIL_BUILD_PROCESSES", "-1", "'-1' is out of range"),
    ("NUDGEFLOW_DISPATCH_MAX_ATTEMPTS", "0", "'0' is out of range"),
    ("NUDGEFLOW_DISPATCH_MAX_LOST_CLAIMS", "0", "'0' is out of range"),
    ("NUDGEFLOW_DISPATCH_LEASE_SECONDS", "soon", "'soon' is not a number"),
    ("NUDGEFLOW_DRAIN_SECONDS", "-1", "'-1' is below 0"),
    ("NUDGEFLOW_EXPERIMENT_LOOK_SECONDS", "-60", "'-60' is below 0"),
    ("NUDGEFLOW_RENDER_TIMEOUT_MS", "2s", "'2s' is not an integer"),
    ("NUDGEFLOW_PUBLIC_URL", "ftp://nudge.example", "must be an absolute http:// or https:// URL"),
    ("NUDGEFLOW_PUBLIC_URL", "https://nudge.example/?a=1", "must not have a query"),
    ("NUDGEFLOW_SMTP_URL", "http://mail.example", "not a usable SMTP URL"),
    ("NUDGEFLOW_LOG_CHANNELS", "email,Push!", "'Push!' is not a channel name"),
    ("NUDGEFLOW_WEBPUSH_HOSTS", "push example", "'push example' is not a host name"),
    ("NUDGEFLOW_FCM_API_BASE", "fcm.example", "is not an http:// or https:// URL"),
    ("NUDGEFLOW_APNS_BASE_URL", "ftp://apns.example", "is not an http:// or https:// URL"),
    ("NUDGEFLOW_DATABASE_URL", "mysql://root:hunter2@db/x", "is not a database URL"),
    ("NUDGEFLOW_SECRET_KEY", "not-a-fernet-key", "is not a Fernet key"),
    ("NUDGEFLOW_BOT_CLICK_SECONDS", "-1", "'-1' is below 0"),
    ("NUDGEFLOW_CONSOLE_IDLE_MINUTES", "0", "'0' is below 1"),
    ("NUDGEFLOW_APPLE_RELAY_RANGES", "/nonexistent/egress-ip-ranges.csv", "No such file"),
]


@pytest.mark.parametrize(("name", "value", "says"), BAD_ENV, ids=[f"{n}={v}" for n, v, _ in BAD_ENV])
def test_serve_refuses_a_bad_environment_variable_naming_it(
    env: dict[str, str], tmp_path: Path, name: str, value: str, says: str
) -> None:
    done = run(["serve", "--port", str(free_port())], {**env, name: value}, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{name}" in done.stderr and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "hunter2" not in done.stderr  # a password in a database URL is never echoed


def test_the_issue_example_prints_exactly_the_variable_and_the_value(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["serve"], {**env, "NUDGEFLOW_INGEST_RATE": "fast"}, tmp_path)
    assert done.returncode == 2
    assert "NUDGEFLOW_INGEST_RATE: 'fast' is not a number" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_command_reading_settings_refuses_a_bad_variable(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["workspace", "create", "shop"], {**env, "NUDGEFLOW_ENGINE": "perhaps"}, tmp_path)
    assert done.returncode == 2 and "NUDGEFLOW_ENGINE: 'perhaps' is not a boolean" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_variable_settings_reads_is_checked() -> None:
    # A variable added to ENV_VARS without a case above would go untested: name them all.
    tested = {name for name, _, _ in BAD_ENV}
    untested = {v.name for v in ENV_VARS} - tested
    assert untested == {
        "NUDGEFLOW_FCM_SERVICE_ACCOUNT_FILE",
        "NUDGEFLOW_APNS_KEY_FILE",
        "NUDGEFLOW_APNS_KEY_ID",
        "NUDGEFLOW_APNS_TEAM_ID",
        "NUDGEFLOW_APNS_TOPIC",
    }  # free text, files checked on use


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "0"], "'--port'"),
        (["--port", "70000"], "'--port'"),
        (["--port", "eighty"], "'--port'"),
        (["--dev-smtp-port", "0"], "'--dev-smtp-port'"),
        (["--public-url", "nudge.shop.example"], "--public-url: 'nudge.shop.example' must be an absolute"),
        (
            ["--public-url", "https://user:pw@nudge.shop.example"],
            "--public-url: 'https://user:pw@nudge.shop.example' must not carry a user",
        ),
        (["--public-url", "https://nudge.shop.example/#top"], "must not have a fragment"),
        (["--public-url", "https://nudge.shop.example/\x07"], "must not contain spaces or control characters"),
    ],
)
def test_serve_refuses_a_bad_option_naming_it(env: dict[str, str], tmp_path: Path, args: list[str], says: str) -> None:
    done = run(["serve", *args], env, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- serve and the public URL -----------------------------------------------------------------


def test_serve_off_loopback_without_a_public_url_refuses_and_says_what_to_set(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = run(["serve", "--host", "0.0.0.0", "--port", str(free_port())], env, tmp_path)
    assert done.returncode == 2
    assert "--public-url" in done.stderr and "NUDGEFLOW_PUBLIC_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_on_loopback_uses_its_own_address_and_says_which_channels_are_not_configured(start: object) -> None:
    served = start([])  # type: ignore[operator]
    port = served.base.rsplit(":", 1)[1]
    text = served.log.read_text()
    assert f"public URL: http://127.0.0.1:{port}" in text
    # No SMTP server, no push in use: both on the log channel, said at start and by /healthz.
    assert "not configured: email, push" in text
    health = httpx.get(served.base + "/healthz").json()
    assert health == {"status": "ok", "channels_not_configured": ["email", "push"]}


def test_serve_with_smtp_configured_reports_only_push_and_takes_the_public_url_from_the_environment(
    start: object,
) -> None:
    served = start(
        ["--host", "0.0.0.0"],
        {
            "NUDGEFLOW_SMTP_URL": "smtp://127.0.0.1:2525?tls=none",  # type: ignore[operator]
            "NUDGEFLOW_PUBLIC_URL": "https://nudge.shop.example/",
        },
    )
    text = served.log.read_text()
    assert "public URL: https://nudge.shop.example " in text
    assert "not configured: push" in text and "email" not in text.split("not configured:")[1].splitlines()[0]
    assert httpx.get(served.base + "/healthz").json()["channels_not_configured"] == ["push"]


def test_serve_dev_keeps_working_on_loopback_and_reports_nothing_unconfigured(start: object, tmp_path: Path) -> None:
    served = start(["--dev", "--dev-smtp-port", str(free_port())])  # type: ignore[operator]
    text = served.log.read_text()
    assert "not configured" not in text
    assert httpx.get(served.base + "/healthz").json()["channels_not_configured"] == []


# -- workspace settings show | set ------------------------------------------------------------


def _workspace(env: dict[str, str], cwd: Path) -> str:
    done = run(["workspace", "create", "shop", "--json"], env, cwd)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["workspace_id"])


def _shown(env: dict[str, str], cwd: Path, ws: str) -> dict[str, object]:
    done = run(["workspace", "settings", "show", ws, "--json"], env, cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_settings_show_lists_every_key_with_its_default_and_masks_secrets(env: dict[str, str], tmp_path: Path) -> None:
    from nudgeflow.model.workspace_keys import KEYS
    from nudgeflow.store import database, workspace_settings

    ws = _workspace(env, tmp_path)
    engine = database.create_db_engine(env["NUDGEFLOW_DATABASE_URL"])
    try:
        with engine.begin() as conn:  # what the tracking links and helper keys put there
            workspace_settings.set_section(conn, ws, "tracking_secret", "s3cret-tracking", 1)
            workspace_settings.set_section(
                conn, ws, "identity", {"verification": False, "secrets": ["id-new", "id-old"]}, 1
            )
    finally:
        engine.dispose()
    shown = _shown(env, tmp_path, ws)
    keys = shown["keys"]
    assert set(keys) == {k.name for k in KEYS}  # type: ignore[arg-type]
    assert keys["public_base_url"]["value"] is None and keys["public_base_url"]["set"] is False  # type: ignore[index]
    assert keys["topics"]["value"] == [] and keys["identity.verification"]["value"] is False  # type: ignore[index]
    assert keys["tracking_secret"]["value"] == "********"  # type: ignore[index]
    assert keys["identity.secrets"]["value"] == ["********", "********"]  # type: ignore[index]
    assert set(shown["sections"]) >= {"smtp", "fcm", "apns", "webpush", "bounce_webhooks"}  # type: ignore[arg-type]
    assert shown["sections"]["webpush"]["value"]["private_key"] == "********"  # type: ignore[index]
    text = run(["workspace", "settings", "show", ws], env, tmp_path).stdout
    assert "s3cret" not in text and "id-new" not in text and "nudgeflow workspace smtp set" in text


def test_settings_set_changes_keys_and_refuses_a_bad_value_naming_its_key_all_or_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    ws = _workspace(env, tmp_path)
    refused = run(["workspace", "settings", "set", ws, "identity.verification=true"], env, tmp_path)
    assert refused.returncode == 2 and "`nudgeflow workspace identity enable` makes one" in refused.stderr
    assert run(["workspace", "identity", "rotate", ws], env, tmp_path).returncode == 0  # a secret, verification off
    done = run(
        [
            "workspace",
            "settings",
            "set",
            ws,
            "public_base_url=https://nudge.shop.example/",
            'topics=["offers", {"id": "news", "label": "Product news"}]',
            'topic_by_template={"cart-1h": "offers"}',
            "links.allowed_domains=shop.example,*.shop.example",
            "identity.verification=true",
        ],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    keys = _shown(env, tmp_path, ws)["keys"]
    assert keys["public_base_url"]["value"] == "https://nudge.shop.example"  # type: ignore[index]
    assert keys["topics"]["value"] == ["offers", {"id": "news", "label": "Product news"}]  # type: ignore[index]
    assert keys["topic_by_template"]["value"] == {"cart-1h": "offers"}  # type: ignore[index]
    assert keys["links.allowed_domains"]["value"] == ["shop.example", "*.shop.example"]  # type: ignore[index]
    assert keys["identity.verification"]["value"] is True  # type: ignore[index]

    # One bad value: nothing of the command is written, and the error names the key.
    for args, says in [
        (["topics=[]", "public_base_url=ftp://x"], "public_base_url: must be an absolute http:// or https:// URL"),
        (["identity.verification=sometimes"], "identity.verification: 'sometimes' is not a boolean"),
        (["links.allowed_domains=shop example"], "links.allowed_domains: [0] 'shop example' is not a host name"),
        (["smtp.from_address=news@shop.example"], "smtp.from_address: the workspace has no smtp section"),
        (["tracking_secret=abc"], "tracking_secret: cannot be set here"),
        (["colour=blue"], "colour: no such setting"),
        (["topics"], "'topics': expected KEY=VALUE"),
        (['topic_by_journey={"a":'], "topic_by_journey: '{\"a\":' is not JSON"),
    ]:
        bad = run(["workspace", "settings", "set", ws, *args], env, tmp_path)
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    assert _shown(env, tmp_path, ws)["keys"]["topics"]["value"] != []  # type: ignore[index]

    # An empty value clears a key back to its default.
    assert run(["workspace", "settings", "set", ws, "topics="], env, tmp_path).returncode == 0
    assert _shown(env, tmp_path, ws)["keys"]["topics"] == {
        **_shown(env, tmp_path, ws)["keys"]["topics"],
        "set": False,
        "value": [],
    }  # type: ignore[index,dict-item]


def test_sender_defaults_are_set_on_the_workspaces_own_smtp_server(env: dict[str, str], tmp_path: Path) -> None:
    ws = _workspace(env, tmp_path)
    assert run(["workspace", "smtp", "set", "smtp://mail.shop.example:587", "-w", ws], env, tmp_path).returncode == 0
    done = run(
        [
            "workspace",
            "settings",
            "set",
            ws,
            "smtp.from_address=news@shop.example",
            "smtp.from_name=Shop",
            "smtp.reply_to=help@shop.example",
            "smtp.bounce_domain=bounce.shop.example",
        ],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    smtp = json.loads(run(["workspace", "smtp", "show", "-w", ws, "--json"], env, tmp_path).stdout)
    assert json.dumps(smtp).count("news@shop.example") == 1 and "bounce.shop.example" in json.dumps(smtp)
    bad = run(["workspace", "settings", "set", ws, "smtp.reply_to=not an address"], env, tmp_path)
    assert bad.returncode == 2 and "smtp.reply_to: 'not an address' is not an email address" in bad.stderr


def test_smtp_set_with_a_second_dkim_key_in_ed25519(env: dict[str, str], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    def pem(key: object, path: Path) -> str:
        text = key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path.write_text(text)
        return str(path)

    rsa_key = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048), tmp_path / "rsa.pem")
    ed_key = pem(ed25519.Ed25519PrivateKey.generate(), tmp_path / "ed.pem")
    ws = _workspace(env, tmp_path)
    dkim = ["--dkim-key", rsa_key, "--dkim-selector", "s1", "--dkim-domain", "shop.example"]
    ed = ["--dkim-ed25519-key", ed_key, "--dkim-ed25519-selector", "e1"]
    done = run(
        ["workspace", "smtp", "set", "smtp://mail.shop.example:587", "-w", ws, *dkim, *ed, "--json"],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(run(["workspace", "smtp", "show", "-w", ws, "--json"], env, tmp_path).stdout)["config"]
    assert config["dkim_ed25519_selector"] == "e1" and config["dkim_ed25519_private_key"] == "********"
    assert Path(ed_key).read_text().splitlines()[1] not in done.stdout + json.dumps(config)
    bad = run(
        ["workspace", "smtp", "set", "smtp://mail.shop.example:587", "-w", ws, "--dkim-ed25519-key", ed_key],
        env,
        tmp_path,
    )
    assert bad.returncode != 0 and "its own selector and its private key together" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_workspace_set_public_url(env: dict[str, str], tmp_path: Path) -> None:
    ws = _workspace(env, tmp_path)
    done = run(["workspace", "set", ws, "--public-url", "https://links.shop.example"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert _shown(env, tmp_path, ws)["keys"]["public_base_url"]["value"] == "https://links.shop.example"  # type: ignore[index]
    bad = run(["workspace", "set", ws, "--public-url", "javascript:alert(1)"], env, tmp_path)
    assert bad.returncode == 2 and "public_base_url: must be an absolute" in bad.stderr
    missing = run(["workspace", "set", "ws_nope", "--public-url", "https://x.example"], env, tmp_path)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


def test_docs_settings_lists_every_key_and_every_variable() -> None:
    # The registry and ENV_VARS are the truth; the page must not fall behind them.
    from nudgeflow.model.workspace_keys import KEYS, SECTIONS

    page = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    missing = [k.name for k in KEYS if f"| `{k.name}` |" not in page]
    missing += [name for name in SECTIONS if f"| `{name}` |" not in page]
    missing += [v.name for v in ENV_VARS if f"| `{v.name}` |" not in page]
    assert missing == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["demo", "--users", "0"], "'--users'"),
        (["demo", "--days", "1"], "'--days'"),
        (["import", "events.jsonl", "--write-key", "k", "--batch-size", "0"], "'--batch-size'"),
        (["simulate", "-j", "j.yaml", "-e", "events.jsonl", "--limit", "-1"], "'--limit'"),
        (["serve", "--bounce-smtp", "nonsense"], "--bounce-smtp wants HOST:PORT, not 'nonsense'"),
    ],
)
def test_other_options_out_of_range_exit_2_naming_the_option(
    env: dict[str, str], tmp_path: Path, args: list[str], says: str
) -> None:
    done = run(args, env, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
