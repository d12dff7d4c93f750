"""`nudgeflow db upgrade`: the database schema; `nudgeflow db partitions`: the event log's
partition count; `nudgeflow db single-engine`: back from engine workers to `--role all`
(docs/partitions.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings, now_ms
from nudgeflow.cli.status import DEFAULT_LEASE_TTL_MS

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = None) -> None:
    """Apply schema migrations (Alembic) up to the latest."""
    from nudgeflow.store import database as db

    settings = load_settings(database)
    engine = db.create_db_engine(settings.database_url)
    try:
        before = db.current_revision(engine)
        db.upgrade(engine)
        after = db.current_revision(engine)
    except Exception as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    err.print(f"schema: {before or 'empty'} -> {after}")


@db_app.command("partitions")
def db_partitions(
    count: Annotated[
        int | None,
        typer.Argument(help="The new partition count, 1 to 4096; without it, the count is shown.", show_default=False),
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Show the event log's partition count P, or choose it before the first event.

    P is how many partitions people are spread over for engine workers (default 64,
    docs/partitions.md): at most P workers can share the work. It is chosen once, on a new
    database, with every nudgeflow process stopped: each process reads it once at start, and
    once the log holds an event, people are in their partitions for good.
    """
    from nudgeflow.model.partitions import PartitionCountError
    from nudgeflow.store import database as db
    from nudgeflow.store import partition_leases as leases
    from nudgeflow.store import partition_log

    engine = db.create_db_engine(load_settings(database).database_url)
    try:
        if count is None:
            with engine.connect() as conn:
                err.print(f"partitions: {partition_log.partition_count(conn)}")
            return
        with engine.begin() as conn:
            now = now_ms()
            live = sum(1 for w in leases.workers(conn) if w.alive(now, DEFAULT_LEASE_TTL_MS))
            had = partition_log.set_partition_count(conn, count, live)
    except (PartitionCountError, partition_log.PartitionCountLocked) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    err.print(f"partitions: {had} -> {count}")


@db_app.command("single-engine")
def db_single_engine(database: DatabaseOpt = None) -> None:
    """Go back from partitioned engine workers (`serve --role engine`) to the single engine
    of `serve --role all`.

    Stop every engine worker first (api and dispatch processes may go on). Refused while a
    worker runs, or while any partition holds an event the workers have not decided: run
    them until `nudgeflow status` shows no lag, then stop them. The single engine then
    starts after the last event, and engine workers started later take over from it as
    they did the first time (docs/partitions.md).
    """
    from nudgeflow.store import database as db
    from nudgeflow.store import engine_lock, partition_work

    engine = db.create_db_engine(load_settings(database).database_url)
    try:
        with engine.connect() as conn:
            if not partition_work.partitioned(conn):
                err.print("this database runs the single engine already: nothing to do")
                return
        try:
            lock = engine_lock.acquire(engine, now_ms())
        except engine_lock.WorkersRunning as exc:
            raise fail("engine workers (serve --role engine) are running on this database: stop them first") from exc
        try:
            with engine.begin() as conn:
                done = partition_work.hand_back(conn, now_ms())
        finally:
            lock.release()
    except (engine_lock.EngineLocked, partition_work.HandBackRefused) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    err.print(
        f"back to the single engine: its cursor starts after event {done.cursor_seq:,}"
        f" ({done.partitions} partition positions given up); `serve --role all` may run now"
    )
