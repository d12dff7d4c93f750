"""VAPID keys per workspace: generated on creation, rotated, subject set, secrets kept in."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nudgeflow.store import vapid, workspace_settings
from tests.support import make_workspace


def test_a_new_workspace_has_keys_that_match(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.connect() as conn:
        keys = vapid.get_vapid_keys(conn, ws)
        assert keys is not None
        assert vapid.vapid_public_key(conn, ws) == keys.public_key
    raw = vapid.b64url_decode(keys.public_key)
    assert len(raw) == 65 and raw[0] == 4  # an uncompressed P-256 point, as browsers want it
    assert vapid.public_key_of(keys.signing_key()) == keys.public_key
    assert keys.subject == vapid.DEFAULT_SUBJECT and keys.public_view()["subject_is_placeholder"]


def test_ensure_is_idempotent_and_rotation_makes_a_new_pair(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        first = vapid.ensure_vapid_keys(conn, ws, 10)
        assert vapid.ensure_vapid_keys(conn, ws, 20) == first
        vapid.set_vapid_subject(conn, ws, "mailto:ops@shop.example", 30)
        workspace_settings.set_section(conn, ws, "other", {"kept": True}, 30)
    with engine.begin() as conn:
        rotated = vapid.rotate_vapid_keys(conn, ws, 40)
    assert rotated.public_key != first.public_key and rotated.private_key != first.private_key
    assert rotated.subject == "mailto:ops@shop.example" and rotated.rotated_at_ms == 40
    with engine.connect() as conn:
        assert vapid.get_vapid_keys(conn, ws) == rotated
        assert workspace_settings.get_section(conn, ws, "other") == {"kept": True}


def test_keys_stay_per_workspace(engine: Any) -> None:
    a, b = make_workspace(engine, "a").workspace_id, make_workspace(engine, "b").workspace_id
    with engine.begin() as conn:
        vapid.rotate_vapid_keys(conn, a, 1)
        assert vapid.vapid_public_key(conn, a) != vapid.vapid_public_key(conn, b)


@pytest.mark.parametrize(
    "subject",
    ["push@shop.example", "http://shop.example", "mailto:", "https://", "mailto:a b@x", "mailto:ops@shop\x00.example"],
)
def test_subject_must_be_mailto_or_https(engine: Any, subject: str) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn, pytest.raises(vapid.VapidError, match="subject"):
        vapid.set_vapid_subject(conn, ws, subject, 1)


def test_private_key_forms_and_no_secret_in_repr() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = vapid.public_key_of(key)
    assert vapid.public_key_of(vapid.load_private_key(pem)) == public
    scalar = vapid.b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    assert vapid.public_key_of(vapid.load_private_key(scalar)) == public
    with pytest.raises(vapid.VapidError):
        vapid.load_private_key("not-a-key")
    other = (
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(vapid.VapidError, match="P-256"):
        vapid.load_private_key(other)
    keys = vapid.VapidKeys(public, scalar, "mailto:a@b.example", 1)
    assert scalar not in repr(keys) and scalar not in str(keys)
    assert "private_key" not in keys.public_view()


def test_cli_show_and_rotate(engine: Any, settings: Any) -> None:
    import json

    from typer.testing import CliRunner

    from nudgeflow.cli import app

    ws = make_workspace(engine).workspace_id
    with engine.connect() as conn:
        first = vapid.get_vapid_keys(conn, ws)
    assert first is not None
    runner = CliRunner()
    db = ["--database", settings.database_url]
    shown = runner.invoke(app, ["workspace", "vapid", "show", ws, "--json", *db])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["public_key"] == first.public_key
    rotated = runner.invoke(
        app, ["workspace", "vapid", "rotate", ws, "--subject", "mailto:ops@shop.example", "--json", *db]
    )
    assert rotated.exit_code == 0, rotated.output
    body = json.loads(rotated.stdout)
    assert body["public_key"] != first.public_key and body["subject"] == "mailto:ops@shop.example"
    assert "subscribes again" in rotated.stderr
    with engine.connect() as conn:
        now = vapid.get_vapid_keys(conn, ws)
    assert now is not None and now.public_key == body["public_key"]
    assert now.private_key not in rotated.output and first.private_key not in shown.output
    bad = runner.invoke(app, ["workspace", "vapid", "show", ws, "--subject", "nope", *db])
    assert bad.exit_code == 1 and "mailto:" in bad.output
    assert runner.invoke(app, ["workspace", "vapid", "show", "ws_missing", *db]).exit_code == 1
