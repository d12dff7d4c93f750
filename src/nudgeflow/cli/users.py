"""`nudgeflow users create|list|reset-password|disable|enable|set-role`: the web console's users.

A password is read from a prompt (typed twice, never echoed) or, with --password-stdin, from
the first line of standard input (for scripts); it is never printed or logged. Setting a new
password or disabling a user signs them out everywhere (their sessions are revoked).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, now_ms, open_workspace, plural

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection

T = TypeVar("T")

users_app = typer.Typer(help="The web console's users: sign-in, roles (viewer, editor, admin).", no_args_is_help=True)

RoleOpt = Annotated[
    str, typer.Option("--role", help="viewer (reads), editor (changes all but users, keys, secrets) or admin.")
]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
]


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        return password.removesuffix("\r")
    try:
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    except typer.Abort as exc:
        raise fail("no password given") from exc


def _run(database: str | None, workspace: str, job: Callable[[Connection], T]) -> T:
    from nudgeflow.store.console_users import ConsoleUserError

    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            return job(conn)
    except ConsoleUserError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()


@users_app.command("create")
def users_create(
    email: str,
    workspace: WorkspaceOpt,
    role: RoleOpt = "viewer",
    password_stdin: PasswordStdinOpt = False,
    database: DatabaseOpt = None,
) -> None:
    """Create a console user of the workspace; the password is asked for (never echoed)."""
    from nudgeflow.store import console_users as store

    try:
        store.check_role(role)
        email = store.normalize_email(email)
    except store.ConsoleUserError as exc:
        raise fail(str(exc)) from exc
    password = read_password(password_stdin)
    user = _run(database, workspace, lambda conn: store.create_user(conn, workspace, email, role, password, now_ms()))
    Console().print(f"created {user.email} ({user.role}) in {workspace}: {user.id}")


@users_app.command("list")
def users_list(
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """The workspace's console users: email, role, disabled or not."""
    from nudgeflow.store import console_users as store

    users = _run(database, workspace, lambda conn: store.list_users(conn, workspace))
    out = Console()
    for user in users:
        if as_json:
            print(json.dumps({"id": user.id, "email": user.email, "role": user.role, "disabled": user.disabled}))
        else:
            out.print(f"{user.email:<40} {user.role:<7} {'disabled' if user.disabled else 'active'}  {user.id}")
    if not as_json:
        err.print(plural(len(users), "user"))


@users_app.command("reset-password")
def users_reset_password(
    email: str, workspace: WorkspaceOpt, password_stdin: PasswordStdinOpt = False, database: DatabaseOpt = None
) -> None:
    """Set a user's new password (asked for, never echoed); signs them out everywhere."""
    from nudgeflow.store import console_users as store

    password = read_password(password_stdin)

    def job(conn: Connection) -> int:
        user = store.require_user(conn, workspace, email)
        return store.set_password(conn, workspace, user.id, password, now_ms())

    revoked = _run(database, workspace, job)
    Console().print(f"new password set for {email.strip().lower()}; {plural(revoked, 'session')} signed out")


@users_app.command("set-role")
def users_set_role(email: str, role: str, workspace: WorkspaceOpt, database: DatabaseOpt = None) -> None:
    """Change a user's role (viewer, editor or admin); it applies to their next request."""
    from nudgeflow.store import console_users as store

    def job(conn: Connection) -> None:
        user = store.require_user(conn, workspace, email)
        store.set_role(conn, workspace, user.id, role)

    _run(database, workspace, job)
    Console().print(f"{email.strip().lower()} is now {role}")


@users_app.command("disable")
def users_disable(email: str, workspace: WorkspaceOpt, database: DatabaseOpt = None) -> None:
    """Refuse the user's sign-ins and sign them out everywhere (the user is kept)."""
    from nudgeflow.store import console_users as store

    def job(conn: Connection) -> int:
        user = store.require_user(conn, workspace, email)
        return store.set_disabled(conn, workspace, user.id, True, now_ms())

    revoked = _run(database, workspace, job)
    Console().print(f"{email.strip().lower()} disabled; {plural(revoked, 'session')} signed out")


@users_app.command("enable")
def users_enable(email: str, workspace: WorkspaceOpt, database: DatabaseOpt = None) -> None:
    """Let a disabled user sign in again."""
    from nudgeflow.store import console_users as store

    def job(conn: Connection) -> None:
        user = store.require_user(conn, workspace, email)
        store.set_disabled(conn, workspace, user.id, False, now_ms())

    _run(database, workspace, job)
    Console().print(f"{email.strip().lower()} enabled")
