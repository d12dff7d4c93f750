"""The engine lock: one single engine per database, or any number of partitioned workers.

The embedded engine reads the event log by a cursor and claims the outbox as if it were
alone; a second engine on the same database would decide the same people at once. So an
engine takes this lock before its loops start and holds it for its whole life:

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a connection of
  its own, kept open (autocommit, so it pins no snapshot). Advisory locks are per
  database, and a dead process's connection is closed by the server, which frees the lock.
  Who holds it is written to the `engine_lock` table for a refused engine to name.
- SQLite: `flock` on a file beside the database (`<db>.engine.lock`), whose content names
  the holder. The kernel frees the lock when the process ends, however it ends. (Like
  SQLite's own locking, this needs a local file system, not a network share.)

Partitioned engine workers (`serve --role engine`, runtime/partition_worker.py) hold the
same key *shared* (`acquire_shared`): any number of them run at once, each deciding the
partitions it leases, and the single engine, which takes the key exclusively, is refused
while one runs, and they while it runs. Once workers have run, the single engine is refused
on the database (`PartitionedDatabase`): its cursor is behind their positions, until
`nudgeflow db single-engine` hands the database back (store/partition_work.hand_back).

Ingest-only processes (`serve --role api`, `NUDGEFLOW_ENGINE=0`) and read-only commands
take no lock.

Dispatch-only processes (`serve --role dispatch`, PostgreSQL only) take no engine lock:
any number of them share the outbox (store/outbox.py). Each holds the *dispatcher mark*
instead, a shared advisory lock on a key of its own, for its whole life. An engine that
starts with a dispatch loop of its own (`--role all`) reclaims its dead predecessor's
leases only while it can take that key exclusively, i.e. while no dispatch process is
alive (`reclaim_leases`): a lease may otherwise be a live dispatcher's.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from nudgeflow.errors import StoreError

log = logging.getLogger("nudgeflow.store")

# pg_try_advisory_lock's key: any constant of our own (advisory locks share one key space
# per database, and nothing else of ours takes one). "nudgeflw" in ASCII.
ADVISORY_KEY = 0x6E75646765666C77
# The dispatcher mark's key (shared by every dispatch process): "nudgedsp".
DISPATCHER_KEY = 0x6E75646765647370
LOCK_NAME = "engine"
LOCK_FILE_SUFFIX = ".engine.lock"


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started_at_ms: int

    def describe(self) -> str:
        started = datetime.fromtimestamp(self.started_at_ms / 1000, UTC).isoformat(timespec="seconds")
        return f"host {self.host}, pid {self.pid}, started {started.replace('+00:00', 'Z')}"


class EngineLocked(StoreError, RuntimeError):
    """Another engine holds this database's engine lock."""

    def __init__(self, holder: Holder | None) -> None:
        self.holder = holder
        who = holder.describe() if holder is not None else "its host and pid unknown"
        super().__init__(
            f"another engine is running on this database ({who}). One engine per database: stop it first,"
            " or run this process with NUDGEFLOW_ENGINE=0 to serve ingest and the API beside it"
        )


class PartitionedDatabase(EngineLocked):
    """The single engine (`--role all`) refused on a database partitioned engine workers have
    run: their positions are ahead of its cursor, and it would decide their events again."""

    def __init__(self) -> None:
        self.holder = None
        RuntimeError.__init__(
            self,
            "partitioned engine workers (serve --role engine) have run on this database: the single engine of"
            " --role all would decide their events again. Run engine workers (docs/partitions.md), and --role api"
            " and --role dispatch beside them; or stop the workers and run `nudgeflow db single-engine` to go back",
        )


class WorkersRunning(EngineLocked):
    """The single engine refused while partitioned engine workers hold the lock shared."""

    def __init__(self) -> None:
        self.holder = None
        RuntimeError.__init__(
            self,
            "partitioned engine workers (serve --role engine) are running on this database; the single engine"
            " (--role all) cannot run beside them. Stop them first, or run this process with --role api",
        )


def this_holder(started_at_ms: int) -> Holder:
    return Holder(socket.gethostname(), os.getpid(), started_at_ms)


class EngineLock:
    """A held engine lock; `release` frees it (closing the process frees it too)."""

    def __init__(
        self,
        holder: Holder,
        *,
        conn: Connection | None = None,
        lock_engine: Engine | None = None,
        fd: int | None = None,
        shared: bool = False,
    ) -> None:
        self.holder = holder
        self.shared = shared  # a partitioned engine worker's share (acquire_shared)
        self._conn = conn
        self._lock_engine = lock_engine
        self._fd = fd

    def held(self) -> bool:
        """Whether the lock is still ours. On PostgreSQL the lock lives as long as its
        connection: a connection that no longer answers (a server restart, a network cut)
        has lost it, and another engine may have taken it since."""
        if self._fd is not None:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.exec_driver_sql("SELECT 1").scalar()
            return True
        except SQLAlchemyError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock
        if self._conn is not None:
            conn, self._conn = self._conn, None
            shared = "_shared" if self.shared else ""
            _unlock(conn, f"SELECT pg_advisory_unlock{shared}({ADVISORY_KEY})")
        if self._lock_engine is not None:
            self._lock_engine.dispose()
            self._lock_engine = None


def _unlock(conn: Connection, statement: str) -> None:
    """Free an advisory lock and close its connection. Unlocked here, not left to the
    session's end: the server ends a closed session a moment after the client has gone on."""
    try:
        conn.exec_driver_sql(statement)
    except SQLAlchemyError:
        pass  # a connection already gone holds no lock
    finally:
        try:
            conn.close()
        except SQLAlchemyError:
            pass


def acquire(engine: Engine, started_at_ms: int) -> EngineLock:
    """Take the engine lock of `engine`'s database, or raise EngineLocked naming its holder."""
    me = this_holder(started_at_ms)
    if engine.url.get_backend_name() == "sqlite":
        return _acquire_file(lock_file_path(engine), me)
    return _acquire_advisory(engine, me)


def lock_file_path(engine: Engine) -> str:
    return os.path.abspath(str(engine.url.database)) + LOCK_FILE_SUFFIX


def _acquire_file(path: str, me: Holder) -> EngineLock:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_file_holder(fd)
        os.close(fd)
        raise EngineLocked(holder) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"host": me.host, "pid": me.pid, "started_at_ms": me.started_at_ms}).encode(), 0)
    return EngineLock(me, fd=fd)


def _read_file_holder(fd: int) -> Holder | None:
    try:
        doc: Any = json.loads(os.pread(fd, 4096, 0) or b"null")
        return Holder(str(doc["host"]), int(doc["pid"]), int(doc["started_at_ms"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # written by a holder that died mid-write, or not ours


def _lock_connection(engine: Engine) -> tuple[Connection, Engine]:
    """A connection of its own for a session-level advisory lock, outside the app's pool: it
    is held for the process's life, and the pool's recycling or disposal must never close it
    under the lock (autocommit: it pins no snapshot)."""
    lock_engine = create_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        return lock_engine.connect(), lock_engine
    except BaseException:
        lock_engine.dispose()
        raise


def _acquire_advisory(engine: Engine, me: Holder) -> EngineLock:
    conn, lock_engine = _lock_connection(engine)
    try:
        if not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({ADVISORY_KEY})").scalar():
            if _workers_hold(conn):
                raise WorkersRunning()
            raise EngineLocked(_read_table_holder(conn))
        try:
            conn.exec_driver_sql(
                "INSERT INTO engine_lock (name, host, pid, started_at_ms) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                " started_at_ms = excluded.started_at_ms",
                (LOCK_NAME, me.host[:255], me.pid, me.started_at_ms),
            )
        except SQLAlchemyError as exc:
            # A schema not yet migrated: the lock holds all the same; the app's schema check
            # refuses to start such a database anyway.
            log.warning("engine lock taken; its holder could not be recorded", extra={"error": type(exc).__name__})
    except BaseException:
        conn.close()
        lock_engine.dispose()
        raise
    return EngineLock(me, conn=conn, lock_engine=lock_engine)


def acquire_shared(engine: Engine, started_at_ms: int) -> EngineLock:
    """A partitioned engine worker's share of the engine lock (PostgreSQL): any number of
    workers hold it at once, and the single engine (`acquire`, exclusive) cannot take it
    while one does, nor a worker while the single engine runs (EngineLocked naming it)."""
    me = this_holder(started_at_ms)
    conn, lock_engine = _lock_connection(engine)
    try:
        if not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock_shared({ADVISORY_KEY})").scalar():
            raise EngineLocked(_read_table_holder(conn))
    except BaseException:
        conn.close()
        lock_engine.dispose()
        raise
    return EngineLock(me, conn=conn, lock_engine=lock_engine, shared=True)


def _workers_hold(conn: Connection) -> bool:
    """Whether the lock is held shared (partitioned engine workers), not by one engine."""
    row = conn.exec_driver_sql(
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((classid::bigint << 32) | objid::bigint) = %s LIMIT 1",
        (ADVISORY_KEY,),
    ).first()
    return row is not None


def _read_table_holder(conn: Connection) -> Holder | None:
    try:
        row = conn.exec_driver_sql(
            "SELECT host, pid, started_at_ms FROM engine_lock WHERE name = %s", (LOCK_NAME,)
        ).first()
    except SQLAlchemyError:
        return None
    return Holder(str(row[0]), int(row[1]), int(row[2])) if row is not None else None


class DispatcherMark:
    """A dispatch process's share of the dispatcher mark (see the module docstring), on a
    connection of its own; `release` frees it (closing the process frees it too)."""

    def __init__(self, conn: Connection, lock_engine: Engine) -> None:
        self._conn: Connection | None = conn
        self._lock_engine: Engine | None = lock_engine

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            _unlock(conn, f"SELECT pg_advisory_unlock_shared({DISPATCHER_KEY})")
        if self._lock_engine is not None:
            self._lock_engine.dispose()
            self._lock_engine = None


def mark_dispatcher(engine: Engine) -> DispatcherMark:
    """Hold the dispatcher mark for this process (PostgreSQL). Waits, briefly, for an engine
    that is reclaiming leases at that moment: its transaction holds the key exclusively."""
    conn, lock_engine = _lock_connection(engine)
    try:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock_shared({DISPATCHER_KEY})")
    except BaseException:
        conn.close()
        lock_engine.dispose()
        raise
    return DispatcherMark(conn, lock_engine)


def dispatchers_alive(conn: Connection) -> bool:
    """Whether a dispatch process holds the dispatcher mark (PostgreSQL; always False on
    SQLite, which runs no dispatch process). Inside a transaction: when none is, the key is
    held exclusively until the transaction ends, so none can start before it does."""
    if conn.dialect.name == "sqlite":
        return False
    return not conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({DISPATCHER_KEY})").scalar()


def reclaim_leases(conn: Connection, pending: str, now_ms: int) -> int:
    """Make the remote sends a dead engine had leased due now; returns how many (-1 when
    dispatch processes are alive, and nothing was reclaimed).

    Only for an engine that holds the lock and dispatches itself (`--role all`): the lock
    says that no other engine is alive, and the dispatcher mark that no dispatch process is
    (`dispatchers_alive`, which holds the mark's key to the end of this transaction). So a
    lease still running belongs to a process that died between sending and recording (it
    may have sent: the message goes again with the same idempotency key, as it would when
    the lease ran out). With dispatch processes alive, a lease may be one of theirs: none
    is touched, and a dead process's sends go again when their leases end, taken by any
    dispatcher. A row whose next attempt is no longer its lease's end was recorded since (a
    retry with backoff) and is left alone. A lease reclaimed is a lost claim (`lost_claims`,
    store/outbox.py), as it would be when it ran out.
    """
    if dispatchers_alive(conn):
        return -1
    m = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    result = conn.exec_driver_sql(
        f"UPDATE outbox SET next_attempt_at_ms = {m}, leased_until_ms = NULL, lost_claims = lost_claims + 1"
        f" WHERE status = {m} AND leased_until_ms IS NOT NULL AND next_attempt_at_ms = leased_until_ms"
        f" AND next_attempt_at_ms > {m}",
        (now_ms, pending, now_ms),
    )
    return int(result.rowcount or 0)
