"""Report metrics from rollup rows: pure arithmetic over the counters store/rollups.py keeps.

What each number means is in docs/measurement.md; in short:
- entered / held_out: runs that entered (treated) and holdout runs, by the day they entered;
- recipients: treated runs sent at least one message; in a row of a step (variant, channel),
  runs sent that step's message;
- sent, delivered: messages the channel took, and those it reported delivered;
- unique opens and clicks: messages opened (clicked) at least once, by people; machine opens
  and bot clicks are counted apart and left out unless `include_machine`;
- rates: over messages sent (open, click, unsubscribe, complaint, bounce rates) or runs
  entered (conversion rate, treated and held out alike);
- conversions and revenue: the journey goal within its window after entry (journey_runs);
  revenue per recipient: treated revenue / recipients; attributed conversions: those whose
  last touch (a human open or click within the workspace's window) was one of the run's
  messages, shown in that message's row;
- time to trigger: trigger event → the message sent, p50 and p90; time to convert: entry →
  goal, p50 and p90; both read from log-spaced buckets (model/histogram.py: within 9.1 %).

- control, control_conversions, control_revenue: the journey's runs in the workspace's global
  control group (held out of the journey or not), apart: they are in neither side of its lift;
- lift (a journey with held-out runs): its treated runs against its held-out runs, both
  outside the global control group, the conversion rate (Newcomb's interval, the pooled
  z-test) and revenue per run (Welch's interval), from measure/statistics.py. Randomized, so
  causal, unlike attributed conversions.
- the program's lift (the overview's `lift`): the global control group's people against
  everyone else's, one unit per person and cohort of the group (store/rollups.py), with the
  same methods; not a sum of the journeys' holdouts.
- experiments (`experiments`): every split step and send step with variants of the journey's
  versions, arm by arm, from the arms' run counters (store/rollups.experiment_arms): runs
  assigned, the primary metric's rate, conversion, unsubscribe and complaint rates with
  Wilson intervals, revenue, time to convert; the sample-ratio check (after a pause or a
  route, on the runs assigned before it), the winner call or why there is none yet, and
  guardrail breaches (measure/experiments.analyze_experiment).
  A split whose paths differ only in waits is labelled a delay experiment, each arm with
  its delay (measure/delays.py).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from nudgeflow.measure.delays import delay_experiment
from nudgeflow.measure.experiments import CONVERSION, MINIMUM_PER_ARM, Arm, analyze_experiment, arms_of, rate
from nudgeflow.measure.statistics import RevenueSums, conversion_lift, revenue_lift
from nudgeflow.model.histogram import percentile_ms
from nudgeflow.model.journeys import Journey, SendStep, SplitStep

TIME_TO_TRIGGER, TIME_TO_CONVERT = "trigger", "convert"
MESSAGE_DIMENSIONS = ("step", "variant", "channel")


def _rate(part: float | None, whole: float | None) -> float | None:
    # None over anything (or anything over None) is not known: a simulation's counters of what
    # only dispatch and tracking see (runtime/simulation_rollups.py) are None, not 0.
    return part / whole if whole and part is not None else None


def _plus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000.0, 3)


def _percentiles(counts: Mapping[int, int]) -> dict[str, Any]:
    return {
        "count": sum(counts.values()),
        "p50_s": _seconds(percentile_ms(counts, 0.5)),
        "p90_s": _seconds(percentile_ms(counts, 0.9)),
    }


def metrics(
    c: Mapping[str, Any],
    latencies: Mapping[str, Mapping[int, int]],
    *,
    include_machine: bool = False,
    message_row: bool = False,
) -> dict[str, Any]:
    """The report's numbers for one row of summed counters (store/rollups.read) and its
    latency histograms (metric -> bucket -> count). `message_row`: the row is one step's,
    variant's or channel's, so its recipients are the runs sent that message."""
    opens = _plus(c["opens"], c["opens_machine"] if include_machine else 0)
    clicks = _plus(c["clicks"], c["clicks_bot"] if include_machine else 0)
    recipients = c["step_recipients"] if message_row else c["recipients"]
    sent = c["sent"]
    return {
        "entered": c["entered"],
        "held_out": c["held_out"],
        "recipients": recipients,
        "sent": sent,
        "delivered": c["delivered"],
        "unique_opens": opens,
        "unique_clicks": clicks,
        "machine_opens": c["opens_machine"],
        "bot_clicks": c["clicks_bot"],
        "open_rate": _rate(opens, sent),
        "click_rate": _rate(clicks, sent),
        "conversions": c["conversions"],
        "conversion_rate": _rate(c["conversions"], c["entered"]),
        "revenue": _round(c["revenue"]),
        "revenue_per_recipient": _rate(c["revenue"], recipients),
        # Last touch to a message within the workspace's windows: attribution, not cause.
        "attributed_conversions": c["attributed_conversions"],
        "attributed_revenue": _round(c["attributed_revenue"]),
        "held_out_conversions": c["conversions_held_out"],
        "held_out_conversion_rate": _rate(c["conversions_held_out"], c["held_out"]),
        "held_out_revenue": _round(c["revenue_held_out"]),
        "control": c["entered_control"],
        "control_conversions": c["conversions_control"],
        "control_conversion_rate": _rate(c["conversions_control"], c["entered_control"]),
        "control_revenue": _round(c["revenue_control"]),
        "unsubscribes": c["unsubscribes"],
        "unsubscribe_rate": _rate(c["unsubscribes"], sent),
        "complaints": c["complaints"],
        "complaint_rate": _rate(c["complaints"], sent),
        "bounces": c["bounces"],
        "bounce_rate": _rate(c["bounces"], sent),
        "push_opt_outs": c["push_opt_outs"],
        "time_to_trigger": _percentiles(latencies.get(TIME_TO_TRIGGER, {})),
        "time_to_convert": _percentiles(latencies.get(TIME_TO_CONVERT, {})),
    }


LIFT_BASIS = (
    "treated runs against the journey's held-out runs, both outside the global control group"
    " (randomized: causal, unlike attribution)"
)
PROGRAM_BASIS = (
    "people in the workspace's global control group (sent no marketing by any journey) against everyone"
    " else who entered a journey that does not exclude the group (randomized: causal, unlike attribution)"
)
PROGRAM_UNIT = (
    "a person per cohort of the group (its reset period and salt), from their first run in a journey that"
    " does not exclude the group; converted when any such run of theirs met its journey's goal; revenue:"
    " their goal events' revenue, each event once"
)


def lift(c: Mapping[str, Any]) -> dict[str, Any] | None:
    """The journey's holdout lift from its summed counters; None without held-out runs."""
    if not c["held_out"]:
        return None
    conversion = conversion_lift(c["conversions"], c["entered"], c["conversions_held_out"], c["held_out"])
    revenue = revenue_lift(
        RevenueSums(c["entered"], c["revenue"], c["revenue_sq"]),
        RevenueSums(c["held_out"], c["revenue_held_out"], c["revenue_sq_held_out"]),
    )
    return {"basis": LIFT_BASIS, "conversion": asdict(conversion), "revenue_per_run": asdict(revenue)}


def program_lift(c: Mapping[str, Any]) -> dict[str, Any] | None:
    """The program's lift from store/rollups.read_program's counters: everyone else against
    the global control group; None when no one in the group entered a journey."""
    if not c["program_people_control"]:
        return None
    people, people_control = c["program_people"], c["program_people_control"]
    conversion = conversion_lift(c["program_conversions"], people, c["program_conversions_control"], people_control)
    revenue = revenue_lift(
        RevenueSums(people, c["program_revenue"], c["program_revenue_sq"]),
        RevenueSums(people_control, c["program_revenue_control"], c["program_revenue_sq_control"]),
    )
    return {
        "basis": PROGRAM_BASIS,
        "unit": PROGRAM_UNIT,
        "people": people,
        "control_people": people_control,
        "revenue": _round(c["program_revenue"]),
        "control_revenue": _round(c["program_revenue_control"]),
        # measure/statistics' "treated" are the people outside the group, its "held out" the
        # group; its notes say so in the group's words.
        "conversion": {**asdict(conversion), "notes": program_notes(conversion.notes)},
        "revenue_per_person": {**asdict(revenue), "notes": program_notes(revenue.notes)},
    }


def program_notes(notes: Iterable[str]) -> list[str]:
    """measure/statistics' notes, which speak of a holdout, in the control group's words."""
    return [
        note.replace("held-out", "control group")
        .replace("held out", "in the control group")
        .replace("no one treated", "no one outside the control group")
        .replace("people treated", "people outside the control group")
        for note in notes
    ]


def _sum(rows: Iterable[Mapping[str, Any]], names: Sequence[str], not_known: Collection[str] = ()) -> dict[str, Any]:
    """Each counter summed over the rows; a counter not known (None in a row, or named in
    `not_known`: over no rows too) stays not known."""
    out: dict[str, Any] = {name: None if name in not_known else 0 for name in names}
    for row in rows:
        for name in names:
            out[name] = _plus(out[name], row[name])
    return out


def not_known_metrics(values: Sequence[str], not_known: Collection[str], *, include_machine: bool) -> list[str]:
    """The report's metrics that counters `not_known` leave unknown, in the report's order: the
    metrics of a row whose every other counter is 1 (no rate is then undefined for want of a
    denominator), which come out None."""
    probe = {name: None if name in not_known else 1 for name in values}
    return [name for name, value in metrics(probe, {}, include_machine=include_machine).items() if value is None]


def _merge(into: dict[str, dict[int, int]], metric: str, bucket: int, count: int) -> None:
    into.setdefault(metric, {})
    into[metric][bucket] = into[metric].get(bucket, 0) + count


def journey_report(
    journey_id: str,
    counters: Sequence[Mapping[str, Any]],
    latencies: Sequence[tuple[tuple[Any, ...], str, int, int]],
    by: Sequence[str],
    values: Sequence[str],
    *,
    include_machine: bool = False,
    not_known: Collection[str] = (),
) -> dict[str, Any]:
    """Totals and one row per combination of `by`, from store/rollups.read's answer for one
    journey (`values`: the counter names it summed). `not_known`: counters that are None in
    the rows because their source could not know them (a simulation's); the report then
    lists the metrics they leave unknown under "not_known"."""
    totals_hist: dict[str, dict[int, int]] = {}
    rows_hist: dict[tuple[Any, ...], dict[str, dict[int, int]]] = defaultdict(dict)
    for key, metric, bucket, count in latencies:
        _merge(totals_hist, metric, bucket, count)
        _merge(rows_hist[tuple(key[1:])], metric, bucket, count)
    summed = _sum(counters, values, not_known)
    totals = metrics(summed, totals_hist, include_machine=include_machine)
    rows = []
    for row in counters:
        key = tuple(row[name] for name in by)
        message_row = any(row[name] for name in by if name in MESSAGE_DIMENSIONS)
        rows.append(
            {
                **{name: row[name] for name in by},
                **metrics(row, rows_hist.get(key, {}), include_machine=include_machine, message_row=message_row),
            }
        )
    out = {
        "journey_id": journey_id,
        "by": list(by),
        "machine_included": include_machine,
        "totals": totals,
        "rows": rows,
        "lift": lift(summed),
    }
    if not_known:
        out["not_known"] = not_known_metrics(values, not_known, include_machine=include_machine)
    return out


def overview_report(
    counters: Sequence[Mapping[str, Any]],
    latencies: Sequence[tuple[tuple[Any, ...], str, int, int]],
    trigger_types: Mapping[str, str],
    values: Sequence[str],
    *,
    program: Mapping[str, Any] | None = None,
    include_machine: bool = False,
    not_known: Collection[str] = (),
) -> dict[str, Any]:
    """Per journey, per trigger type (summed over its journeys) and the workspace, from
    store/rollups.read's answer grouped by journey alone (`not_known` as journey_report's); and
    the program's lift from store/rollups.read_program's counters (`program`), when given."""
    per_journey_hist: dict[str, dict[str, dict[int, int]]] = defaultdict(dict)
    for key, metric, bucket, count in latencies:
        _merge(per_journey_hist[key[0]], metric, bucket, count)
    journeys = []
    by_type: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    type_hist: dict[str, dict[str, dict[int, int]]] = defaultdict(dict)
    all_hist: dict[str, dict[int, int]] = {}
    for row in counters:
        jid = row["journey_id"]
        kind = trigger_types.get(jid, "unknown")
        hist = per_journey_hist.get(jid, {})
        journeys.append(
            {
                "journey_id": jid,
                "trigger_type": kind,
                **metrics(row, hist, include_machine=include_machine),
                "lift": lift(row),
            }
        )
        by_type[kind].append(row)
        for metric, buckets in hist.items():
            for bucket, count in buckets.items():
                _merge(type_hist[kind], metric, bucket, count)
                _merge(all_hist, metric, bucket, count)
    out = {
        "machine_included": include_machine,
        "journeys": journeys,
        "trigger_types": [
            {
                "trigger_type": kind,
                "journeys": len(rows),
                **metrics(_sum(rows, values, not_known), type_hist[kind], include_machine=include_machine),
            }
            for kind, rows in sorted(by_type.items())
        ],
        # Summed over journeys: a goal event that converted runs of several journeys counts
        # once per journey here; `unique_conversions` below counts it once (docs/measurement.md).
        "workspace": metrics(_sum(counters, values, not_known), all_hist, include_machine=include_machine),
        # The program's lift: the global control group's people against everyone else's. The
        # journeys' own holdouts do not add up to it (a person held out of one journey gets
        # the others).
        "lift": program_lift(program) if program is not None else None,
    }
    if not_known:
        out["not_known"] = not_known_metrics(values, not_known, include_machine=include_machine)
    return out


CSV_LATENCIES = ("time_to_trigger", "time_to_convert")
LIFT_COLUMNS = ("lift_absolute", "lift_absolute_low", "lift_absolute_high", "lift_p_value")


def _lift_cells(value: Mapping[str, Any] | None) -> list[Any]:
    """A journey's conversion lift in four CSV cells (empty without a holdout)."""
    if not value:
        return ["", "", "", ""]
    absolute, p_value = value["conversion"]["absolute_lift"], value["conversion"]["p_value"]
    bounds = ["", "", ""] if absolute is None else [absolute["value"], absolute["low"], absolute["high"]]
    return [*bounds, "" if p_value is None else p_value]


def to_csv(rows: Sequence[Mapping[str, Any]], leading: Sequence[str]) -> str:
    """One line per row: the `leading` columns, then every metric; the time percentiles as
    <name>_p50_s and <name>_p90_s; an undefined rate is empty."""
    if not rows:
        return ""
    metric_names = [k for k in rows[0] if k not in leading]
    header: list[str] = list(leading)
    for name in metric_names:
        if name == "lift":
            header.extend(LIFT_COLUMNS)
        else:
            header.extend([f"{name}_p50_s", f"{name}_p90_s"] if name in CSV_LATENCIES else [name])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        line: list[Any] = [row.get(name, "") for name in leading]
        for name in metric_names:
            value = row[name]
            if name == "lift":
                line.extend(_lift_cells(value))
            elif name in CSV_LATENCIES:
                line.extend(
                    ["" if value["p50_s"] is None else value["p50_s"], "" if value["p90_s"] is None else value["p90_s"]]
                )
            else:
                line.append("" if value is None else value)
        writer.writerow(line)
    return out.getvalue()


def overview_csv(report: Mapping[str, Any]) -> str:
    """The overview as CSV: a line per journey, then, with a global control group, a 'program'
    line whose `entered` is the people outside the group, `control` the people in it, and
    whose conversion, revenue and lift columns are the program's (the others are empty)."""
    lines: list[dict[str, Any]] = [{"row": "journey", **journey} for journey in report["journeys"]]
    program = report.get("lift")
    if lines and program:
        conversion = program["conversion"]
        line: dict[str, Any] = dict.fromkeys(lines[0], None)
        line.update(
            row="program",
            journey_id="",
            trigger_type="",
            entered=program["people"],
            conversions=conversion["treated_conversions"],
            conversion_rate=conversion["treated_rate"],
            revenue=program["revenue"],
            control=program["control_people"],
            control_conversions=conversion["held_out_conversions"],
            control_conversion_rate=conversion["held_out_rate"],
            control_revenue=program["control_revenue"],
            lift=program,
            time_to_trigger={"p50_s": None, "p90_s": None},
            time_to_convert={"p50_s": None, "p90_s": None},
        )
        lines.append(line)
    return to_csv(lines, ["row", "journey_id", "trigger_type"])


def journey_csv(report: Mapping[str, Any]) -> str:
    """The journey report as CSV: a 'total' line, then one line per row of the breakdown."""
    by = list(report["by"])
    lines = [{"row": "total", **dict.fromkeys(by, ""), **report["totals"]}]
    lines.extend({"row": "breakdown", **row} for row in report["rows"])
    return to_csv(lines, ["row", *by])


# --- experiments ----------------------------------------------------------------------------------

# An arm's counter (store/rollups.experiment_arms) that each primary metric counts as a success.
PRIMARY_COUNTER = {CONVERSION: "conversions", "open": "opens", "click": "clicks"}
_EMPTY_ARM = {
    "runs": 0,
    "conversions": 0,
    "revenue": 0.0,
    "revenue_sq": 0.0,
    "opens": 0,
    "clicks": 0,
    "unsubscribes": 0,
    "complaints": 0,
    "time_to_convert": {},
}


def _delay_label(waits: Sequence[str]) -> str:
    return " + ".join(waits) if waits else "no wait"


def experiment_steps(journey: Journey) -> list[tuple[str, SendStep | SplitStep]]:
    """The journey's experiment steps in the order it lists them: splits, sends with variants."""
    return [
        (sid, step)
        for sid, step in journey.steps.items()
        if isinstance(step, SplitStep) or (isinstance(step, SendStep) and step.variants)
    ]


def experiments(
    versions: Mapping[int, Journey],
    arm_rows: Sequence[Mapping[str, Any]],
    *,
    minimum_per_arm: int | None = None,
    confidence: float = 0.95,
    weighted_runs: Mapping[tuple[int, str], Mapping[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """One section per experiment step of each version (in version order): its arms' counts
    and rates, the sample-ratio check, the winner call and guardrail breaches.

    weighted_runs: per (version, step) whose weights a decision changed (a pause, a route),
    the runs per arm assigned before it, while the configured weights held: its sample-ratio
    check tests those, not every run (the decision moves later runs off the weights on
    purpose). A step not in it is checked on all its runs.

    versions: the journey's definitions to report, by version; arm_rows: the arms' summed
    counters (store/rollups.experiment_arms). An arm without a row has assigned nobody yet.
    minimum_per_arm: the runs each arm needs before a call, for every step (a report's
    request); None: each step's own `minimum_per_arm`, else MINIMUM_PER_ARM.
    """
    found = {(row["version"], row["step"], row["arm"]): row for row in arm_rows}
    sections: list[dict[str, Any]] = []
    for version in sorted(versions):
        journey = versions[version]
        for sid, step in experiment_steps(journey):
            metric = step.primary_metric or CONVERSION
            counted = [(name, weight, found.get((version, sid, name), _EMPTY_ARM)) for name, weight in arms_of(step)]
            held = (weighted_runs or {}).get((version, sid))
            analysis = analyze_experiment(
                [
                    Arm(
                        name,
                        weight,
                        c["runs"],
                        c[PRIMARY_COUNTER[metric]],
                        unsubscribes=c["unsubscribes"],
                        complaints=c["complaints"],
                    )
                    for name, weight, c in counted
                ],
                primary_metric=metric,
                minimum_per_arm=minimum_per_arm or step.minimum_per_arm or MINIMUM_PER_ARM,
                confidence=confidence,
                # At most the arm's runs: run_arms and the counters are written together, but
                # a report must not fail if they ever disagree (the check then reads less).
                sample_ratio_recipients=(
                    None if held is None else [min(held.get(name, 0), c["runs"]) for name, _w, c in counted]
                ),
            )
            delays = delay_experiment(journey, sid) if isinstance(step, SplitStep) else None
            delay_of = {p.name: p for p in delays.paths} if delays is not None else {}
            arms = []
            for (name, _weight, c), shown in zip(counted, analysis.arms, strict=True):
                arm = {
                    **asdict(shown),
                    "runs": c["runs"],
                    "conversion": asdict(rate(c["conversions"], c["runs"], confidence)),
                    "opens": c["opens"],
                    "clicks": c["clicks"],
                    "revenue": round(c["revenue"], 6),
                    "revenue_per_run": _rate(c["revenue"], c["runs"]),
                    "time_to_convert": _percentiles(c["time_to_convert"]),
                }
                del arm["recipients"]  # runs assigned: the arm's denominator, named for what it counts
                if name in delay_of:
                    path = delay_of[name]
                    arm["delay"] = {
                        "label": _delay_label(path.waits),
                        "waits": list(path.waits),
                        "seconds": path.delay_ms / 1000.0,
                    }
                arms.append(arm)
            sections.append(
                {
                    "version": version,
                    "step": sid,
                    "kind": "split" if isinstance(step, SplitStep) else "variants",
                    "delay_experiment": delays is not None,
                    "primary_metric": metric,
                    "control": analysis.control,
                    "confidence": analysis.confidence,
                    "minimum_per_arm": analysis.minimum_per_arm,
                    "arms": arms,
                    "sample_ratio": asdict(analysis.sample_ratio),
                    # Which runs the check tested: the caller says when a decision cut them short.
                    "sample_ratio_runs": "every run assigned" if held is None else "assigned before a decision",
                    "winner": asdict(analysis.winner),
                    "guardrail_breaches": [asdict(b) for b in analysis.guardrail_breaches],
                }
            )
    return sections
