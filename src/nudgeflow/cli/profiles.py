"""`nudgeflow profiles export|erase`: a person's data from the command line, as the admin
API gives it (GET /api/profiles/{id}/export, DELETE /api/profiles/{id})."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, fail, now_ms, open_workspace

if TYPE_CHECKING:
    from sqlalchemy import Engine

profiles_app = typer.Typer(help="A person's data: export everything held, or erase it.", no_args_is_help=True)

_Ref = Annotated[
    str,
    typer.Argument(
        metavar="ID", help="A profile id, userId or anonymousId (a merged-away profile id finds the person)."
    ),
]


def _resolve(engine: Engine, workspace: str, ref: str) -> str:
    from nudgeflow.store.profiles import resolve_profile_id

    if "\x00" in ref:
        raise fail("ID: a NUL character is not allowed", 2)
    with engine.connect() as conn:
        profile_id = resolve_profile_id(conn, workspace, ref)
    if profile_id is None:
        raise fail(f"no profile with id, userId or anonymousId {ref!r} in workspace {workspace}")
    return profile_id


@profiles_app.command("export")
def profiles_export(
    ref: _Ref,
    workspace: WorkspaceOpt,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON here instead of to stdout.")
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Everything held about the person, as one JSON document (the admin API's export),
    written as it is read: a long history is never held whole."""
    from nudgeflow.store.privacy import export_chunks

    engine = open_workspace(database, workspace)
    try:
        profile_id = _resolve(engine, workspace, ref)
        with engine.connect() as conn:
            chunks = export_chunks(conn, workspace, profile_id)
            if chunks is None:  # erased between the lookup and the read
                raise fail(f"no profile {ref!r}")
            if output is None:
                out = sys.stdout.buffer
                for chunk in chunks:
                    out.write(chunk)
                out.write(b"\n")
                out.flush()
                return
            try:
                with output.open("wb") as file:
                    for chunk in chunks:
                        file.write(chunk)
                    file.write(b"\n")
            except OSError as exc:
                raise fail(f"--output: cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        engine.dispose()
    typer.echo(f"exported {profile_id} to {output}", err=True)


@profiles_app.command("erase")
def profiles_erase(
    ref: _Ref,
    workspace: WorkspaceOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Erase without asking.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Erase the person and everything derived from them (as DELETE /api/profiles/{id}).

    Suppressions of their addresses are kept with the address replaced by a hash, so the address
    stays blocked without being held."""
    from nudgeflow.store.privacy import erase_person

    engine = open_workspace(database, workspace)
    try:
        profile_id = _resolve(engine, workspace, ref)
        if not yes:
            # Asked on stderr and read as a line, so stdout holds only the result (and no
            # terminal, or an empty answer, means no).
            typer.echo(
                f"Erase profile {profile_id} ({ref}) and all its data? This cannot be undone [y/N] ", err=True, nl=False
            )
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                typer.echo("not erased", err=True)
                raise typer.Exit(1)
        with engine.begin() as conn:
            done = erase_person(conn, workspace, profile_id, now_ms())
    finally:
        engine.dispose()
    counts = ", ".join(f"{table} {n}" for table, n in sorted(done.deleted.items()) if n)
    hashed = done.hashed.get("suppressions", 0)
    typer.echo(
        f"erased {done.profile_id}: deleted {counts or 'nothing else'}"
        + (f"; {hashed} suppression(s) kept with the address hashed" if hashed else "")
    )
