"""SMTP URLs, per-workspace settings (secrets masked), the CLI and the admin API."""

from __future__ import annotations

import pytest

from nudgeflow.model.smtp_config import (
    AUTO,
    MASK,
    NONE,
    STARTTLS,
    TLS,
    SmtpConfig,
    SmtpConfigError,
    parse_smtp_url,
    smtp_config_from_env,
)
from nudgeflow.settings import Settings
from nudgeflow.store import workspace_settings as ws_settings
from tests.support import make_workspace


def test_schemes_and_default_ports() -> None:
    assert parse_smtp_url("smtp://mail.example.com").tls == AUTO
    assert parse_smtp_url("smtp://mail.example.com").port == 587
    assert parse_smtp_url("smtp+starttls://mail.example.com:2525").tls == STARTTLS
    c = parse_smtp_url("smtps://mail.example.com")
    assert (c.tls, c.port) == (TLS, 465)
    assert parse_smtp_url("smtp://localhost:1025?tls=none").tls == NONE


def test_credentials_are_percent_decoded_and_options_parsed() -> None:
    c = parse_smtp_url(
        "smtp://us%40er:p%40ss%3Aw%2Frd@smtp.example.com:587?pool=2&concurrency=6&rate=20"
        "&from=news@example.com&from_name=Shop&reply_to=help@example.com&timeout=5&verify=0"
    )
    assert (c.username, c.password) == ("us@er", "p@ss:w/rd")
    assert (c.pool_size, c.concurrency, c.max_connections, c.rate_per_second) == (2, 6, 6, 20.0)
    assert (c.from_address, c.from_name, c.reply_to, c.timeout_s, c.verify_tls) == (
        "news@example.com",
        "Shop",
        "help@example.com",
        5.0,
        False,
    )
    assert parse_smtp_url("smtp://h?pool=3").max_connections == 3


@pytest.mark.parametrize(
    "url",
    [
        "http://h",
        "smtp://",
        "smtp://h?pool=0",
        "smtp://h?bogus=1",
        "smtp://h?rate=fast",
        "smtp://h?tls=maybe",
        "smtp://h?dkim_selector=s",
        "smtp://:pw@h",
        "smtp://h:99999",
        "smtp://mx\x00.example.com",
        "smtp://h?from=a@b%0D%0ABcc:x@y",
        "smtp://h?from_name=Shop%0ABcc:x@y",
        "smtp://us%00er:pw@h",
    ],
)
def test_bad_urls_say_why(url: str) -> None:
    with pytest.raises(SmtpConfigError):
        parse_smtp_url(url)


def test_secrets_never_shown() -> None:
    c = parse_smtp_url("smtp://user:hunter2@h:25").with_(
        dkim_selector="s1", dkim_domain="example.com", dkim_private_key="-----BEGIN PRIVATE KEY-----x"
    )
    masked = c.masked()
    assert masked["password"] == MASK and masked["dkim_private_key"] == MASK
    assert "hunter2" not in str(masked) and "hunter2" not in str(c) and "hunter2" not in repr(c)
    assert "BEGIN" not in str(masked) and "BEGIN" not in repr(c)
    assert masked["url"] == f"smtp://user:{MASK}@h:25"
    assert parse_smtp_url(c.url()) == parse_smtp_url("smtp://user:hunter2@h:25")


def test_env_default() -> None:
    assert smtp_config_from_env({}) is None
    assert smtp_config_from_env({"NUDGEFLOW_SMTP_URL": "smtps://h"}).tls == TLS  # type: ignore[union-attr]
    assert Settings.from_env({"NUDGEFLOW_SMTP_URL": "smtps://h"}).smtp_url == "smtps://h"


def test_workspace_settings_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    ws = make_workspace(engine).workspace_id
    default = parse_smtp_url("smtp://relay:25?from=a@example.com")
    with engine.begin() as conn:
        assert ws_settings.get_smtp(conn, ws) is None
        assert ws_settings.smtp_settings_masked(conn, ws, default)["source"] == "default"
        ws_settings.set_section(conn, ws, "other", {"x": 1}, 1)
        own = parse_smtp_url("smtps://u:secret@mx.example.com?from=b@example.com")
        ws_settings.set_smtp(conn, ws, own, 2)
    with engine.begin() as conn:
        assert ws_settings.get_smtp(conn, ws) == own
        shown = ws_settings.smtp_settings_masked(conn, ws, default)
        assert shown["source"] == "workspace" and shown["config"]["password"] == MASK
        assert "secret" not in str(shown)
        assert ws_settings.get_section(conn, ws, "other") == {"x": 1}
        ws_settings.set_smtp(conn, ws, None, 3)
    with engine.begin() as conn:
        assert ws_settings.get_smtp(conn, ws) is None
        assert ws_settings.get_section(conn, ws, "other") == {"x": 1}


def test_from_dict_refuses_unknown_fields() -> None:
    with pytest.raises(SmtpConfigError):
        SmtpConfig.from_dict({"host": "h", "port": 25, "colour": "blue"})
