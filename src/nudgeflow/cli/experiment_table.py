"""An experiment section of a journey report (measure/report.experiments) as a table and a
few lines in words: what `nudgeflow report journey` prints under the journey's table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from nudgeflow.cli.report_table import seconds


def _interval(value: Mapping[str, Any]) -> str:
    if value["value"] is None:
        return "-"
    return f"{100 * value['value']:.2f} [{100 * value['low']:.2f}, {100 * value['high']:.2f}]"


def experiment_table(experiment: Mapping[str, Any]) -> Table:
    """One experiment's arms as a table: runs, the primary metric's rate and interval, the
    comparison with the control arm, conversion, revenue, guardrails, time to convert."""
    metric = experiment["primary_metric"]
    kind = "delay experiment" if experiment["delay_experiment"] else experiment["kind"]
    table = Table(
        title=f"experiment {experiment['step']} (version {experiment['version']}, {kind}); primary metric: {metric}"
    )
    delays = experiment["delay_experiment"]
    columns = ["arm", *(["delay"] if delays else []), "weight", "runs", f"{metric} % [95 %]"]
    # The conversion rate beside the primary metric's, unless it is the primary metric.
    conversion = metric != "conversion"
    columns += ["vs control (points)", *(["conv. % [95 %]"] if conversion else [])]
    columns += ["revenue", "unsub %", "complaint %", "to convert p50/p90"]
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for arm in experiment["arms"]:
        versus = arm["versus_control"]
        if arm["name"] == experiment["control"]:
            against = "(control)"
        elif versus is None:
            against = "-"
        else:
            against = f"{100 * versus['difference']:+.2f} [{100 * versus['low']:+.2f}, {100 * versus['high']:+.2f}]"
        times = arm["time_to_convert"]
        table.add_row(
            arm["name"],
            *([arm["delay"]["label"]] if delays else []),
            f"{arm['weight']:g}",
            f"{arm['runs']:,}",
            _interval(arm["primary"]),
            against,
            *([_interval(arm["conversion"])] if conversion else []),
            f"{arm['revenue']:,.2f}",
            _interval(arm["unsubscribe"]),
            _interval(arm["complaint"]),
            f"{seconds(times['p50_s'])} / {seconds(times['p90_s'])}",
        )
    return table


def experiment_lines(experiment: Mapping[str, Any]) -> list[str]:
    """The sample-ratio check, the winner call (or why none yet), guardrail breaches and what
    automation decided (runtime/experiments.py), in words."""
    ratio = experiment["sample_ratio"]
    decided = experiment.get("decisions", [])
    # After a pause or a route the check tests only the runs assigned before it, which the
    # configured weights split: the decision moves later runs off them on purpose.
    basis = experiment.get("sample_ratio_runs", "every run assigned")
    over = "" if basis == "every run assigned" else f" (runs {basis})"
    if ratio["p_value"] is None:
        lines = [f"sample ratio: no runs yet{over}"]
    elif ratio["mismatch"]:
        lines = [f"WARNING {ratio['reason']}{over}"]
    else:
        lines = [f"sample ratio: as configured (chi-square p = {ratio['p_value']:.3g}){over}"]
    lines.append(experiment["winner"]["reason"])
    lines.extend(f"guardrail breach: {breach['reason']}" for breach in experiment["guardrail_breaches"])
    for d in decided:
        what = f"{d['arm']!r} paused" if d["action"] == "paused" else f"every new run takes {d['arm']!r}"
        lines.append(f"decided {d['decided_at']}: {what} — {d['reason']}")
    return lines
