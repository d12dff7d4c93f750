"""A finished simulation's facts as the report rollups' counters, so that `simulate --report`
shows the report `nudgeflow report` reads from a database, computed by the same arithmetic
(measure/report.py) from the same counters (store/rollups.py says what each one counts, and
when). Pure: no SQL, no clock; it reads the `Simulation` and adds up.

What the simulator decides, it counts as the engine's effects writer and the dispatcher would:
- a run (its latest row): `entered`, or `held_out` for a holdout run, or `entered_control`
  for a run in the global control group, on the UTC day it entered; its conversion:
  `conversions` (`conversions_held_out`, `conversions_control`), revenue and its square,
  time to convert. With a global control group in the policies, the program's counters:
  one unit per person and cohort of the group (the side of their first run in it), whether
  any of their runs converted, and their revenue with each goal event once;
- a planned message: `sent` once per message key, `step_recipients` once per run and step,
  `recipients` once per treated run (on the run's row; not a global-control run's), time to trigger (trigger event → the
  message's time), on the UTC day of the message's time. A planned message is one the core
  decided to send: consent and address suppression are decided at dispatch, which a
  simulation does not run, so a real run may send fewer.
- unique opens and clicks (human, and machine/bot apart): only when the replayed events hold
  tracking events (Email Opened, Email Link Clicked, Push Clicked) naming a planned message
  by its `message_key`; each message's first open (click) counts once, as the tracking
  routes count it.

What only dispatch, a provider or a person's mail client could tell is not known, and is
None (not 0) in the counters: `delivered`, `bounces`, `unsubscribes`, `complaints`,
`push_opt_outs`, attributed conversions and revenue (last touch needs the workspace's
attribution windows and the opens behind them), and opens and clicks when the replay holds
none of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nudgeflow.measure import report
from nudgeflow.model.histogram import bucket_of
from nudgeflow.runtime.simulation import CLICKED, OPENED, PlannedMessage, Simulation
from nudgeflow.store.rollups import PROGRAM_VALUES, TIME_TO_CONVERT, TIME_TO_TRIGGER, VALUES, day_of

__all__ = ["ALWAYS_NOT_KNOWN", "ENGAGEMENT", "SimulatedRollups", "build", "read", "simulated_report"]

# (journey_id, version, step, variant, channel, day): store/rollups' dimensions in one workspace.
Key = tuple[str, int, str, str, str, int]
DIMENSIONS = ("journey_id", "version", "step", "variant", "channel", "day")

ALWAYS_NOT_KNOWN = (
    "delivered",
    "bounces",
    "unsubscribes",
    "complaints",
    "push_opt_outs",
    "attributed_conversions",
    "attributed_revenue",
)
ENGAGEMENT = ("opens", "opens_machine", "clicks", "clicks_bot")
_COUNTER = {
    (OPENED, False): "opens",
    (OPENED, True): "opens_machine",
    (CLICKED, False): "clicks",
    (CLICKED, True): "clicks_bot",
}


@dataclass
class SimulatedRollups:
    """Counters per key (every counter of store/rollups.VALUES; None where not known), the
    latency histograms, and the workspace's treated conversions with each goal event once."""

    counters: dict[Key, dict[str, Any]] = field(default_factory=dict)
    latencies: Counter[tuple[Key, str, int]] = field(default_factory=Counter)
    # The program's counters (store/rollups.PROGRAM_VALUES), as store/rollups.read_program sums them.
    program: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PROGRAM_VALUES, 0))
    not_known: tuple[str, ...] = ALWAYS_NOT_KNOWN
    unique_conversions: int = 0
    unique_revenue: float = 0.0

    def add(self, key: Key, **deltas: float) -> None:
        row = self.counters.get(key)
        if row is None:
            row = self.counters[key] = dict.fromkeys(VALUES, 0)
        for name, value in deltas.items():
            row[name] += value


def build(sim: Simulation) -> SimulatedRollups:
    """The counters a database would hold had the simulation's decisions been carried out."""
    out = SimulatedRollups()
    _count_runs(out, sim.runs.values())
    _count_program(out.program, sim.runs.values())
    planned = _count_messages(out, sim)
    engaged = [e for e in sim.engagement if e.key in planned]
    if engaged:
        counted: set[tuple[str, str, bool]] = set()
        opened: set[tuple[str, str]] = set()  # (message, fact) opened (clicked) by anyone
        for e in engaged:
            message = planned[e.key]
            # An open before the message was sent is not one of its opens (as tracking cannot see one).
            if e.at_ms < message.at_ms or (e.key, e.fact, e.machine) in counted:
                continue
            counted.add((e.key, e.fact, e.machine))
            # As store/rollups counts them: a machine's open only while no person opened the
            # message; a person's after a machine's takes the message out of the machine count.
            first = (e.key, e.fact) not in opened
            opened.add((e.key, e.fact))
            deltas = {_COUNTER[(e.fact, e.machine)]: 1} if first or not e.machine else {}
            if not e.machine and not first and (e.key, e.fact, True) in counted:
                deltas[_COUNTER[(e.fact, True)]] = -1
            if deltas:
                out.add(_message_key(message), **deltas)
    else:
        out.not_known = (*ALWAYS_NOT_KNOWN, *ENGAGEMENT)
    for row in out.counters.values():
        for name in out.not_known:
            row[name] = None
    return out


def _count_runs(out: SimulatedRollups, runs: Iterable[Mapping[str, Any]]) -> None:
    seen_goals: set[tuple[str, str | int]] = set()
    for run in runs:
        key: Key = (run["journey_id"], run["version"], "", "", "", day_of(run["entered_at_ms"]))
        held, control = bool(run.get("holdout")), bool(run.get("control"))
        out.add(key, **{"entered_control" if control else "held_out" if held else "entered": 1})
        converted = run.get("converted_at_ms")
        if converted is None:
            continue
        revenue = float(run.get("revenue") or 0.0)
        # As store/rollups counts them: a run in the global control group is on neither side
        # of its journey's lift.
        if control:
            out.add(key, conversions_control=1, revenue_control=revenue, revenue_sq_control=revenue**2)
        elif held:
            out.add(key, conversions_held_out=1, revenue_held_out=revenue, revenue_sq_held_out=revenue**2)
        else:
            out.add(key, conversions=1, revenue=revenue, revenue_sq=revenue**2)
            # The workspace total counts a goal event once, however many journeys it converted.
            # A goal event is its messageId (store/rollups._goal_event), its time before they were kept.
            goal = (run["profile_id"], run.get("converted_by") or converted)
            if goal not in seen_goals:
                seen_goals.add(goal)
                out.unique_conversions += 1
                out.unique_revenue += revenue
        out.latencies[(key, TIME_TO_CONVERT, bucket_of(converted - run["entered_at_ms"]))] += 1


def _count_program(program: dict[str, float], runs: Iterable[Mapping[str, Any]]) -> None:
    """store/rollups._count_program over every run at once: a person per cohort of the global
    control group, on the side of their first run in it (`_control` in the group); converted
    when any of their runs met its goal; their revenue adds each goal event once (one order
    converting runs of two journeys is one), and the squares are of each person's total."""
    compared = sorted(
        (run for run in runs if run.get("control_cohort") is not None), key=lambda r: (r["entered_at_ms"], r["id"])
    )
    firsts: dict[tuple[str, str], Mapping[str, Any]] = {}
    for run in compared:
        firsts.setdefault((run["profile_id"], run["control_cohort"]), run)
    side = {person: "_control" if run.get("control") else "" for person, run in firsts.items()}
    for suffix in side.values():
        program[f"program_people{suffix}"] += 1
    totals: dict[tuple[str, str], float] = {}
    goals: set[tuple[str, str, Any]] = set()
    converting = [run for run in compared if run.get("converted_at_ms") is not None]
    for run in sorted(converting, key=lambda r: (r["converted_at_ms"], r["id"])):
        person = (run["profile_id"], run["control_cohort"])
        goal = (*person, run.get("converted_by") or run["converted_at_ms"])
        if goal in goals:
            continue
        goals.add(goal)
        revenue = float(run.get("revenue") or 0.0)
        if person not in totals:
            program[f"program_conversions{side[person]}"] += 1
        totals[person] = totals.get(person, 0.0) + revenue
        program[f"program_revenue{side[person]}"] += revenue
    for person, total in totals.items():
        program[f"program_revenue_sq{side[person]}"] += total**2


def _message_key(message: PlannedMessage) -> Key:
    return (
        message.journey,
        message.version,
        message.step,
        message.variant or "",
        message.channel,
        day_of(message.at_ms),
    )


def _count_messages(out: SimulatedRollups, sim: Simulation) -> dict[str, PlannedMessage]:
    planned: dict[str, PlannedMessage] = {}
    steps: set[tuple[str, str]] = set()
    for message in sim.messages:
        if message.key in planned:
            continue
        planned[message.key] = message
        key = _message_key(message)
        first_of_step = (message.run_id, message.step) not in steps
        steps.add((message.run_id, message.step))
        out.add(key, sent=1, step_recipients=int(first_of_step))
        if message.trigger_at_ms is not None:
            out.latencies[(key, TIME_TO_TRIGGER, bucket_of(max(0, message.at_ms - message.trigger_at_ms)))] += 1
    recipients: set[str] = {m.run_id for m in planned.values()}
    for run_id in recipients:
        run = sim.runs.get(run_id)
        # A run in the global control group is sent its transactional messages; they count as
        # sent, but the run is not a treated run's recipient (as store/rollups.count_sent).
        if run is not None and not run.get("control"):
            key = (run["journey_id"], run["version"], "", "", "", day_of(run["entered_at_ms"]))
            out.add(key, recipients=1)
    return planned


def read(
    rollups: SimulatedRollups, *, journey_id: str | None = None, by: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[tuple[tuple[Any, ...], str, int, int]]]:
    """store/rollups.read's answer over the simulated counters: summed per journey and each
    `by` dimension (step, variant, channel, version, day), in key order, and the latency
    histograms as ((journey_id, *by values), metric, bucket, count). A counter not known in a
    row stays not known in its sum."""
    for name in by:
        if name not in DIMENSIONS[1:]:
            raise ValueError(f"cannot break a report down by {name!r}")
    picks = [DIMENSIONS.index(name) for name in ("journey_id", *by)]
    summed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, row in rollups.counters.items():
        if journey_id is not None and key[0] != journey_id:
            continue
        group = tuple(key[i] for i in picks)
        into = summed.get(group)
        if into is None:
            summed[group] = dict(row)
            continue
        for name, value in row.items():
            into[name] = None if value is None or into[name] is None else into[name] + value
    names = ("journey_id", *by)
    counters = [{**dict(zip(names, group, strict=True)), **summed[group]} for group in sorted(summed)]
    hist: Counter[tuple[tuple[Any, ...], str, int]] = Counter()
    for (key, metric, bucket), count in rollups.latencies.items():
        if journey_id is None or key[0] == journey_id:
            hist[(tuple(key[i] for i in picks), metric, bucket)] += count
    latencies = [(group, metric, bucket, count) for (group, metric, bucket), count in sorted(hist.items())]
    return counters, latencies


def simulated_report(sim: Simulation, *, by: Sequence[str] = (), include_machine: bool = False) -> dict[str, Any]:
    """Each journey's report (measure/report.journey_report, broken down by `by`) and the
    overview, from the simulation's counters; "not_known" in each lists what it cannot know.
    Days (when `by` holds day) are days since the epoch, as store/rollups.read gives them."""
    rollups = build(sim)
    journeys = {}
    for journey_id in sim.journeys:
        counters, latencies = read(rollups, journey_id=journey_id, by=by)
        journeys[journey_id] = report.journey_report(
            journey_id, counters, latencies, by, VALUES, include_machine=include_machine, not_known=rollups.not_known
        )
    counters, latencies = read(rollups)
    trigger_types = {journey_id: journey.trigger.type for journey_id, journey in sim.journeys.items()}
    overview = report.overview_report(
        counters,
        latencies,
        trigger_types,
        VALUES,
        program=rollups.program,
        include_machine=include_machine,
        not_known=rollups.not_known,
    )
    overview["workspace"]["unique_conversions"] = rollups.unique_conversions
    overview["workspace"]["unique_revenue"] = round(rollups.unique_revenue, 6)
    return {"journeys": journeys, "overview": overview}
