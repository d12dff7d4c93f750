"""Report rollups against ground truth: the real core, dispatcher and tracking routes on a
live server (both databases, a virtual clock), known sends, opens, clicks, unsubscribes and
conversions; every count of the report equals what the test did."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import text

from nudgeflow.content import links
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.measure.statistics import RevenueSums, conversion_lift, revenue_lift
from nudgeflow.model.journeys import Journey
from nudgeflow.runtime.bounces import Feedback, apply_feedback
from nudgeflow.store import consent
from nudgeflow.store import journeys as journey_store
from tests.runtime.report_support import NUDGE, PROMO, SALE_B, USERS, AllGone, Delivering, Truth
from tests.support import LiveServer

HOUR = timedelta(hours=1)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0"


def _rows(srv: LiveServer, sql: str, **params: Any) -> list[Any]:
    with srv.state.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def user_of_pid(srv: LiveServer, profile_id: str) -> str:
    [(key,)] = _rows(srv, "SELECT key FROM identities WHERE profile_id = :p AND key LIKE 'u:%'", p=profile_id)
    return str(key)[2:]


def test_report_counts_equal_what_happened(server: tuple[LiveServer, VirtualClock]) -> None:
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
        for definition in (PROMO, SALE_B):
            journey_store.apply_draft(conn, wid, Journey.model_validate(definition), now)
            journey_store.publish(conn, wid, definition["id"], now)

    with srv.client(auth=(ws.write_key, "")) as client:
        for user in USERS:
            assert client.post("/v1/identify", json={"userId": user, "traits": {"email": f"{user}@x.test"}}).is_success
            assert client.post("/v1/track", json={"userId": user, "event": "Sale Started"}).is_success
    runtime.run_until_idle()

    runs = _rows(srv, "SELECT journey_id, profile_id, holdout FROM journey_runs WHERE workspace_id = :w", w=wid)
    held = {r.profile_id for r in runs if r.journey_id == "promo" and r.holdout}
    treated = {r.profile_id for r in runs if r.journey_id == "promo" and not r.holdout}
    assert held and treated and len(held) + len(treated) == len(USERS)
    firsts = _rows(
        srv,
        "SELECT idempotency_key, profile_id, variant, status FROM outbox"
        " WHERE workspace_id = :w AND journey_id = 'promo' ORDER BY profile_id",
        w=wid,
    )
    assert {r.profile_id for r in firsts} == treated and {r.status for r in firsts} == {"sent"}

    # Who does what, an hour after the first messages: the truth the report must match.
    truth = Truth()
    clock.advance(HOUR)
    # A person's mail client (python-httpx's own user agent is a machine's: web/tracking.py).
    public = srv.client(follow_redirects=False, headers={"User-Agent": BROWSER})
    for i, row in enumerate(firsts):
        key, pid = row.idempotency_key, row.profile_id
        if i % 2 == 0:  # every other person opens, some twice, and a second open counts nothing
            for _ in range(1 + i % 4 // 2):
                url = links.open_pixel_url(srv.url, secret, wid, key, pid)
                assert public.get(url[len(srv.url) :]).status_code == 200
            truth.opened.add(key)
        if i % 3 == 0:
            url = links.click_url(srv.url, secret, wid, key, pid, "https://shop.example/sale")
            assert public.get(url[len(srv.url) :]).status_code == 302
            truth.clicked.add(key)
        if i == 1:
            url = links.unsubscribe_url(srv.url, secret, wid, key, pid)
            assert public.post(url[len(srv.url) :], data={"List-Unsubscribe": "One-Click"}).status_code == 200
            truth.unsubscribed.add(key)
    # A link scanner fetches one message's pixel: a machine open, apart from the person's.
    with srv.client() as scanner:
        url = links.open_pixel_url(srv.url, secret, wid, firsts[4].idempotency_key, firsts[4].profile_id)
        assert scanner.get(url[len(srv.url) :]).status_code == 200
    # A forged token counts nothing.
    assert public.get("/t/o/not-a-token.gif").status_code == 200
    # A soft bounce reported twice (the DSN, then the provider's webhook) and a complaint,
    # each naming its message: once each.
    complained = firsts[3]
    with srv.state.engine.begin() as conn:
        for fb in (
            Feedback(
                "soft",
                f"{user_of_pid(srv, firsts[2].profile_id)}@x.test",
                "smtp",
                "dsn-1",
                message_key=firsts[2].idempotency_key,
            ),
            Feedback(
                "soft",
                f"{user_of_pid(srv, firsts[2].profile_id)}@x.test",
                "ses",
                "sns-1",
                message_key=firsts[2].idempotency_key,
            ),
            Feedback(
                "complaint",
                f"{user_of_pid(srv, complained.profile_id)}@x.test",
                "smtp",
                "arf-1",
                message_key=complained.idempotency_key,
            ),
        ):
            apply_feedback(conn, wid, [fb], to_ms(clock.now()))
    truth.complained.add(complained.idempotency_key)
    truth.bounced.add(firsts[2].idempotency_key)

    # An hour later, some buy: treated and held out alike, with revenue.
    clock.advance(HOUR)
    user_of = {
        r.profile_id: r.key[2:] for r in _rows(srv, "SELECT key, profile_id FROM identities WHERE key LIKE 'u:%'")
    }
    buyers = [user_of[pid] for pid in sorted(held)][:3] + [user_of[r.profile_id] for r in firsts[:6]]
    with srv.client(auth=(ws.write_key, "")) as client:
        for n, user in enumerate(buyers):
            revenue = 10.0 * (n + 1)
            body = {"userId": user, "event": "Order Completed", "properties": {"revenue": revenue}}
            assert client.post("/v1/track", json=body).is_success
            truth.bought[user] = revenue
    runtime.run_until_idle()
    clock.advance(timedelta(hours=22))
    runtime.run_until_idle()  # the reminders, a day after the trigger
    public.close()

    with srv.admin(ws.admin_token) as admin:
        answer = admin.get("/api/reports/journeys/promo", params={"by": "step,variant"})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        overview = admin.get("/api/reports/overview").json()
        with_machine = admin.get("/api/reports/journeys/promo", params={"machine": "true"}).json()["totals"]
        as_csv = admin.get("/api/reports/journeys/promo", params={"by": "step", "format": "csv"})
        # Ids are checked: another workspace's journey, an unknown one, a bad breakdown.
        assert admin.get("/api/reports/journeys/nope").status_code == 404
        assert admin.get("/api/reports/journeys/promo", params={"by": "profile_id"}).status_code == 400
        assert admin.get("/api/reports/journeys/promo", params={"from": "yesterday"}).status_code == 400
        # A range that ends before it starts is refused, not answered as a report of nothing.
        backwards = {"from": "2026-06-02", "to": "2026-06-01"}
        for path in ("/api/reports/journeys/promo", "/api/reports/overview"):
            answer = admin.get(path, params=backwards)
            assert answer.status_code == 400 and "from (2026-06-02) is after to" in answer.text, path
    other = srv.workspace("other")
    with srv.admin(other.admin_token) as admin:
        assert admin.get("/api/reports/journeys/promo").status_code == 404
        assert admin.get("/api/reports/overview").json()["journeys"] == []
    with srv.client() as anonymous:
        assert anonymous.get("/api/reports/journeys/promo").status_code == 401

    profile_of_user = {u: pid for pid, u in user_of.items()}
    bought_treated = {u: r for u, r in truth.bought.items() if profile_of_user[u] in treated}
    bought_held = {u: r for u, r in truth.bought.items() if profile_of_user[u] in held}
    # One each, a day later (the goal does not end the run), but to whoever unsubscribed or
    # complained (their address is suppressed).
    reminders = len(treated) - len(truth.unsubscribed | truth.complained)
    totals = report["totals"]
    assert totals["entered"] == len(treated)
    assert totals["held_out"] == len(held)
    assert totals["recipients"] == len(treated)
    assert totals["sent"] == totals["delivered"] == len(treated) + reminders
    assert totals["unique_opens"] == len(truth.opened)
    assert totals["unique_clicks"] == len(truth.clicked)
    # The scanner fetched the pixel of a message its person had opened: no message was opened
    # by machines alone, and with them included the opens are still the people's.
    assert (totals["machine_opens"], totals["bot_clicks"]) == (0, 0)
    assert (with_machine["unique_opens"], with_machine["open_rate"]) == (totals["unique_opens"], totals["open_rate"])
    assert totals["unsubscribes"] == len(truth.unsubscribed)
    assert (totals["bounces"], totals["complaints"]) == (len(truth.bounced), len(truth.complained))
    assert totals["conversions"] == len(bought_treated)
    assert totals["revenue"] == sum(bought_treated.values())
    assert totals["held_out_conversions"] == len(bought_held)
    assert totals["held_out_revenue"] == sum(bought_held.values())
    assert totals["conversion_rate"] == len(bought_treated) / len(treated)
    assert totals["open_rate"] == len(truth.opened) / totals["sent"]
    assert totals["revenue_per_recipient"] == sum(bought_treated.values()) / len(treated)
    assert totals["time_to_trigger"]["count"] == totals["sent"]
    # Half the messages go at once (bucket 0: reported as 0.5 s), the reminders a day after
    # the trigger: p90 within the buckets' precision.
    assert abs(totals["time_to_trigger"]["p90_s"] - 86_400) <= 0.1 * 86_400
    assert totals["time_to_convert"]["count"] == len(bought_treated) + len(bought_held)
    assert abs(totals["time_to_convert"]["p50_s"] - 7200) <= 0.1 * 7200

    # Lift: the treated runs against the held-out runs, as measure/statistics computes it from
    # the true counts and revenues (each run's revenue its goal's; the others 0).
    expected = conversion_lift(len(bought_treated), len(treated), len(bought_held), len(held))
    # (JSON has lists where the dataclasses have tuples.)
    assert report["lift"]["conversion"] == orjson.loads(orjson.dumps(dataclasses.asdict(expected)))
    squares = sum(r * r for r in bought_treated.values()), sum(r * r for r in bought_held.values())
    revenue = revenue_lift(
        RevenueSums(len(treated), sum(bought_treated.values()), squares[0]),
        RevenueSums(len(held), sum(bought_held.values()), squares[1]),
    )
    assert report["lift"]["revenue_per_run"] == orjson.loads(orjson.dumps(dataclasses.asdict(revenue)))
    assert "causal" in report["lift"]["basis"]

    # Attribution: a click (5 d) or an open (1 d) of the first message an hour before buying.
    engaged = truth.opened | truth.clicked
    first_key = {r.profile_id: r.idempotency_key for r in firsts}
    attributed = [u for u in bought_treated if first_key[profile_of_user[u]] in engaged]
    assert totals["attributed_conversions"] == len(attributed)
    assert totals["attributed_revenue"] == sum(bought_treated[u] for u in attributed)

    # The breakdown: per step and variant, summing to the totals.
    rows = {(r["step"], r["variant"]): r for r in report["rows"]}
    assert rows[("", "")]["entered"] == len(treated)
    variants = {r.variant for r in firsts}
    for variant in variants:
        keys = {r.idempotency_key for r in firsts if r.variant == variant}
        row = rows[("mail", variant)]
        assert row["sent"] == row["recipients"] == len(keys)
        assert row["unique_opens"] == len(keys & truth.opened)
        assert row["unique_clicks"] == len(keys & truth.clicked)
        assert row["entered"] == 0 and row["conversions"] == 0
    assert rows[("reminder", "")]["sent"] == reminders
    assert sum(r["sent"] for r in report["rows"]) == totals["sent"]

    # The overview: per journey, per trigger type, and the workspace with each goal event once.
    by_journey = {j["journey_id"]: j for j in overview["journeys"]}
    assert by_journey["promo"]["lift"] == report["lift"]
    assert by_journey["sale-b"]["lift"] is None  # no holdout
    assert overview["lift"] is None  # no global control group in this workspace
    assert by_journey["sale-b"]["entered"] == len(USERS)
    assert by_journey["sale-b"]["conversions"] == len(truth.bought)
    [event_type] = overview["trigger_types"]
    assert event_type["trigger_type"] == "event" and event_type["journeys"] == 2
    assert overview["workspace"]["conversions"] == len(bought_treated) + len(truth.bought)
    assert overview["workspace"]["unique_conversions"] == len(truth.bought)
    assert overview["workspace"]["unique_revenue"] == sum(truth.bought.values())

    lines = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert lines[0]["row"] == "total" and int(lines[0]["sent"]) == totals["sent"]
    assert {line["step"] for line in lines[1:]} == {"", "mail", "reminder"}


def test_a_message_recorded_twice_counts_once(server: tuple[LiveServer, VirtualClock]) -> None:
    """The dispatcher's record and the engine's run rows, replayed: the rollups do not move."""
    from nudgeflow.measure import report as report_metrics
    from nudgeflow.store import rollups

    srv, clock = server
    wid = srv.workspace().workspace_id
    at = to_ms(clock.now())
    sent = rollups.Sent(wid, "r1:mail:1", "p1", "r1", "promo", 1, "mail", None, "email", True, at, at, at - 5000)
    run = ("r1", wid, "promo", 1, "p1", "done", None, 0, at, None, None, at + 60_000, 12.5, at, 0, None, None)
    for _ in range(2):
        with srv.state.engine.begin() as conn:
            report = rollups.Rollup()
            rollups.count_sent(conn, report, [sent, sent])
            rollups.count_runs(conn, report, [run])
            report.write(conn)
            conn.execute(
                text(
                    "INSERT INTO journey_runs (id, workspace_id, journey_id, version, profile_id, status, holdout,"
                    " entered_at_ms, converted_at_ms, revenue, updated_at_ms)"
                    " VALUES ('r1', :w, 'promo', 1, 'p1', 'done', 0, :a, :c, 12.5, :a) ON CONFLICT (id) DO NOTHING"
                ),
                {"w": wid, "a": at, "c": at + 60_000},
            )
            for fact in (rollups.OPENED, rollups.OPENED_MACHINE):
                assert rollups.count_engagement(conn, wid, "no-such-message", fact, at) is False
            conn.execute(
                text(
                    "INSERT INTO outbox (workspace_id, idempotency_key, profile_id, run_id, journey_id,"
                    " journey_version, step, channel, template, marketing, payload, status, attempts,"
                    " next_attempt_at_ms, created_at_ms, updated_at_ms, sent_at_ms)"
                    " VALUES (:w, 'r1:mail:1', 'p1', 'r1', 'promo', 1, 'mail', 'email', 't', 1, '{}', 'sent', 1,"
                    " :a, :a, :a, :a) ON CONFLICT (workspace_id, idempotency_key) DO NOTHING"
                ),
                {"w": wid, "a": at},
            )
            # A machine open (Apple's proxy) and a person's, each once however often.
            rollups.count_engagement(conn, wid, "r1:mail:1", rollups.OPENED_MACHINE, at + 1000)
            rollups.count_engagement(conn, wid, "r1:mail:1", rollups.OPENED, at + 2000)
    with srv.state.engine.connect() as conn:
        counters, latencies = rollups.read(conn, wid, journey_id="promo")
    [row] = counters
    assert (row["sent"], row["delivered"], row["recipients"], row["step_recipients"]) == (1, 1, 1, 1)
    assert (row["entered"], row["conversions"], row["revenue"]) == (1, 1, 12.5)
    assert sorted((metric, n) for _, metric, _, n in latencies) == [("convert", 1), ("trigger", 1)]
    # Opened by a machine, then by a person: a person's open, and no message opened by
    # machines alone; with machine opens included, still one message opened (it was 2 of 1).
    assert (row["opens"], row["opens_machine"]) == (1, 0)
    shown = report_metrics.metrics(row, {}, include_machine=False)
    assert (shown["unique_opens"], shown["machine_opens"], shown["open_rate"]) == (1, 0, 1.0)
    with_machine = report_metrics.metrics(row, {}, include_machine=True)
    assert (with_machine["unique_opens"], with_machine["open_rate"]) == (1, 1.0)


def test_two_goal_events_of_one_person_in_the_same_millisecond_are_two_unique_conversions(
    server: tuple[LiveServer, VirtualClock],
) -> None:
    """A goal event is its messageId (docs/measurement.md), not the person and the time: an
    order and an upgrade of one person in the same millisecond are two; the order converting
    two journeys' runs is one. Counted once however often the batch is decided (the runs' own
    rows are not written here, so only the workspace's claims of goal events keep it once)."""
    from nudgeflow.store import rollups

    srv, _clock = server
    wid = srv.workspace().workspace_id
    at = to_ms(_clock.now())
    bought = at + 60_000

    def run(run_id: str, journey: str, revenue: float, event: str) -> tuple[Any, ...]:
        return (run_id, wid, journey, 1, "p1", "done", None, 0, at, None, None, bought, revenue, at, 0, None, event)

    runs = [run("r1", "promo", 12.5, "order-1"), run("r2", "sale", 12.5, "order-1"), run("r3", "upsell", 30.0, "up-1")]
    for _ in range(2):
        with srv.state.engine.begin() as conn:
            report = rollups.Rollup()
            rollups.count_runs(conn, report, runs)
            report.write(conn)
    with srv.state.engine.connect() as conn:
        assert rollups.read_unique_conversions(conn, wid) == (2, 42.5)


def test_a_push_to_a_person_whose_devices_are_all_gone_is_a_push_opt_out(
    server: tuple[LiveServer, VirtualClock],
) -> None:
    srv, clock = server
    ws = srv.workspace()
    runtime = srv.state.runtime
    runtime.run_until_idle()
    runtime.channels.register("push", AllGone())
    now = to_ms(clock.now())
    with srv.state.engine.begin() as conn:
        journey_store.apply_draft(conn, ws.workspace_id, Journey.model_validate(NUDGE), now)
        journey_store.publish(conn, ws.workspace_id, "nudge", now)
    with srv.client(auth=(ws.write_key, "")) as client:
        for user in ("ada", "bob"):
            assert client.post("/v1/track", json={"userId": user, "event": "Level Completed"}).is_success
    runtime.run_until_idle()
    with srv.admin(ws.admin_token) as admin:
        totals = admin.get("/api/reports/journeys/nudge").json()["totals"]
    assert (totals["entered"], totals["sent"], totals["push_opt_outs"]) == (2, 0, 2)
