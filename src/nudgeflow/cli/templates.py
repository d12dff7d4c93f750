"""`nudgeflow templates apply|list|render`: message templates."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from nudgeflow.cli.common import DatabaseOpt, WorkspaceOpt, err, fail, load_settings, now_ms, open_engine

templates_app = typer.Typer(help="Message templates (Liquid + MJML): apply, list, render.", no_args_is_help=True)


@templates_app.command("apply")
def templates_apply(
    files: Annotated[list[str], typer.Argument(help="NAME.yaml template files, or directories of them.")],
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
) -> None:
    """Save templates from files, all or nothing: each changed template becomes a new version."""
    from nudgeflow.content import compiled_templates
    from nudgeflow.store import templates as store

    try:
        loaded = compiled_templates.load_template_files(files)
    except compiled_templates.TemplateFileError as exc:
        raise fail(f"nothing applied: {exc}") from exc
    if not loaded:
        raise fail("no template files (.yaml, .yml) found in " + " ".join(files))
    now = now_ms()
    engine = open_engine(load_settings(database))
    lines = []
    try:
        with engine.begin() as conn:
            for name, source in loaded:
                version, new = compiled_templates.save_template(conn, workspace, name, source, now)
                lines.append(f"{name}: version {version}" + ("" if new else " (unchanged)"))
    except (store.TemplateStoreError, ValueError) as exc:
        raise fail(f"nothing applied: {exc}") from exc
    finally:
        engine.dispose()
    for line in lines:
        print(line)


@templates_app.command("list")
def templates_list(
    workspace: WorkspaceOpt,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """The workspace's templates: channel and current version."""
    from nudgeflow.store import templates as store

    engine = open_engine(load_settings(database))
    try:
        with engine.connect() as conn:
            found = store.list_templates(conn, workspace)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(found))
        return
    table = Table("name", "channel", "version")
    for item in found:
        table.add_row(item["name"], item["channel"], str(item["current_version"]))
    Console().print(table)
    if not found:
        err.print("no templates yet: `nudgeflow templates apply DIR --workspace ID`")


@templates_app.command("render")
def templates_render(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    workspace: WorkspaceOpt,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Render for this profile (id, userId or anonymousId).")
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Render with the built-in sample person, cart and event.")
    ] = False,
    version: Annotated[
        int | None, typer.Option("--version", help="A given version (default: the current one).")
    ] = None,
    html_only: Annotated[
        bool, typer.Option("--html-only", help="Print only the HTML (for piping to a file or browser).")
    ] = False,
    database: DatabaseOpt = None,
) -> None:
    """Print a rendered template: subject, preheader, text and HTML (push: its fields)."""
    from nudgeflow.content import compiled_templates
    from nudgeflow.content.sample import sample_context
    from nudgeflow.content.templates import RenderedEmail, TemplateError, render
    from nudgeflow.store import templates as store

    if (profile is None) == (not sample):
        raise fail("say who to render for: --profile ID or --sample")
    engine = open_engine(load_settings(database))
    try:
        with engine.connect() as conn:
            compiled = compiled_templates.load_compiled(conn, workspace, name, version)
            context = (
                sample_context()
                if sample
                else compiled_templates.preview_context(conn, workspace, profile or "", now_ms())
            )
        result = render(compiled, context)
    except store.TemplateStoreError as exc:
        raise fail(str(exc)) from exc
    except TemplateError as exc:
        raise fail(f"{name}: {exc}") from exc
    finally:
        engine.dispose()
    if html_only:
        if not isinstance(result, RenderedEmail):
            raise fail(f"{name} is a push template: it has no HTML")
        sys.stdout.write(result.html)
        return
    console = Console()
    if isinstance(result, RenderedEmail):
        head = Text.assemble(
            ("Subject: ", "bold"), result.subject, "\n", ("Preheader: ", "bold"), result.preheader or "—"
        )
        console.print(Panel(head, title=f"{name} (email)", expand=False))
        if result.text is not None:
            console.print(Panel(Text(result.text), title="text", expand=False))
        else:
            console.print("[dim]text: derived from the HTML when sent[/]")
        console.print(Panel(Text(result.html), title="html", expand=False))
    else:
        fields = [
            f"Title: {result.title}",
            f"Body: {result.body}",
            f"Image: {result.image or '—'}",
            f"URL: {result.url or '—'}",
            f"Data: {json.dumps(result.data)}",
        ]
        console.print(Panel(Text("\n".join(fields)), title=f"{name} (push)", expand=False))
