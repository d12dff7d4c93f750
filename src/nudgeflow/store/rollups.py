"""Report rollups: counters per journey × version × step × variant × channel × UTC day,
added to in the very transactions that record the facts they count.

Who adds what, and where (each in its own transaction with the fact, so a crash loses or
repeats both or neither):
- the engine's effects writer (store/effects_writer.py): a run's entry (`entered`, or
  `held_out` for a holdout run, or `entered_control` for a run in the global control group)
  the first time its row is written, and its conversion (`conversions`, `conversions_held_out`
  or `conversions_control`, revenue and its square, time to convert) the first time its row
  carries one. Whether the row existed, and with a conversion, is read from journey_runs
  before the batch writes it, so a batch decided twice counts once. The same writer counts
  the program's people and conversions (the group against everyone else, one unit per person
  and cohort of the group) in the workspace's rows: _count_program;
- the dispatcher (runtime/dispatcher.py): `sent` (and `delivered` when the channel says
  so), `step_recipients`, `recipients` (a treated run's first message sent: not a run in the
  global control group's transactional one) and time to trigger;
- the tracking routes (web/tracking.py, web/push_reports.py) and bounce handling
  (runtime/bounces.py, and the dispatcher's own bounces): unique opens and clicks (human and
  machine/bot apart), unsubscribes, complaints, bounces.

"Unique" and "once" are exact because each counted fact first claims its row in
message_facts, keyed by (workspace, message key or run id, fact), with an INSERT … ON
CONFLICT DO NOTHING RETURNING that names the rows it inserted: the second open of a message
finds the first one's row and counts nothing.

The day of a run's counters (entered, held out, recipients, conversions, revenue, time to
convert) is the UTC day it entered; the day of a message's counters is the UTC day it was
sent (engagement follows its message's day). A report over a range of days is therefore a
report on the runs that entered and the messages sent in it.

step, variant and channel are '' where they do not apply: a run's counters have no step.

Messages timed by `send_time` are also counted by the arm that timed them (optimized,
explore, fallback: `context.send_time.arm`) in report_send_time, by the same writers in the
same transactions and on the same claims: `count_sent` for the sends, `count_engagement` for
opens, clicks, unsubscribes and complaints (the arm read from the message's outbox row).

An experiment's arms (a `split` step's paths, a send step's `variants`) have rows of their
own: the experiment step, the arm as variant, and channel '' (a message's row always has its
channel), on the UTC day the run entered. They count runs, not messages (`count_arms`): a
treated run assigned the arm (once, when the arm is first stored in run_arms), and whether
it converted (with revenue and time to convert), opened, clicked, unsubscribed, complained.
Holdout runs and global-control runs are in no arm. `read` leaves these rows out;
`experiment_arms` reads them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection

from nudgeflow.core.send_time import EXPLORE, FALLBACK, OPTIMIZED
from nudgeflow.model.histogram import bucket_of
from nudgeflow.store import sql
from nudgeflow.store.schema import (
    ARM_COUNTERS,
    ARM_SUMS,
    ROLLUP_COUNTERS,
    ROLLUP_SUMS,
    SEND_TIME_COUNTERS,
    SEND_TIME_DIMENSIONS,
)

DAY_MS = 86_400_000
DIMENSIONS = ("workspace_id", "journey_id", "version", "step", "variant", "channel", "day")
VALUES = ROLLUP_COUNTERS + ROLLUP_SUMS  # what `read` sums (the arms' counters are read apart)
ARM_VALUES = ARM_COUNTERS + ARM_SUMS
ALL_VALUES = VALUES + ARM_VALUES
GROUPABLE = ("step", "variant", "channel")  # what a report can be broken down by (and version, day)

TIME_TO_TRIGGER, TIME_TO_CONVERT = "trigger", "convert"
# An arm's runs' time to convert: a metric of its own, or a report's totals would count the
# conversion twice (once in the run's row, once in its arm's).
ARM_TIME_TO_CONVERT = "arm_convert"

# The facts counted once per message (or run), and the counter each one adds to.
SENT, DELIVERED = "sent", "delivered"
RECIPIENT, STEP_RECIPIENT = "recipient", "step_recipient"
OPENED, OPENED_MACHINE = "opened", "opened_machine"
CLICKED, CLICKED_BOT = "clicked", "clicked_bot"
UNSUBSCRIBED, COMPLAINED, BOUNCED, PUSH_OPT_OUT = "unsubscribed", "complained", "bounced", "push_opt_out"
ENGAGEMENT_COUNTER = {
    OPENED: "opens",
    OPENED_MACHINE: "opens_machine",
    CLICKED: "clicks",
    CLICKED_BOT: "clicks_bot",
    UNSUBSCRIBED: "unsubscribes",
    COMPLAINED: "complaints",
    BOUNCED: "bounces",
    PUSH_OPT_OUT: "push_opt_outs",
}

Dims = tuple[str, str, int, str, str, str, int]
# report_send_time's key: workspace, journey, version, step, timed_by, arm, day.
SendTimeDims = tuple[str, str, int, str, str, str, int]
SEND_TIME_ARMS = (OPTIMIZED, EXPLORE, FALLBACK)
# The engagement facts counted per send-time arm (bounces and push opt-outs are not).
SEND_TIME_COUNTER = {
    OPENED: "opens",
    OPENED_MACHINE: "opens_machine",
    CLICKED: "clicks",
    CLICKED_BOT: "clicks_bot",
    UNSUBSCRIBED: "unsubscribes",
    COMPLAINED: "complaints",
}

# A run's latest human touch of each kind (updated, not claimed once), with the message it
# touched: what last-touch attribution reads. Keyed by the run, so that a conversion finds
# them by equality on the primary key (a prefix range over message keys would depend on
# PostgreSQL's collation).
TOUCH_EMAIL_CLICK, TOUCH_EMAIL_OPEN, TOUCH_PUSH_OPEN = "touch_email_click", "touch_email_open", "touch_push_open"
TOUCHES = (TOUCH_EMAIL_CLICK, TOUCH_EMAIL_OPEN, TOUCH_PUSH_OPEN)
# A goal event's conversion, claimed once per journey (attribution) and once per workspace.
ATTRIBUTED, CONVERTED = "attributed", "converted"
# The workspace's deduplicated totals live in rows of no journey.
WORKSPACE_ROW = ""

# Attribution windows (model/workspace_keys.py's attribution.* keys) when a workspace sets none.
DEFAULT_WINDOWS = {"email_click": "5d", "email_open": "1d", "push_open": "24h"}


def day_of(at_ms: int) -> int:
    return at_ms // DAY_MS


class Rollup:
    """Deltas gathered over one transaction, folded per row, then written in two statements."""

    def __init__(self) -> None:
        self._deltas: dict[Dims, list[float]] = {}
        self._latencies: Counter[tuple[Dims, str, int]] = Counter()
        self._send_time: dict[SendTimeDims, list[int]] = {}

    def __bool__(self) -> bool:
        return bool(self._deltas or self._latencies or self._send_time)

    def add(self, dims: Dims, **deltas: float) -> None:
        row = self._deltas.get(dims)
        if row is None:
            row = self._deltas[dims] = [0] * len(ALL_VALUES)
        for name, value in deltas.items():
            row[_INDEX[name]] += value

    def latency(self, dims: Dims, metric: str, duration_ms: int) -> None:
        self._latencies[(dims, metric, bucket_of(duration_ms))] += 1

    def send_time(self, dims: SendTimeDims, **deltas: int) -> None:
        row = self._send_time.get(dims)
        if row is None:
            row = self._send_time[dims] = [0] * len(SEND_TIME_COUNTERS)
        for name, value in deltas.items():
            row[_SEND_TIME_INDEX[name]] += value

    def write(self, conn: Connection) -> None:
        if self._deltas:
            conn.exec_driver_sql(
                # In key order: two writers (the engine, a dispatcher) lock shared rows in one order.
                _upsert_counters(sql.mark(conn)),
                [(*dims, *values) for dims, values in sorted(self._deltas.items())],
            )
        if self._latencies:
            conn.exec_driver_sql(
                _upsert_latencies(sql.mark(conn)),
                [(*dims, metric, bucket, n) for (dims, metric, bucket), n in sorted(self._latencies.items())],
            )
        if self._send_time:
            conn.exec_driver_sql(
                _upsert_send_time(sql.mark(conn)),
                [(*dims, *values) for dims, values in sorted(self._send_time.items())],
            )
        self._deltas.clear()
        self._latencies.clear()
        self._send_time.clear()


_INDEX = {name: i for i, name in enumerate(ALL_VALUES)}
_SEND_TIME_INDEX = {name: i for i, name in enumerate(SEND_TIME_COUNTERS)}


@lru_cache(maxsize=4)
def _upsert_counters(mark: str) -> str:
    columns = (*DIMENSIONS, *ALL_VALUES)
    sets = ", ".join(f"{c} = report_rollups.{c} + excluded.{c}" for c in ALL_VALUES)
    return (
        f"INSERT INTO report_rollups ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        f" ON CONFLICT ({', '.join(DIMENSIONS)}) DO UPDATE SET {sets}"
    )


@lru_cache(maxsize=4)
def _upsert_latencies(mark: str) -> str:
    columns = (*DIMENSIONS, "metric", "bucket", "count")
    return (
        f"INSERT INTO report_latencies ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        f" ON CONFLICT ({', '.join(DIMENSIONS)}, metric, bucket)"
        " DO UPDATE SET count = report_latencies.count + excluded.count"
    )


@lru_cache(maxsize=4)
def _upsert_send_time(mark: str) -> str:
    columns = (*SEND_TIME_DIMENSIONS, *SEND_TIME_COUNTERS)
    sets = ", ".join(f"{c} = report_send_time.{c} + excluded.{c}" for c in SEND_TIME_COUNTERS)
    return (
        f"INSERT INTO report_send_time ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        f" ON CONFLICT ({', '.join(SEND_TIME_DIMENSIONS)}) DO UPDATE SET {sets}"
    )


# --- facts counted once ------------------------------------------------------------------------

Fact = tuple[str, str, str, str, int]  # (workspace_id, subject, fact, profile_id, at_ms)


def claim_firsts(conn: Connection, facts: Iterable[Fact]) -> set[tuple[str, str, str]]:
    """Record each fact that has no row yet; (workspace_id, subject, fact) of those recorded
    now. Only these may be counted: the others were counted when their row was written."""
    unique = list({(f[0], f[1], f[2]): f for f in facts}.values())
    claimed: set[tuple[str, str, str]] = set()
    m = sql.mark(conn)
    one = f"({m}, {m}, {m}, {m}, {m})"
    for chunk in sql.chunks(unique, 100):
        statement = (
            "INSERT INTO message_facts (workspace_id, subject, fact, profile_id, at_ms) VALUES "
            + ", ".join([one] * len(chunk))
            + " ON CONFLICT (workspace_id, subject, fact) DO NOTHING RETURNING workspace_id, subject, fact"
        )
        rows = conn.exec_driver_sql(statement, tuple(v for fact in chunk for v in fact)).all()
        claimed.update((r[0], r[1], r[2]) for r in rows)
    return claimed


# --- runs (the engine's effects writer) ---------------------------------------------------------

# journey_runs' columns as store/effects_writer.RUN_COLUMNS orders them.
_RUN_ID, _RUN_WS, _RUN_JOURNEY, _RUN_VERSION, _RUN_PROFILE = 0, 1, 2, 3, 4
_RUN_HOLDOUT, _RUN_ENTERED, _RUN_CONVERTED, _RUN_REVENUE = 7, 8, 11, 12
_RUN_CONTROL, _RUN_COHORT, _RUN_CONVERTED_BY = 14, 15, 16


def count_runs(conn: Connection, rollup: Rollup, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Count the entries and conversions the batch's run rows (RUN_COLUMNS) bring, before
    they are written (see _count_runs), attribute each new treated conversion, and count the
    program's people and conversions (_count_program). Returns the rows of the treated runs
    converting now (count_arms counts them in their arms)."""
    converted, entering, converting = _count_runs(conn, rollup, rows)
    if converted:
        _attribute(conn, rollup, converted)
    if entering or converting:
        _count_program(conn, rollup, entering, converting)
    return converted


Rows = list[tuple[Any, ...]]


def _count_runs(conn: Connection, rollup: Rollup, rows: Sequence[tuple[Any, ...]]) -> tuple[Rows, Rows, Rows]:
    """A run whose row exists already has entered; one whose stored row has a conversion has
    converted.

    A run is counted on one side of its journey: in the global control group (`_control`,
    held out of the journey or not), else held out, else treated. A journey's lift compares
    its treated and held-out runs, both outside the group: a member's baseline is lowered
    (or raised) by the other journeys it does not get, so it belongs to neither.

    Returns the rows of treated runs converting now (for attribution), and the rows of runs
    in the program's comparison (a control cohort) entering now and converting now."""
    converting: Rows = []
    program_entering: Rows = []
    program_converting: Rows = []
    if not rows:
        return converting, program_entering, program_converting
    stored = {
        run_id: converted
        for run_id, converted in sql.select_in(
            conn, "SELECT id, converted_at_ms FROM journey_runs WHERE id IN", [r[_RUN_ID] for r in rows]
        )
    }
    for row in rows:
        run_id = row[_RUN_ID]
        new = run_id not in stored
        converts = row[_RUN_CONVERTED] is not None and stored.get(run_id) is None
        if not (new or converts):
            continue
        held, control = bool(row[_RUN_HOLDOUT]), bool(row[_RUN_CONTROL])
        dims: Dims = (row[_RUN_WS], row[_RUN_JOURNEY], row[_RUN_VERSION], "", "", "", day_of(row[_RUN_ENTERED]))
        if new:
            rollup.add(dims, **{"entered_control" if control else "held_out" if held else "entered": 1})
        if converts:
            revenue = float(row[_RUN_REVENUE] or 0.0)
            if control:
                rollup.add(dims, conversions_control=1, revenue_control=revenue, revenue_sq_control=revenue**2)
            elif held:
                rollup.add(dims, conversions_held_out=1, revenue_held_out=revenue, revenue_sq_held_out=revenue**2)
            else:
                rollup.add(dims, conversions=1, revenue=revenue, revenue_sq=revenue**2)
                converting.append(row)
            rollup.latency(dims, TIME_TO_CONVERT, row[_RUN_CONVERTED] - row[_RUN_ENTERED])
        if row[_RUN_COHORT] is not None:
            if new:
                program_entering.append(row)
            if converts:
                program_converting.append(row)
    return converting, program_entering, program_converting


# --- the program: the global control group against everyone else --------------------------------

# Facts of a person in a cohort of the control group (subject "<profile>|<cohort>"): their
# first run in it (at_ms: its entry, whose UTC day their counters are on; message_key: their
# side; amount: their revenue so far, NULL until they first convert); and each goal event of
# theirs (subject "<profile>|<cohort>|<hash of the event's messageId>"), whose revenue is added
# once.
PROGRAM_PERSON, PROGRAM_GOAL = "program", "program_goal"
CONTROL_SIDE, TREATED_SIDE = "control", "treated"


def _person(row: tuple[Any, ...]) -> str:
    return f"{row[_RUN_PROFILE]}|{row[_RUN_COHORT]}"


def _goal_event(row: tuple[Any, ...]) -> str:
    """The goal event that converted the run: its messageId (two orders of a person in one
    millisecond are two), or its time for a run converted before messageIds were kept. A
    messageId is up to 512 characters; its hash keeps a subject short."""
    event = str(row[_RUN_CONVERTED_BY] or row[_RUN_CONVERTED])
    return hashlib.blake2b(event.encode(), digest_size=12).hexdigest()


def _goal(row: tuple[Any, ...]) -> str:
    return f"{_person(row)}|{_goal_event(row)}"


def _count_program(conn: Connection, rollup: Rollup, entering: Rows, converting: Rows) -> None:
    """The program's comparison, one unit per person and cohort: people (`program_people`, or
    `program_people_control` in the group), those who converted, and their revenue, with the
    sum of the squares of each person's total (what Welch's interval needs), in the
    workspace's rows on the day of the person's first run in the cohort.

    A person's side is their first run's: within a cohort it is the same for all their runs
    unless the group's share changed in between. A goal event that converts runs of several
    journeys adds its revenue once. The person, and each goal event, first claims its row in
    message_facts, so a batch decided twice counts nothing twice. A batch costs a statement
    for its new people, and three for its conversions, however many."""
    m = sql.mark(conn)
    firsts: dict[tuple[str, str], tuple[Any, ...]] = {}
    for row in sorted(entering, key=lambda r: (r[_RUN_ENTERED], r[_RUN_ID])):
        firsts.setdefault((row[_RUN_WS], _person(row)), row)
    one = f"({m}, {m}, {m}, {m}, {m}, {m}, NULL)"
    for chunk in sql.chunks(list(firsts.values()), 100):
        claimed = conn.exec_driver_sql(
            "INSERT INTO message_facts (workspace_id, subject, fact, profile_id, at_ms, message_key, amount) VALUES "
            + ", ".join([one] * len(chunk))
            + " ON CONFLICT (workspace_id, subject, fact) DO NOTHING RETURNING workspace_id, subject",
            tuple(
                v
                for row in chunk
                for v in (
                    row[_RUN_WS],
                    _person(row),
                    PROGRAM_PERSON,
                    row[_RUN_PROFILE],
                    row[_RUN_ENTERED],
                    CONTROL_SIDE if row[_RUN_CONTROL] else TREATED_SIDE,
                )
            ),
        ).all()
        for ws, subject in claimed:
            row = firsts[(ws, subject)]
            counter = "program_people_control" if row[_RUN_CONTROL] else "program_people"
            rollup.add((ws, WORKSPACE_ROW, 0, "", "", "", day_of(row[_RUN_ENTERED])), **{counter: 1})
    if not converting:
        return
    goals = claim_firsts(
        conn,
        [(r[_RUN_WS], _goal(r), PROGRAM_GOAL, r[_RUN_PROFILE], r[_RUN_CONVERTED]) for r in converting],
    )
    # Each goal event once: another journey's run, or this batch's, may have counted it.
    counted = [
        row
        for row in sorted(converting, key=lambda r: (r[_RUN_CONVERTED], r[_RUN_ID]))
        if _take(goals, (row[_RUN_WS], _goal(row), PROGRAM_GOAL))
    ]
    subjects: dict[str, set[str]] = {}
    for row in counted:
        subjects.setdefault(row[_RUN_WS], set()).add(_person(row))
    # The people's rows, read once for the batch: [first entry, side, revenue so far (None
    # until they first convert)], then brought up to date in order and written back.
    people: dict[tuple[str, str], list[Any]] = {}
    for ws, names in subjects.items():
        for subject, first_at, side, amount in sql.select_in(
            conn,
            "SELECT subject, at_ms, message_key, amount FROM message_facts"
            " WHERE workspace_id = ? AND fact = ? AND subject IN",
            sorted(names),
            before=(ws, PROGRAM_PERSON),
        ):
            people[(ws, subject)] = [first_at, side, amount]
    changed: set[tuple[str, str]] = set()
    for row in counted:
        key = (row[_RUN_WS], _person(row))
        person = people.get(key)
        if person is None:  # the person was erased meanwhile
            continue
        first_at, side, before = person
        revenue = float(row[_RUN_REVENUE] or 0.0)
        suffix = "_control" if side == CONTROL_SIDE else ""
        so_far = float(before or 0.0)
        deltas = {
            f"program_revenue{suffix}": revenue,
            # (so_far + revenue)² - so_far²: the square of the person's total, kept up to date.
            f"program_revenue_sq{suffix}": revenue * (2.0 * so_far + revenue),
        }
        if before is None:  # their first conversion in the cohort
            deltas[f"program_conversions{suffix}"] = 1
        person[2] = so_far + revenue
        changed.add(key)
        rollup.add((row[_RUN_WS], WORKSPACE_ROW, 0, "", "", "", day_of(first_at)), **deltas)
    sql.execute_many(
        conn,
        "UPDATE message_facts SET amount = ? WHERE workspace_id = ? AND subject = ? AND fact = ?",
        [(people[key][2], key[0], key[1], PROGRAM_PERSON) for key in sorted(changed)],
    )


def move_program_people(conn: Connection, source: str, target: str) -> None:
    """A merged-away profile's program facts (its person rows and goal events) go to the
    profile it went into, where it has none of its own in that cohort: the person's later
    runs then find themselves counted already. Where both had one, both stay: the person was
    counted twice when they entered, and the counters cannot tell which half to take back."""
    m = sql.mark(conn)
    rows = conn.exec_driver_sql(
        f"SELECT workspace_id, subject, fact FROM message_facts WHERE profile_id = {m} AND fact IN ({m}, {m})",
        (source, PROGRAM_PERSON, PROGRAM_GOAL),
    ).all()
    prefix = f"{source}|"
    for ws, subject, fact in rows:
        if not subject.startswith(prefix):
            continue
        moved = f"{target}|{subject[len(prefix) :]}"
        conn.exec_driver_sql(
            f"UPDATE message_facts SET subject = {m}, profile_id = {m}"
            f" WHERE workspace_id = {m} AND subject = {m} AND fact = {m} AND NOT EXISTS"
            f" (SELECT 1 FROM message_facts o WHERE o.workspace_id = {m} AND o.subject = {m} AND o.fact = {m})",
            (moved, target, ws, subject, fact, ws, moved, fact),
        )


def _windows(conn: Connection, workspace_id: str) -> dict[str, int]:
    from nudgeflow.model.workspace_keys import window_ms
    from nudgeflow.store.workspace_settings import get_section

    chosen = get_section(conn, workspace_id, "attribution")
    chosen = chosen if isinstance(chosen, dict) else {}
    out = {}
    for name, default in DEFAULT_WINDOWS.items():
        try:
            out[name] = window_ms(str(chosen.get(name) or default))
        except ValueError:  # checked when set; a document edited by hand falls back
            out[name] = window_ms(default)
    return out


def _touch_of(channel: str, fact: str) -> str | None:
    if channel == "push" and fact in (OPENED, CLICKED):  # opening a notification is clicking it
        return TOUCH_PUSH_OPEN
    if channel == "email":
        return {OPENED: TOUCH_EMAIL_OPEN, CLICKED: TOUCH_EMAIL_CLICK}.get(fact)
    return None


_WINDOW_OF = {TOUCH_EMAIL_CLICK: "email_click", TOUCH_EMAIL_OPEN: "email_open", TOUCH_PUSH_OPEN: "push_open"}


def _attribute(conn: Connection, rollup: Rollup, converting: Sequence[tuple[Any, ...]]) -> None:
    """For each treated run converting now: the workspace's deduplicated total (once per goal
    event: the person and the goal event's messageId, _goal_event), and last-touch attribution: the run's
    message with the latest human open or click within its window before the goal event
    gets the conversion and its revenue, once per goal event per journey."""
    m = sql.mark(conn)
    windows: dict[str, dict[str, int]] = {}
    claims: list[Fact] = []
    found: list[tuple[tuple[Any, ...], str]] = []
    for row in converting:
        ws, run_id, pid, at = row[_RUN_WS], row[_RUN_ID], row[_RUN_PROFILE], row[_RUN_CONVERTED]
        goal = _goal_event(row)
        claims.append((ws, f"{pid}|{goal}", CONVERTED, pid, at))
        touches = conn.exec_driver_sql(
            f"SELECT fact, at_ms, message_key FROM message_facts WHERE workspace_id = {m} AND subject = {m}"
            f" AND fact IN ({m}, {m}, {m}) AND at_ms <= {m}",
            (ws, run_id, *TOUCHES, at),
        ).all()
        best = None
        for fact, touched_at, message_key in touches:
            if ws not in windows:
                windows[ws] = _windows(conn, ws)
            if at - touched_at <= windows[ws][_WINDOW_OF[fact]] and (best is None or touched_at > best[0]):
                best = (touched_at, message_key)
        if best is not None and best[1]:
            claims.append((ws, f"{row[_RUN_JOURNEY]}|{pid}|{goal}", ATTRIBUTED, pid, at))
            found.append((row, best[1]))
    # A claim counts once: runs of several journeys converted by one goal event in this
    # batch share it (claim_firsts answers it once; the first of them takes it).
    claimed = claim_firsts(conn, claims)
    for row in converting:
        ws, pid = row[_RUN_WS], row[_RUN_PROFILE]
        if _take(claimed, (ws, f"{pid}|{_goal_event(row)}", CONVERTED)):
            revenue = float(row[_RUN_REVENUE] or 0.0)
            dims: Dims = (ws, WORKSPACE_ROW, 0, "", "", "", day_of(row[_RUN_ENTERED]))
            rollup.add(dims, conversions=1, revenue=revenue, revenue_sq=revenue**2)
    for row, message_key in found:
        ws, pid = row[_RUN_WS], row[_RUN_PROFILE]
        if not _take(claimed, (ws, f"{row[_RUN_JOURNEY]}|{pid}|{_goal_event(row)}", ATTRIBUTED)):
            continue
        message = _message(conn, ws, message_key)
        if message is None:  # the person was erased meanwhile
            continue
        rollup.add(
            _message_dims(ws, message), attributed_conversions=1, attributed_revenue=float(row[_RUN_REVENUE] or 0.0)
        )


def _take(claimed: set[tuple[str, str, str]], key: tuple[str, str, str]) -> bool:
    if key in claimed:
        claimed.discard(key)
        return True
    return False


# --- experiment arms (the engine's effects writer) ------------------------------------------------

SPLIT, VARIANT = "split", "variant"
_ARM_COLUMNS = (
    "run_id",
    "step",
    "arm",
    "kind",
    "workspace_id",
    "journey_id",
    "version",
    "profile_id",
    "entered_at_ms",
    "assigned_at_ms",
)


def count_arms(
    conn: Connection,
    rollup: Rollup,
    rows: Sequence[tuple[Any, ...]],
    arms: Mapping[str, Mapping[str, str]],
    variant_steps: Set[tuple[str, str]],
    converting: Sequence[tuple[Any, ...]],
    now_ms: int,
) -> None:
    """Count the arms the batch's treated runs were assigned, and their conversions.

    rows: the batch's run rows (RUN_COLUMNS); arms: run id -> {experiment step: arm} of the
    treated runs that are in no global control group (the others are in no arm);
    variant_steps: (run id, step) of the batch's messages with a variant, which makes the
    arm a variant (chosen in the turn that queues its message) rather than a split path;
    converting: the rows count_runs found converting now.

    An arm is new when its (run, step) row is inserted into run_arms now: a batch decided
    twice finds the row its first commit wrote and counts nothing. A conversion counts in the
    arms the run had by the end of the batch it converted in; an arm assigned after it does
    not count it (the person converted before being exposed to it).
    """
    by_id = {row[_RUN_ID]: row for row in rows}
    candidates = [
        (
            run_id,
            step,
            arm,
            VARIANT if (run_id, step) in variant_steps else SPLIT,
            row[_RUN_WS],
            row[_RUN_JOURNEY],
            row[_RUN_VERSION],
            row[_RUN_PROFILE],
            row[_RUN_ENTERED],
            now_ms,
        )
        for run_id, chosen in arms.items()
        if (row := by_id.get(run_id)) is not None
        for step, arm in sorted(chosen.items())
    ]
    if not candidates:
        return
    m = sql.mark(conn)
    one = "(" + ", ".join([m] * len(_ARM_COLUMNS)) + ")"
    new: set[tuple[str, str]] = set()
    for chunk in sql.chunks(candidates, 100):
        statement = (
            f"INSERT INTO run_arms ({', '.join(_ARM_COLUMNS)}) VALUES "
            + ", ".join([one] * len(chunk))
            + " ON CONFLICT (run_id, step) DO NOTHING RETURNING run_id, step"
        )
        found = conn.exec_driver_sql(statement, tuple(v for c in chunk for v in c)).all()
        new.update((r[0], r[1]) for r in found)
    for run_id, step, arm, *_ in candidates:
        if (run_id, step) in new:
            rollup.add(_arm_dims(by_id[run_id], step, arm), arm_runs=1)
    for row in converting:
        chosen = arms.get(row[_RUN_ID])
        if not chosen:
            continue
        revenue = float(row[_RUN_REVENUE] or 0.0)
        for step, arm in chosen.items():
            dims = _arm_dims(row, step, arm)
            rollup.add(dims, arm_conversions=1, arm_revenue=revenue, arm_revenue_sq=revenue**2)
            rollup.latency(dims, ARM_TIME_TO_CONVERT, row[_RUN_CONVERTED] - row[_RUN_ENTERED])


def _arm_dims(row: tuple[Any, ...], step: str, arm: str) -> Dims:
    return (row[_RUN_WS], row[_RUN_JOURNEY], row[_RUN_VERSION], step, arm, "", day_of(row[_RUN_ENTERED]))


# A person's engagement, counted once per run in each arm it applies to (see _count_arm_engagement).
_ARM_FACTS = {
    OPENED: "arm_opens",
    CLICKED: "arm_clicks",
    UNSUBSCRIBED: "arm_unsubscribes",
    COMPLAINED: "arm_complaints",
}


def _count_arm_engagement(
    conn: Connection, rollup: Rollup, workspace_id: str, message: Any, fact: str, at_ms: int
) -> None:
    """A person's open, click, unsubscribe or complaint on one of a run's messages counts
    once per run in each arm the message belongs to: a variant's own message, or any message
    the run was queued from its split path on (the path assigned before the message was, or
    in the same batch: a message sent just before the split, in the same decision, counts in
    its arm too — the batch does not record the order within it)."""
    run_id, step, created_at = message[8], message[3], message[7]
    if fact not in _ARM_FACTS or not run_id:
        return
    m = sql.mark(conn)
    found = conn.exec_driver_sql(
        "SELECT step, arm, kind, assigned_at_ms, journey_id, version, entered_at_ms FROM run_arms"
        f" WHERE run_id = {m} AND workspace_id = {m}",
        (run_id, workspace_id),
    ).all()
    applies = [a for a in found if (a[2] == VARIANT and a[0] == step) or (a[2] == SPLIT and a[3] <= created_at)]
    if not applies:
        return
    name = f"arm_{fact}"
    claimed = claim_firsts(conn, [(workspace_id, f"{run_id}/{a[0]}", name, message[0], at_ms) for a in applies])
    for a in applies:
        if (workspace_id, f"{run_id}/{a[0]}", name) in claimed:
            dims: Dims = (workspace_id, a[4], a[5], a[0], a[1], "", day_of(a[6]))
            rollup.add(dims, **{_ARM_FACTS[fact]: 1})


# --- sends (the dispatcher) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """A message its channel took (status sent), as the dispatcher records it."""

    workspace_id: str
    key: str
    profile_id: str
    run_id: str
    journey_id: str
    version: int
    step: str
    variant: str | None
    channel: str
    delivered: bool
    sent_at_ms: int
    entered_at_ms: int | None  # the run's entry (its counters' day)
    trigger_at_ms: int | None  # the trigger event's time: time to trigger
    # When `send_time` timed it: the arm (optimized, explore, fallback) and the step that decided.
    send_time_arm: str | None = None
    timed_by: str | None = None
    # The run is in the global control group (its transactional messages are sent): its
    # messages count, but not as a treated run's `recipients`.
    control: bool = False


def count_sent(conn: Connection, rollup: Rollup, sends: Sequence[Sent]) -> None:
    if not sends:
        return
    facts: list[Fact] = []
    for s in sends:
        facts.append((s.workspace_id, s.key, SENT, s.profile_id, s.sent_at_ms))
        facts.append((s.workspace_id, f"{s.run_id}/{s.step}", STEP_RECIPIENT, s.profile_id, s.sent_at_ms))
        facts.append((s.workspace_id, s.run_id, RECIPIENT, s.profile_id, s.sent_at_ms))
    claimed = claim_firsts(conn, facts)
    for s in sends:
        if not _take(claimed, (s.workspace_id, s.key, SENT)):  # a repeat in this batch too
            continue
        dims: Dims = (
            s.workspace_id,
            s.journey_id,
            s.version,
            s.step,
            s.variant or "",
            s.channel,
            day_of(s.sent_at_ms),
        )
        step_recipient = int(_take(claimed, (s.workspace_id, f"{s.run_id}/{s.step}", STEP_RECIPIENT)))
        rollup.add(dims, sent=1, delivered=int(s.delivered), step_recipients=step_recipient)
        if s.trigger_at_ms is not None:
            rollup.latency(dims, TIME_TO_TRIGGER, max(0, s.sent_at_ms - s.trigger_at_ms))
        if _take(claimed, (s.workspace_id, s.run_id, RECIPIENT)) and not s.control:
            entered = s.entered_at_ms if s.entered_at_ms is not None else s.sent_at_ms
            rollup.add((s.workspace_id, s.journey_id, s.version, "", "", "", day_of(entered)), recipients=1)
        if s.send_time_arm in SEND_TIME_ARMS:
            rollup.send_time(
                (s.workspace_id, s.journey_id, s.version, s.step, s.timed_by or s.step, s.send_time_arm, dims[6]),
                sent=1,
            )


# --- engagement (tracking, push reports, bounces) -----------------------------------------------


def count_engagement(conn: Connection, workspace_id: str, message_key: str, fact: str, at_ms: int) -> bool:
    """Count a fact about one of our messages once (the first open, the first click...), in
    the caller's transaction; False when it was counted before or the message is unknown."""
    if fact not in ENGAGEMENT_COUNTER:
        raise ValueError(f"not an engagement fact: {fact!r}")
    row = _message(conn, workspace_id, message_key)
    if row is None:
        return False
    touch = _touch_of(row[5], fact)
    if touch is not None:
        # The run's latest human touch of this kind, and the message touched: what last-touch
        # attribution reads when the run converts.
        m = sql.mark(conn)
        conn.exec_driver_sql(
            "INSERT INTO message_facts (workspace_id, subject, fact, profile_id, at_ms, message_key)"
            f" VALUES ({m}, {m}, {m}, {m}, {m}, {m}) ON CONFLICT (workspace_id, subject, fact)"
            " DO UPDATE SET at_ms = excluded.at_ms, message_key = excluded.message_key"
            " WHERE message_facts.at_ms < excluded.at_ms",
            (workspace_id, row[8], touch, row[0], at_ms, message_key),
        )
    if not claim_firsts(conn, [(workspace_id, message_key, fact, row[0], at_ms)]):
        return False
    rollup = Rollup()
    dims = _message_dims(workspace_id, row)
    deltas = _engagement_deltas(conn, workspace_id, message_key, fact, row[0], at_ms)
    if deltas:
        rollup.add(dims, **deltas)
    timing = send_time_of(row[9]) if fact in SEND_TIME_COUNTER else None
    # Counted by arm only for a message counted as sent (the arm's denominator): a message
    # the log channel took, or one a bounce report names before its send is recorded, is not.
    if deltas and timing is not None and _was_claimed(conn, workspace_id, message_key, SENT):
        timed_by, arm = timing
        rollup.send_time((workspace_id, row[1], row[2], row[3], timed_by or row[3], arm, dims[6]), **deltas)
    _count_arm_engagement(conn, rollup, workspace_id, row, fact, at_ms)
    rollup.write(conn)
    return True


# A message opened (clicked) by anyone, person or machine: claimed by the first of either, so
# that the machine counter holds the messages opened by machines alone and `opens` +
# `opens_machine` counts each message once (a report with machine opens included).
_ANY_OF = {OPENED: "opened_any", OPENED_MACHINE: "opened_any", CLICKED: "clicked_any", CLICKED_BOT: "clicked_any"}
_MACHINE_OF = {OPENED: OPENED_MACHINE, CLICKED: CLICKED_BOT}


def _engagement_deltas(
    conn: Connection, workspace_id: str, message_key: str, fact: str, profile_id: str, at_ms: int
) -> dict[str, int]:
    """The counters a fact claimed now adds to. A person's open (click) counts in `opens`
    (`clicks`); a machine's counts in `opens_machine` (`clicks_bot`) only while no person has
    opened the message, and a person's open after a machine's takes the message out of it: a
    message opened by both was counted twice with machine opens included (an open rate over
    100 %). The claim of the message's first open by anyone decides, so concurrent opens
    agree. Messages whose opens were all counted before this claim existed keep their count."""
    counter = ENGAGEMENT_COUNTER[fact]
    any_fact = _ANY_OF.get(fact)
    if any_fact is None:
        return {counter: 1}
    first = bool(claim_firsts(conn, [(workspace_id, message_key, any_fact, profile_id, at_ms)]))
    machine = _MACHINE_OF.get(fact)
    if machine is None:  # a machine's open: counted only as the message's first open
        return {counter: 1} if first else {}
    if first or not _was_claimed(conn, workspace_id, message_key, machine):
        return {counter: 1}
    return {counter: 1, ENGAGEMENT_COUNTER[machine]: -1}


def _was_claimed(conn: Connection, workspace_id: str, subject: str, fact: str) -> bool:
    """Whether `fact` is already recorded for `subject` (a message's key: sent, a machine's
    first open or click)."""
    m = sql.mark(conn)
    return (
        conn.exec_driver_sql(
            f"SELECT 1 FROM message_facts WHERE workspace_id = {m} AND subject = {m} AND fact = {m}",
            (workspace_id, subject, fact),
        ).first()
        is not None
    )


def send_time_of(payload: str | None) -> tuple[str | None, str] | None:
    """(the step that decided, the arm) of a message timed by `send_time`, from its outbox
    payload (its context); None for any other message."""
    # Most messages have no send-time decision: their payload is not parsed.
    if not payload or '"send_time"' not in payload:
        return None
    try:
        context = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    timing = context.get("send_time") if isinstance(context, dict) else None
    if not isinstance(timing, dict) or timing.get("arm") not in SEND_TIME_ARMS:
        return None
    step = timing.get("step")
    return (step if isinstance(step, str) and step else None), str(timing["arm"])


def _message(conn: Connection, workspace_id: str, message_key: str) -> Any:
    """(profile_id, journey_id, journey_version, step, variant, channel, sent_at_ms,
    created_at_ms, run_id, payload) of one of our messages, or None."""
    m = sql.mark(conn)
    return conn.exec_driver_sql(
        "SELECT profile_id, journey_id, journey_version, step, variant, channel, sent_at_ms, created_at_ms, run_id,"
        f" payload FROM outbox WHERE workspace_id = {m} AND idempotency_key = {m}",
        (workspace_id, message_key),
    ).first()


def _message_dims(workspace_id: str, row: Any) -> Dims:
    """A message's rollup row: the day it was sent (when it was queued, if it never was)."""
    sent_at = row[6] if row[6] is not None else row[7]
    return (workspace_id, row[1], row[2], row[3], row[4] or "", row[5], day_of(sent_at))


# --- reading (reports) --------------------------------------------------------------------------


def read(
    conn: Connection,
    workspace_id: str,
    *,
    journey_id: str | None = None,
    from_day: int | None = None,
    to_day: int | None = None,
    by: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[tuple[tuple[Any, ...], str, int, int]]]:
    """Summed counters per journey and each `by` dimension (step, variant, channel, version,
    day), and the latency histograms alike: ((journey_id, *by values), metric, bucket, count)."""
    for name in by:
        if name not in (*GROUPABLE, "version", "day"):
            raise ValueError(f"cannot break a report down by {name!r}")
    m = sql.mark(conn)
    where = [f"workspace_id = {m}"]
    params: list[Any] = [workspace_id]
    if journey_id is not None:
        where.append(f"journey_id = {m}")
        params.append(journey_id)
    else:
        where.append(f"journey_id <> {m}")
        params.append(WORKSPACE_ROW)
    # Not the arms' rows (experiment_arms reads them): they count runs, not messages.
    where.append(f"NOT (step <> {m} AND channel = {m})")
    params.extend(("", ""))
    if from_day is not None:
        where.append(f"day >= {m}")
        params.append(from_day)
    if to_day is not None:
        where.append(f"day <= {m}")
        params.append(to_day)
    keys = ("journey_id", *by)
    group = ", ".join(keys)
    sums = ", ".join(f"SUM({c})" for c in VALUES)
    condition = " AND ".join(where)
    rows = conn.exec_driver_sql(
        f"SELECT {group}, {sums} FROM report_rollups WHERE {condition} GROUP BY {group} ORDER BY {group}",
        tuple(params),
    ).all()
    counters = [
        {
            **dict(zip(keys, row[: len(keys)], strict=True)),
            **{
                c: (float(v or 0) if c in ROLLUP_SUMS else int(v or 0))
                for c, v in zip(VALUES, row[len(keys) :], strict=True)
            },
        }
        for row in rows
    ]
    latencies = [
        (tuple(row[: len(keys)]), row[len(keys)], int(row[len(keys) + 1]), int(row[len(keys) + 2]))
        for row in conn.exec_driver_sql(
            f"SELECT {group}, metric, bucket, SUM(count) FROM report_latencies WHERE {condition}"
            f" GROUP BY {group}, metric, bucket",
            tuple(params),
        ).all()
    ]
    return counters, latencies


def _number(name: str, value: Any) -> float | int:
    # SUM() comes back as Decimal on PostgreSQL (numeric) and NULL over no rows.
    return float(value or 0) if name in ROLLUP_SUMS else int(value or 0)


def _days(m: str, where: str, params: list[Any], from_day: int | None, to_day: int | None) -> tuple[str, list[Any]]:
    """`where` and its params narrowed to the rollup days in [from_day, to_day] (either open)."""
    if from_day is not None:
        where += f" AND day >= {m}"
        params.append(from_day)
    if to_day is not None:
        where += f" AND day <= {m}"
        params.append(to_day)
    return where, params


PROGRAM_VALUES = tuple(name for name in VALUES if name.startswith("program_"))


def read_program(
    conn: Connection, workspace_id: str, *, from_day: int | None = None, to_day: int | None = None
) -> dict[str, float | int]:
    """The program's counters (PROGRAM_VALUES) summed over the days of the people's first runs."""
    m = sql.mark(conn)
    where, params = _days(
        m, f"workspace_id = {m} AND journey_id = {m}", [workspace_id, WORKSPACE_ROW], from_day, to_day
    )
    sums = ", ".join(f"SUM({c})" for c in PROGRAM_VALUES)
    row = conn.exec_driver_sql(f"SELECT {sums} FROM report_rollups WHERE {where}", tuple(params)).first()
    values = row if row is not None else [None] * len(PROGRAM_VALUES)
    return {name: _number(name, value) for name, value in zip(PROGRAM_VALUES, values, strict=True)}


def read_unique_conversions(
    conn: Connection, workspace_id: str, *, from_day: int | None = None, to_day: int | None = None
) -> tuple[int, float]:
    """(conversions, revenue) of the workspace's treated runs, each goal event counted once
    however many journeys it converted (the rows of no journey)."""
    m = sql.mark(conn)
    where, params = _days(
        m, f"workspace_id = {m} AND journey_id = {m}", [workspace_id, WORKSPACE_ROW], from_day, to_day
    )
    row = conn.exec_driver_sql(
        f"SELECT SUM(conversions), SUM(revenue) FROM report_rollups WHERE {where}", tuple(params)
    ).first()
    return (int(row[0] or 0), float(row[1] or 0.0)) if row is not None else (0, 0.0)


def read_send_time(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    *,
    from_day: int | None = None,
    to_day: int | None = None,
) -> list[dict[str, Any]]:
    """A journey's send-time counters summed per (version, step, timed_by, arm) over the days
    asked for, in that order."""
    m = sql.mark(conn)
    where, params = _days(m, f"workspace_id = {m} AND journey_id = {m}", [workspace_id, journey_id], from_day, to_day)
    keys = ("version", "step", "timed_by", "arm")
    group = ", ".join(keys)
    sums = ", ".join(f"SUM({c})" for c in SEND_TIME_COUNTERS)
    rows = conn.exec_driver_sql(
        f"SELECT {group}, {sums} FROM report_send_time WHERE {where} GROUP BY {group} ORDER BY {group}",
        tuple(params),
    ).all()
    return [
        {
            **dict(zip(keys, row[: len(keys)], strict=True)),
            **{c: int(v or 0) for c, v in zip(SEND_TIME_COUNTERS, row[len(keys) :], strict=True)},
        }
        for row in rows
    ]


def experiment_arms(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    *,
    from_day: int | None = None,
    to_day: int | None = None,
) -> list[dict[str, Any]]:
    """The journey's experiment arms over the runs that entered from from_day to to_day: one
    dict per (version, step, arm) that has a row, ordered so: version, step, arm; runs
    (assigned the arm), conversions, revenue, revenue_sq, opens, clicks, unsubscribes,
    complaints (runs that did it at least once, people only), and time_to_convert (bucket ->
    runs, model/histogram.py)."""
    m = sql.mark(conn)
    where, params = _days(
        m,
        f"workspace_id = {m} AND journey_id = {m} AND step <> {m} AND channel = {m}",
        [workspace_id, journey_id, "", ""],
        from_day,
        to_day,
    )
    sums = ", ".join(f"SUM({c})" for c in ARM_VALUES)
    rows = conn.exec_driver_sql(
        f"SELECT version, step, variant, {sums} FROM report_rollups WHERE {where}"
        " GROUP BY version, step, variant ORDER BY version, step, variant",
        tuple(params),
    ).all()
    out: dict[tuple[int, str, str], dict[str, Any]] = {}
    for row in rows:
        sums_of = dict(zip(ARM_VALUES, row[3:], strict=True))
        out[(int(row[0]), row[1], row[2])] = {
            "version": int(row[0]),
            "step": row[1],
            "arm": row[2],
            **{name.removeprefix("arm_"): _arm_number(name, sums_of[name]) for name in ARM_VALUES},
            "time_to_convert": {},
        }
    for version, step, arm, bucket, count in conn.exec_driver_sql(
        f"SELECT version, step, variant, bucket, SUM(count) FROM report_latencies WHERE {where} AND metric = {m}"
        " GROUP BY version, step, variant, bucket",
        (*params, ARM_TIME_TO_CONVERT),
    ).all():
        found = out.get((int(version), step, arm))
        if found is not None:
            found["time_to_convert"][int(bucket)] = int(count)
    return list(out.values())


def arms_assigned_before(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    before: Mapping[tuple[int, str], int],
    *,
    from_day: int | None = None,
    to_day: int | None = None,
) -> dict[tuple[int, str, str], int]:
    """Per (version, step, arm): the runs that entered from from_day to to_day (UTC days, as
    experiment_arms counts them) and were assigned the arm before the instant `before` gives
    its (version, step): the runs a step's configured weights split, when a decision changed
    them at that instant. Read from run_arms, the rows experiment_arms' `runs` count."""
    out: dict[tuple[int, str, str], int] = {}
    m = sql.mark(conn)
    for (version, step), until_ms in sorted(before.items()):
        where = f"workspace_id = {m} AND journey_id = {m} AND version = {m} AND step = {m} AND assigned_at_ms < {m}"
        params: list[Any] = [workspace_id, journey_id, version, step, until_ms]
        if from_day is not None:
            where += f" AND entered_at_ms >= {m}"
            params.append(from_day * DAY_MS)
        if to_day is not None:
            where += f" AND entered_at_ms < {m}"
            params.append((to_day + 1) * DAY_MS)
        for arm, runs in conn.exec_driver_sql(
            f"SELECT arm, COUNT(*) FROM run_arms WHERE {where} GROUP BY arm", tuple(params)
        ).all():
            out[(version, step, arm)] = int(runs)
    return out


def _arm_number(name: str, value: Any) -> float | int:
    return float(value or 0) if name in ARM_SUMS else int(value or 0)


CHANNEL_DAY_VALUES = ("sent", "delivered", "conversions", "revenue", "attributed_conversions", "attributed_revenue")


def read_channel_days(
    conn: Connection, workspace_id: str, *, from_day: int | None = None, to_day: int | None = None
) -> list[dict[str, Any]]:
    """The workspace's journeys summed per (UTC day, channel), in that order: what the console's
    overview charts. Messages' rows carry their channel (sent, delivered, attributed
    conversions and revenue, on the day sent); runs' rows have channel '' (conversions and
    revenue of treated runs, on the day they entered). The arms' rows and the workspace's
    rows of no journey are left out, as `read` leaves them."""
    m = sql.mark(conn)
    where, params = _days(
        m,
        f"workspace_id = {m} AND journey_id <> {m} AND NOT (step <> {m} AND channel = {m})",
        [workspace_id, WORKSPACE_ROW, "", ""],
        from_day,
        to_day,
    )
    sums = ", ".join(f"SUM({c})" for c in CHANNEL_DAY_VALUES)
    rows = conn.exec_driver_sql(
        f"SELECT day, channel, {sums} FROM report_rollups WHERE {where} GROUP BY day, channel ORDER BY day, channel",
        tuple(params),
    ).all()
    return [
        {
            "day": int(row[0]),
            "channel": row[1],
            **{name: _number(name, value) for name, value in zip(CHANNEL_DAY_VALUES, row[2:], strict=True)},
        }
        for row in rows
    ]
