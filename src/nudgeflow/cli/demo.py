"""`nudgeflow demo` (the demo itself is nudgeflow/demo/)."""

from __future__ import annotations

from typing import Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, fail


def demo(
    users: Annotated[int, typer.Option(min=1, help="How many people to simulate.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed for the generated traffic.")] = 7,
    database: DatabaseOpt = None,
    journeys: Annotated[
        list[str] | None,
        typer.Option("--journeys", "-j", help="Journey files or directories to publish (default: examples/journeys)."),
    ] = None,
    days: Annotated[float, typer.Option(min=3, help="Virtual days the traffic and the fast-forward cover.")] = 40.0,
    keep_serving: Annotated[
        bool,
        typer.Option(
            "--keep-serving",
            help="Keep the demo server up afterwards, to browse its dev inbox (/dev/inbox); Ctrl-C to stop.",
        ),
    ] = False,
) -> None:
    """Generate shop and app traffic, ingest it over HTTP, fast-forward the example journeys
    through it on a virtual clock, and show what was stored and what each journey sent."""
    # The demo runs a whole server (web, runtime, channels): loaded only for this command.
    from nudgeflow.demo.run import DemoError, run_demo
    from nudgeflow.store.database import DatabaseError

    try:
        run_demo(users=users, seed=seed, database_url=database, journeys=journeys, days=days, keep_serving=keep_serving)
    except (DemoError, DatabaseError) as exc:
        raise fail(str(exc)) from exc
