"""Driver-level bulk statements shared by the store's writers, for SQLite and PostgreSQL.

The hot paths (the engine's writers, ingest's group commit) hand plain tuples to the driver's
executemany (psycopg pipelines them; sqlite3 steps one prepared statement): SQLAlchemy's
per-row parameter processing would cost more than the database's own work on a row.
Statement texts are cached so each stays prepared in the driver's statement cache; IN-lists
are padded to a few lengths for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

# Well under SQLite's bound-parameter limit, and a sane IN-list size for PostgreSQL.
CHUNK = 500
# Ingest's group commit reads and writes in larger chunks (store/ingest_writer.py).
INGEST_CHUNK = 900


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def mark(conn: Connection) -> str:
    """The driver's own placeholder: qmark for sqlite3, format for psycopg."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@lru_cache(maxsize=64)
def in_list(mark_: str, count: int) -> str:
    return "(" + ", ".join([mark_] * count) + ")"


def padded(values: Sequence[Any], chunk: int = CHUNK) -> list[Any]:
    """An IN-list padded with its last value to one of a few lengths (16, 32, ... chunk).

    A statement's text is its key in the driver's cache of prepared statements: lists of
    every length from 1 to chunk would each be parsed anew, and push the rest out.
    """
    size = 16
    while size < len(values):
        size *= 2
    return [*values, *[values[-1]] * (min(size, chunk) - len(values))]


@lru_cache(maxsize=128)
def insert_sql(
    table: str,
    columns: tuple[str, ...],
    mark_: str,
    conflict: str = "",
    update: tuple[str, ...] = (),
    update_where: str = "",
) -> str:
    """INSERT, with ON CONFLICT DO NOTHING or an upsert of `update` (same syntax on both);
    `update_where` (a condition on the stored row, `"{table}".column`) limits the upsert to
    the rows it holds for: the others are left as they are."""
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join([mark_] * len(columns))})'
    if conflict and update:
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in update)
        sql += f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
        if update_where:
            sql += f" WHERE {update_where}"
    elif conflict:
        sql += f" ON CONFLICT ({conflict}) DO NOTHING"
    return sql


def insert_rows(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    conflict: str = "",
    update: tuple[str, ...] = (),
    update_where: str = "",
) -> None:
    """Insert rows as the driver's executemany of plain tuples.

    Handing tuples to the driver skips SQLAlchemy's per-row parameter processing, which
    cost more than SQLite's own work on a row, and one statement text per table keeps it
    prepared in the driver's statement cache.
    """
    if rows:
        conn.exec_driver_sql(insert_sql(table, columns, mark(conn), conflict, update, update_where), list(rows))


def insert_one(conn: Connection, table: str, columns: tuple[str, ...], row: tuple[Any, ...], conflict: str) -> bool:
    """Insert one row unless its `conflict` key is taken; whether it was inserted. On
    PostgreSQL an insert of a key another open transaction inserted waits for it: this is
    how two transactions that both found no row agree on which one made it."""
    return bool(conn.exec_driver_sql(insert_sql(table, columns, mark(conn), conflict), row).rowcount)


def execute_many(conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`sql` is written with `?` placeholders; they become the driver's own."""
    if rows:
        if mark(conn) != "?":
            sql = sql.replace("?", mark(conn))
        conn.exec_driver_sql(sql, list(rows))


def select_in(
    conn: Connection, sql: str, values: Sequence[Any], before: tuple[Any, ...] = (), suffix: str = ""
) -> list[Any]:
    """Run `sql` (ending in `IN`, with `?` placeholders) over chunks of `values`."""
    m = mark(conn)
    base = sql.replace("?", m) if m != "?" else sql
    out: list[Any] = []
    for chunk in chunks(list(values)):
        ids = padded(chunk)
        out.extend(conn.exec_driver_sql(f"{base} {in_list(m, len(ids))}{suffix}", (*before, *ids)).all())
    return out


def existing_keys(
    conn: Connection, table: str, columns: tuple[str, ...], keys: Sequence[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """Which of these keys (values of `columns`, an index's leading columns) have a row in
    `table`: an indexed probe per key, as a join with a VALUES list. (A row-value `IN
    (VALUES ...)` would be the plain way to say it, but SQLite scans the table for it.)"""
    if not keys:
        return set()
    m = mark(conn)
    one = "(" + ", ".join([m] * len(columns)) + ")"
    picked = ", ".join(f"t.{c}" for c in columns)
    on = " AND ".join(f"t.{c} = v.column{i}" for i, c in enumerate(columns, 1))
    found: set[tuple[Any, ...]] = set()
    size = max(16, CHUNK // len(columns))
    for chunk in chunks(list(keys), size):
        rows = padded(chunk, size)
        values = ", ".join([one] * len(rows))
        statement = f"SELECT {picked} FROM (VALUES {values}) v JOIN {table} t ON {on}"
        found.update(tuple(r) for r in conn.exec_driver_sql(statement, tuple(v for row in rows for v in row)).all())
    return found
