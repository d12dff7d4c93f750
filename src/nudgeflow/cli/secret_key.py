"""`nudgeflow secrets new-key|reseal|status`: the key that seals workspace secrets at rest."""

from __future__ import annotations

import typer

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings, open_engine

secrets_app = typer.Typer(
    help="Workspace secrets at rest: the key that seals them (README: Secrets at rest).",
    no_args_is_help=True,
)


@secrets_app.command("new-key")
def new_key() -> None:
    """Print a fresh key for NUDGEFLOW_SECRET_KEY (nothing is stored)."""
    from nudgeflow.store.secret_box import new_key as make_key

    print(make_key())


@secrets_app.command("status")
def status(database: DatabaseOpt = None) -> None:
    """Where the key comes from, and how many workspaces' settings are sealed."""
    from nudgeflow.store.secret_box import box_of
    from nudgeflow.store.workspace_settings import sealed_counts

    engine = open_engine(load_settings(database))
    try:
        with engine.connect() as conn:
            box = box_of(conn)
            sealed, unsealed = sealed_counts(conn)
    finally:
        engine.dispose()
    key = box.source if box.seals else "none: secrets are stored unsealed (set NUDGEFLOW_SECRET_KEY)"
    print(f"key: {key}")
    print(f"workspace settings: {sealed} sealed, {unsealed} unsealed")


@secrets_app.command("reseal")
def reseal(database: DatabaseOpt = None) -> None:
    """Rewrite every workspace's settings with the first key (after a rotation), sealing any stored unsealed."""
    from nudgeflow.store.secret_box import SecretKeyError, box_of
    from nudgeflow.store.workspace_settings import reseal_all

    engine = open_engine(load_settings(database))
    try:
        with engine.begin() as conn:
            if not box_of(conn).seals:
                raise fail("no key to seal with: set NUDGEFLOW_SECRET_KEY (`nudgeflow secrets new-key` makes one)")
            try:
                total, unsealed = reseal_all(conn)
            except SecretKeyError as exc:
                raise fail(str(exc)) from exc
            source = box_of(conn).source
    finally:
        engine.dispose()
    err.print(f"resealed {total} workspaces' settings with {source} ({unsealed} were unsealed)")
