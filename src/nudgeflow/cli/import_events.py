"""`nudgeflow import`: historical events, Segment-shaped JSON Lines."""

from __future__ import annotations

from typing import Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings, open_engine


def import_events(
    file: Annotated[str, typer.Argument(help="A JSON Lines file of Segment messages, or - for standard input.")],
    write_key: Annotated[
        str, typer.Option("--write-key", envvar="NUDGEFLOW_WRITE_KEY", help="The workspace's write key.")
    ],
    database: DatabaseOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Events per transaction.")] = 1000,
) -> None:
    """Load historical events (Segment-shaped JSON Lines); bad lines are reported and skipped."""
    from nudgeflow.ingest.importer import import_file

    settings = load_settings(database)
    engine = open_engine(settings)
    try:
        report = import_file(
            engine,
            file,
            write_key,
            batch_size=batch_size,
            console=err,
            max_event_bytes=settings.max_event_bytes,
            max_future_seconds=settings.ingest_max_future_seconds,
        )
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if report.bad_lines:
        raise typer.Exit(2)
