"""`nudgeflow serve`: the HTTP API, and with it the engine; or one role of them (docs/roles.md)."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from nudgeflow.cli.common import DatabaseOpt, err, fail, load_settings
from nudgeflow.model.workspace_keys import check_public_url
from nudgeflow.settings import OPS_ONLY_ROLES, ROLE_ALL, ROLE_API, ROLES

# --role's choices: settings.ROLES, as typer takes them.
Role = Enum("Role", {name: name for name in ROLES}, type=str)  # type: ignore[misc]
DEFAULT_ROLE = Role(ROLE_ALL)

if TYPE_CHECKING:
    from nudgeflow.settings import Settings


def serve(
    database: DatabaseOpt = None,
    role: Annotated[
        Role,
        typer.Option(
            case_sensitive=False,
            help="What this process runs (docs/roles.md). all: the HTTP API, the engine and the dispatcher in one "
            "process. api: the HTTP API only, any number. engine: a partitioned engine worker (events and timers of "
            "the partitions it leases; the holder of partition 0 also backfills, applies segments and looks at "
            "experiments), any number. dispatch: outbox dispatch only, any number "
            "(PostgreSQL). engine and dispatch serve only /healthz and /metrics on --port; they need PostgreSQL.",
        ),
    ] = DEFAULT_ROLE,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            metavar="URL",
            help="Where the outside world reaches this server (links in messages); env NUDGEFLOW_PUBLIC_URL. "
            "Needed off loopback.",
        ),
    ] = None,
    reuse_port: Annotated[
        bool,
        typer.Option(
            "--reuse-port",
            help="With --role api: listen with SO_REUSEPORT, so several API processes share --host/--port and "
            "the kernel spreads new connections between them (Linux; docs/roles.md); env NUDGEFLOW_REUSE_PORT=1.",
        ),
    ] = False,
    log_requests: Annotated[bool, typer.Option(help="Log one line per request.")] = False,
    dev: Annotated[
        bool, typer.Option("--dev", help="Development: email goes to a built-in SMTP sink, shown at /dev/inbox.")
    ] = False,
    dev_smtp_port: Annotated[
        int, typer.Option(min=1, max=65535, help="The dev inbox's SMTP port (with --dev).")
    ] = 1025,
    bounce_smtp: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT", help="Receive bounces (DSN) and ARF complaints by SMTP here (docs/bounces.md)."
        ),
    ] = None,
    bounce_domain: Annotated[
        list[str] | None,
        typer.Option(
            metavar="DOMAIN",
            help="Domain of the signed bounce addresses bounces+<workspace>.<ref>.<mac>@DOMAIN "
            "(repeatable; with --bounce-smtp).",
        ),
    ] = None,
    bounce_workspace: Annotated[
        str | None, typer.Option(help="Workspace of feedback-loop reports sent to fbl@DOMAIN (no +<workspace> tag).")
    ] = None,
) -> None:
    """Run the HTTP API (ingest, admin, health, metrics) with the engine and the dispatcher,
    or one role of them (--role). SIGTERM drains: see docs/roles.md."""
    # The server stack (uvicorn, the app, the runtime) is loaded only by the command that runs it:
    # every other command would pay its import time.
    import uvicorn

    from nudgeflow.logs import configure_logging
    from nudgeflow.runtime.heap import settle_heap
    from nudgeflow.settings import ConfigError
    from nudgeflow.store.database import DatabaseError
    from nudgeflow.store.engine_lock import EngineLocked
    from nudgeflow.store.secret_box import SecretKeyError
    from nudgeflow.web.app import create_app

    settings = load_settings(
        database,
        host=host,
        port=port,
        log_requests=log_requests,
        dev_mode=dev or None,
        dev_smtp_port=dev_smtp_port,
        reuse_port=reuse_port or None,
    )
    role_name = str(role.value)
    check_role(settings, role_name, dev=dev, bounce_smtp=bounce_smtp)
    # --role api is what NUDGEFLOW_ENGINE=0 has always meant: the HTTP API without an engine.
    settings = settings.with_(role=role_name, engine_enabled=settings.engine_enabled and role_name != ROLE_API)
    settings = settings.with_(public_url=serve_public_url(settings, public_url, dev))
    configure_logging(settings.log_level)
    err.print(
        f"public URL: {settings.public_url} (links in messages; a workspace's public_base_url wins)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if bounce_smtp:  # a usage error, before the database is opened
        from nudgeflow.runtime.inbound_smtp import parse_listen  # the server stack, as above

        try:
            parse_listen(bounce_smtp)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
    if role_name in OPS_ONLY_ROLES:
        err.print(f"role {role_name}: /healthz and /metrics on http://{host}:{port} (no API)", highlight=False)
    listener = None
    if settings.reuse_port:
        # Bound here, before the database is opened: a port another program holds without
        # SO_REUSEPORT is said at once. Not listening yet: the kernel gives it no connection
        # until uvicorn listens on it, once the app has started.
        try:
            listener = shared_listener(host, port)
        except OSError as exc:
            raise fail(
                f"--reuse-port: cannot bind {host}:{port}: {exc.strerror or exc} (a process holding it without "
                "SO_REUSEPORT, or as another user, keeps it to itself)"
            ) from exc
        err.print(
            f"role api: listening on http://{host}:{port} with SO_REUSEPORT, shared with the other --reuse-port "
            "processes there",
            highlight=False,
        )
    if dev:
        err.print(
            f"dev inbox: http://{host}:{port}/dev/inbox (SMTP sink on {settings.dev_smtp_host}:{dev_smtp_port};"
            " a local Web Push service for simulated browsers, its address on that page)"
        )
    try:
        application = create_app(settings)
    except DatabaseError as exc:
        raise fail(str(exc)) from exc
    except SecretKeyError as exc:  # a malformed NUDGEFLOW_SECRET_KEY: named, never shown
        raise fail(str(exc), 2) from exc
    except ConfigError as exc:  # a file a variable names that cannot be used (NUDGEFLOW_APPLE_RELAY_RANGES)
        raise fail(str(exc), 2) from exc
    if (runtime := application.state.nudgeflow.runtime) is not None:
        # One engine per database (README: Running the server): a second one exits here,
        # before it listens, naming the first.
        try:
            runtime.claim_database()
        except EngineLocked as exc:
            raise fail(str(exc)) from exc
        except Exception as exc:  # a server that does not answer, a directory we cannot write
            raise fail(f"cannot take the engine lock: {exc}") from exc
    bounces = None
    if bounce_smtp:
        from nudgeflow.runtime.inbound_smtp import committer_jobs, start_bounce_smtp  # as above

        try:
            smtp_host, smtp_port = parse_listen(bounce_smtp)
            state = application.state.nudgeflow
            bounces = start_bounce_smtp(
                committer_jobs(state.committer),
                state.clock,
                smtp_host,
                smtp_port,
                bounce_domain or [],
                bounce_workspace,
            )
        except (ValueError, OSError, RuntimeError) as exc:
            raise fail(f"bounce SMTP server: {exc}") from exc
        err.print(f"bounces: SMTP on {smtp_host}:{smtp_port} for {', '.join(bounce_domain or [])}")
    # Everything loaded so far lives as long as the process: keep the cyclic collector from
    # walking it again on every full collection (the longest pauses a busy server takes), and
    # from running every few hundred allocations (runtime/heap.py; the benchmarks call it too).
    settle_heap()
    # uvicorn turns SIGTERM and SIGINT into a graceful shutdown (the lifespan's end drains the
    # runtime), then raises the signal again to the handler found at start. Ours exits 0 on
    # that second delivery, rather than the process dying by the signal.
    signal.signal(signal.SIGTERM, _after_shutdown)
    try:
        if listener is None:
            uvicorn.run(application, host=host, port=port, log_config=None, access_log=False, lifespan="on")
        else:
            # uvicorn.run binds its own socket, without SO_REUSEPORT: serve on ours. What
            # uvicorn.run adds around Server.run is its exit status when startup fails.
            config = uvicorn.Config(application, host=host, port=port, log_config=None, access_log=False, lifespan="on")
            server = uvicorn.Server(config)
            try:
                server.run(sockets=[listener])
            except KeyboardInterrupt:
                pass
            if not server.started:
                raise SystemExit(3)  # uvicorn's STARTUP_FAILURE; it has logged why
    finally:
        if listener is not None:
            listener.close()
        if bounces is not None:
            bounces.stop()


def _after_shutdown(_signum: int, _frame: object) -> None:
    """SIGTERM raised again by uvicorn once its shutdown is done: exit 0. (Before uvicorn
    has taken the signal, while the server is still being built, it ends the process at
    once, as it should: nothing runs yet.)"""
    raise SystemExit(0)


def check_role(settings: Settings, role: str, *, dev: bool, bounce_smtp: str | None) -> None:
    """Refuse (exit 2) the combinations that make no sense, saying what is allowed instead."""
    if settings.reuse_port and role == ROLE_ALL:
        raise fail(
            "--reuse-port (NUDGEFLOW_REUSE_PORT) with --role all: the embedded runtime (engine and dispatch) runs "
            "in one process per database, so no second --role all can share its port. Share a port between "
            "--role api processes, beside one --role all (on a port of its own) or engine and dispatch processes "
            "(docs/roles.md)",
            2,
        )
    if settings.reuse_port and role in OPS_ONLY_ROLES:
        raise fail(
            f"--reuse-port (NUDGEFLOW_REUSE_PORT) with --role {role}: its port serves /healthz and /metrics of "
            "that one process, which a shared port would answer for any of them; give each its own port. "
            "--reuse-port is for --role api",
            2,
        )
    if settings.reuse_port:
        try:
            reuse_port_option()
        except ValueError as exc:
            raise fail(f"--reuse-port (NUDGEFLOW_REUSE_PORT): {exc}", 2) from None
    if role in OPS_ONLY_ROLES and settings.is_sqlite:
        raise fail(
            f"--role {role} needs PostgreSQL (the database is SQLite). On SQLite the engine and the dispatcher run "
            "in one process, --role all (the default), beside any number of --role api processes (docs/roles.md)",
            2,
        )
    if role in OPS_ONLY_ROLES and not settings.engine_enabled:
        raise fail(
            f"--role {role} with NUDGEFLOW_ENGINE=0: that variable means an API process without engine or dispatch; "
            "unset it, or use --role api",
            2,
        )
    if dev and role != ROLE_ALL:
        raise fail(
            f"--dev with --role {role}: the dev inbox catches the mail and pushes of the dispatcher in its own "
            "process, so it runs with --role all only",
            2,
        )
    if bounce_smtp and role in OPS_ONLY_ROLES:
        raise fail(
            f"--bounce-smtp with --role {role}: received bounces are ingest (events into the log); "
            "run it on a --role api or --role all process",
            2,
        )


def reuse_port_option() -> int:
    """The socket option under which several processes listen on one port and the kernel
    spreads new connections between them; ValueError saying why where there is none."""
    if sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT"):
        return socket.SO_REUSEPORT  # Linux 3.9+: by a hash of each connection's addresses
    balanced = getattr(socket, "SO_REUSEPORT_LB", None)  # FreeBSD 12+: its SO_REUSEPORT does not spread them
    if isinstance(balanced, int):
        return balanced
    if hasattr(socket, "SO_REUSEPORT"):
        raise ValueError(
            f"on {sys.platform}, SO_REUSEPORT lets processes bind one port without spreading connections "
            "between them (Linux's spreads them). Run each API process on a port of its own behind a load balancer"
        )
    raise ValueError(
        f"this system ({sys.platform}) has no SO_REUSEPORT. Run each API process on a port of its own "
        "behind a load balancer"
    )


def shared_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (reuse_port_option), not listening
    yet: uvicorn listens on it. OSError if it cannot be bound."""
    option = reuse_port_option()
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own socket: restarts bind at once
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_public_url(settings: Settings, option: str | None, dev: bool) -> str | None:
    """The server-wide public URL `serve` uses: --public-url, else NUDGEFLOW_PUBLIC_URL, else
    on loopback (or with --dev) the server's own address. Off loopback with neither, links
    would point at an address no customer can open: refuse (exit 2) and say what to set."""
    if option is not None:
        try:
            return check_public_url(option)
        except ValueError as exc:
            raise fail(f"--public-url: {option!r} {exc}", 2) from None
    if settings.public_url:
        return settings.public_url
    host = settings.host
    if _is_loopback(host) or dev:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
        return f"http://{shown}:{settings.port}"
    raise fail(
        f"serving on {host}, which is not loopback, with no public URL: links in messages would point at no "
        "address customers can open. Give --public-url https://… or set NUDGEFLOW_PUBLIC_URL "
        "(a workspace may set its own: nudgeflow workspace set WS --public-url URL)",
        2,
    )
