"""`nudgeflow demo`: a real server, realistic traffic over HTTP, the example journeys
fast-forwarded through forty days of a shop's life, and what each of them sent.

The demo runs the same app `nudgeflow serve` runs, on a free loopback port, on a
temporary SQLite database unless one is given, and talks to it over HTTP as an SDK and an
operator would: the journeys of examples/journeys are applied and published with the
admin API, the generated traffic goes to /v1/batch (and a few single /v1/track,
/v1/identify… calls), some messages are sent twice to show that a repeated messageId is
stored once, and the admin API gives back the summary and one person's profile.

The traffic covers the last `FAST_FORWARD_DAYS`, ending now: people arrive and shop in
the first `SHOPPING_DAYS`; deliveries, app habits, plan changes, silence and comebacks
follow (see demo/traffic.py). The production runtime (`EmbeddedRuntime`, on the server's
database and its writer, as `nudgeflow serve` runs it) decides it on a virtual clock that
moves forward in stops, so the 40 days take seconds:

- the clock stops at the end of each `TIMER_STEP_MS` (an hour) in which an event arrives
  or a timer falls due, and nowhere else. Before each stop the demo sends the traffic
  that has reached the server by then, in the order it arrived; at the stop
  `run_until_idle()` decides the new events, fires the timers now due and dispatches
  the messages: emails through the email channel (the example templates, personalized
  from the demo's product catalog and stores, sent over SMTP to the dev inbox's sink,
  links pointing at the demo server), push over Web Push to the dev inbox's push service;
- so an event is decided within the hour it happened, and a timer fires within the hour
  it fell due ("18:00 local" waits end on the dot in whole-hour timezones; "an hour
  after the cart" may be sent up to an hour later than that);
- an event that may start a journey whose trigger has a shorter `max_lateness` (a level
  completed: 10 minutes; a location inside a store's geofence: 15) gets an earlier stop,
  a minute before that runs out, so that it counts as it would live. An event flushed
  late from an offline queue reaches the server late, and rightly does not.

Then the demo reads back what the runtime recorded: the runs per journey (entered,
holdout, exited by reason, converted), the messages sent, and what the dev inbox received:
a count per journey and template and a few emails in full (`--keep-serving` keeps the
server up to browse them at /dev/inbox).
"""

from __future__ import annotations

import random
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Connection

from nudgeflow.demo.policy_report import DecisionLog, PolicyReport, WatchedEngine, build_report, policy_table
from nudgeflow.demo.traffic import CATALOG, CURRENCY, ORDERED, STORES, generate_traffic
from nudgeflow.errors import NudgeflowError
from nudgeflow.model.event_names import (
    MESSAGE_DELIVERED,
    MESSAGE_FAILED,
    MESSAGE_LOGGED,
    MESSAGE_SENT,
    PUSH_SUBSCRIBED,
    SEGMENT_ENTERED,
    SEGMENT_EXITED,
)
from nudgeflow.model.iso_time import iso_utc
from nudgeflow.settings import Settings
from nudgeflow.store import dev_inbox, engine_state, log_channel, outbox, profiles
from nudgeflow.store import journeys as journey_store
from nudgeflow.web.embedded import ServerStartError, ThreadedServer, serve_in_thread
from nudgeflow.web.reports_api import load_overview

DEFAULT_USERS = 50  # each email is rendered, composed and sent over SMTP (~20 ms each): 50 people keep the demo ~10 s
FAST_FORWARD_DAYS = 40.0  # the virtual time the demo covers: win-back needs 30 silent days, then a week
SHOPPING_DAYS = 3.0  # people arrive and shop during the first days
TIMER_STEP_MS = 60 * 60_000  # the clock stops at most this far apart while anything happens
LATENESS_MARGIN_MS = 60_000  # an event with a short max_lateness is decided this much before it runs out
BATCH_EVENTS = 250
BATCH_BYTES = 400 * 1024  # under the 500 KB request limit, with room for the envelope
SINGLE_SHARE = 0.005  # of messages sent one by one to /v1/<type>, as server-side SDKs may
RESEND = 40  # messages sent a second time to show idempotency
ENGAGEMENT_EVENTS = (MESSAGE_DELIVERED, MESSAGE_SENT, MESSAGE_FAILED, MESSAGE_LOGGED)
SHOP_FROM = "shop@nudgeshop.example"  # the From of the demo's emails (the dev inbox accepts any)
SAMPLE_EMAILS = (  # (journey, template) of the emails shown in full, in this order
    ("cart-abandonment", "cart-1h-your-items"),
    ("win-back", "winback-we-miss-you-15-off"),
    ("post-purchase", "order-confirmation-cross-sells"),
)


class DemoError(NudgeflowError, RuntimeError):
    """The demo could not run: the server did not start, or it refused the traffic."""


@dataclass
class JourneyReport:
    """What the runtime did, read back from the database after the fast-forward."""

    summary: dict[str, Any] = field(default_factory=dict)  # the shape `nudgeflow simulate` prints
    sample: list[dict[str, Any]] = field(default_factory=list)  # sent messages, a few per journey
    sent: int = 0
    failed: int = 0
    runs: int = 0
    timers_pending: int = 0
    by_profile: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # user id -> their messages
    emailed: int = 0  # emails the email channel sent (over SMTP, to the dev inbox)
    pushed: int = 0  # push messages the push channel sent (Web Push, to the dev inbox's push service)
    logged: int = 0  # messages the log channel recorded
    # The reports' overview (web/reports_api.load_overview): each journey's lift and the program's.
    overview: dict[str, Any] = field(default_factory=dict)


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
    journeys_published: list[str] = field(default_factory=list)
    virtual_start: datetime | None = None
    virtual_end: datetime | None = None
    clock_stops: int = 0
    events_decided: int = 0
    timers_fired: int = 0
    engine_seconds: float = 0.0
    journeys: JourneyReport = field(default_factory=JourneyReport)
    server_url: str = ""
    templates_applied: list[str] = field(default_factory=list)
    catalog: dict[str, int] = field(default_factory=dict)  # kind -> rows imported
    inbox: list[dict[str, Any]] = field(default_factory=list)  # what the dev inbox received, in order
    pushes: list[dict[str, Any]] = field(default_factory=list)  # the pushes it received (decrypted), in order
    subscribed: int = 0  # browsers subscribed to push (one per device id of the traffic)
    policies: PolicyReport = field(default_factory=PolicyReport)  # what the send policies held back
    segments: list[dict[str, Any]] = field(default_factory=list)  # id, name, description, members at the end
    collision_window: str | None = None  # the policies' collision window, if they have one

    @property
    def rate(self) -> float:
        return self.messages / self.send_seconds if self.send_seconds > 0 else 0.0


def examples_dir() -> Path | None:
    """examples/journeys of the source tree this package runs from (an editable install or
    a checkout), whatever the working directory."""
    candidate = Path(__file__).resolve().parents[3] / "examples" / "journeys"
    return candidate if candidate.is_dir() else None


def templates_dir() -> Path | None:
    """examples/templates of the source tree, next to examples/journeys."""
    candidate = Path(__file__).resolve().parents[3] / "examples" / "templates"
    return candidate if candidate.is_dir() else None


def policies_file() -> Path | None:
    """examples/policies.yaml of the source tree, next to examples/journeys."""
    candidate = Path(__file__).resolve().parents[3] / "examples" / "policies.yaml"
    return candidate if candidate.is_file() else None


def segments_dir() -> Path | None:
    """examples/segments of the source tree, next to examples/journeys."""
    candidate = Path(__file__).resolve().parents[3] / "examples" / "segments"
    return candidate if candidate.is_dir() else None


def _free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _demo_settings(database_url: str) -> Settings:
    """The demo is a local tour: no per-workspace rate limit to pace it, and a SQLite
    database that commits without an fsync each time (WAL with synchronous=NORMAL: a commit
    survives the process crashing, not the machine losing power). The server's own engine
    stays off: the demo drives the runtime itself, on a virtual clock. Email goes over SMTP
    to the dev inbox's sink (dev mode: the server starts it on a free loopback port and
    serves /dev/inbox), from the shop's address."""
    from urllib.parse import quote

    port = _free_port()
    smtp_url = f"smtp://127.0.0.1:{port}?tls=none&from={SHOP_FROM}&from_name={quote('Nudgeshop')}"
    return Settings(
        database_url=database_url,
        ingest_rate_per_second=0,
        log_level="WARNING",
        engine_enabled=False,
        sqlite_synchronous="NORMAL",
        dev_mode=True,
        dev_smtp_host="127.0.0.1",
        dev_smtp_port=port,
        smtp_url=smtp_url,
    )


def catalog_products() -> list[dict[str, Any]]:
    """The products the demo traffic views, adds and orders (traffic.CATALOG), as
    catalog rows: what templates show for an id seen in an event, and what the
    recommendations pick from."""
    return [
        {
            "id": p.product_id,
            "name": p.name,
            "price": p.price,
            "currency": CURRENCY,
            "category": p.category,
            "url": f"https://shop.example.com/p/{p.product_id}",
            "image": f"https://cdn.shop.example.com/{p.sku}.jpg",
            "stock": 5 + (i * 7) % 40,
            "sku": p.sku,
            "brand": p.brand,
        }
        for i, p in enumerate(CATALOG)
    ]


def catalog_places() -> list[dict[str, Any]]:
    """The shop's stores (traffic.STORES, the places of push-near-store.yaml)."""
    return [
        {
            "id": "store_" + name.split()[0].lower(),
            "name": name,
            "latitude": lat,
            "longitude": lon,
            "address": "New York, NY",
        }
        for name, lat, lon in STORES
    ]


def _apply_templates(client: httpx.Client, admin: dict[str, str]) -> list[str]:
    """examples/templates/NAME.yaml, saved as template NAME over the admin API."""
    import yaml

    found = templates_dir()
    if found is None:
        return []
    applied: list[str] = []
    for path in sorted(found.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        answer = client.put(
            f"/api/templates/{path.stem}",
            content=orjson.dumps(doc),
            headers={**admin, "Content-Type": "application/json"},
            # None turns the client's auth off for this request: httpx takes it, put()'s hints leave it out.
            auth=None,  # type: ignore[arg-type]
        )
        if answer.status_code not in (200, 201):
            raise DemoError(f"{path}: the server refused the template ({answer.status_code}): {answer.text[:500]}")
        applied.append(path.stem)
    return applied


def _import_catalog(client: httpx.Client, admin: dict[str, str]) -> dict[str, int]:
    imported: dict[str, int] = {}
    for kind, rows in (("products", catalog_products()), ("places", catalog_places())):
        answer = client.put(
            f"/api/catalog/{kind}",
            content=orjson.dumps(rows),
            headers={**admin, "Content-Type": "application/json"},
            # None turns the client's auth off for this request: httpx takes it, put()'s hints leave it out.
            auth=None,  # type: ignore[arg-type]
        )
        if answer.status_code != 200 or answer.json().get("rejected"):
            raise DemoError(f"the server refused the demo's {kind} ({answer.status_code}): {answer.text[:500]}")
        imported[kind] = int(answer.json().get("imported", 0))
    return imported


def _apply_policies(server: ThreadedServer, workspace_id: str) -> tuple[Any, str, int]:
    """examples/policies.yaml made the workspace's send policies, as `nudgeflow policies
    apply` makes them (checked, then stored through store/policies.put, by the server's
    writer): (the policies, the file as shown, the version in force), or (None, "", 0) when
    the file is not next to this installation."""
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.model.policy_checks import check_policies_file
    from nudgeflow.store import policies as policy_store

    path = policies_file()
    if path is None:
        return None, "", 0
    policies, problems = check_policies_file(path)
    if policies is None:
        raise DemoError(f"{path} has errors:\n" + "\n".join(p.format() for p in problems))
    source = path.read_text(encoding="utf-8")
    now = to_ms(SystemClock().now())
    state = server.app.state.nudgeflow
    done = state.committer.submit_job(
        lambda conn: policy_store.put(conn, workspace_id, policies, source, "nudgeflow demo", now)
    ).result()
    return policies, _shown_path([path]) + "/" + path.name, done.version


def _apply_segments(server: ThreadedServer, workspace_id: str) -> list[Any]:
    """examples/segments made the workspace's live segments, as `nudgeflow segments apply`
    makes them (checked, each after those it refers to, then store/segments.apply by the
    server's writer). The workspace has no one yet: the engine keeps them as the traffic
    comes. [] when the folder is not next to this installation."""
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.model.segment_checks import check_files
    from nudgeflow.store import segments as segment_store

    found = segments_dir()
    if found is None:
        return []
    problems, valid = check_files([found])
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DemoError(f"{found} has errors:\n" + "\n".join(p.format() for p in errors))
    now = to_ms(SystemClock().now())

    def apply_all(conn: Connection) -> None:
        for _file, segment in valid:
            segment_store.apply(conn, workspace_id, segment, now)

    server.app.state.nudgeflow.committer.submit_job(apply_all).result()
    return [segment for _file, segment in valid]


def _set_base_url(server: ThreadedServer, workspace_id: str) -> None:
    """Links in the emails (clicks, unsubscribe, preferences) point at the demo server."""
    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store.consent import update_settings

    state = server.app.state.nudgeflow
    now = to_ms(SystemClock().now())
    state.committer.submit_job(
        lambda conn: update_settings(conn, workspace_id, {"public_base_url": server.url}, now)
    ).result()


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
        body: dict[str, Any] = {"batch": messages, "sentAt": iso_utc(datetime.now(UTC))}
    else:
        body = {**messages[0], "sentAt": iso_utc(datetime.now(UTC))}
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
    name = "demo " + datetime.now(UTC).strftime("%Y-%m-%d %H.%M.%S")
    # Through the writer thread, like every write of the running app.
    return state.committer.submit_job(lambda conn: create_workspace(conn, name, to_ms(SystemClock().now()))).result()


def _journey_files(paths: Sequence[str | Path] | None) -> list[Path]:
    from nudgeflow.model.journey_checks import journey_files

    if paths is None:
        found = examples_dir()
        if found is None:
            raise DemoError(
                "the example journeys (examples/journeys) are not next to this installation; "
                "run the demo from a checkout (pip install -e .) or pass --journeys PATH"
            )
        paths = [found]
    try:
        return journey_files(paths)
    except ValueError as exc:
        raise DemoError(str(exc)) from exc


def _publish_journeys(client: httpx.Client, admin: dict[str, str], files: list[Path]) -> list[str]:
    """Apply and publish each file over the admin API, as `curl -X PUT …?publish=true` would."""
    from nudgeflow.model.journey_checks import load_documents

    published: list[str] = []
    for path in files:
        try:
            docs = load_documents(path)
        except (OSError, ValueError) as exc:
            raise DemoError(f"{path}: {exc}") from exc
        for _index, doc in docs:
            journey_id = doc.get("id") if isinstance(doc, dict) else None
            if not isinstance(journey_id, str):
                raise DemoError(f"{path}: a journey without an id")
            answer = client.put(
                f"/api/journeys/{journey_id}",
                params={"publish": "true"},
                content=orjson.dumps(doc),
                headers={**admin, "Content-Type": "application/json"},
                # None turns the client's auth off for this request: httpx takes it, put()'s hints leave it out.
                auth=None,  # type: ignore[arg-type]
            )
            if answer.status_code not in (200, 201):
                raise DemoError(
                    f"{path}: the server refused journey {journey_id!r} ({answer.status_code}): {answer.text[:500]}"
                )
            published.append(journey_id)
    return published


def _arrival_ms(message: dict[str, Any]) -> int:
    from nudgeflow.core.clock import to_ms

    when = message.get("sentAt") or message["timestamp"]
    return to_ms(datetime.fromisoformat(when.replace("Z", "+00:00")))


def _for_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    # The traffic happens on the virtual clock and leaves now: the batch's sentAt (now)
    # corrects each timestamp by (now - now), so event times stay as generated. A
    # message's own virtual sentAt (a queue flushed late) would be taken as a skewed
    # device clock instead: its lateness is in when the demo sends it, not in the field.
    if "sentAt" in message:
        message = {k: v for k, v in message.items() if k != "sentAt"}
    return message


class _FastForward:
    """The production runtime over the demo's database, on a virtual clock (see the module)."""

    def __init__(self, server: ThreadedServer, start_ms: int) -> None:
        from nudgeflow.core.clock import VirtualClock, from_ms
        from nudgeflow.core.engine import Engine
        from nudgeflow.runtime.embedded import EmbeddedRuntime
        from nudgeflow.runtime.processor import EngineCache

        # The server's database and its one writer, as `nudgeflow serve` runs the engine.
        state = server.app.state.nudgeflow
        self.db = state.engine
        self.clock = VirtualClock(from_ms(start_ms))
        # The journeys do not change during the fast-forward: no catalog check per batch.
        # The engine's decisions are watched: which messages the send policies deferred.
        self.decisions = DecisionLog()
        engines = EngineCache(
            fingerprint=lambda _conn, _ws: "demo",
            make_engine=lambda catalog: WatchedEngine(Engine(catalog), self.decisions),
        )
        self.runtime = EmbeddedRuntime(self.db, state.committer, self.clock, state.settings, engines=engines)
        self.stops = 0
        # The people's browsers subscribe to a local Web Push service on the same virtual
        # clock (it checks the VAPID token's expiry against its own time); what it decrypts
        # lands in the dev inbox beside the emails.
        from nudgeflow.runtime.dev_push_inbox import start_dev_push

        self.dev_push = start_dev_push(self.db, clock=self.clock)

    def close(self) -> None:
        self.runtime.close_channels()
        self.dev_push.stop()

    @property
    def now_ms(self) -> int:
        from nudgeflow.core.clock import to_ms

        return to_ms(self.clock.now())

    def next_due_ms(self) -> int | None:
        with self.db.connect() as conn:
            return engine_state.next_timer_due(conn)

    def run_at(self, when_ms: int) -> None:
        from nudgeflow.core.clock import from_ms

        if when_ms > self.now_ms:
            self.clock.set(from_ms(when_ms))
        self.runtime.run_until_idle(max_rounds=1000)
        self.stops += 1


def _step_up(ms: int) -> int:
    return -(-ms // TIMER_STEP_MS) * TIMER_STEP_MS


def run_demo(
    users: int = DEFAULT_USERS,
    seed: int = 7,
    database_url: str | None = None,
    *,
    journeys: Sequence[str | Path] | None = None,
    days: float = FAST_FORWARD_DAYS,
    console: Console | None = None,
    keep_serving: bool = False,
    end: datetime | None = None,
) -> DemoSummary:
    """`end`: when the traffic ends (default: now); the hour it falls on decides which of the
    demo's messages fall in the people's night."""
    console = console or Console()
    if users < 1:
        raise DemoError("the demo needs at least one user")
    if days < SHOPPING_DAYS:
        raise DemoError(f"the demo covers at least {SHOPPING_DAYS:g} days")
    files = _journey_files(journeys)
    definitions = _definitions(files)
    started = time.perf_counter()
    tmpdir = None
    if database_url is None:
        tmpdir = Path(tempfile.mkdtemp(prefix="nudgeflow-demo-"))
        database_url = f"sqlite:///{tmpdir / 'demo.db'}"
    settings = _demo_settings(database_url)
    summary = DemoSummary(database_url=database_url)
    server: ThreadedServer | None = None
    forward: _FastForward | None = None
    try:
        with console.status("starting the server and preparing the database…"):
            _prepare(database_url)
            server = _start_server(settings)
            workspace = _create_workspace(server)
            _set_base_url(server, workspace.workspace_id)
        summary.workspace_id = workspace.workspace_id
        summary.server_url = server.url
        console.print(
            f"[bold]Nudgeflow demo[/]: server on {server.url}, database "
            f"{'temporary SQLite' if tmpdir else _display_url(database_url)}, workspace {workspace.workspace_id}"
        )
        admin = {"Authorization": f"Bearer {workspace.admin_token}"}

        # The last `days` of a shop's life, ending now, replayed on a virtual clock.
        end = (end or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(days=days)
        messages = list(generate_traffic(users, seed, start=start, days=SHOPPING_DAYS, horizon_days=days))
        rng = random.Random(seed)
        summary.messages = len(messages)
        summary.sample_user = _showcase(messages)
        summary.virtual_start, summary.virtual_end = start, end

        with httpx.Client(base_url=server.url, auth=(workspace.write_key, ""), timeout=30) as client, _http_errors():
            # Templates first: publishing checks that each send step's template is there.
            summary.templates_applied = _apply_templates(client, admin)
            summary.journeys_published = _publish_journeys(client, admin, files)
            console.print(
                f"published {len(summary.journeys_published)} "
                f"journey{'' if len(summary.journeys_published) == 1 else 's'}"
                f" from {_shown_path(files)}: " + ", ".join(summary.journeys_published),
                highlight=False,
            )
            policies, policies_source, policies_version = _apply_policies(server, workspace.workspace_id)
            if policies is not None:
                summary.policies = PolicyReport(source=policies_source, version=policies_version)
                summary.collision_window = policies.collision.window if policies.collision else None
                console.print(
                    f"applied the send policies of {policies_source} (version {policies_version}): "
                    f"{len(policies.frequency_caps) + len(policies.fewer.caps)} frequency caps, "
                    f"{len(policies.quiet_hours)} quiet hours, "
                    + (
                        f"a {policies.collision.window} collision window"
                        if policies.collision
                        else "no collision window"
                    )
                    + (
                        f", a global control group of {policies.control_group.share:.0%} of people"
                        f" (reset {policies.control_group.reset})"
                        if policies.control_group is not None and policies.control_group.share > 0
                        else ""
                    ),
                    highlight=False,
                )
            live_segments = _apply_segments(server, workspace.workspace_id)
            if live_segments:
                console.print(
                    f"applied {len(live_segments)} segments from examples/segments: "
                    + ", ".join(segment.id for segment in live_segments),
                    highlight=False,
                )
            summary.catalog = _import_catalog(client, admin)
            console.print(
                f"applied {len(summary.templates_applied)} templates from examples/templates, imported "
                f"{summary.catalog.get('products', 0)} products and {summary.catalog.get('places', 0)} stores; "
                f"email goes to the dev inbox (SMTP on 127.0.0.1:{settings.dev_smtp_port}), "
                f"links point at {server.url}",
                highlight=False,
            )
            forward = _FastForward(server, _arrival_ms(messages[0]) if messages else int(start.timestamp() * 1000))
            summary.subscribed = _subscribe_browsers(client, forward, messages)
            console.print(
                f"subscribed {summary.subscribed} browsers to push (a local Web Push service on "
                f"{forward.dev_push.url}; each registered through /v1/push/subscriptions, as the browser SDK does)",
                highlight=False,
            )
            _fast_forward(console, client, forward, messages, rng, summary, users, end, definitions)
            if summary.rejected:
                raise DemoError(f"the server refused {summary.rejected} events; see above")

            summary.stats = client.get("/api/stats", headers=admin, auth=None).json()
            summary.duplicates = int(_metric(client.get("/metrics").text, "nudgeflow_events_duplicate_total"))
            profile = None
            if summary.sample_user:
                answer = client.get(f"/api/profiles/{summary.sample_user}", headers=admin, auth=None)
                profile = answer.json() if answer.status_code == 200 else None
        step_order = {j.id: list(j.steps) for j in definitions}
        summary.journeys = _journey_report(forward, workspace.workspace_id, summary.journeys_published, step_order)
        if policies is not None:
            summary.policies = _policy_report(forward, workspace.workspace_id, policies, summary.policies)
        summary.segments = _segment_sizes(forward, workspace.workspace_id, live_segments)
        summary.inbox = _read_inbox(forward, workspace.workspace_id)
        summary.pushes = _read_pushes(forward, workspace.workspace_id)
        summary.total_seconds = time.perf_counter() - started
        _print_summary(console, summary, profile, workspace, persistent=tmpdir is None)
        _print_inbox(console, summary, keep_serving=keep_serving)
        if keep_serving:
            email, password = console_sign_in(server, workspace.workspace_id)
            _serve_until_interrupted(console, server, email, password)
        return summary
    finally:
        if forward is not None:
            forward.close()
        if server is not None:
            server.stop()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _definitions(files: list[Path]) -> list[Any]:
    """The journeys, checked as `nudgeflow journeys validate` checks them."""
    from nudgeflow.runtime.replay import load_journeys

    try:
        return load_journeys(files)
    except ValueError as exc:
        raise DemoError(f"the journeys have errors:\n{exc}") from exc


def urgency_of(journeys: Sequence[Any]) -> Callable[[dict[str, Any]], int | None]:
    """How soon after it happens a message must be decided to start the journeys it may
    start (their triggers' max_lateness), or None when it has no such deadline."""
    from nudgeflow.core.inputs import EventInput
    from nudgeflow.core.timecalc import event_coordinates, haversine_m
    from nudgeflow.model.journeys import (
        AttributeChangeTrigger,
        EventNotFollowedTrigger,
        EventTrigger,
        LocationTrigger,
        MilestoneTrigger,
        duration_ms,
    )

    by_name: dict[str, int] = {}
    fences: list[tuple[int, Any]] = []  # (limit, trigger) of location triggers on any event
    for journey in journeys:
        trigger = journey.trigger
        if trigger.max_lateness is None:
            continue
        limit = duration_ms(trigger.max_lateness)
        if isinstance(trigger, LocationTrigger) and trigger.event is None:
            fences.append((limit, trigger))
            continue
        if isinstance(trigger, (EventTrigger, EventNotFollowedTrigger, MilestoneTrigger, LocationTrigger)):
            name = trigger.event
        elif isinstance(trigger, AttributeChangeTrigger):
            name = "identify"
        else:
            continue  # inactivity and dates are started by timers
        if name is not None:
            by_name[name] = min(by_name.get(name, limit), limit)

    def inside(coords: tuple[float, float], trigger: Any) -> bool:
        return any(haversine_m(*coords, p.latitude, p.longitude) <= trigger.radius_m for p in trigger.places)

    def limit_of(message: dict[str, Any]) -> int | None:
        name = message.get("event") if message.get("type") == "track" else message.get("type")
        limit = by_name.get(str(name))
        if fences:
            coords = event_coordinates(EventInput.from_message(message, 0))
            # Only a report inside a geofence can start a location journey.
            if coords is not None:
                for fence_limit, trigger in fences:
                    if inside(coords, trigger):
                        limit = fence_limit if limit is None else min(limit, fence_limit)
        return limit if limit is not None and limit < TIMER_STEP_MS else None

    return limit_of


def _shown_path(files: list[Path]) -> str:
    parents = {str(p.parent) for p in files}
    if len(parents) != 1:
        return f"{len(files)} files"
    parent = Path(parents.pop())
    try:
        return str(parent.relative_to(Path.cwd()))
    except ValueError:
        return str(parent)


def _fast_forward(
    console: Console,
    client: httpx.Client,
    forward: _FastForward,
    messages: list[dict[str, Any]],
    rng: random.Random,
    summary: DemoSummary,
    users: int,
    end: datetime,
    journeys: Sequence[Any],
) -> None:
    """Send the traffic a step at a time while the runtime decides it, then run the clock on."""
    from nudgeflow.core.clock import to_ms

    end_ms = to_ms(end)
    start_ms = forward.now_ms
    arrivals = [_arrival_ms(m) for m in messages]
    urgency = urgency_of(journeys)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[day]}"),
        TimeElapsedColumn(),
        console=console,
    )
    span_days = max(1, round((end_ms - start_ms) / 86_400_000))
    engine_started = time.perf_counter()
    with progress:
        task = progress.add_task(f"{users} people's traffic over HTTP, fast-forwarded", total=end_ms - start_ms, day="")

        def show() -> None:
            day = min(span_days, (forward.now_ms - start_ms) // 86_400_000 + 1)
            progress.update(task, completed=max(0, forward.now_ms - start_ms), day=f"day {day} of {span_days}")

        i = 0
        while True:
            # The next stop: the end of the step in which the next event arrives or the
            # next timer falls due, earlier if an event must be decided sooner to count.
            candidates = [_step_up(arrivals[i])] if i < len(messages) else []
            due = forward.next_due_ms()
            if due is not None:
                candidates.append(_step_up(max(due, forward.now_ms)))
            if not candidates:
                break
            stop = min(candidates)
            j = i
            while j < len(messages) and arrivals[j] <= stop:
                limit = urgency(messages[j])
                if limit is not None:
                    stop = min(stop, max(arrivals[j], arrivals[j] + limit - LATENESS_MARGIN_MS))
                j += 1
            j = i
            while j < len(messages) and arrivals[j] <= stop:
                j += 1
            if stop > end_ms:
                break
            if j > i:
                _send_slice(progress, client, [_for_the_wire(m) for m in messages[i:j]], rng, summary)
                i = j
            forward.run_at(stop)
            show()
        # Some messages again, as a retrying client would send them: stored once, decided once.
        _resend(client, messages, rng, summary)
        forward.run_at(end_ms)
        progress.update(task, completed=end_ms - start_ms, day=f"day {span_days} of {span_days}")
    summary.engine_seconds = time.perf_counter() - engine_started - summary.send_seconds
    summary.clock_stops = forward.stops
    stats = forward.runtime.stats
    summary.events_decided = stats.events_processed
    summary.timers_fired = stats.timers_fired


def _send_slice(
    progress: Progress, client: httpx.Client, slice_: list[dict[str, Any]], rng: random.Random, summary: DemoSummary
) -> None:
    sent = time.perf_counter()
    for kind, chunk in _plan(slice_, rng):
        response = _send(client, kind, chunk)
        if response.status_code != 200:
            summary.rejected += len(chunk)
            progress.console.print(f"[red]{kind} refused[/] ({response.status_code}): {response.text[:300]}")
        if kind == "batch":
            summary.batches += 1
        else:
            summary.singles += 1
    summary.send_seconds += time.perf_counter() - sent


def _resend(client: httpx.Client, messages: list[dict[str, Any]], rng: random.Random, summary: DemoSummary) -> None:
    resend = [_for_the_wire(m) for m in rng.sample(messages, min(RESEND, len(messages)))]
    half = len(resend) // 2
    for kind, chunk in [("batch", resend[:half])] + [(m["type"], [m]) for m in resend[half:]]:
        if chunk and _send(client, kind, chunk).status_code == 200:
            summary.resent += len(chunk)


def _journey_report(
    forward: _FastForward, workspace_id: str, journey_ids: list[str], step_order: dict[str, list[str]] | None = None
) -> JourneyReport:
    """Runs and sent messages per journey, as the runtime recorded them."""
    report = JourneyReport()
    journeys: dict[str, dict[str, Any]] = {
        j: {
            "entered": 0,
            "holdout": 0,
            "active": 0,
            "completed": 0,
            "exited": {},
            "converted": 0,
            "revenue": 0.0,
            "messages": {},
            "failed": {},
        }
        for j in journey_ids
    }
    exited: dict[str, Counter[str]] = defaultdict(Counter)
    with forward.db.connect() as conn:
        runs = journey_store.run_outcomes(conn, workspace_id)
        who = _user_ids(conn, workspace_id)
        logged = log_channel.recorded(conn, workspace_id)
        # Emails go through the email channel (SMTP to the dev inbox), pushes through the push
        # channel (Web Push to the dev inbox's push service): the outbox has them.
        emailed = outbox.sent_messages(conn, workspace_id, ("email", "push"))
        zones = _timezones(conn, workspace_id)
        failed = outbox.failed_steps(conn, workspace_id)
        report.timers_pending = engine_state.count_timers(conn, workspace_id)
        report.overview = load_overview(conn, workspace_id, from_day=None, to_day=None, include_machine=False)
    for journey_id, status, reason, holdout, converted_at, revenue, control in runs:
        row = journeys.setdefault(
            journey_id,
            {
                "entered": 0,
                "holdout": 0,
                "active": 0,
                "completed": 0,
                "exited": {},
                "converted": 0,
                "revenue": 0.0,
                "messages": {},
                "failed": {},
            },
        )
        row["entered"] += 1
        if control:  # in the global control group (holdout runs included), as `simulate` counts them
            row["global_control"] = row.get("global_control", 0) + 1
            row["global_control_converted"] = row.get("global_control_converted", 0) + (converted_at is not None)
        if holdout:
            row["holdout"] += 1
        elif status == "done":
            row["completed"] += 1
        elif status == "exited":
            exited[journey_id][reason or "unknown"] += 1
        else:
            row["active"] += 1
        if converted_at is not None:
            row["converted"] += 1
            row["revenue"] += float(revenue or 0.0)
            if holdout:
                row["converted_held_out"] = row.get("converted_held_out", 0) + 1
    for journey_id, counts in exited.items():
        journeys[journey_id]["exited"] = dict(sorted(counts.items()))
    report.runs = len(runs)
    steps: dict[str, Counter[str]] = defaultdict(Counter)
    first_of_step: dict[tuple[str, str], int] = {}
    found: list[dict[str, Any]] = []
    for profile_id, body, sent_at_ms in logged:
        doc = orjson.loads(body)
        found.append(
            {
                "at_ms": int(sent_at_ms),
                "who": who.get(profile_id) or doc.get("to", {}).get("email") or "(anonymous)",
                "journey": doc.get("journey_id"),
                "step": doc.get("step"),
                "channel": doc.get("channel"),
                "template": doc.get("template"),
                "variant": doc.get("variant"),
                "timezone": doc.get("to", {}).get("timezone"),
                "by": "log",
            }
        )
    report.logged = len(found)
    for profile_id, journey_id, step, template, variant, sent_at_ms, channel in emailed:
        found.append(
            {
                "at_ms": int(sent_at_ms or 0),
                "who": who.get(profile_id) or "(anonymous)",
                "journey": journey_id,
                "step": step,
                "channel": channel,
                "template": template,
                "variant": variant,
                "timezone": zones.get(profile_id),
                "by": "smtp" if channel == "email" else "web push",
            }
        )
    report.emailed = sum(1 for row in emailed if row[6] == "email")
    report.pushed = len(emailed) - report.emailed
    found.sort(key=lambda m: m["at_ms"])  # stable: the order each channel recorded within a moment
    all_sent: list[dict[str, Any]] = []
    for message in found:
        all_sent.append(message)
        steps[message["journey"]][message["step"]] += 1
        first_of_step.setdefault((message["journey"], message["step"]), len(all_sent) - 1)
        if message["who"] != "(anonymous)":
            report.by_profile.setdefault(message["who"], []).append(message)
    order = step_order or {}

    def in_order(journey_id: str, counts: Counter[str]) -> dict[str, int]:
        known = order.get(journey_id, [])
        return {s: counts[s] for s in sorted(counts, key=lambda s: (known.index(s) if s in known else len(known), s))}

    for journey_id, counts in steps.items():
        if journey_id in journeys:
            journeys[journey_id]["messages"] = in_order(journey_id, counts)
    failed_steps: dict[str, Counter[str]] = defaultdict(Counter)
    for journey_id, step in failed:
        failed_steps[journey_id][step] += 1
    for journey_id, counts in failed_steps.items():
        if journey_id in journeys:
            journeys[journey_id]["failed"] = in_order(journey_id, counts)
    for row in journeys.values():
        row["revenue"] = round(row["revenue"], 2)
    report.summary = {"journeys": journeys}
    report.sent = len(all_sent)
    report.failed = sum(sum(c.values()) for c in failed_steps.values())
    # A sample that shows every journey: the first message of each step.
    report.sample = [all_sent[k] for k in sorted(first_of_step.values())]
    return report


def _policy_report(forward: _FastForward, workspace_id: str, policies: Any, applied: PolicyReport) -> PolicyReport:
    """What the send policies deferred, sent later and dropped: the decisions the engine
    took, and where each message ended in the outbox."""
    with forward.db.connect() as conn:
        ended = outbox.outcomes(conn, workspace_id)
    return build_report(policies, applied.source, applied.version, forward.decisions, ended)


def _segment_sizes(forward: _FastForward, workspace_id: str, applied: Sequence[Any]) -> list[dict[str, Any]]:
    """Each segment applied, with its members when the fast-forward ended (exact: the rows
    the engine keeps as events arrive and windows lapse)."""
    from nudgeflow.store import segments as segment_store

    if not applied:
        return []
    with forward.db.connect() as conn:
        sizes = segment_store.sizes(conn, workspace_id)
    return [
        {"id": s.id, "name": s.name, "description": s.description or "", "members": sizes.get(s.id, 0)} for s in applied
    ]


def _user_ids(conn: Connection, workspace_id: str) -> dict[str, str]:
    """profile id -> userId, following merges (a run may belong to a profile merged away)."""
    ids = {pid: uid for pid, uid in profiles.user_ids(conn, workspace_id) if uid}
    for source, target in profiles.merges(conn, workspace_id):
        if source not in ids and target in ids:
            ids[source] = ids[target]
    return ids


def _timezones(conn: Connection, workspace_id: str) -> dict[str, str]:
    """profile id -> its timezone trait, following merges like _user_ids."""
    zones: dict[str, str] = {}
    for pid, traits in profiles.all_traits(conn, workspace_id):
        try:
            zone = orjson.loads(traits or "{}").get("timezone")
        except (orjson.JSONDecodeError, AttributeError):
            zone = None
        if isinstance(zone, str):
            zones[pid] = zone
    for source, target in profiles.merges(conn, workspace_id):
        if source not in zones and target in zones:
            zones[source] = zones[target]
    return zones


def _text_part(msg: Any) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and part.get_content_disposition() != "attachment":
            try:
                return str(part.get_content())
            except (LookupError, ValueError):
                return ""
    return ""


def _read_inbox(forward: _FastForward, workspace_id: str) -> list[dict[str, Any]]:
    """What the dev inbox's SMTP sink received, parsed back, each matched to the outbox row
    that sent it (by its X-Nudgeflow-Message-Key header): journey, step and template."""
    with forward.db.connect() as conn:
        rows = dev_inbox.received(conn, "email")
        sent = {
            key: (journey, step, template, profile_id)
            for key, journey, step, template, profile_id in outbox.origins(conn, workspace_id, "email")
        }
        who = _user_ids(conn, workspace_id)
    inbox: list[dict[str, Any]] = []
    for inbox_id, rcpt, subject, raw in rows:
        # The key is all the table needs: the full parse (slow) waits until a message is shown.
        header_end = raw.find("\n\n")
        found = _KEY_HEADER.search(raw, 0, header_end if header_end >= 0 else len(raw))
        key = found.group(1).strip() if found else ""
        journey, step, template, profile_id = sent.get(key, (None, None, None, None))
        inbox.append(
            {
                "id": int(inbox_id),
                "to": rcpt,
                "subject": subject or "",
                "journey": journey,
                "step": step,
                "template": template,
                "who": who.get(profile_id or "", ""),
                "raw": raw,
            }
        )
    return inbox


def _subscribe_browsers(client: httpx.Client, forward: _FastForward, messages: list[dict[str, Any]]) -> int:
    """One browser per device id of the traffic (its anonymousId, else its userId) subscribes
    to the local Web Push service and registers the subscription as the browser SDK does,
    dated at the start of the fast-forward (so it counts as no one's activity later on)."""
    from nudgeflow.core.clock import from_ms

    seen: dict[str, str] = {}
    for message in messages:
        if message.get("anonymousId"):
            seen.setdefault(message["anonymousId"], "anonymousId")
        elif message.get("userId"):
            seen.setdefault(message["userId"], "userId")
    at = from_ms(forward.now_ms).isoformat().replace("+00:00", "Z")
    for device, kind in seen.items():
        browser = forward.dev_push.service.subscribe()
        answer = client.post(
            "/v1/push/subscriptions",
            json={kind: device, "subscription": browser.info(), "timestamp": at, "userAgent": "Nudgeflow demo browser"},
        )
        if answer.status_code != 200:
            raise DemoError(f"push subscription refused ({answer.status_code}): {answer.text[:300]}")
    return len(seen)


def _read_pushes(forward: _FastForward, workspace_id: str) -> list[dict[str, Any]]:
    """The pushes the dev inbox's Web Push service decrypted, each matched to its outbox row."""
    with forward.db.connect() as conn:
        rows = dev_inbox.received(conn, "push")
        sent = {
            key: (journey, step, template, profile_id)
            for key, journey, step, template, profile_id in outbox.origins(conn, workspace_id, "push")
        }
        who = _user_ids(conn, workspace_id)
    pushes = []
    for push_id, device, title, raw in rows:
        doc = orjson.loads(raw)
        note = doc.get("notification") if isinstance(doc.get("notification"), dict) else {}
        journey, step, template, profile_id = sent.get(str(note.get("key", "")), (None, None, None, None))
        pushes.append(
            {
                "id": int(push_id),
                "device": device,
                "title": title or "",
                "body": note.get("body", ""),
                "url": note.get("url"),
                "ttl": doc.get("ttl"),
                "urgency": doc.get("urgency"),
                "journey": journey,
                "step": step,
                "template": template,
                "who": who.get(profile_id or "", ""),
            }
        )
    return pushes


_KEY_HEADER = re.compile(r"^X-Nudgeflow-Message-Key:[ \t]*(.+)$", re.MULTILINE | re.IGNORECASE)


def parse_email(message: dict[str, Any]) -> dict[str, Any]:
    """From, headers and the text part of an email `_read_inbox` found."""
    from email import message_from_string, policy

    msg = message_from_string(message["raw"], policy=policy.default)
    return {
        "from": str(msg.get("From") or ""),
        "headers": {name: str(value) for name, value in msg.items()},
        "text": _text_part(msg),
    }


def _first_lines(body: str, count: int = 8) -> list[str]:
    """The text part's first lines, tracked links shortened to their text."""
    lines = [" ".join(_LINK.sub(" ↗", line).split()) for line in body.splitlines()]
    return [line for line in lines if line][:count]


_LINK = re.compile(r"\s*\((?:https?://)[^)\s]+\)")


def _samples(summary: DemoSummary) -> list[dict[str, Any]]:
    """A few emails worth reading: the showcase person's cart reminder if they got one, a
    win-back, an order confirmation."""
    chosen: list[dict[str, Any]] = []
    for journey, template in SAMPLE_EMAILS:
        these = [m for m in summary.inbox if (m["journey"], m["template"]) == (journey, template)]
        mine = [m for m in these if m["who"] == summary.sample_user]
        if mine or these:
            chosen.append((mine or these)[0])
    return chosen


def _print_inbox(console: Console, summary: DemoSummary, *, keep_serving: bool) -> None:
    inbox = summary.inbox
    counts: Counter[tuple[str, str]] = Counter((m["journey"] or "?", m["template"] or "?") for m in inbox)
    table = Table(
        title=f"The dev inbox: {len(inbox):,} emails received over SMTP", title_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("journey", no_wrap=True)
    table.add_column("template", no_wrap=True)
    table.add_column("emails", justify="right")
    previous = None
    for (journey, template), count in sorted(counts.items()):
        table.add_row(escape(journey) if journey != previous else "", escape(template), f"{count:,}")
        previous = journey
    console.print(table)
    for m in _samples(summary):
        m = {**m, **parse_email(m)}
        lines = _first_lines(m["text"])
        headers = m["headers"]
        # One-click (List-Unsubscribe-Post, RFC 8058) needs an https public URL: the demo's
        # is http://127.0.0.1, so its marketing email carries the link alone, and says so.
        if "List-Unsubscribe" not in headers:
            unsubscribe = ""
        elif "List-Unsubscribe-Post" in headers:
            unsubscribe = "  List-Unsubscribe (one-click, RFC 8058): yes\n"
        else:
            unsubscribe = "  List-Unsubscribe: yes (one-click needs an https public URL: RFC 8058)\n"
        console.print(
            f"[bold]{escape(m['journey'] or '')} / {escape(m['template'] or '')}[/]\n"
            f"  From:    {escape(m['from'])}\n"
            f"  To:      {escape(m['to'])}\n"
            f"  Subject: {escape(m['subject'])}\n" + unsubscribe + "".join(f"  │ {escape(line)}\n" for line in lines),
            highlight=False,
            soft_wrap=True,
        )
    _print_pushes(console, summary)
    if keep_serving:
        return
    console.print(
        "[bold]Browse them[/]: run the demo with --keep-serving and open the dev inbox it prints, or\n"
        "  nudgeflow serve --dev   and   http://127.0.0.1:8000/dev/inbox   (with a journey's emails sent by it)",
        highlight=False,
        soft_wrap=True,
    )


def _print_pushes(console: Console, summary: DemoSummary) -> None:
    pushes = summary.pushes
    counts: Counter[tuple[str, str]] = Counter((p["journey"] or "?", p["template"] or "?") for p in pushes)
    table = Table(
        title=f"The dev inbox: {len(pushes):,} pushes received over Web Push (decrypted)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("journey", no_wrap=True)
    table.add_column("template", no_wrap=True)
    table.add_column("pushes", justify="right")
    previous = None
    for (journey, template), count in sorted(counts.items()):
        table.add_row(escape(journey) if journey != previous else "", escape(template), f"{count:,}")
        previous = journey
    console.print(table)
    shown: set[str] = set()
    for p in pushes:
        if p["journey"] in shown or len(shown) >= 3:
            continue
        shown.add(p["journey"])
        console.print(
            f"[bold]{escape(p['journey'] or '')} / {escape(p['template'] or '')}[/] "
            f"to {escape(p['who'] or p['device'])}\n"
            f"  Title: {escape(p['title'])}\n  Body:  {escape(str(p['body']))}\n"
            f"  Opens: {escape(str(p['url'] or ''))}  "
            f"(TTL {p['ttl']} s{', urgency ' + p['urgency'] if p['urgency'] else ''})",
            highlight=False,
            soft_wrap=True,
        )


# The console user `--keep-serving` makes in the demo's workspace (docs/console.md).
DEMO_ADMIN = "demo-admin@example.com"


def console_sign_in(server: ThreadedServer, workspace_id: str) -> tuple[str, str]:
    """An admin console user of the demo's workspace, with a password made for this run:
    (email, password), for `--keep-serving` to print."""
    import secrets

    from nudgeflow.core.clock import to_ms
    from nudgeflow.store import console_users

    password = secrets.token_urlsafe(15)
    state = server.app.state.nudgeflow
    with state.engine.begin() as conn:
        console_users.create_user(
            conn, workspace_id, DEMO_ADMIN, console_users.ADMIN, password, to_ms(state.clock.now())
        )
    return DEMO_ADMIN, password


def _serve_until_interrupted(console: Console, server: ThreadedServer, email: str, password: str) -> None:
    console.print(
        f"\n[bold]The demo server stays up[/]: the dev inbox is at {server.url}/dev/inbox "
        "(each email's HTML, text part and headers).\n"
        f"[bold]The console[/] is at {server.url}/ : sign in as {email} with the password {password}\n"
        "Ctrl-C to stop.",
        highlight=False,
        soft_wrap=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")


def _counts(title: str, what: str, counts: dict[str, int]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(what)
    table.add_column("events", justify="right")
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], str(item[0]))):
        table.add_row(str(name), f"{count:,}")
    table.add_row("[bold]total[/]", f"[bold]{sum(counts.values()):,}[/]")
    return table


def _when(message: dict[str, Any], sep: str = ", ") -> str:
    """The virtual time a message was sent, in UTC and in the person's own timezone."""
    from zoneinfo import ZoneInfo

    from nudgeflow.core.clock import from_ms

    at = from_ms(message["at_ms"])
    shown = at.strftime("%a %b %d %H:%M UTC")
    zone = message.get("timezone")
    if isinstance(zone, str):
        try:
            shown += sep + at.astimezone(ZoneInfo(zone)).strftime("%H:%M local")
        except (ValueError, KeyError):  # not a zone name: UTC alone
            pass
    return shown


def _reason(reason: str) -> str:
    return reason.split(":", 1)[1] if reason.startswith("exit_event:") else reason


def _print_journeys(console: Console, summary: DemoSummary) -> None:
    report = summary.journeys
    start, end = summary.virtual_start, summary.virtual_end
    forward = Table(
        title="Fast-forward: the production runtime on a virtual clock", title_justify="left", show_header=False
    )
    forward.add_column("what")
    forward.add_column("value")
    if start is not None and end is not None:
        forward.add_row(
            "virtual time",
            f"{start:%b %d %H:%M} → {end:%b %d %H:%M} UTC ({(end - start) / timedelta(days=1):g} days), "
            f"{summary.clock_stops:,} stops of the clock",
        )
    forward.add_row("journeys live", f"{len(summary.journeys_published)}, applied and published over the admin API")
    forward.add_row("events decided", f"{summary.events_decided:,}")
    forward.add_row("timers fired", f"{summary.timers_fired:,} ({report.timers_pending:,} pending at the end)")
    parts = [f"{report.emailed:,} emails over SMTP to the dev inbox", f"{report.pushed:,} push messages over Web Push"]
    if report.logged:
        parts.append(f"{report.logged:,} to the log channel")
    forward.add_row("messages sent", f"{report.sent:,}: {', '.join(parts)}; {report.failed:,} failed")
    forward.add_row("engine time", f"{summary.engine_seconds:.1f} s (demo: {summary.total_seconds:.1f} s)")
    console.print(forward)
    journeys = report.summary.get("journeys", {})
    if not journeys:
        return

    table = Table(title="What each journey did", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("journey", no_wrap=True)
    table.add_column("entered", justify="right")
    table.add_column("held out,\nexited", overflow="fold", max_width=12)
    table.add_column("converted", justify="right")
    table.add_column("sent, by step", no_wrap=True)
    width = max((len(step) for row in journeys.values() for step in row["messages"]), default=0)
    for journey_id, row in journeys.items():
        outcomes = (
            ([f"{row['holdout']:,} held out"] if row["holdout"] else [])
            + ([f"{row['global_control']:,} control group"] if row.get("global_control") else [])
            + [f"{n:,} {escape(_reason(reason))}" for reason, n in row["exited"].items()]
        )
        converted = f"{row['converted']:,}" + (f"\n${row['revenue']:,.0f}" if row["revenue"] else "")
        steps = [
            f"{escape(step):<{width}} {sent:>5,}"
            + (f" [red]({row['failed'][step]:,} failed)[/]" if row["failed"].get(step) else "")
            for step, sent in row["messages"].items()
        ]
        table.add_row(
            escape(journey_id),
            f"{row['entered']:,}",
            "\n".join(outcomes) or "-",
            converted,
            "\n".join(steps) or "none",
            end_section=True,
        )
    console.print(table)
    lift = _lift_table(report.overview)
    if lift is not None:
        console.print(lift)
    program = _program_line(report.overview)
    if program is not None:
        console.print(program)
        console.print()
    if summary.policies.source:
        console.print(policy_table(summary.policies, summary.collision_window))
    if summary.segments:
        console.print(_segment_table(summary))

    sample = Table(title="The first message of each step", title_justify="left", box=box.SIMPLE_HEAD)
    sep = ", " if console.width >= 120 else "\n"  # the local time beside the UTC one, or under it
    sample.add_column("sent (virtual time)", no_wrap=True)
    sample.add_column("who", no_wrap=True)
    sample.add_column("journey / step", overflow="fold")
    sample.add_column("channel: template", overflow="fold")
    for m in report.sample:
        template = f"{m['channel']}: {m['template']}" + (f" [{m['variant']}]" if m.get("variant") else "")
        sample.add_row(_when(m, sep), escape(str(m["who"])), escape(f"{m['journey']} / {m['step']}"), escape(template))
    console.print(sample)


def _absolute(lift: dict[str, Any]) -> str:
    a = lift["conversion"]["absolute_lift"]
    return "-" if a is None else f"{a['value']:+.1%} [{a['low']:+.1%}, {a['high']:+.1%}]"


def _lift_table(overview: dict[str, Any]) -> Table | None:
    """Each journey with a holdout, as the reports give it: did it cause conversions? Treated
    and held-out runs both outside the global control group (measure/report.py; the methods
    are in docs/measurement.md)."""
    table = Table(
        title="Lift: conversion rate treated vs held out (95 % intervals: Newcomb; p: pooled z-test)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("journey", no_wrap=True)
    for name in ("treated", "held out", "absolute lift"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("p", justify="right")
    table.add_column("note", overflow="fold", max_width=40)
    shown = False
    for journey in overview.get("journeys", []):
        lift = journey["lift"]
        if lift is None:
            continue
        c = lift["conversion"]
        table.add_row(
            escape(journey["journey_id"]),
            f"{c['treated_conversions']:,}/{c['treated_people']:,}",
            f"{c['held_out_conversions']:,}/{c['held_out_people']:,}",
            _absolute(lift),
            "-" if c["p_value"] is None else f"{c['p_value']:.2g}",
            escape("; ".join(c["notes"])) or "-",
        )
        shown = True
    return table if shown else None


def _program_line(overview: dict[str, Any]) -> str | None:
    """The whole program's lift: the global control group against everyone else, people not runs."""
    program = overview.get("lift")
    if not program:
        return None
    c = program["conversion"]
    p = "-" if c["p_value"] is None else f"{c['p_value']:.2g}"
    notes = f" ({escape('; '.join(c['notes']))})" if c["notes"] else ""
    return (
        "[bold]Program lift[/] (all journeys together, causal: the global control group got no marketing): "
        f"converted {c['treated_conversions']:,}/{c['treated_people']:,} people outside the group vs "
        f"{c['held_out_conversions']:,}/{c['held_out_people']:,} in it, {_absolute(program)}, p {p}{notes}"
    )


def _segment_table(summary: DemoSummary) -> Table:
    events = summary.stats.get("track_events", {})
    entered, exited = int(events.get(SEGMENT_ENTERED, 0)), int(events.get(SEGMENT_EXITED, 0))
    table = Table(
        title=f"Segments (examples/segments), kept by the engine as events came: {entered:,} {SEGMENT_ENTERED} "
        f"and {exited:,} {SEGMENT_EXITED} events in the people's logs",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("segment", no_wrap=True)
    table.add_column("who", overflow="fold")
    table.add_column("members at the end", justify="right")
    for s in summary.segments:
        table.add_row(escape(s["id"]), escape(s["description"] or s["name"]), f"{s['members']:,}")
    return table


def _print_summary(
    console: Console, summary: DemoSummary, profile: dict[str, Any] | None, workspace: Any, *, persistent: bool
) -> None:
    stats = summary.stats
    console.print()
    console.print(_counts("Events by type", "type", stats.get("events_by_type", {})))
    console.print(_counts("Track events by name", "event", stats.get("track_events", {})))

    known = stats.get("known_profiles", 0)
    overview = Table(title="What was stored", title_justify="left", show_header=False)
    overview.add_column("what")
    overview.add_column("value")
    # The runtime appends an engagement event per outcome (Message Sent from SMTP and Web Push,
    # Message Logged for what the log channel took, Message Failed).
    engagement = sum(int(stats.get("track_events", {}).get(name, 0)) for name in ENGAGEMENT_EVENTS)
    overview.add_row("events sent", f"{summary.messages:,}: {summary.batches} batches + {summary.singles} single calls")
    subscribed = int(stats.get("track_events", {}).get(PUSH_SUBSCRIBED, 0))
    # The engine appends Segment Entered / Exited when a person's membership changes.
    moves = sum(int(stats.get("track_events", {}).get(name, 0)) for name in (SEGMENT_ENTERED, SEGMENT_EXITED))
    overview.add_row(
        "events stored",
        f"{stats.get('events', 0):,}: the {summary.messages:,} sent, {subscribed:,} "
        f"Push Subscribed (the browsers registering), {engagement:,} "
        "engagement events the runtime appended (one per message sent)"
        + (f" and {moves:,} segment entries and exits" if moves else ""),
    )
    overview.add_row("profiles", f"{stats.get('profiles', 0):,}")
    overview.add_row("  known (with a userId)", f"{known:,}")
    overview.add_row("  anonymous", f"{stats.get('profiles', 0) - known:,}")
    overview.add_row("profiles merged", f"{stats.get('merges', 0):,} (a second device, then a login)")
    overview.add_row(
        "duplicates",
        f"{summary.resent} re-sent, "
        f"{stats.get('events', 0) - summary.messages - engagement - subscribed - moves} stored again, "
        f"{summary.duplicates} counted as duplicates",
    )
    overview.add_row(
        "ingest over HTTP",
        f"{summary.rate:,.0f} events/s, acknowledged after commit (sent as they happen: "
        f"{summary.messages / max(1, summary.batches + summary.singles):,.0f} events a request)",
    )
    console.print(overview)
    _print_journeys(console, summary)

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
        latest = profile.get("recent_events", [])
        latest = [e for e in latest if e.get("event") not in ENGAGEMENT_EVENTS] or latest
        recent = [
            e.get("event") if e.get("type") == "track" else f"{e.get('type')} {e.get('event') or ''}".strip()
            for e in latest[:5]
        ]
        person.add_row("latest events", ", ".join(str(r) for r in recent))
        mine = summary.journeys.by_profile.get(summary.sample_user or "", [])
        person.add_row(
            "messages sent",
            "\n".join(f"{_when(m)}  {m['journey']} / {m['step']} ({m['channel']})" for m in mine) or "none",
        )
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
