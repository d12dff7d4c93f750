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

And the tests' own layout (tests/conftest.py's docstring), the same way over tests/**/*.py:
no import of a test module or a conftest, no relative import, no `_private` name or module.
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


# -- the tests' own layout (tests/conftest.py's docstring) ---------------------------------------

TESTS = Path(__file__).resolve().parent
# Tests allowed to take a `_private` name from the product, as (test file, module.name): none
# today (the four there were are public now). An entry the test file no longer needs fails
# the second test, so the list cannot hide a fixed import.
PENDING_PRIVATE: set[tuple[str, str]] = set()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _names_a_test_module(module: str) -> bool:
    """A test module or a conftest, by bare name (`test_email`) or full path (`tests.x.test_y`)."""
    return any(part.startswith("test_") or part == "conftest" for part in module.split("."))


def _test_layout_findings_in(source: str, where: str) -> list[tuple[int, str, str]]:
    """(line, what, private name imported or "") for each import the layout forbids, wherever
    it stands (module level or inside a function), however it is spelled."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            spelled = f"from {'.' * node.level}{module} import {', '.join(a.name for a in node.names)}"
            if node.level:
                found.append((node.lineno, f"{spelled}: a relative import (use the full package path)", ""))
                continue
            if module == "__future__":
                continue
            if _names_a_test_module(module):
                found.append((node.lineno, f"{spelled}: imports from a test module or conftest", ""))
            elif any(_is_private(part) for part in module.split(".")):
                found.append((node.lineno, f"{spelled}: imports from a private module", ""))
            for alias in node.names:
                if _names_a_test_module(alias.name):
                    found.append((node.lineno, f"{spelled}: imports the test module {alias.name}", ""))
                elif _is_private(alias.name):
                    found.append(
                        (node.lineno, f"{spelled}: imports the private name {alias.name}", f"{module}.{alias.name}")
                    )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _names_a_test_module(alias.name):
                    found.append((node.lineno, f"import {alias.name}: imports a test module or conftest", ""))
                elif any(_is_private(part) for part in alias.name.split(".")):
                    found.append((node.lineno, f"import {alias.name}: imports a private module", ""))
    return sorted(found)


def _test_layout_findings() -> dict[tuple[str, str], list[str]]:
    """Every finding in tests/**/*.py as "file:line: what", keyed by (file, private name)."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        where = path.relative_to(TESTS).as_posix()
        for line, what, private in _test_layout_findings_in(path.read_text(encoding="utf-8"), where):
            found.setdefault((where, private), []).append(f"tests/{where}:{line}: {what}")
    return found


def test_tests_import_helpers_never_test_modules_nor_private_names() -> None:
    found = [f for key, lines in _test_layout_findings().items() if key not in PENDING_PRIVATE for f in lines]
    assert not found, (
        "imports the test layout forbids (tests/conftest.py): move a shared helper into a helper module "
        "of its directory and import it by its full package path; use public names:\n" + "\n".join(found)
    )


def test_the_pending_private_imports_are_all_still_there() -> None:
    gone = sorted(PENDING_PRIVATE - _test_layout_findings().keys())
    assert not gone, f"no longer imported: {gone}; take them off PENDING_PRIVATE in tests/test_layering.py"


TEST_PROBE = """
from __future__ import annotations
import tests.channels.test_email
from tests.channels import test_email, email_support
from tests.channels.test_email import run
from tests.channels.email_support import FixedRenderer, _private
from tests.console.conftest import START
from .engine_driver import Driver
from nudgeflow.channels.email.pool import _wire_size, __version__
import nudgeflow._internal

def f() -> None:
    from tests.model.test_journey_graph import (
        EVERY_KIND,
        EXAMPLES,
    )
"""


def test_the_layout_check_finds_what_it_forbids_and_nothing_else() -> None:
    assert [(line, what) for line, what, _ in _test_layout_findings_in(TEST_PROBE, "probe.py")] == [
        (3, "import tests.channels.test_email: imports a test module or conftest"),
        (4, "from tests.channels import test_email, email_support: imports the test module test_email"),
        (5, "from tests.channels.test_email import run: imports from a test module or conftest"),
        (6, "from tests.channels.email_support import FixedRenderer, _private: imports the private name _private"),
        (7, "from tests.console.conftest import START: imports from a test module or conftest"),
        (8, "from .engine_driver import Driver: a relative import (use the full package path)"),
        (9, "from nudgeflow.channels.email.pool import _wire_size, __version__: imports the private name _wire_size"),
        (10, "import nudgeflow._internal: imports a private module"),
        (13, "from tests.model.test_journey_graph import EVERY_KIND, EXAMPLES: imports from a test module or conftest"),
    ]
