"""The product and place catalog: import from CSV or JSON, list, get, delete.

Templates look products up here (name, price, image, url of an id seen in an event) and
the recommendations read stock and category from it; places give the nearest store.

Import formats (see docs/personalization.md):

- CSV with a header row;
- a JSON array of objects;
- JSON Lines (one object per line).

Each row is checked on its own: a bad row is reported with where it is (the CSV or JSON
Lines line number, or the array index) and why, and the rest are imported. Rows are
upserted by id, so importing the same file twice changes nothing, and a later import of
a product replaces it whole (its attributes too). Columns other than the known ones are
kept in `attributes` (a JSON object) and reach templates as `product.attributes.color`.

Every function takes a Connection and leaves committing to the caller.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import orjson
from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from nudgeflow.errors import StoreError
from nudgeflow.model.nul import NUL_MESSAGE, nul_path
from nudgeflow.store.schema import catalog_places, catalog_products

Kind = Literal["products", "places"]
KINDS: tuple[str, ...] = ("products", "places")
TABLES = {"products": catalog_products, "places": catalog_places}
FIELDS: dict[str, tuple[str, ...]] = {
    "products": ("id", "name", "price", "currency", "image", "url", "category", "stock"),
    "places": ("id", "name", "latitude", "longitude", "address"),
}
CHUNK = 500  # rows per INSERT … ON CONFLICT statement


class CatalogError(StoreError, ValueError):
    """A catalog operation that cannot be done (an unknown kind, an unreadable file)."""


class RowError(StoreError, ValueError):
    """One row that cannot be imported; the message says why."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    where: str  # "line 4" (CSV, JSON Lines) or "item 3" (a JSON array, counted from 0)
    reason: str
    id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"where": self.where, "reason": self.reason, "id": self.id}

    def format(self) -> str:
        return f"{self.where}: {self.reason}" + (f" (id {self.id!r})" if self.id else "")


@dataclass(slots=True)
class ImportReport:
    kind: str
    rows: int = 0  # rows read (good and bad)
    imported: int = 0  # rows written (created or replaced)
    created: int = 0
    updated: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "imported": self.imported,
            "created": self.created,
            "updated": self.updated,
            "rejected": len(self.problems),
            "problems": [p.as_dict() for p in self.problems],
        }


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise CatalogError(f"unknown catalog {kind!r}: products or places")
    return cast(Kind, kind)  # one of KINDS: checked above


# --- reading files ---------------------------------------------------------------------------


def detect_format(text: str, filename: str | None = None) -> str:
    """csv, json (an array) or jsonl, from the file's extension, else from its first character."""
    name = (filename or "").lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    return "csv"


def parse_rows(text: str, fmt: str) -> Iterator[tuple[str, Any]]:
    """(where, raw row) for each row of the text; an unreadable row comes as (where, RowError)."""
    text = text.lstrip("\ufeff")
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames is None:
            return
        header = [h.strip() for h in reader.fieldnames]
        if len(set(header)) != len(header):
            raise CatalogError("the CSV header names a column twice")
        reader.fieldnames = header
        for raw in reader:
            where = f"line {reader.line_num}"
            if None in raw:  # more cells than the header has columns
                yield where, RowError(f"{len(header) + len(raw[None])} cells for {len(header)} columns")
                continue
            if all((v or "").strip() == "" for v in raw.values()):
                continue  # a blank line
            yield where, raw
    elif fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield f"line {number}", RowError(f"not JSON: {exc}")
    elif fmt == "json":
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise CatalogError(f"not JSON: {exc}") from None
        if isinstance(doc, dict) and isinstance(doc.get("items"), list):
            doc = doc["items"]
        if not isinstance(doc, list):
            raise CatalogError("a JSON catalog is an array of objects (or JSON Lines, one object a line)")
        for index, item in enumerate(doc):
            yield f"item {index}", item
    else:
        raise CatalogError(f"unknown format {fmt!r}: csv, json or jsonl")


# --- checking rows ---------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _text(row: dict[str, Any], name: str, limit: int | None = None, required: bool = False) -> str | None:
    value = row.get(name)
    if _blank(value):
        if required:
            raise RowError(f"{name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(f"{name} must be text, not {type(value).__name__}")
    out = str(value).strip()
    if limit is not None and len(out) > limit:
        raise RowError(f"{name} is longer than {limit} characters")
    return out


def _number(row: dict[str, Any], name: str, required: bool = False) -> float | None:
    value: Any = row.get(name)
    if _blank(value):
        if required:
            raise RowError(f"{name} is missing")
        return None
    if isinstance(value, bool):
        raise RowError(f"{name} must be a number, not {value!r}")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise RowError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise RowError(f"{name} must be a finite number")
    return number


def _check_product(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": _text(row, "id", 200, required=True),
        "name": _text(row, "name", 500, required=True),
        "price": _number(row, "price"),
        "currency": _text(row, "currency"),
        "image": _text(row, "image"),
        "url": _text(row, "url"),
        "category": _text(row, "category", 200),
    }
    if out["price"] is not None and out["price"] < 0:
        raise RowError(f"price must not be negative, not {out['price']}")
    if out["currency"] is not None:
        currency = out["currency"].upper()
        if len(currency) != 3 or not currency.isalpha():
            raise RowError(f"currency must be a 3-letter ISO 4217 code, not {out['currency']!r}")
        out["currency"] = currency
    stock = _number(row, "stock")
    if stock is not None and stock != int(stock):
        raise RowError(f"stock must be a whole number, not {row.get('stock')!r}")
    out["stock"] = None if stock is None else int(stock)
    return out


def _check_place(row: dict[str, Any]) -> dict[str, Any]:
    lat = _number(row, "latitude", required=True)
    lon = _number(row, "longitude", required=True)
    assert lat is not None and lon is not None
    if not -90 <= lat <= 90:
        raise RowError(f"latitude must be between -90 and 90, not {lat}")
    if not -180 <= lon <= 180:
        raise RowError(f"longitude must be between -180 and 180, not {lon}")
    return {
        "id": _text(row, "id", 200, required=True),
        "name": _text(row, "name", 500, required=True),
        "latitude": lat,
        "longitude": lon,
        "address": _text(row, "address"),
    }


def check_row(kind: str, raw: Any) -> dict[str, Any]:
    """The row as table values (attributes as a dict), or RowError with the reason."""
    if not isinstance(raw, dict):
        raise RowError(f"a row is an object, not {type(raw).__name__}")
    where = nul_path(raw)
    if where is not None:  # PostgreSQL text cannot hold one
        raise RowError(f"{where or 'the row'} {NUL_MESSAGE}")
    row = {str(k).strip(): v for k, v in raw.items()}
    out = _check_product(row) if kind == "products" else _check_place(row)
    attributes: dict[str, Any] = {}
    given = row.get("attributes")
    if isinstance(given, dict):
        attributes.update(given)
    elif not _blank(given):
        raise RowError("attributes must be an object")
    for key, value in row.items():
        if key in FIELDS[kind] or key == "attributes" or key == "" or _blank(value):
            continue
        attributes[key] = value.strip() if isinstance(value, str) else value
    out["attributes"] = attributes
    return out


# --- writing ---------------------------------------------------------------------------------


def _upsert(conn: Connection, kind: str, values: list[dict[str, Any]]) -> None:
    table = TABLES[kind]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(values)
    columns = [c for c in FIELDS[kind] if c != "id"] + ["attributes", "updated_at_ms"]
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace_id", "id"], set_={c: stmt.excluded[c] for c in columns}
    )
    conn.execute(stmt)


def import_rows(
    conn: Connection,
    workspace_id: str,
    kind: str,
    rows: Iterable[tuple[str, Any]],
    now_ms: int,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Check and upsert rows given as (where, raw); bad rows are reported, the rest written.

    A row whose id appears again later in the same import is replaced by the later one
    (upsert order). `on_progress(n)` is called after each chunk with the rows read so far.
    """
    check_kind(kind)
    table = TABLES[kind]
    report = ImportReport(kind)
    pending: dict[str, dict[str, Any]] = {}

    def flush() -> None:
        if not pending:
            return
        ids = list(pending)
        existing = set(
            conn.execute(select(table.c.id).where(table.c.workspace_id == workspace_id, table.c.id.in_(ids))).scalars()
        )
        _upsert(conn, kind, list(pending.values()))
        report.imported += len(ids)
        report.updated += len(existing)
        report.created += len(ids) - len(existing)
        pending.clear()
        if on_progress is not None:
            on_progress(report.rows)

    for where, raw in rows:
        report.rows += 1
        if isinstance(raw, RowError):
            report.problems.append(RowProblem(where, str(raw)))
            continue
        try:
            values = check_row(kind, raw)
        except RowError as exc:
            found = raw.get("id") if isinstance(raw, dict) else None
            report.problems.append(RowProblem(where, str(exc), str(found) if not _blank(found) else None))
            continue
        values["attributes"] = orjson.dumps(values["attributes"]).decode()
        values["workspace_id"] = workspace_id
        values["updated_at_ms"] = now_ms
        if values["id"] in pending:  # the same id twice in one chunk: the later row wins
            flush()
        pending[values["id"]] = values
        if len(pending) >= CHUNK:
            flush()
    flush()
    if on_progress is not None:
        on_progress(report.rows)
    return report


def import_text(
    conn: Connection,
    workspace_id: str,
    kind: str,
    text: str,
    now_ms: int,
    fmt: str | None = None,
    filename: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a whole file's text (CSV, a JSON array or JSON Lines; detected when fmt is None)."""
    check_kind(kind)
    return import_rows(
        conn, workspace_id, kind, parse_rows(text, fmt or detect_format(text, filename)), now_ms, on_progress
    )


# --- reading ---------------------------------------------------------------------------------


def item_view(kind: str, row: Any) -> dict[str, Any]:
    out = {name: getattr(row, name) for name in FIELDS[kind]}
    try:
        attributes = orjson.loads(row.attributes) if row.attributes else {}
    except orjson.JSONDecodeError:
        attributes = {}
    out["attributes"] = attributes if isinstance(attributes, dict) else {}
    out["updated_at_ms"] = row.updated_at_ms
    return out


def list_items(
    conn: Connection,
    workspace_id: str,
    kind: str,
    *,
    limit: int = 100,
    after: str | None = None,
    category: str | None = None,
) -> list[dict[str, Any]]:
    """Items in id order; `after` is the last id of the previous page."""
    table = TABLES[check_kind(kind)]
    stmt = select(table).where(table.c.workspace_id == workspace_id)
    if after is not None:
        stmt = stmt.where(table.c.id > after)
    if category is not None and kind == "products":
        stmt = stmt.where(table.c.category == category)
    return [item_view(kind, r) for r in conn.execute(stmt.order_by(table.c.id).limit(limit))]


def count_items(conn: Connection, workspace_id: str, kind: str) -> int:
    table = TABLES[check_kind(kind)]
    return int(
        conn.execute(select(func.count()).select_from(table).where(table.c.workspace_id == workspace_id)).scalar_one()
    )


def get_item(conn: Connection, workspace_id: str, kind: str, item_id: str) -> dict[str, Any] | None:
    table = TABLES[check_kind(kind)]
    row = conn.execute(select(table).where(table.c.workspace_id == workspace_id, table.c.id == item_id)).one_or_none()
    return None if row is None else item_view(kind, row)


def get_items(conn: Connection, workspace_id: str, kind: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The items among `ids` that the catalog has, by id (one query per 500 ids)."""
    table = TABLES[check_kind(kind)]
    wanted = list(dict.fromkeys(str(i) for i in ids))
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start : start + CHUNK]
        for row in conn.execute(select(table).where(table.c.workspace_id == workspace_id, table.c.id.in_(part))):
            found[row.id] = item_view(kind, row)
    return found


def all_items(conn: Connection, workspace_id: str, kind: str) -> list[dict[str, Any]]:
    table = TABLES[check_kind(kind)]
    return [item_view(kind, r) for r in conn.execute(select(table).where(table.c.workspace_id == workspace_id))]


def delete_item(conn: Connection, workspace_id: str, kind: str, item_id: str) -> bool:
    table = TABLES[check_kind(kind)]
    done = conn.execute(delete(table).where(table.c.workspace_id == workspace_id, table.c.id == item_id))
    return bool(done.rowcount)


def delete_all(conn: Connection, workspace_id: str, kind: str) -> int:
    table = TABLES[check_kind(kind)]
    return int(conn.execute(delete(table).where(table.c.workspace_id == workspace_id)).rowcount or 0)


def catalog_version(conn: Connection, workspace_id: str) -> tuple[int, int]:
    """(product count, latest update) — changes whenever the product catalog does (caches key on it)."""
    row = conn.execute(
        select(func.count(), func.max(catalog_products.c.updated_at_ms)).where(
            catalog_products.c.workspace_id == workspace_id
        )
    ).one()
    return int(row[0]), int(row[1] or 0)


def category_items(conn: Connection, workspace_id: str, category: Any, limit: int) -> dict[str, dict[str, Any]]:
    """At most `limit` products of one category, by id."""
    rows = conn.execute(
        select(catalog_products)
        .where(catalog_products.c.workspace_id == workspace_id, catalog_products.c.category == category)
        .limit(limit)
    )
    return {r.id: item_view("products", r) for r in rows}
