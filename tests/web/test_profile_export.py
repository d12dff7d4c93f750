"""Export is everything held, erasure leaves nothing: the admin API and `nudgeflow profiles
export|erase` on a live server with its runtime, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import text

from nudgeflow.store import consent
from tests.support import NUDGEFLOW
from tests.web.privacy_shop import Shop


def test_export_holds_everything_kept_about_the_person(privacy_shop: Shop, ada: dict[str, Any]) -> None:
    with privacy_shop.admin() as client:
        answer = client.get("/api/profiles/laptop-1/export")  # any id of the person will do
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["id"] == ada["pid"] and doc["user_id"] == "ada"
    assert doc["traits"] == {"email": "Ada@Example.com", "first_name": "Ada"}
    assert doc["identities"] == {"user_ids": ["ada"], "anonymous_ids": ["laptop-1"]}
    assert [m["from_profile_id"] for m in doc["merges"]] == [ada["laptop"]] and doc["merges"][0]["merged_at"].endswith(
        "Z"
    )
    names = [e["event"] if e["type"] == "track" else e["type"] for e in doc["events"]]
    assert names[:5] == ["page", "identify", "identify", "Sale Started", "Signed Up"]
    assert {"Message Suppressed", "News Published"} <= set(names)

    runs = {r["journey_id"]: r for r in doc["journey_runs"]}
    assert runs["nurture"]["status"] == "active" and runs["nurture"]["step"] == "wait"
    assert runs["sale"]["status"] == "done"
    assert set(doc["engine_state"]) == {ada["pid"]} and doc["engine_state"][ada["pid"]]["runs"]
    assert len(doc["timers"]) == 1 and doc["timers"][0]["due_at"].endswith("Z")

    messages = {m["journey_id"]: m for m in doc["messages"]}
    sale, news = messages["sale"], messages["news"]
    assert sale["template"] == "promo" and sale["template_version"] == 1 and sale["reason"] is None
    assert sale["status"] not in ("pending", "suppressed", "failed") and sale["sent_at"]
    assert (news["status"], news["reason"]) == ("suppressed", "suppressed:complaint")
    assert {"key", "step", "channel", "variant", "marketing", "attempts", "created_at", "context"} <= set(sale)
    assert [m["template"] for m in doc["logged_messages"]] == ["promo"]

    assert doc["consent"]["subscribed"] is True
    assert doc["consent"]["topics"] == {"offers": False, "product_news": True}
    assert [(s["channel"], s["address"], s["reason"]) for s in doc["suppressions"]] == [
        ("email", "ada@example.com", "complaint")
    ]

    targets = doc["push_targets"]
    assert [t["provider"] for t in targets] == ["webpush", "fcm"]
    assert targets[0]["endpoint"] == "https://push.example.net/…" + ada["endpoint"][-4:]
    assert targets[1]["token"] == ada["token"][:4] + "…" + ada["token"][-4:]
    assert [d["message_key"] for d in doc["push_deliveries"]] == ["run-x:mail:1"]
    # Masked: neither the endpoint, the token nor the browser's keys are in the document.
    for secret in (ada["endpoint"], ada["token"], *ada["keys"].values()):
        assert secret not in answer.text


def test_the_cli_exports_the_same_document_and_erases_as_the_api_does(privacy_shop: Shop, ada: dict[str, Any]) -> None:
    with privacy_shop.admin() as client:
        api = client.get("/api/profiles/ada/export").json()
    exported = privacy_shop.cli("export", "ada")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == api

    refused = privacy_shop.cli("erase", "ada", input="n\n")
    assert refused.returncode == 1 and "not erased" in refused.stderr
    with privacy_shop.admin() as client:
        assert client.get("/api/profiles/ada").status_code == 200

    erased = privacy_shop.cli("erase", "laptop-1", input="y\n")  # the prompt, answered yes; any id of the person
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"erased {ada['pid']}: deleted ")
    assert "1 suppression(s) kept with the address hashed" in erased.stdout
    with privacy_shop.admin() as client:
        for ref in ("ada", "laptop-1", ada["pid"], ada["laptop"]):
            assert client.get(f"/api/profiles/{ref}").status_code == 404, ref
        listed = client.get("/api/suppressions").json()["suppressions"]
    assert [s["address"] for s in listed] == [consent.erased_address(privacy_shop.wid, "email", "ada@example.com")]
    with privacy_shop.live.state.engine.connect() as conn:
        for table in (
            "events",
            "outbox",
            "journey_runs",
            "timers",
            "profile_state",
            "subscriptions",
            "push_subscriptions",
            "device_tokens",
            "push_deliveries",
            "log_channel_messages",
        ):
            left = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE profile_id IN (:p, :l)"),
                {"p": ada["pid"], "l": ada["laptop"]},
            ).scalar_one()
            assert left == 0, table

    # The address comes back on a new profile: the complaint still stops it. (On SQLite this
    # also needs the erased events' seqs never to be given again: the engine's cursor has
    # passed them, and a new event under one would never be decided.)
    privacy_shop.send(
        {"type": "identify", "userId": "ada-again", "traits": {"email": "ada@example.com"}},
        {"type": "track", "userId": "ada-again", "event": "News Published"},
    )
    privacy_shop.run()
    news = privacy_shop.outbox("news")
    assert (news[-1].status, news[-1].reason) == ("suppressed", "suppressed:complaint")

    missing = privacy_shop.cli("export", "ada")
    assert missing.returncode == 1 and "no profile with id, userId or anonymousId 'ada'" in missing.stderr


def test_delete_answers_what_was_deleted_and_what_was_kept_hashed(privacy_shop: Shop, ada: dict[str, Any]) -> None:
    with privacy_shop.admin() as client:
        answer = client.delete("/api/profiles/ada")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["erased"] == ada["pid"]
    # With the profile merged into them: the ids their rows carry in exports already written.
    assert body["profile_ids"] == [ada["pid"], ada["laptop"]]
    assert body["hashed"] == {"suppressions": 1}
    assert body["deleted"]["profiles"] == 1 and body["deleted"]["push_subscriptions"] == 1
    assert body["deleted"]["device_tokens"] == 1 and body["deleted"]["push_deliveries"] == 1
    assert body["deleted"]["subscriptions"] == 1 and body["deleted"]["timers"] == 1


def test_erase_and_export_name_what_is_wrong(privacy_shop: Shop, tmp_path: Path) -> None:
    unknown = privacy_shop.cli("erase", "nobody", "--yes")
    assert unknown.returncode == 1 and "no profile with id, userId or anonymousId 'nobody'" in unknown.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGEFLOW_")}
    env["NUDGEFLOW_DATABASE_URL"] = privacy_shop.live.state.settings.database_url
    no_ws = subprocess.run(
        [NUDGEFLOW, "profiles", "export", "x", "--workspace", "ws_nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_ws.returncode == 1 and "no workspace 'ws_nope'" in no_ws.stderr
    privacy_shop.send({"type": "identify", "userId": "cy", "traits": {"email": "cy@example.com"}})
    out = tmp_path / "cy.json"
    written = privacy_shop.cli("export", "cy", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert json.loads(out.read_text())["traits"] == {"email": "cy@example.com"}
    bad = privacy_shop.cli("export", "cy", "--output", str(tmp_path / "no-such-dir" / "x.json"))
    assert bad.returncode == 1 and "--output: cannot write" in bad.stderr
