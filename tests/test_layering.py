"""SQL lives in store/ only (docs/architecture.md): every other layer calls store's functions.

import-linter cannot say this: it sees `sqlalchemy` as one package, and the layers above
store do import it, for the `Engine` and `Connection` they pass to store and for its errors.
So this walks the source with `ast` and names, file:line, what builds or runs a statement
outside store/:

- importing from sqlalchemy anything but `Connection`, `Engine`, `make_url` and the errors
  of `sqlalchemy.exc` (`select`, `text`, `func`, `insert`… build statements), or
  `import sqlalchemy` itself (`sa.select` would pass unseen);
- calling `.execute`, `.executemany` or `.exec_driver_sql` (running a statement);
- importing `nudgeflow.store.schema` (its tables are what statements are built from) or
  `nudgeflow.store.sql` (its helpers build statement text from table and column names).
"""

from __future__ import annotations

import ast
from pathlib import Path

import nudgeflow

PACKAGE = Path(nudgeflow.__file__).parent
# Names the layers above store may take from sqlalchemy: what they hand to store, and what it raises.
ALLOWED = {
    "sqlalchemy": {"Connection", "Engine"},
    "sqlalchemy.engine": {"Connection", "Engine", "make_url"},
}
ALLOWED_MODULES = ("sqlalchemy.exc",)  # any name: errors, caught at the edges
RUNS_SQL = {"execute", "executemany", "exec_driver_sql"}
STORE_INTERNALS = {"nudgeflow.store.schema", "nudgeflow.store.sql"}
# Modules still holding SQL while the helpers that own them move it into store/ (issue 13,
# item 1). Empty this as they land: an entry that is clean again fails the second test.
PENDING: dict[str, str] = {}


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "store")


def _findings(path: Path) -> list[str]:
    return _findings_in(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())


def _findings_in(source: str, where: str) -> list[str]:
    tree = ast.parse(source, filename=where)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = node.module
            if module == "sqlalchemy" or module.startswith("sqlalchemy."):
                if module.startswith(ALLOWED_MODULES):
                    continue
                names = [a.name for a in node.names if a.name not in ALLOWED.get(module, set())]
                if names:
                    found.append((node.lineno, f"from {module} import {', '.join(names)}"))
            elif module in STORE_INTERNALS:
                found.append((node.lineno, f"from {module} import …"))
            elif module == "nudgeflow.store":
                names = [a.name for a in node.names if f"nudgeflow.store.{a.name}" in STORE_INTERNALS]
                if names:
                    found.append((node.lineno, f"from nudgeflow.store import {', '.join(names)}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sqlalchemy" or alias.name in STORE_INTERNALS:
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RUNS_SQL:
            found.append((node.lineno, f".{node.func.attr}(…)"))
    return [f"{where}:{line}: {what}" for line, what in sorted(found)]


def test_no_sql_outside_store() -> None:
    found = [f for path in _sources() if path.relative_to(PACKAGE).as_posix() not in PENDING for f in _findings(path)]
    assert not found, "SQL outside store/ (move it into a store function):\n" + "\n".join(found)


def test_the_pending_list_holds_only_modules_with_sql_still() -> None:
    clean = [name for name in PENDING if not (PACKAGE / name).is_file() or not _findings(PACKAGE / name)]
    assert not clean, f"no SQL left in {clean}: take them off PENDING in tests/test_layering.py"


PROBE = """
import sqlalchemy
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import func
from nudgeflow.store import outbox, schema
from nudgeflow.store.sql import mark

def f(conn: Connection, engine: Engine) -> None:
    conn.execute(select(1))
    conn.exec_driver_sql("SELECT 1")
    outbox.sent_messages(conn, "w", ("email",))
"""


def test_the_check_finds_what_it_forbids_and_nothing_else() -> None:
    assert _findings_in(PROBE, "probe.py") == [
        "probe.py:2: import sqlalchemy",
        "probe.py:3: from sqlalchemy import select, text",
        "probe.py:6: from sqlalchemy.sql import func",
        "probe.py:7: from nudgeflow.store import schema",
        "probe.py:8: from nudgeflow.store.sql import …",
        "probe.py:11: .execute(…)",
        "probe.py:12: .exec_driver_sql(…)",
    ]
