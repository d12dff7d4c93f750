"""The example journeys in production: the sample events through the embedded runtime.

The same events as examples/README.md replays with `nudgeflow simulate`, ingested into a
real database with the example journeys published, and decided by `EmbeddedRuntime` on a
virtual clock that stops at each event and at each timer's due time. What the `log`
channel records must be exactly what the simulator plans: the same people, journeys,
steps, templates, variants, at the same instants (DESIGN §2: one core, the same behaviour).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from nudgeflow.core.clock import VirtualClock, from_ms, to_ms
from nudgeflow.model.events import normalize, parse_message
from nudgeflow.model.journeys import Journey, SendStep, duration_ms
from nudgeflow.runtime.embedded import EmbeddedRuntime
from nudgeflow.runtime.replay import load_journeys
from nudgeflow.runtime.simulation import Simulation, message_time_ms
from nudgeflow.settings import Settings
from nudgeflow.store import database
from nudgeflow.store import journeys as store
from nudgeflow.store.group_commit import GroupCommitter
from nudgeflow.store.workspaces import create_workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HORIZON = duration_ms("40d")


def _sample() -> list[dict[str, Any]]:
    lines = (EXAMPLES / "events" / "sample.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def _examples() -> list[Journey]:
    return load_journeys([EXAMPLES / "journeys"])


def _without_chance(journeys: list[Journey]) -> list[Journey]:
    """The examples without a holdout and with each variant step on its first variant: what
    is left is decided by the events and the clock alone."""
    out = []
    for journey in journeys:
        steps = {}
        for step_id, step in journey.steps.items():
            if isinstance(step, SendStep) and step.variants:
                step = step.model_copy(update={"variants": None, "template": step.variants[0].template})
            steps[step_id] = step
        out.append(journey.model_copy(update={"holdout": 0.0, "steps": steps}))
    return out


def _simulated(journeys: list[Journey]) -> Simulation:
    sim = Simulation(journeys)
    sim.replay(_sample(), horizon="40d")
    return sim


def _in_production(tmp_path: Path, journeys: list[Journey]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(messages the log channel recorded, runs) after the sample went through the runtime,
    the clock stopping at each event and at each timer's due time, as the simulator's does."""
    url = f"sqlite:///{tmp_path / 'examples.db'}"
    db = database.create_db_engine(url, sqlite_synchronous="NORMAL")
    database.upgrade(db)
    events = sorted(_sample(), key=lambda m: message_time_ms(m) or 0)
    clock = VirtualClock(from_ms(message_time_ms(events[0]) or 0))
    writer = GroupCommitter(db, clock)
    writer.start()
    try:
        now = to_ms(clock.now())
        with db.begin() as conn:
            ws = create_workspace(conn, "examples", now).workspace_id
            for journey in journeys:
                store.apply_draft(conn, ws, journey, now)
                store.publish(conn, ws, journey.id, now)
        rt = EmbeddedRuntime(db, writer, clock, Settings(database_url=url))

        def next_due() -> int | None:
            with db.connect() as conn:
                value = conn.execute(text("SELECT MIN(due_at_ms) FROM timers")).scalar()
            return int(value) if value is not None else None

        def run_timers_until(limit: int) -> None:
            while (due := next_due()) is not None and due <= limit:
                if due > to_ms(clock.now()):
                    clock.set(from_ms(due))
                rt.run_until_idle()

        for message in events:
            at = message_time_ms(message)
            assert at is not None
            run_timers_until(at)  # a timer due at the event's very millisecond fires first, as in the simulator
            if at > to_ms(clock.now()):
                clock.set(from_ms(at))
            record = normalize(parse_message(message), clock.now(), max_event_bytes=32 * 1024)
            writer.submit_events(ws, [record]).result(timeout=60)
            rt.run_until_idle()
        run_timers_until(to_ms(clock.now()) + HORIZON)

        with db.connect() as conn:
            users = dict(conn.execute(text("SELECT id, user_id FROM profiles")).all())
            logged = conn.execute(text("SELECT profile_id, sent_at_ms, body FROM log_channel_messages")).all()
            runs = conn.execute(
                text(
                    "SELECT profile_id, journey_id, status, exit_reason, holdout, converted_at_ms, revenue "
                    "FROM journey_runs"
                )
            ).all()
    finally:
        writer.stop()
        db.dispose()
    sent = []
    for profile_id, sent_at_ms, body in logged:
        doc = orjson.loads(body)
        sent.append(
            (
                int(sent_at_ms),
                users.get(profile_id),
                doc["journey_id"],
                doc["step"],
                doc["channel"],
                doc["template"],
                doc["variant"],
            )
        )
    rows = [(users.get(pid), j, st, why, bool(h), conv, rev) for pid, j, st, why, h, conv, rev in runs]
    return sorted(sent), sorted(rows, key=repr)


def _messages(sim: Simulation) -> list[tuple[Any, ...]]:
    return sorted((m.at_ms, m.user_id, m.journey, m.step, m.channel, m.template, m.variant) for m in sim.messages)


def _runs(sim: Simulation) -> list[tuple[Any, ...]]:
    rows = [
        (
            r["profile_id"],
            r["journey_id"],
            r["status"],
            r["exit_reason"],
            bool(r["holdout"]),
            r["converted_at_ms"],
            r["revenue"],
        )
        for r in sim.runs.values()
    ]
    return sorted(rows, key=repr)


def test_the_runtime_sends_what_the_simulator_plans_at_the_same_instants(tmp_path: Path) -> None:
    journeys = _without_chance(_examples())
    sent, runs = _in_production(tmp_path, journeys)
    sim = _simulated(journeys)
    assert sent == _messages(sim)
    assert runs == _runs(sim)
    assert len(sent) == 40  # the 37 of examples/README.md, and the 3 cart emails Dmitri gets out of the holdout


def test_holdout_and_variants_are_the_same_person_by_person_in_simulation_and_production(tmp_path: Path) -> None:
    journeys = _examples()
    sent, runs = _in_production(tmp_path, journeys)
    sim = _simulated(journeys)
    held = {who for who, journey, *_rest in runs if journey == "cart-abandonment" and _rest[2]}
    assert held == {r["profile_id"] for r in sim.runs.values() if r["holdout"]}  # {"dmitri"}
    assert sent == _messages(sim)
