"""`nudgeflow catalog import|list`: the product and place catalog."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, load_settings, now_ms, open_engine, plural

catalog_app = typer.Typer(help="The product and place catalog templates personalize with.", no_args_is_help=True)


CatalogKind = Annotated[str, typer.Argument(metavar="products|places", help="Which catalog.")]


def _catalog_kind(kind: str) -> str:
    if kind not in ("products", "places"):
        raise fail(f"unknown catalog {kind!r}: products or places", 2)
    return kind


@catalog_app.command("import")
def catalog_import(
    kind: CatalogKind,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV, a JSON array or JSON Lines (- for stdin).")],
    workspace: WorkspaceOpt,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, json or jsonl (default: from the file).")] = None,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Upsert products or places by id; bad rows are reported (line or item, reason), the rest imported."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from nudgeflow.store import catalog as store
    from nudgeflow.store.journeys import JourneyError, require_workspace

    _catalog_kind(kind)
    if fmt is not None and fmt not in ("csv", "json", "jsonl"):
        raise fail(f"unknown format {fmt!r}: csv, json or jsonl", 2)
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}") from exc
    try:
        rows = list(store.parse_rows(text, fmt or store.detect_format(text, file.name)))
    except store.CatalogError as exc:
        raise fail(f"nothing imported: {exc}") from exc
    engine = open_engine(load_settings(database))
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=as_json or not err.is_terminal,
            transient=True,
        ) as progress:
            task = progress.add_task(f"importing {kind}", total=len(rows))
            with engine.begin() as conn:
                require_workspace(conn, workspace)
                report = store.import_rows(
                    conn,
                    workspace,
                    kind,
                    rows,
                    now_ms(),
                    on_progress=lambda done: progress.update(task, completed=done),
                )
    except JourneyError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        for problem in report.problems:
            print(f"{file}: {problem.format()}", file=sys.stderr)
        print(
            f"{plural(report.rows, 'row')}: {report.imported} imported ({report.created} new, "
            f"{report.updated} updated), {len(report.problems)} rejected"
        )
    if report.problems and not report.imported:
        raise typer.Exit(1)


@catalog_app.command("list")
def catalog_list(
    kind: CatalogKind,
    workspace: WorkspaceOpt,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Products or places in id order, with the total count."""
    from nudgeflow.store import catalog as store
    from nudgeflow.store.journeys import JourneyError, require_workspace

    _catalog_kind(kind)
    engine = open_engine(load_settings(database))
    try:
        with engine.connect() as conn:
            require_workspace(conn, workspace)
            items = store.list_items(conn, workspace, kind, limit=limit)
            total = store.count_items(conn, workspace, kind)
    except JourneyError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(items))
        return
    if kind == "products":
        table = Table("id", "name", "price", "category", "stock")
        for item in items:
            price = "" if item["price"] is None else f"{item['price']:g} {item['currency'] or ''}".strip()
            table.add_row(
                item["id"],
                item["name"],
                price,
                item["category"] or "",
                "" if item["stock"] is None else str(item["stock"]),
            )
    else:
        table = Table("id", "name", "latitude", "longitude", "address")
        for item in items:
            table.add_row(
                item["id"], item["name"], f"{item['latitude']:g}", f"{item['longitude']:g}", item["address"] or ""
            )
    Console().print(table)
    shown = f"{len(items)} of {total}" if total > len(items) else str(total)
    err.print(f"{shown} {kind}" if total else f"no {kind} yet: `nudgeflow catalog import {kind} FILE --workspace ID`")
