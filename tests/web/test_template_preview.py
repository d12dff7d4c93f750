"""POST /api/templates/{name}/preview: an unsaved source rendered as a send would render it
(the console editor's live preview), over HTTP on a live server."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import LiveServer

EMAIL = {
    "subject": "Hi {{ profile.first_name | default: 'there' }}",
    "preheader": "Your picks",
    "body": "<mjml><mj-body><mj-section><mj-column><mj-text>Hello {{ profile.first_name | default: 'you' }}"
    "</mj-text></mj-column></mj-section></mj-body></mjml>",
}


def _person(live: LiveServer, write_key: str, user_id: str, traits: dict[str, Any], api: httpx.Client) -> None:
    with live.client(auth=(write_key, "")) as ingest:
        assert ingest.post("/v1/identify", json={"userId": user_id, "traits": traits}).status_code == 200


def _until(check: Any) -> Any:
    """The answer once the ingested person is stored (ingest commits in the background)."""
    for _ in range(100):
        answer = check()
        if answer.status_code == 200:
            return answer
    return answer


def test_preview_renders_an_unsaved_source_and_stores_nothing(api: httpx.Client) -> None:
    out = api.post("/api/templates/welcome/preview", json={"source": EMAIL, "sample": True})
    assert out.status_code == 200, out.text
    got = out.json()
    assert got["channel"] == "email" and got["context"] == "sample"
    assert got["subject"].startswith("Hi ") and "Hello" in got["html"] and "Hello" in got["text"]
    changed = api.post(
        "/api/templates/welcome/preview",
        json={"source": {**EMAIL, "subject": "Changed {{ 1 | plus: 1 }}"}, "context": {"profile": {}}},
    )
    assert changed.status_code == 200 and changed.json()["subject"] == "Changed 2"
    assert changed.json()["context"] == "context"
    assert api.get("/api/templates").json()["templates"] == []  # a preview stores nothing


def test_preview_errors_name_the_part_line_and_column(api: httpx.Client) -> None:
    broken = {**EMAIL, "body": "<mjml><mj-body>\n<mj-text>\n  {{ profile. }}</mj-text></mj-body></mjml>"}
    bad = api.post("/api/templates/welcome/preview", json={"source": broken, "sample": True})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["part"] == "body" and bad.json()["error"]["line"] == 3
    assert bad.json()["error"]["column"] >= 3
    undefined = api.post(
        "/api/templates/welcome/preview", json={"source": {**EMAIL, "subject": "x\n{{ nope }}"}, "sample": True}
    )
    assert undefined.status_code == 422 and undefined.json()["error"]["part"] == "subject"
    assert undefined.json()["error"]["line"] == 2
    no_subject = api.post("/api/templates/welcome/preview", json={"source": {"body": "<p>x</p>"}, "sample": True})
    assert no_subject.status_code == 422 and "subject" in no_subject.json()["detail"]
    assert api.post("/api/templates/welcome/preview", json={"sample": True}).status_code == 400
    assert api.post("/api/templates/bad name/preview", json={"source": EMAIL}).status_code == 422


def test_preview_on_a_person_of_the_workspace_by_user_id_or_email(live: LiveServer, ws: Any, api: httpx.Client) -> None:
    _person(live, ws.write_key, "u-9", {"first_name": "Ada", "email": "Ada@Example.com"}, api)
    other = live.workspace()
    _person(live, other.write_key, "u-10", {"first_name": "Eve", "email": "eve@example.com"}, api)
    by_id = _until(lambda: api.post("/api/templates/t/preview", json={"source": EMAIL, "profile": "u-9"}))
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["subject"] == "Hi Ada" and by_id.json()["context"] == "profile"
    by_email = api.post("/api/templates/t/preview", json={"source": EMAIL, "profile": "ada@example.com"})
    assert by_email.status_code == 200 and by_email.json()["subject"] == "Hi Ada"
    with live.admin(other.admin_token) as theirs:
        assert _until(lambda: theirs.post("/api/templates/t/preview", json={"source": EMAIL, "profile": "u-10"}))
    # Another workspace's person is no one here, by userId or by email.
    for ref in ("u-10", "eve@example.com", "nobody@example.com"):
        missing = api.post("/api/templates/t/preview", json={"source": EMAIL, "profile": ref})
        assert missing.status_code == 404 and "no person" in missing.json()["detail"]


def test_push_preview_checks_each_services_payload_size(api: httpx.Client) -> None:
    push = {
        "channel": "push",
        "title": "Level {{ event.properties.level }}!",
        "body": "Well done",
        "icon": "https://shop.example/icon.png",
        "image": "https://shop.example/hero.png",
        "data": {"level": "{{ event.properties.level }}"},
    }
    small = api.post("/api/templates/lvl/preview", json={"source": push, "sample": True})
    assert small.status_code == 200, small.text
    got = small.json()
    assert (got["title"], got["icon"], got["image"]) == ("Level 12!", push["icon"], push["image"])
    sizes = {p["service"]: p for p in got["payload"]}
    assert set(sizes) == {"Web Push", "FCM", "APNs"}
    assert all(p["ok"] and 100 < p["size"] < 1000 for p in sizes.values()), sizes
    assert sizes["Web Push"]["limit"] == 3993 and sizes["FCM"]["limit"] == sizes["APNs"]["limit"] == 4096

    big = api.post(
        "/api/templates/lvl/preview", json={"source": {**push, "data": {"blob": "x" * 3900}}, "sample": True}
    ).json()["payload"]
    assert [p["ok"] for p in big] == [False, False, False]
    assert all(p["size"] > p["limit"] and "over the service's limit" in p["problem"] for p in big)
    # Each size is its sender's own shape of the message, not one number for all three.
    sizes_small = {p["service"]: p["size"] for p in got["payload"]}
    assert sizes_small["FCM"] != sizes_small["APNs"]

    reserved = api.post(
        "/api/templates/lvl/preview", json={"source": {**push, "data": {"from": "x"}}, "sample": True}
    ).json()["payload"]
    fcm = next(p for p in reserved if p["service"] == "FCM")
    assert not fcm["ok"] and fcm["size"] is None and "reserved" in fcm["problem"]


def test_a_person_ref_no_id_can_be_is_no_one(api: httpx.Client) -> None:
    """A ref with a NUL (PostgreSQL text cannot hold one) or longer than any id is no one: a
    404 naming it, as for an unknown person, not a 500 from the database driver."""
    for ref in ("ada\u0000@example.com", "u-9\u0000", "x" * 5000):
        missing = api.post("/api/templates/t/preview", json={"source": EMAIL, "profile": ref})
        assert missing.status_code == 404, (ref[:20], missing.status_code, missing.text[:200])
        assert "no person" in missing.json()["detail"]
