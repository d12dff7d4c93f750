"""Send-time arms in the reports, against ground truth: the real core times each message
(optimized, explore or fallback), the real dispatcher sends it and the real tracking routes
count opens and clicks, on a live server (both databases, a virtual clock). Every count in the
report's send-time section equals what the outbox says was decided and what the test did, and
its experiment is measure.analyze_experiment's on those true counts."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import text

from nudgeflow.content import links
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.measure.experiments import Arm, analyze_experiment
from nudgeflow.model.journeys import Journey
from nudgeflow.store import consent
from nudgeflow.store import journeys as journey_store
from tests.runtime.report_support import Delivering
from tests.support import LiveServer

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0"
# A send step timed by its own send_time, and a send step timed by a wait before it.
DIGEST = {
    "id": "digest",
    "name": "Digest",
    "trigger": {"type": "event", "event": "Sale Started"},
    "entry": {"reentry": "once"},
    "steps": {
        "mail": {
            "type": "send",
            "channel": "email",
            "template": "digest",
            "send_time": {"within": "24h", "fallback": "10:00", "explore": 0.5},
        }
    },
}
LATER = {
    "id": "later",
    "name": "Later",
    "trigger": {"type": "event", "event": "Sale Started"},
    "entry": {"reentry": "once"},
    "steps": {
        "best": {"type": "wait", "send_time": {"within": "12h", "explore": 0.3}, "next": "mail"},
        "mail": {"type": "send", "channel": "email", "template": "later"},
    },
}
USERS = [f"user-{i:02d}" for i in range(30)]


def _rows(srv: LiveServer, sql: str, **params: Any) -> list[Any]:
    with srv.state.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def _json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))  # JSON has lists where dataclasses have tuples


def test_send_time_arms_are_counted_and_reported_as_they_happened(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    wid = ws.workspace_id
    runtime = srv.state.runtime
    runtime.run_until_idle()  # the runtime picks its email channel on its first run
    runtime.channels.register("email", Delivering())
    now = to_ms(clock.now())
    with srv.state.engine.begin() as conn:
        consent.update_settings(conn, wid, {consent.PUBLIC_BASE_URL: srv.url}, now)
        secret = consent.tracking_secret(conn, wid, now)
        for definition in (DIGEST, LATER):
            journey_store.apply_draft(conn, wid, Journey.model_validate(definition), now)
            journey_store.publish(conn, wid, definition["id"], now)

    with srv.client(auth=(ws.write_key, "")) as client:
        for i, user in enumerate(USERS):
            assert client.post("/v1/identify", json={"userId": user, "traits": {"email": f"{user}@x.test"}}).is_success
            if i % 3 == 0:  # a history: the optimizer has a best hour for these people
                for _ in range(3):
                    assert client.post("/v1/track", json={"userId": user, "event": "Application Opened"}).is_success
        runtime.run_until_idle()
        for user in USERS:
            assert client.post("/v1/track", json={"userId": user, "event": "Sale Started"}).is_success
    runtime.run_until_idle()
    for _ in range(25):  # every best hour of the windows comes, and its message goes
        clock.advance(timedelta(hours=1))
        runtime.run_until_idle()

    messages = _rows(
        srv,
        "SELECT idempotency_key, profile_id, journey_id, step, payload, status FROM outbox WHERE workspace_id = :w"
        " ORDER BY idempotency_key",
        w=wid,
    )
    assert len(messages) == 2 * len(USERS) and {m.status for m in messages} == {"sent"}
    arm_of = {}
    for m in messages:
        timing = orjson.loads(m.payload)["send_time"]
        arm_of[m.idempotency_key] = (m.journey_id, m.step, timing["step"], timing["arm"])
    decided = Counter(arm_of.values())
    # The people with a history are optimized, the others fall back: each journey has all three.
    for journey, step, timed_by in (("digest", "mail", "mail"), ("later", "mail", "best")):
        assert all(decided[(journey, step, timed_by, arm)] for arm in ("optimized", "fallback", "explore")), decided

    # Who opens and clicks, by a person's mail client; a link scanner fetches one pixel.
    public = srv.client(follow_redirects=False, headers={"User-Agent": BROWSER})
    opened, clicked = set(), set()
    for i, m in enumerate(messages):
        key, pid = m.idempotency_key, m.profile_id
        if i % 2 == 0:
            for _ in range(1 + i % 3):  # a second open counts nothing more
                url = links.open_pixel_url(srv.url, secret, wid, key, pid)
                assert public.get(url[len(srv.url) :]).status_code == 200
            opened.add(key)
        if i % 5 == 0:
            url = links.click_url(srv.url, secret, wid, key, pid, "https://shop.example/")
            assert public.get(url[len(srv.url) :]).status_code == 302
            clicked.add(key)
    public.close()
    with srv.client() as scanner:
        url = links.open_pixel_url(srv.url, secret, wid, messages[1].idempotency_key, messages[1].profile_id)
        assert scanner.get(url[len(srv.url) :]).status_code == 200

    with srv.admin(ws.admin_token) as admin:
        reports = {jid: admin.get(f"/api/reports/journeys/{jid}").json() for jid in ("digest", "later")}
        with_machine = admin.get("/api/reports/journeys/digest", params={"machine": "true"}).json()

    for journey, timed_by, explore in (("digest", "mail", 0.5), ("later", "best", 0.3)):
        [entry] = reports[journey]["send_time"]
        assert (entry["step"], entry["timed_by"], entry["explore"], entry["versions"]) == (
            "mail",
            timed_by,
            explore,
            [1],
        )
        truth: dict[str, Counter[str]] = {}
        for arm in ("optimized", "fallback", "explore"):
            keys = {k for k, v in arm_of.items() if v == (journey, "mail", timed_by, arm)}
            truth[arm] = Counter(sent=len(keys), opens=len(keys & opened), clicks=len(keys & clicked))
        shown = {a["arm"]: a for a in entry["arms"]}
        for arm, counts in truth.items():
            assert (shown[arm]["sent"], shown[arm]["unique_opens"], shown[arm]["unique_clicks"]) == (
                counts["sent"],
                counts["opens"],
                counts["clicks"],
            ), (journey, arm)
            assert shown[arm]["open_rate"] == counts["opens"] / counts["sent"]
        # The arms add up to the step's row of the report's own counters.
        assert sum(a["sent"] for a in entry["arms"]) == reports[journey]["totals"]["sent"]
        assert sum(a["unique_opens"] for a in entry["arms"]) == reports[journey]["totals"]["unique_opens"]

        # optimized and fallback together against explore, at weights 1 - explore and explore.
        chosen = truth["optimized"] + truth["fallback"]
        for metric, name in (("open", "opens"), ("click", "clicks")):
            expected = analyze_experiment(
                [
                    Arm("optimized+fallback", 1 - explore, chosen["sent"], chosen[name]),
                    Arm("explore", explore, truth["explore"]["sent"], truth["explore"][name]),
                ],
                control="explore",
                primary_metric=metric,
            )
            assert entry[f"{metric}_rate"] == _json(dataclasses.asdict(expected))
        assert entry["no_experiment"] is None

    # The scanner's open is apart, and counted in only when asked.
    machine = {a["arm"]: a for a in with_machine["send_time"][0]["arms"]}
    plain = {a["arm"]: a for a in reports["digest"]["send_time"][0]["arms"]}
    scanned = arm_of[messages[1].idempotency_key]
    if scanned[0] == "digest":
        arm = scanned[3]
        assert (plain[arm]["machine_opens"], machine[arm]["unique_opens"]) == (1, plain[arm]["unique_opens"] + 1)
    assert sum(a["machine_opens"] for a in plain.values()) == int(scanned[0] == "digest")


def test_a_message_without_send_time_writes_no_arm_and_a_journey_without_one_has_no_section(
    server: tuple[LiveServer, VirtualClock],
) -> None:
    from nudgeflow.store import rollups

    srv, clock = server
    wid = srv.workspace().workspace_id
    at = to_ms(clock.now())
    plain = rollups.Sent(wid, "r1:mail:1", "p1", "r1", "promo", 1, "mail", None, "email", True, at, at, at)
    timed = dataclasses.replace(plain, key="r2:mail:1", run_id="r2", send_time_arm="explore", timed_by="mail")
    with srv.state.engine.begin() as conn:
        for _ in range(2):  # recorded twice: counted once
            report = rollups.Rollup()
            rollups.count_sent(conn, report, [plain, timed, timed])
            report.write(conn)
    with srv.state.engine.connect() as conn:
        rows = rollups.read_send_time(conn, wid, "promo")
    assert [(r["step"], r["timed_by"], r["arm"], r["sent"]) for r in rows] == [("mail", "mail", "explore", 1)]
    assert rollups.send_time_of('{"send_time": {"step": "best", "arm": "optimized"}}') == ("best", "optimized")
    assert rollups.send_time_of('{"send_time": {"arm": "sometime"}}') is None
    assert rollups.send_time_of('{"trigger": {"properties": {"note": "send_time"}}}') is None
