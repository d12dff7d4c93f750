"""Workspace secrets at rest: the workspace settings document, sealed with Fernet.

A workspace's settings hold its SMTP password, its DKIM, FCM, APNs and VAPID private keys
and its link-signing secret. The whole JSON document is stored sealed, as
`nf1:` + a Fernet token (AES-128-CBC with HMAC-SHA256, from `cryptography`), so a copy of
the database (a backup, a replica, a dump attached to a ticket) does not give them away.

Where the key comes from, first match wins:

- `NUDGEFLOW_SECRET_KEY`: one or more Fernet keys, comma-separated. The first seals; any
  of them opens. To rotate: put a new key first, run `nudgeflow secrets reseal`, then drop
  the old one. `nudgeflow secrets new-key` prints a fresh key.
- a SQLite database file: the key file beside it, `<database file>.key`, made (mode 0600)
  on the first write of a secret. Back it up apart from the database: the database alone
  cannot open its secrets, which is the point, and without the key file nobody can.
- otherwise (PostgreSQL with no key set): documents are stored as
  they are, and `serve` warns.

A document stored before sealing existed (or without a key) is read as it is and sealed
on its next write, or at once by `nudgeflow secrets reseal`. A sealed document that no key
here opens raises SecretKeyError: settings are never read as empty, since the next write
would then replace the secrets with nothing.

The box travels with the database handle (a SQLAlchemy execution option set by
store/database.py), so every reader and writer of workspace settings finds it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from nudgeflow.errors import StoreError

PREFIX = "nf1:"
OPTION = "nudgeflow_secrets"  # the execution option that carries the box


class SecretKeyError(StoreError, RuntimeError):
    """A key that is malformed or missing, or a sealed document that no key here opens."""


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _fernet(key: str, where: str) -> Fernet:
    try:
        return Fernet(key.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        # The message names where the key came from, never the key.
        raise SecretKeyError(
            f"{where} is not a Fernet key (32 url-safe base64-encoded bytes; `nudgeflow secrets new-key` makes one)"
        ) from exc


class SecretBox:
    """Seals and opens settings documents with the keys of one database."""

    def __init__(self, keys: Sequence[str] = (), key_file: Path | None = None) -> None:
        self._given = [_fernet(k, f"NUDGEFLOW_SECRET_KEY (key {i + 1})") for i, k in enumerate(keys)]
        self.key_file = None if self._given else key_file
        self._from_file: Fernet | None = None

    @classmethod
    def for_database(cls, sqlite_file: str | None, secret_key: str | None) -> SecretBox:
        keys = [k for k in (secret_key or "").split(",") if k.strip()]
        key_file = Path(sqlite_file + ".key") if sqlite_file else None  # in-memory SQLite is refused earlier
        return cls(keys, key_file)

    @property
    def seals(self) -> bool:
        """Whether documents written through this box are sealed."""
        return bool(self._given) or self.key_file is not None

    @property
    def source(self) -> str:
        if self._given:
            return "NUDGEFLOW_SECRET_KEY"
        return f"the key file {self.key_file}" if self.key_file is not None else "no key"

    @staticmethod
    def is_sealed(stored: str | None) -> bool:
        return bool(stored and stored.startswith(PREFIX))

    def seal(self, document: str) -> str:
        keys = self._keys(create=True)
        if keys is None:
            return document
        return PREFIX + keys.encrypt(document.encode("utf-8")).decode("ascii")

    def open(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before sealing, or without a key
        keys = self._keys(create=False)
        if keys is None:
            raise SecretKeyError(
                "workspace settings are sealed, and this server has no key to open them: set NUDGEFLOW_SECRET_KEY"
                + (f" or restore the key file {self.key_file}" if self.key_file is not None else "")
            )
        try:
            return keys.decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretKeyError(
                f"workspace settings are sealed with a key other than {self.source}: "
                "set NUDGEFLOW_SECRET_KEY to the key they were sealed with "
                "(old keys may follow the new one, comma-separated)"
            ) from exc

    def _keys(self, *, create: bool) -> MultiFernet | None:
        if self._given:
            return MultiFernet(self._given)
        if self.key_file is None:
            return None
        if self._from_file is None:
            self._from_file = self._load_key_file(create)
            if self._from_file is None:
                return None
        return MultiFernet([self._from_file])

    def _load_key_file(self, create: bool) -> Fernet | None:
        assert self.key_file is not None
        if create and not self.key_file.exists():
            key = new_key()
            try:
                # O_EXCL: of two processes making the file at once, one writes, both read it.
                fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as out:
                    out.write(key + "\n")
        try:
            text = self.key_file.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretKeyError(f"cannot read the key file {self.key_file}: {exc.strerror}") from exc
        return _fernet(text, f"the key file {self.key_file}")


_PLAIN = SecretBox()


def box_of(conn: Any) -> SecretBox:
    """The box of the database `conn` belongs to (one that stores as is when it has none)."""
    box = conn.get_execution_options().get(OPTION)
    return box if isinstance(box, SecretBox) else _PLAIN
