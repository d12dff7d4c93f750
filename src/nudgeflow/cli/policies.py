"""`nudgeflow policies …`: the workspace's send policies as code (policies.yaml).

The policies model (pydantic), its checks (YAML) and the store are imported in the command
bodies that use them: start-up cost, see cli/common.py."""

from __future__ import annotations

import getpass
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, now_ms, open_workspace, plural
from nudgeflow.model.iso_time import iso

if TYPE_CHECKING:
    from nudgeflow.model.journey_checks import FileProblem
    from nudgeflow.model.policies import Policies
    from nudgeflow.store.policies import StoredPolicies

policies_app = typer.Typer(
    help="Send policies as code (frequency caps, quiet hours, collisions): validate, apply, show, history, schema.",
    no_args_is_help=True,
)

PolicyFile = Annotated[str, typer.Argument(metavar="FILE", help="A policies file (.yaml, .yml or .json).")]


def _author() -> str:
    """Who applied a version from the command line: the operating system's user, if known."""
    try:
        return f"cli ({getpass.getuser()})"
    except (OSError, KeyError):  # no user name in this environment (a container)
        return "cli"


def _checked(file: str, stream: Any) -> tuple[Policies | None, list[FileProblem]]:
    from nudgeflow.model.policy_checks import check_policies_file

    policies, problems = check_policies_file(file)
    for problem in problems:
        print(problem.format(), file=stream)
    return policies, problems


@policies_app.command("validate")
def policies_validate(file: PolicyFile) -> None:
    """Check a policies file without a database: every problem as file:line: path: message."""
    from nudgeflow.model.policy_checks import is_valid

    policies, problems = _checked(file, sys.stdout)
    errors = sum(1 for p in problems if p.severity == "error")
    print(f"{file}: {'valid' if policies is not None else 'not valid'}: {plural(errors, 'error')}")
    if not is_valid(problems):
        raise typer.Exit(1)


@policies_app.command("apply")
def policies_apply(file: PolicyFile, workspace: WorkspaceOpt, database: DatabaseOpt = None) -> None:
    """Make the file the workspace's policies: a new version, in force at the engine's next batch.

    A file with errors changes nothing. A file that means what the policies in force mean
    stores no new version."""
    from nudgeflow.store import policies as store

    policies, problems = _checked(file, sys.stderr)
    if policies is None:
        raise fail(f"nothing applied: {plural(sum(1 for p in problems if p.severity == 'error'), 'error')} above")
    with open(file, encoding="utf-8") as handle:
        source = handle.read()
    now = now_ms()
    engine = open_workspace(database, workspace)
    try:
        with engine.begin() as conn:
            done = store.put(conn, workspace, policies, source, _author(), now)
    except store.PolicyConflict as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if done.changed:
        print(f"policies: version {done.version} applied (the engine uses it from its next batch)")
    else:
        print(f"policies: unchanged (version {done.version} stays in force)")


@policies_app.command("show")
def policies_show(
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the document as JSON, defaults spelled out, with its version.")
    ] = False,
    version: Annotated[int | None, typer.Option("--version", min=1, help="An earlier version instead.")] = None,
) -> None:
    """Print the policies in force (as they were applied: YAML stays YAML, comments and all)."""
    from nudgeflow.store import policies as store

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            found = store.get(conn, workspace, version)
    finally:
        engine.dispose()
    if found is None and version is not None:
        raise fail(f"no version {version} of the workspace's policies (see `nudgeflow policies history`)")
    if as_json:
        print(json.dumps(_document(found), ensure_ascii=False))
        return
    if found is None:
        err.print("no policies applied yet: nothing is capped, deferred or dropped (`nudgeflow policies apply FILE`)")
        return
    print(f"# version {found.version}, applied {iso(found.created_at_ms, milliseconds=False)} by {found.created_by}")
    print(found.source, end="" if found.source.endswith("\n") else "\n")


def _document(found: StoredPolicies | None) -> dict[str, Any]:
    from nudgeflow.model.policies import EMPTY
    from nudgeflow.store import policies as store

    policies = found.policies if found is not None else EMPTY
    return {
        "version": found.version if found is not None else 0,
        "updated_at": iso(found.created_at_ms, milliseconds=False) if found is not None else None,
        "updated_by": found.created_by if found is not None else None,
        "policies": json.loads(store.definition_json(policies)),
    }


@policies_app.command("history")
def policies_history(
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """The versions applied, newest first: who applied each and when."""
    from nudgeflow.store import policies as store

    engine = open_workspace(database, workspace)
    try:
        with engine.connect() as conn:
            versions = store.history(conn, workspace)
    finally:
        engine.dispose()
    rows = [
        {"version": v["version"], "applied_at": iso(v["created_at_ms"], milliseconds=False), "by": v["created_by"]}
        for v in versions
    ]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        print(f"{row['version']}\t{row['applied_at']}\t{row['by']}")
    if not rows:
        err.print("no policies applied yet")


@policies_app.command("schema")
def policies_schema() -> None:
    """Print the JSON Schema of policies.yaml (schema/policies.schema.json is this output)."""
    from nudgeflow.model.policies import policies_json_schema

    print(json.dumps(policies_json_schema(), indent=2, ensure_ascii=False))
