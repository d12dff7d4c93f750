"""The web console's users: email, role and an Argon2id password hash, per workspace.

Passwords are never stored or returned: only argon2-cffi's encoded hash (algorithm,
parameters, salt and digest in one string) is kept. Disabling a user or setting a new
password revokes their sessions (store/console_sessions.py), in the same transaction.
"""

from __future__ import annotations

import functools
import re
import secrets
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, select, update

from nudgeflow.errors import StoreError
from nudgeflow.store import sql
from nudgeflow.store.console_sessions import revoke_user_sessions
from nudgeflow.store.schema import console_users

VIEWER, EDITOR, ADMIN = "viewer", "editor", "admin"
ROLES = (VIEWER, EDITOR, ADMIN)  # in order of what they may do
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # hashing a megabyte would be a cheap way to burn our CPU
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HASHER = PasswordHasher()  # argon2-cffi's defaults: Argon2id, RFC 9106's low-memory profile


class ConsoleUserError(StoreError, ValueError):
    """A user operation that cannot be done, with the reason."""


@dataclass(frozen=True)
class ConsoleUserRow:
    id: str
    workspace_id: str
    email: str
    role: str
    created_at_ms: int
    disabled_at_ms: int | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at_ms is not None


def role_rank(role: str) -> int:
    return ROLES.index(role)


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ConsoleUserError(f"{email!r} is not an email address")
    return email


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConsoleUserError(f"a role is {', '.join(ROLES)}, not {role!r}")
    return role


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConsoleUserError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConsoleUserError(f"a password has at most {MAX_PASSWORD} characters")
    return _HASHER.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn_a_hash(password: str) -> None:
    """Spend what a verification costs, for an unknown email: the answer's time then tells
    no one which emails have a user."""
    password_matches(_dummy_hash(), password[:MAX_PASSWORD])


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def _row(r: object) -> ConsoleUserRow:
    m = r._mapping  # type: ignore[attr-defined]
    return ConsoleUserRow(m["id"], m["workspace_id"], m["email"], m["role"], m["created_at_ms"], m["disabled_at_ms"])


_COLUMNS = (
    console_users.c.id,
    console_users.c.workspace_id,
    console_users.c.email,
    console_users.c.role,
    console_users.c.created_at_ms,
    console_users.c.disabled_at_ms,
)


def create_user(
    conn: Connection, workspace_id: str, email: str, role: str, password: str, now_ms: int
) -> ConsoleUserRow:
    email = normalize_email(email)
    check_role(role)
    if find_user(conn, workspace_id, email) is not None:
        raise ConsoleUserError(f"the workspace already has a user {email!r}")
    user_id = "cu_" + uuid.uuid4().hex[:16]
    # A create of the same e-mail in another transaction may have found no user either: the
    # insert waits for it (PostgreSQL) and, when it committed, this one is refused as above.
    if not sql.insert_one(
        conn,
        "console_users",
        ("id", "workspace_id", "email", "role", "password_hash", "created_at_ms"),
        (user_id, workspace_id, email, role, hash_password(password), now_ms),
        conflict="workspace_id, email",
    ):
        raise ConsoleUserError(f"the workspace already has a user {email!r}")
    return ConsoleUserRow(user_id, workspace_id, email, role, now_ms, None)


def find_user(conn: Connection, workspace_id: str, email: str) -> ConsoleUserRow | None:
    row = conn.execute(
        select(*_COLUMNS).where(console_users.c.workspace_id == workspace_id, console_users.c.email == email)
    ).first()
    return None if row is None else _row(row)


def get_user(conn: Connection, workspace_id: str, user_id: str) -> ConsoleUserRow | None:
    row = conn.execute(
        select(*_COLUMNS).where(console_users.c.workspace_id == workspace_id, console_users.c.id == user_id)
    ).first()
    return None if row is None else _row(row)


def require_user(conn: Connection, workspace_id: str, ref: str) -> ConsoleUserRow:
    """The workspace's user with this id (cu_…) or email, else ConsoleUserError."""
    user = get_user(conn, workspace_id, ref) if ref.startswith("cu_") else None
    if user is None and "@" in ref:
        user = find_user(conn, workspace_id, ref.strip().lower())
    if user is None:
        raise ConsoleUserError(f"the workspace has no user {ref!r}")
    return user


def users_by_email(conn: Connection, email: str) -> list[tuple[ConsoleUserRow, str]]:
    """Every enabled user with this email, in any workspace, with their password hash (sign-in)."""
    rows = conn.execute(
        select(*_COLUMNS, console_users.c.password_hash)
        .where(console_users.c.email == email, console_users.c.disabled_at_ms.is_(None))
        .order_by(console_users.c.created_at_ms)
    )
    return [(_row(r), r.password_hash) for r in rows]


def list_users(conn: Connection, workspace_id: str) -> list[ConsoleUserRow]:
    rows = conn.execute(
        select(*_COLUMNS).where(console_users.c.workspace_id == workspace_id).order_by(console_users.c.email)
    )
    return [_row(r) for r in rows]


def set_password(conn: Connection, workspace_id: str, user_id: str, password: str, now_ms: int) -> int:
    """A new password; returns how many of the user's sessions were revoked."""
    conn.execute(
        update(console_users)
        .where(console_users.c.workspace_id == workspace_id, console_users.c.id == user_id)
        .values(password_hash=hash_password(password))
    )
    return revoke_user_sessions(conn, user_id, now_ms)


def set_role(conn: Connection, workspace_id: str, user_id: str, role: str) -> None:
    check_role(role)
    conn.execute(
        update(console_users)
        .where(console_users.c.workspace_id == workspace_id, console_users.c.id == user_id)
        .values(role=role)
    )


def set_disabled(conn: Connection, workspace_id: str, user_id: str, disabled: bool, now_ms: int) -> int:
    """Disable (revoking the user's sessions; returns how many) or enable a user."""
    conn.execute(
        update(console_users)
        .where(console_users.c.workspace_id == workspace_id, console_users.c.id == user_id)
        .values(disabled_at_ms=now_ms if disabled else None)
    )
    return revoke_user_sessions(conn, user_id, now_ms) if disabled else 0
