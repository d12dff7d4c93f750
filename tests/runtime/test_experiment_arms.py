"""Experiment arms against ground truth: the real core, dispatcher and tracking routes on a live
server (both databases, a virtual clock). A split that waits 30 minutes or 2 hours before an
email with two variants, a holdout and a global control group: each arm's runs, conversions,
revenue, clicks and unsubscribes in the report equal what the test did, holdout and control
runs are in no arm, and the experiment section is what measure/experiments computes from
those true counts."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import text

from nudgeflow.content import links
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.core.effects import RunChanged, SendMessage
from nudgeflow.measure.experiments import Arm, analyze_experiment
from nudgeflow.model.journeys import Journey
from nudgeflow.model.policies import Policies
from nudgeflow.store import consent, rollups
from nudgeflow.store import journeys as journey_store
from nudgeflow.store import policies as policy_store
from nudgeflow.store.effects_writer import EffectsBatch
from tests.runtime.report_support import Delivering
from tests.support import LiveServer

MINUTE = timedelta(minutes=1)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0"
EXP = {
    "id": "exp",
    "name": "Experiments",
    "trigger": {"type": "event", "event": "Sale Started"},
    "entry": {"reentry": "once"},
    "holdout": 0.2,
    "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
    "steps": {
        "timing": {
            "type": "split",
            "paths": [
                {"name": "soon", "weight": 1, "next": "wait-30m"},
                {"name": "later", "weight": 1, "next": "wait-2h"},
            ],
        },
        "wait-30m": {"type": "wait", "duration": "30m", "next": "mail"},
        "wait-2h": {"type": "wait", "duration": "2h", "next": "mail"},
        "mail": {
            "type": "send",
            "channel": "email",
            "primary_metric": "click",
            "variants": [
                {"name": "a", "template": "exp-a", "weight": 1},
                {"name": "b", "template": "exp-b", "weight": 1},
            ],
        },
    },
}
USERS = [f"user-{i:02d}" for i in range(60)]
CONTROL = {"control_group": {"share": 0.15, "salt": "arms-test"}}


def _rows(srv: LiveServer, sql: str, **params: Any) -> list[Any]:
    with srv.state.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def test_each_arm_counts_exactly_what_its_runs_did(server: tuple[LiveServer, VirtualClock]) -> None:
    srv, clock = server
    ws = srv.workspace()
    wid = ws.workspace_id
    runtime = srv.state.runtime
    runtime.run_until_idle()
    runtime.channels.register("email", Delivering())
    now = to_ms(clock.now())
    with srv.state.engine.begin() as conn:
        consent.update_settings(conn, wid, {consent.PUBLIC_BASE_URL: srv.url}, now)
        secret = consent.tracking_secret(conn, wid, now)
        policy_store.put(conn, wid, Policies.model_validate(CONTROL), "", "test", now)
        journey_store.apply_draft(conn, wid, Journey.model_validate(EXP), now)
        journey_store.publish(conn, wid, "exp", now)

    with srv.client(auth=(ws.write_key, "")) as client:
        for user in USERS:
            assert client.post("/v1/identify", json={"userId": user, "traits": {"email": f"{user}@x.test"}}).is_success
            assert client.post("/v1/track", json={"userId": user, "event": "Sale Started"}).is_success
    runtime.run_until_idle()
    clock.advance(30 * MINUTE)
    runtime.run_until_idle()
    clock.advance(90 * MINUTE)
    runtime.run_until_idle()

    # The truth, from what happened rather than from the engine's record of its choices: the
    # path is the wait before the message, the variant the message's; control members'
    # messages are dropped with the control group's reason.
    runs = _rows(
        srv,
        "SELECT r.id, r.holdout, r.entered_at_ms, i.key FROM journey_runs r"
        " JOIN identities i ON i.profile_id = r.profile_id AND i.key LIKE 'u:%' WHERE r.workspace_id = :w",
        w=wid,
    )
    user_of_run = {r.id: r.key[2:] for r in runs}
    held = {r.id for r in runs if r.holdout}
    messages = _rows(
        srv,
        "SELECT run_id, idempotency_key, profile_id, variant, status, reason, created_at_ms FROM outbox"
        " WHERE workspace_id = :w ORDER BY idempotency_key",
        w=wid,
    )
    entered = {r.id: r.entered_at_ms for r in runs}
    control = {m.run_id for m in messages if m.reason == "global_control"}
    sent = [m for m in messages if m.status == "sent"]
    assert held and control and len(sent) + len(control) + len(held) == len(USERS)
    waited = {m.run_id: m.created_at_ms - entered[m.run_id] for m in messages}
    path_of = {run_id: {1_800_000: "soon", 7_200_000: "later"}[ms] for run_id, ms in waited.items()}
    variant_of = {m.run_id: m.variant for m in messages}
    treated = {m.run_id for m in sent}

    # An hour later (a click within seconds of delivery is a scanner's), people click every
    # third message and one unsubscribes; a link scanner clicks one more (a bot: in no arm).
    clock.advance(60 * MINUTE)
    public = srv.client(follow_redirects=False, headers={"User-Agent": BROWSER})
    clicked: set[str] = set()
    for i, m in enumerate(sent):
        if i % 3 == 0:
            url = links.click_url(srv.url, secret, wid, m.idempotency_key, m.profile_id, "https://shop.example/sale")
            for _ in range(2):  # twice: once per run
                assert public.get(url[len(srv.url) :]).status_code == 302
            clicked.add(m.run_id)
    unsubscriber = sent[1]
    url = links.unsubscribe_url(srv.url, secret, wid, unsubscriber.idempotency_key, unsubscriber.profile_id)
    assert public.post(url[len(srv.url) :], data={"List-Unsubscribe": "One-Click"}).status_code == 200
    public.close()
    with srv.client(follow_redirects=False) as scanner:
        m = sent[2]
        url = links.click_url(srv.url, secret, wid, m.idempotency_key, m.profile_id, "https://shop.example/sale")
        assert scanner.get(url[len(srv.url) :]).status_code == 302

    # Buyers: treated runs of every arm, a held-out one and a control member (both in no arm).
    buyers = [m.run_id for m in sent[::4]] + sorted(held)[:1] + sorted(control)[:1]
    bought: dict[str, float] = {}
    clock.advance(60 * MINUTE)
    with srv.client(auth=(ws.write_key, "")) as client:
        for n, run_id in enumerate(buyers):
            revenue = 5.0 * (n + 1)
            body = {"userId": user_of_run[run_id], "event": "Order Completed", "properties": {"revenue": revenue}}
            assert client.post("/v1/track", json=body).is_success
            bought[run_id] = revenue
    runtime.run_until_idle()

    with srv.admin(ws.admin_token) as admin:
        answer = admin.get("/api/reports/journeys/exp", params={"by": "step,variant,channel"})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        small = admin.get("/api/reports/journeys/exp", params={"minimum_per_arm": 3}).json()
        assert admin.get("/api/reports/journeys/exp", params={"minimum_per_arm": 0}).status_code == 422

    def truth(arm_of: dict[str, str], name: str) -> dict[str, Any]:
        mine = {run_id for run_id in treated if arm_of[run_id] == name}
        return {
            "runs": len(mine),
            "conversions": len(mine & set(bought)),
            "revenue": sum(bought[r] for r in mine & set(bought)),
            "clicks": len(mine & clicked),
            "unsubscribes": int(unsubscriber.run_id in mine),
        }

    by_step = {e["step"]: e for e in report["experiments"]}
    assert sorted(by_step) == ["mail", "timing"]
    for step, arm_of, names in (("timing", path_of, ("soon", "later")), ("mail", variant_of, ("a", "b"))):
        section = by_step[step]
        assert section["version"] == 1
        shown = {a["name"]: a for a in section["arms"]}
        assert list(shown) == list(names)
        for name in names:
            expected = truth(arm_of, name)
            arm = shown[name]
            assert arm["runs"] == expected["runs"] > 0, (step, name)
            assert arm["conversion"]["count"] == expected["conversions"]
            assert arm["revenue"] == expected["revenue"]
            assert arm["clicks"] == expected["clicks"]
            assert arm["unsubscribe"]["count"] == expected["unsubscribes"]
            assert arm["time_to_convert"]["count"] == expected["conversions"]
        # Holdout and control runs are in no arm.
        assert sum(a["runs"] for a in section["arms"]) == len(treated)
        # The section is what the statistics give for the true counts.
        successes = "conversions" if section["primary_metric"] == "conversion" else "clicks"
        arms = [
            Arm(n, 1.0, truth(arm_of, n)["runs"], truth(arm_of, n)[successes], truth(arm_of, n)["unsubscribes"])
            for n in names
        ]
        for got, minimum in ((section, 500), ({e["step"]: e for e in small["experiments"]}[step], 3)):
            want = analyze_experiment(arms, primary_metric=section["primary_metric"], minimum_per_arm=minimum)
            want_json = orjson.loads(orjson.dumps(dataclasses.asdict(want)))
            assert got["winner"] == want_json["winner"]
            assert got["sample_ratio"] == want_json["sample_ratio"]
            assert [a["primary"] for a in got["arms"]] == [a["primary"] for a in want_json["arms"]]
            assert [a["versus_control"] for a in got["arms"]] == [a["versus_control"] for a in want_json["arms"]]
        assert section["winner"]["status"] == "too_few" and section["winner"]["reason"].startswith("no winner yet")
    assert by_step["mail"]["primary_metric"] == "click" and by_step["mail"]["kind"] == "variants"
    assert by_step["timing"]["primary_metric"] == "conversion"
    # The split is a delay experiment: each arm labelled with its wait.
    assert by_step["timing"]["delay_experiment"] is True and by_step["mail"]["delay_experiment"] is False
    delays = {a["name"]: a["delay"] for a in by_step["timing"]["arms"]}
    assert delays == {
        "soon": {"label": "30m", "waits": ["30m"], "seconds": 1800.0},
        "later": {"label": "2h", "waits": ["2h"], "seconds": 7200.0},
    }
    # Time to convert per delay: everyone bought 4 hours after entering.
    for arm in by_step["timing"]["arms"]:
        assert abs(arm["time_to_convert"]["p50_s"] - 4 * 3600) <= 0.1 * 4 * 3600

    # The arms' rows stay out of the message breakdown, which still adds up.
    assert all(r["channel"] != "" or r["step"] == "" for r in report["rows"])
    assert report["totals"]["entered"] == len(treated)  # neither held out nor in the control group
    assert report["totals"]["unique_clicks"] == len(clicked)
    assert report["totals"]["time_to_convert"]["count"] == len(bought)

    # Exposures: every arm of every treated run, when it was assigned.
    with srv.admin(ws.admin_token) as admin:
        exported = admin.get("/api/exports/exposures").text.splitlines()
    header = exported[0].split(",")
    lines = [dict(zip(header, line.split(","), strict=True)) for line in exported[1:]]
    splits = [e for e in lines if e["kind"] == "split"]
    assert Counter((e["step"], e["arm"]) for e in splits) == Counter(("timing", path_of[r]) for r in treated)
    assert {e["run_id"] for e in splits} == treated


def test_an_arm_counts_once_however_often_its_batch_is_written(server: tuple[LiveServer, VirtualClock]) -> None:
    """A batch decided twice (a crash after the decisions, a cursor moved back): its runs' arms
    and conversions count once; an arm chosen after the run converted does not count it."""
    srv, clock = server
    wid = srv.workspace().workspace_id
    at = to_ms(clock.now())

    def run(status: str, paths: dict[str, str], converted: int | None, **more: Any) -> dict[str, Any]:
        return {
            "id": "r1",
            "journey_id": "exp",
            "version": 1,
            "status": status,
            "step": "mail",
            "holdout": 0,
            "control": 0,
            "entered_at_ms": at,
            "converted_at_ms": converted,
            "revenue": 7.5 if converted else None,
            "paths": paths,
            **more,
        }

    message = SendMessage("r1:mail:1", "r1", "exp", 1, "mail", "email", "exp-a", "a", True, at, {})
    batches = [
        [RunChanged(run("active", {"timing": "soon", "mail": "a"}, None)), message],
        [RunChanged(run("done", {"timing": "soon", "mail": "a"}, at + 60_000))],
        # Chosen after the conversion: a new arm, without it.
        [RunChanged(run("done", {"timing": "soon", "mail": "a", "later-split": "x"}, at + 60_000))],
        # A holdout run and a control member's run: no arm.
        [RunChanged(run("done", {"timing": "later"}, None, id="r2", holdout=1))],
        [RunChanged(run("done", {"timing": "later"}, None, id="r3", control=1))],
    ]
    for effects in batches:
        for _ in range(2):
            batch = EffectsBatch()
            batch.add(wid, "p1", effects, at)
            with srv.state.engine.begin() as conn:
                batch.write(conn, at)
    with srv.state.engine.connect() as conn:
        found = {(a["step"], a["arm"]): a for a in rollups.experiment_arms(conn, wid, "exp")}
        kinds = dict(conn.execute(text("SELECT step, kind FROM run_arms WHERE run_id = 'r1'")).all())
        others = conn.execute(text("SELECT count(*) FROM run_arms WHERE run_id <> 'r1'")).scalar_one()
    assert sorted(found) == [("later-split", "x"), ("mail", "a"), ("timing", "soon")]
    for key in (("mail", "a"), ("timing", "soon")):
        assert (found[key]["runs"], found[key]["conversions"], found[key]["revenue"]) == (1, 1, 7.5)
        assert sum(found[key]["time_to_convert"].values()) == 1
    assert (found[("later-split", "x")]["runs"], found[("later-split", "x")]["conversions"]) == (1, 0)
    assert kinds == {"timing": "split", "mail": "variant", "later-split": "split"}
    assert others == 0
