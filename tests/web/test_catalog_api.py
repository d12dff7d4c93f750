"""The catalog admin API: imports in JSON, JSON Lines and CSV, reads, deletes, auth."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


def test_put_json_then_read_and_delete(api: httpx.Client) -> None:
    body = [
        {"id": "p1", "name": "Shirt", "price": 10, "currency": "usd", "stock": 2, "color": "blue"},
        {"id": "p2", "name": "Hat"},
        {"name": "no id"},
    ]
    answer = api.put("/api/catalog/products", json=body)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["rows"], report["imported"], report["created"], report["rejected"]) == (3, 2, 2, 1)
    assert report["problems"] == [{"where": "item 2", "reason": "id is missing", "id": None}]
    p1 = api.get("/api/catalog/products/p1").json()
    assert (p1["currency"], p1["attributes"]) == ("USD", {"color": "blue"})
    listed = api.get("/api/catalog/products", params={"limit": 1}).json()
    assert [p["id"] for p in listed["products"]] == ["p1"] and listed["next_after"] == "p1"
    assert [p["id"] for p in api.get("/api/catalog/products", params={"after": "p1"}).json()["products"]] == ["p2"]
    again = api.put("/api/catalog/products", json=[{"id": "p1", "name": "Shirt 2"}]).json()
    assert (again["created"], again["updated"]) == (0, 1)
    assert api.get("/api/catalog/products/p1").json()["price"] is None
    assert api.delete("/api/catalog/products/p1").json() == {"deleted": "p1"}
    assert api.delete("/api/catalog/products/p1").status_code == 404
    assert api.get("/api/catalog/products/p1").status_code == 404
    assert api.delete("/api/catalog/products").status_code == 400
    assert api.delete("/api/catalog/products", params={"confirm": "true"}).json() == {"deleted": 1}


def test_put_csv_and_json_lines_for_places(api: httpx.Client) -> None:
    csv = "id,name,latitude,longitude,address,hours\ns1,Fifth Avenue,40.76,-73.97,5th Ave,9-21\ns2,Bad,100,0,,\n"
    answer = api.put("/api/catalog/places", content=csv, headers={"Content-Type": "text/csv; charset=utf-8"})
    report = answer.json()
    assert report["imported"] == 1 and report["problems"][0]["where"] == "line 3"
    assert api.get("/api/catalog/places/s1").json()["attributes"] == {"hours": "9-21"}
    lines = '{"id": "s3", "name": "Paris", "latitude": 48.85, "longitude": 2.35}\n'
    answer = api.put("/api/catalog/places", content=lines, headers={"Content-Type": "application/x-ndjson"})
    assert answer.json()["imported"] == 1
    assert [p["id"] for p in api.get("/api/catalog/places").json()["places"]] == ["s1", "s3"]


@pytest.mark.parametrize("content,status", [("", 422), ("{not json", 422), ('{"id": 1}', 422), (b"\xff", 422)])
def test_unreadable_bodies(api: httpx.Client, content: Any, status: int) -> None:
    answer = api.put("/api/catalog/products", content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == status


def test_unknown_kind_auth_and_isolation(live: Any, ws: Any, api: httpx.Client) -> None:
    assert api.get("/api/catalog/stores").status_code == 404
    assert api.put("/api/catalog/stores", json=[]).status_code == 404
    with live.client() as anonymous:
        assert anonymous.get("/api/catalog/products").status_code == 401
    api.put("/api/catalog/products", json=[{"id": "mine", "name": "Mine"}])
    other = live.workspace("other")
    with live.admin(other.admin_token) as theirs:
        assert theirs.get("/api/catalog/products/mine").status_code == 404
        assert theirs.get("/api/catalog/products").json()["products"] == []


def test_a_row_with_a_nul_character_is_a_rejected_row(api: httpx.Client) -> None:
    """PostgreSQL text cannot hold NUL: such a row was a 500 there; now the report names it."""
    body = [{"id": "p\x001", "name": "Shirt"}, {"id": "p2", "name": "Hat\x00"}, {"id": "p3", "name": "Cap"}]
    answer = api.put("/api/catalog/products", json=body)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["rows"], report["imported"], report["rejected"]) == (3, 1, 2)
    assert [(p["where"], p["reason"]) for p in report["problems"]] == [
        ("item 0", "id must not contain a NUL (\\u0000) character"),
        ("item 1", "name must not contain a NUL (\\u0000) character"),
    ]
    lines = api.put(
        "/api/catalog/places",
        content='{"id": "x\\u0000", "name": "Shop", "latitude": 1, "longitude": 2}\n',
        headers={"Content-Type": "application/x-ndjson"},
    ).json()
    assert (lines["rejected"], lines["problems"][0]["where"]) == (1, "line 1")
    assert [p["id"] for p in api.get("/api/catalog/products").json()["products"]] == ["p3"]
