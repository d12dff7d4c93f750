"""`nudgeflow export exposures|messages|conversions`: a workspace's measurement facts as CSV or
Parquet for a warehouse, as GET /api/exports/{kind} gives them (store/exports.py)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, open_workspace, plural


class ExportKind(StrEnum):
    exposures = "exposures"
    messages = "messages"
    conversions = "conversions"


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


def _instant(text: str | None, option: str) -> int | None:
    from nudgeflow.model.iso_time import parse_instant

    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise fail(f"{option}: {exc}", 2) from exc


def export(
    kind: Annotated[ExportKind, typer.Argument(help="exposures, messages or conversions (docs/measurement.md).")],
    workspace: WorkspaceOpt,
    from_: Annotated[
        str | None, typer.Option("--from", help="From this date or ISO date-time (UTC unless it says), included.")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Until this date or ISO date-time, excluded.")] = None,
    format_: Annotated[
        ExportFormat, typer.Option("--format", help="csv, or parquet (needs pyarrow).")
    ] = ExportFormat.csv,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of to stdout (required for Parquet).")
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Export exposures (who was assigned what, when), messages or conversions, oldest first."""
    from nudgeflow.store import exports

    from_ms, to_ms = _instant(from_, "--from"), _instant(to, "--to")
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise fail("--to must be after --from", 2)
    if format_ is ExportFormat.parquet and output is None:
        raise fail("--format parquet writes a binary file: give --output PATH", 2)
    engine = open_workspace(database, workspace)
    columns = exports.COLUMNS[kind.value]
    try:
        with engine.connect() as conn:
            chunks = exports.rows(conn, workspace, kind.value, from_ms, to_ms)
            if format_ is ExportFormat.parquet:
                assert output is not None
                with output.open("wb") as binary:
                    count = exports.write_parquet(binary, columns, chunks)
            elif output is not None:
                with output.open("w", newline="", encoding="utf-8") as text:
                    count = exports.write_csv(text, columns, chunks)
            else:
                count = exports.write_csv(sys.stdout, columns, chunks)
    except exports.ExportFormatError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if output is not None:
        err.print(f"{plural(count, 'row')} of {kind.value} written to {output}")
