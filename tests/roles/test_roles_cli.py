"""`serve --role` refuses what makes no sense, before it opens anything (exit 2), saying
what is allowed instead; `serve --help` names the roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.serve_process import run

PG = "postgresql://postgres@127.0.0.1:5432/postgres"  # never opened: each refusal comes first


def _said(done: object) -> str:
    return " ".join((done.stdout + done.stderr).split())  # type: ignore[attr-defined]


@pytest.mark.parametrize("role", ["engine", "dispatch"])
def test_engine_and_dispatch_need_postgresql(role: str, tmp_path: Path) -> None:
    done = run("serve", "--role", role, "--database", f"sqlite:///{tmp_path / 'x.db'}")
    said = _said(done)
    assert done.returncode == 2, said
    assert f"--role {role} needs PostgreSQL" in said and "--role all" in said and "--role api" in said
    assert not (tmp_path / "x.db").exists() and "Traceback" not in said


REFUSED = [
    (["--role", "api", "--dev"], {}, "--dev with --role api"),
    (["--role", "dispatch", "--dev"], {}, "--dev with --role dispatch"),
    (["--role", "dispatch", "--bounce-smtp", "127.0.0.1:2526"], {}, "--bounce-smtp with --role dispatch"),
    (["--role", "engine", "--bounce-smtp", "127.0.0.1:2526"], {}, "--bounce-smtp with --role engine"),
    (["--role", "engine"], {"NUDGEFLOW_ENGINE": "0"}, "--role engine with NUDGEFLOW_ENGINE=0"),
    (["--role", "dispatch"], {"NUDGEFLOW_ENGINE": "0"}, "--role dispatch with NUDGEFLOW_ENGINE=0"),
    (["--role", "workers"], {}, "'workers' is not one of"),
]


@pytest.mark.parametrize(("args", "env", "says"), REFUSED, ids=[" ".join(a) for a, _, _ in REFUSED])
def test_nonsense_combinations_are_refused_naming_them(args: list[str], env: dict[str, str], says: str) -> None:
    done = run("serve", "--database", PG, *args, env=env)
    said = _said(done)
    assert done.returncode == 2, said
    assert says in said and "Traceback" not in said


def test_serve_help_names_the_roles() -> None:
    done = run("serve", "--help", env={"COLUMNS": "200"})
    said = _said(done)
    assert done.returncode == 0
    assert "--role" in said and "all|api|engine|dispatch" in said and "docs/roles.md" in said
