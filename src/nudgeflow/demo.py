"""`nudgeflow demo`: a real server, realistic traffic over HTTP, and what was stored.

The demo runs the same app `nudgeflow serve` runs, on a free loopback port, on a
temporary SQLite database unless one is given, and talks to it only over HTTP as an SDK
would: batches to /v1/batch, a few single /v1/track, /v1/identify… calls, a re-send of
some messages to show that a repeated messageId is stored once, then the admin API to
read back the summary and one person's profile.
"""

from __future__ import annotations

import random
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nudgeflow.demo_traffic import ORDERED, generate_traffic
from nudgeflow.settings import Settings
from nudgeflow.web.embedded import ServerStartError, ThreadedServer, serve_in_thread

DAYS = 3.0
BATCH_EVENTS = 250
BATCH_BYTES = 400 * 1024  # under the 500 KB request limit, with room for the envelope
SINGLE_SHARE = 0.03  # of messages sent one by one to /v1/<type>, as server-side SDKs may
RESEND = 40  # messages sent a second time to show idempotency


class DemoError(RuntimeError):
    """The demo could not run: the server did not start, or it refused the traffic."""


@dataclass
class DemoSummary:
    database_url: str
    messages: int = 0
    batches: int = 0
    singles: int = 0
    rejected: int = 0
    resent: int = 0
    send_seconds: float = 0.0
    total_seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0
    sample_user: str | None = None
    workspace_id: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.send_seconds if self.send_seconds > 0 else 0.0


def _start_server(settings: Settings) -> ThreadedServer:
    from nudgeflow.web.app import create_app

    try:
        return serve_in_thread(create_app(settings), name="nudgeflow-demo-server")
    except ServerStartError as exc:
        raise DemoError(str(exc)) from exc


def _prepare(database_url: str) -> None:
    """Bring the schema up to date; the demo may migrate a PostgreSQL database it was pointed at."""
    from nudgeflow.store import database

    engine = database.create_db_engine(database_url)
    try:
        database.upgrade(engine)
    finally:
        engine.dispose()


def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plan(messages: list[dict[str, Any]], rng: random.Random) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Group messages, in time order, into batches and the occasional single call."""
    batch: list[dict[str, Any]] = []
    size = 0
    for message in messages:
        if rng.random() < SINGLE_SHARE:
            if batch:
                yield "batch", batch
                batch, size = [], 0
            yield message["type"], [message]
            continue
        encoded = len(orjson.dumps(message))
        if batch and (len(batch) >= BATCH_EVENTS or size + encoded > BATCH_BYTES):
            yield "batch", batch
            batch, size = [], 0
        batch.append(message)
        size += encoded
    if batch:
        yield "batch", batch


def _send(client: httpx.Client, kind: str, messages: list[dict[str, Any]]) -> httpx.Response:
    # sentAt is stamped when a message leaves, as SDKs do: the server uses it to correct
    # the device clock (here the clocks agree, so the event times stay as generated).
    if kind == "batch":
        body: dict[str, Any] = {"batch": messages, "sentAt": _iso_now()}
    else:
        body = {**messages[0], "sentAt": _iso_now()}
    return client.post(f"/v1/{kind}", content=orjson.dumps(body), headers={"Content-Type": "application/json"})


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+\-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@contextmanager
def _http_errors() -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        raise DemoError(f"talking to the demo server failed: {exc}") from exc


def _showcase(messages: list[dict[str, Any]]) -> str | None:
    """A person worth looking at: one who ordered, on more than one device if possible."""
    devices: dict[str, set[str]] = {}
    ordered: set[str] = set()
    for m in messages:
        if user := m.get("userId"):
            devices.setdefault(user, set()).add(m.get("anonymousId") or "")
            if m.get("event") == ORDERED:
                ordered.add(user)
    ranked = sorted(devices, key=lambda u: (u in ordered, len(devices[u])), reverse=True)
    return ranked[0] if ranked else None


def _display_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the database given"


def _create_workspace(server: ThreadedServer) -> Any:
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store.workspaces import create_workspace

    state = server.app.state.nudgeflow
    name = "demo " + datetime.now(timezone.utc).strftime("%Y-%m-%d %H.%M.%S")
    # Through the writer thread, like every write of the running app.
    return state.committer.submit_job(lambda conn: create_workspace(conn, name, to_ms(SystemClock().now()))).result()


def run_demo(users: int = 300, seed: int = 7, database_url: str | None = None, *, console: Console | None = None) -> DemoSummary:
    console = console or Console()
    if users < 1:
        raise DemoError("the demo needs at least one user")
    started = time.perf_counter()
    tmpdir = None
    if database_url is None:
        tmpdir = Path(tempfile.mkdtemp(prefix="nudgeflow-demo-"))
        database_url = f"sqlite:///{tmpdir / 'demo.db'}"
    # The demo is a local tour: no per-workspace rate limit to pace it.
    settings = Settings(database_url=database_url, ingest_rate_per_second=0, log_level="WARNING")
    summary = DemoSummary(database_url=database_url)
    server: ThreadedServer | None = None
    try:
        with console.status("starting the server and preparing the database…"):
            _prepare(database_url)
            server = _start_server(settings)
            workspace = _create_workspace(server)
        summary.workspace_id = workspace.workspace_id
        console.print(
            f"[bold]Nudgeflow demo[/]: server on {server.url}, database "
            f"{'temporary SQLite' if tmpdir else _display_url(database_url)}, workspace {workspace.workspace_id}"
        )

        # Traffic over the last few days, so the event times are recent.
        start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=DAYS)
        messages = list(generate_traffic(users, seed, start=start, days=DAYS))
        rng = random.Random(seed)
        plan = list(_plan(messages, rng))
        resend = rng.sample(messages, min(RESEND, len(messages)))
        summary.messages = len(messages)
        summary.sample_user = _showcase(messages)

        with httpx.Client(base_url=server.url, auth=(workspace.write_key, ""), timeout=30) as client, _http_errors():
            progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("events"),
                TimeElapsedColumn(),
                console=console,
            )
            with progress:
                task = progress.add_task(f"ingesting {users} people's traffic", total=len(messages) + len(resend))
                send_started = time.perf_counter()
                for kind, chunk in plan:
                    response = _send(client, kind, chunk)
                    if response.status_code != 200:
                        summary.rejected += len(chunk)
                        progress.console.print(f"[red]{kind} refused[/] ({response.status_code}): {response.text[:300]}")
                    if kind == "batch":
                        summary.batches += 1
                    else:
                        summary.singles += 1
                    progress.advance(task, len(chunk))
                summary.send_seconds = time.perf_counter() - send_started
                # The same messages again, as a retrying client would send them: stored once.
                progress.update(task, description="re-sending some messages")
                half = len(resend) // 2
                for kind, chunk in [("batch", resend[:half])] + [(m["type"], [m]) for m in resend[half:]]:
                    if chunk and _send(client, kind, chunk).status_code == 200:
                        summary.resent += len(chunk)
                    progress.advance(task, len(chunk))
                progress.update(task, description=f"ingested {users} people's traffic")
            if summary.rejected:
                raise DemoError(f"the server refused {summary.rejected} events; see above")

            admin = {"Authorization": f"Bearer {workspace.admin_token}"}
            summary.stats = client.get("/api/stats", headers=admin, auth=None).json()
            summary.duplicates = int(_metric(client.get("/metrics").text, "nudgeflow_events_duplicate_total"))
            profile = None
            if summary.sample_user:
                answer = client.get(f"/api/profiles/{summary.sample_user}", headers=admin, auth=None)
                profile = answer.json() if answer.status_code == 200 else None
        summary.total_seconds = time.perf_counter() - started
        _print_summary(console, summary, profile, workspace, persistent=tmpdir is None)
        return summary
    finally:
        if server is not None:
            server.stop()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _counts(title: str, what: str, counts: dict[str, int]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(what)
    table.add_column("events", justify="right")
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], str(item[0]))):
        table.add_row(str(name), f"{count:,}")
    table.add_row("[bold]total[/]", f"[bold]{sum(counts.values()):,}[/]")
    return table


def _print_summary(console: Console, summary: DemoSummary, profile: dict[str, Any] | None, workspace: Any, *, persistent: bool) -> None:
    stats = summary.stats
    console.print()
    console.print(_counts("Events by type", "type", stats.get("events_by_type", {})))
    console.print(_counts("Track events by name", "event", stats.get("track_events", {})))

    known = stats.get("known_profiles", 0)
    overview = Table(title="What was stored", title_justify="left", show_header=False)
    overview.add_column("what")
    overview.add_column("value")
    overview.add_row("messages sent", f"{summary.messages:,}: {summary.batches} batches + {summary.singles} single calls")
    overview.add_row("events stored", f"{stats.get('events', 0):,}")
    overview.add_row("profiles", f"{stats.get('profiles', 0):,}")
    overview.add_row("  known (with a userId)", f"{known:,}")
    overview.add_row("  anonymous", f"{stats.get('profiles', 0) - known:,}")
    overview.add_row("profiles merged", f"{stats.get('merges', 0):,} (a second device, then a login)")
    overview.add_row(
        "duplicates",
        f"{summary.resent} re-sent, {stats.get('events', 0) - summary.messages} stored again, "
        f"{summary.duplicates} counted as duplicates",
    )
    overview.add_row("ingest rate over HTTP", f"{summary.rate:,.0f} events/s, acknowledged after commit")
    overview.add_row("demo time", f"{summary.total_seconds:.1f} s")
    console.print(overview)

    if profile:
        traits = profile.get("traits", {})
        person = Table(title=f"One person: {summary.sample_user}", title_justify="left", show_header=False)
        person.add_column("what")
        person.add_column("value")
        for name in ("email", "first_name", "last_name", "timezone", "locale"):
            if name in traits:
                person.add_row(name, str(traits[name]))
        ids = profile.get("identities", {})
        person.add_row("anonymous ids", str(len(ids.get("anonymous_ids", []))))
        person.add_row("profiles merged in", str(len(profile.get("merged_from", []))))
        person.add_row("events", str(profile.get("event_count", 0)))
        recent = [
            e.get("event") if e.get("type") == "track" else f"{e.get('type')} {e.get('event') or ''}".strip()
            for e in profile.get("recent_events", [])[:5]
        ]
        person.add_row("latest events", ", ".join(str(r) for r in recent))
        console.print(person)

    user = summary.sample_user or "<userId>"
    if persistent:
        console.print(
            "\n[bold]Look around[/] (this workspace's keys, shown only now):\n"
            f"  write key    {workspace.write_key}\n"
            f"  admin token  {workspace.admin_token}\n"
            f"  nudgeflow serve --database '{_display_url(summary.database_url)}'\n"
            f"  curl -H 'Authorization: Bearer {workspace.admin_token}' http://127.0.0.1:8000/api/profiles/{user}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            "\n[bold]Look around[/]: the demo used a temporary database, now deleted. To keep one:\n"
            "  nudgeflow demo --database sqlite:///nudgeflow-demo.db\n"
            "  nudgeflow serve --database sqlite:///nudgeflow-demo.db\n"
            f"  curl -H 'Authorization: Bearer <admin token>' http://127.0.0.1:8000/api/profiles/{user}\n"
            "(the demo prints its workspace's admin token when it keeps the database)",
            highlight=False,
            soft_wrap=True,
        )
