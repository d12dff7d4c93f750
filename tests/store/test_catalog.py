"""The product and place catalog: CSV, JSON and JSON Lines imports, bad rows, upserts."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.store import catalog
from tests.support import make_workspace

PRODUCTS_CSV = """\
id,name,price,currency,image,url,category,stock,color,size
p1,Linen shirt,49.90,eur,https://x/p1.jpg,https://x/p1,shirts,3,blue,M
p2,Wool sweater,89,EUR,,,knitwear,,grey,
p3,,10,EUR,,,shirts,1,,
p4,Socks,cheap,EUR,,,socks,1,,
p5,Scarf,15,EURO,,,accessories,2,,
p6,Belt,20,USD,,,accessories,1.5,,
"""


def test_csv_import_keeps_good_rows_and_reports_bad_ones(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        report = catalog.import_text(conn, ws, "products", PRODUCTS_CSV, 1000, filename="products.csv")
    assert (report.rows, report.imported, report.created, report.updated) == (6, 2, 2, 0)
    assert [(p.where, p.id) for p in report.problems] == [
        ("line 4", "p3"),
        ("line 5", "p4"),
        ("line 6", "p5"),
        ("line 7", "p6"),
    ]
    reasons = [p.reason for p in report.problems]
    assert reasons[0] == "name is missing"
    assert "price must be a number" in reasons[1]
    assert "currency" in reasons[2] and "whole number" in reasons[3]
    with engine.connect() as conn:
        p1 = catalog.get_item(conn, ws, "products", "p1")
        p2 = catalog.get_item(conn, ws, "products", "p2")
    assert p1 is not None and p2 is not None
    assert p1["price"] == 49.9 and p1["currency"] == "EUR" and p1["stock"] == 3
    assert p1["attributes"] == {"color": "blue", "size": "M"}
    assert p2["stock"] is None and p2["image"] is None and p2["attributes"] == {"color": "grey"}


def test_json_array_and_json_lines(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    array = (
        '[{"id": "p1", "name": "Shirt", "price": 10, "stock": 0, "tags": ["a"], "attributes": {"fit": "slim"}},'
        ' {"id": "p2"}, 7]'
    )
    lines = (
        '{"id": "s1", "name": "Store", "latitude": 40.7, "longitude": -74, "address": "5th Ave"}\n\n'
        '{"id": "s2", "name": "Bad", "latitude": 95, "longitude": 0}\n{oops\n'
    )
    with engine.begin() as conn:
        products = catalog.import_text(conn, ws, "products", array, 1)
        places = catalog.import_text(conn, ws, "places", lines, 1)
    assert products.imported == 1
    assert [(p.where, p.reason) for p in products.problems] == [
        ("item 1", "name is missing"),
        ("item 2", "a row is an object, not int"),
    ]
    assert places.imported == 1 and [p.where for p in places.problems] == ["line 3", "line 4"]
    assert "latitude" in places.problems[0].reason and "not JSON" in places.problems[1].reason
    with engine.connect() as conn:
        p1 = catalog.get_item(conn, ws, "products", "p1")
        s1 = catalog.get_item(conn, ws, "places", "s1")
    assert p1 is not None and p1["attributes"] == {"fit": "slim", "tags": ["a"]} and p1["stock"] == 0
    assert s1 is not None and (s1["latitude"], s1["longitude"], s1["address"]) == (40.7, -74.0, "5th Ave")


def test_upsert_replaces_by_id_and_workspaces_stay_apart(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    other = make_workspace(engine, "other").workspace_id
    with engine.begin() as conn:
        catalog.import_text(conn, ws, "products", '[{"id": "p1", "name": "Old", "price": 5, "color": "red"}]', 1)
        again = catalog.import_text(
            conn,
            ws,
            "products",
            '[{"id": "p1", "name": "New", "price": 6}, {"id": "p2", "name": "Two"}, {"id": "p2", "name": "Two again"}]',
            2,
        )
        catalog.import_text(conn, other, "products", '[{"id": "p1", "name": "Theirs"}]', 3)
    assert (again.imported, again.created, again.updated) == (3, 1, 2)
    with engine.connect() as conn:
        items = catalog.list_items(conn, ws, "products")
        assert catalog.count_items(conn, ws, "products") == 2
        assert catalog.get_items(conn, ws, "products", ["p2", "zz"])["p2"]["name"] == "Two again"
        assert catalog.list_items(conn, ws, "products", after="p1")[0]["id"] == "p2"
    assert [(i["id"], i["name"], i["price"], i["attributes"]) for i in items] == [
        ("p1", "New", 6.0, {}),
        ("p2", "Two again", None, {}),
    ]
    with engine.begin() as conn:
        assert catalog.delete_item(conn, ws, "products", "p1") is True
        assert catalog.delete_item(conn, ws, "products", "p1") is False
    with engine.connect() as conn:
        assert catalog.get_item(conn, other, "products", "p1")["name"] == "Theirs"  # type: ignore[index]
        assert catalog.get_item(conn, ws, "products", "p1") is None


def test_many_rows_in_chunks_with_progress(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    text = "id,name,price\n" + "".join(f"p{i},Item {i},{i}\n" for i in range(1234))
    seen: list[int] = []
    with engine.begin() as conn:
        report = catalog.import_text(conn, ws, "products", text, 1, on_progress=seen.append)
    assert report.imported == 1234 and seen[-1] == 1234 and seen == sorted(seen)
    with engine.connect() as conn:
        assert catalog.count_items(conn, ws, "products") == 1234


@pytest.mark.parametrize("text,fmt", [("[1,", None), ('{"items": 3}', "json")])
def test_unreadable_files(engine: Any, text: str, fmt: str | None) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn, pytest.raises(catalog.CatalogError):
        catalog.import_text(conn, ws, "products", text, 1, fmt=fmt)


def test_unknown_kind(engine: Any) -> None:
    with engine.connect() as conn, pytest.raises(catalog.CatalogError):
        catalog.list_items(conn, "ws", "stores")


def test_detect_format() -> None:
    assert catalog.detect_format("id,name", "x.csv") == "csv"
    assert catalog.detect_format('[{"id": 1}]') == "json"
    assert catalog.detect_format('{"id": 1}\n{"id": 2}') == "jsonl"
    assert catalog.detect_format("id,name\n") == "csv"


def test_a_row_holding_a_nul_character_is_a_bad_row_on_every_backend(engine: Any) -> None:
    # PostgreSQL text cannot hold U+0000: the row is reported (`nudgeflow catalog import`
    # and the admin API alike), the others are imported.
    ws = make_workspace(engine).workspace_id
    text = (
        '[{"id": "p1", "name": "Shirt\\u0000", "price": 10}, {"id": "p2", "name": "Sweater", "price": 20},'
        ' {"id": "p3", "name": "Socks", "price": 5, "attributes": {"fit": "x\\u0000"}}]'
    )
    with engine.begin() as conn:
        report = catalog.import_text(conn, ws, "products", text, 1000, filename="products.json")
    assert (report.rows, report.imported) == (3, 1)
    assert [(p.id, p.reason) for p in report.problems] == [
        ("p1", "name must not contain a NUL (\\u0000) character"),
        ("p3", "attributes.fit must not contain a NUL (\\u0000) character"),
    ]
