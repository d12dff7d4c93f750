"""Two requests for one new person at once both succeed, on one profile (SQLite and PostgreSQL).

Within one process every write goes through the one writer thread; the race is between
processes (an ingest-only process beside the engine's, an import): each reads that the
person is new, and both create them. The second used to fail on the identity's key (a 503).
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, func, select

from nudgeflow.model.events import EventRecord, normalize, parse_message
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.schema import events, identities, profiles
from tests.support import LiveServer

RECEIVED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW_MS = 1_767_268_800_000
_ids = itertools.count(1)


def record(type_: str, **fields: Any) -> EventRecord:
    message: dict[str, Any] = {"type": type_, "messageId": f"race-{next(_ids)}", **fields}
    if type_ == "track":
        message.setdefault("event", "Product Viewed")
    return normalize(parse_message(message), RECEIVED, max_event_bytes=32 * 1024)


def people(engine: Any, wsid: str, user: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(profiles.c.id).where(profiles.c.workspace_id == wsid, profiles.c.user_id == user)
            ).scalars()
        )


def test_a_second_writer_that_read_the_person_as_new_lands_on_the_first_ones_profile(engine: Any, wsid: str) -> None:
    # Writer A stores the new person and holds its transaction open.
    first = engine.connect()
    open_tx = first.begin()
    write_events(
        first, wsid, [record("identify", userId="newcomer", anonymousId="phone", traits={"plan": "pro"})], NOW_MS
    )
    # Writer B, a connection of its own, reads "newcomer" as unknown; the moment it first
    # writes (after all its reads), A commits: B's write then meets A's committed rows.
    second = engine.connect()
    reads_done = threading.Event()

    def before_write(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            reads_done.set()

    event.listen(second, "before_cursor_execute", before_write)
    outcome: dict[str, Any] = {}

    def write_b() -> None:
        try:
            with second.begin():
                outcome["result"] = write_events(
                    second, wsid, [record("track", userId="newcomer", anonymousId="laptop", event="Signed Up")], NOW_MS
                )
        except Exception as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=write_b)
    thread.start()
    assert reads_done.wait(30), "writer B never got to write"
    open_tx.commit()
    first.close()
    thread.join(60)
    second.close()
    assert "error" not in outcome, f"the second write failed: {outcome.get('error')!r}"
    assert outcome["result"].accepted == 1
    [person] = people(engine, wsid, "newcomer")
    with engine.connect() as conn:
        keys = set(conn.execute(select(identities.c.key).where(identities.c.profile_id == person)).scalars())
        stored = conn.execute(
            select(func.count()).select_from(events).where(events.c.profile_id == person)
        ).scalar_one()
    assert keys == {"u:newcomer", "a:phone", "a:laptop"}
    assert stored == 2


def test_concurrent_requests_for_new_people_on_two_servers_all_succeed(
    two_servers: tuple[LiveServer, LiveServer],
) -> None:
    main, ingest_only = two_servers
    ws = main.workspace("race")
    users = [f"racer-{i}" for i in range(12)]
    start = threading.Barrier(2 * len(users))

    def identify(server: LiveServer, user: str, device: str) -> int:
        with server.client(auth=(ws.write_key, "")) as client:
            start.wait(30)
            body = {"userId": user, "anonymousId": f"{user}-{device}", "traits": {"device": device}}
            return client.post("/v1/identify", json=body).status_code

    with ThreadPoolExecutor(2 * len(users)) as pool:
        futures = [
            pool.submit(identify, server, user, device)
            for user in users
            for server, device in ((main, "web"), (ingest_only, "app"))
        ]
        codes = [f.result(timeout=120) for f in futures]
    assert codes == [200] * len(codes)
    for user in users:
        [person] = people(main.state.engine, ws.workspace_id, user)
        with main.state.engine.connect() as conn:
            keys = set(conn.execute(select(identities.c.key).where(identities.c.profile_id == person)).scalars())
        assert keys == {f"u:{user}", f"a:{user}-web", f"a:{user}-app"}
