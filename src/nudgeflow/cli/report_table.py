"""A journey report (measure/report.journey_report) as a table: what `nudgeflow report journey`
and `nudgeflow simulate --report` print; the overview's journeys and a lift in a line, what
`nudgeflow report overview` prints. JSON and CSV carry every metric; the table shows these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

# The columns the table shows (JSON and CSV have every metric).
TABLE = (
    ("entered", "entered"),
    ("held_out", "held out"),
    ("recipients", "recipients"),
    ("sent", "sent"),
    ("delivered", "delivered"),
    ("unique_opens", "opens"),
    ("open_rate", "open %"),
    ("unique_clicks", "clicks"),
    ("click_rate", "click %"),
    ("conversions", "conv."),
    ("conversion_rate", "conv. %"),
    ("revenue", "revenue"),
    ("unsubscribes", "unsubs"),
    ("complaints", "complaints"),
    ("bounces", "bounces"),
)
# A metric the report's source cannot know (its "not_known" list): not "-", which is a rate
# with nothing to divide by, and never 0.
NOT_KNOWN = "n/k"


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_rate"):
        return f"{100 * value:.1f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} s"


def journey_table(found: Mapping[str, Any], groups: Sequence[str], title: str, caption: str | None = None) -> Table:
    """The report's rows (one per combination of `groups`) and its totals in bold."""
    unknown = set(found.get("not_known", ()))
    table = Table(title=title, caption=caption, caption_justify="left")
    for name in groups:
        table.add_column(name)
    for _, label in TABLE:
        table.add_column(label, justify="right")
    table.add_column("to trigger p50/p90", justify="right")
    table.add_column("to convert p50/p90", justify="right")

    def line(row: Mapping[str, Any], heads: list[str]) -> list[str]:
        times = [
            f"{seconds(row[name]['p50_s'])} / {seconds(row[name]['p90_s'])}"
            for name in ("time_to_trigger", "time_to_convert")
        ]
        cells = (NOT_KNOWN if name in unknown else _cell(name, row[name]) for name, _ in TABLE)
        return [*heads, *cells, *times]

    for row in found["rows"]:
        table.add_row(*line(row, [str(row[name]) if row[name] != "" else "(journey)" for name in groups]))
    table.add_row(*line(found["totals"], ["total", *[""] * (len(groups) - 1)] if groups else []), style="bold")
    return table


def machine_note(found: Mapping[str, Any], machine: bool) -> str | None:
    """Whether machine opens and bot clicks are in the rates, when there were any."""
    totals = found["totals"]
    if not (totals["machine_opens"] or totals["bot_clicks"]):
        return None
    shown = "counted in" if machine else "left out of"
    return f"machine opens {totals['machine_opens']}, bot clicks {totals['bot_clicks']}: {shown} the rates"


OVERVIEW = (
    ("entered", "entered"),
    ("held_out", "held out"),
    ("control", "control"),
    ("sent", "sent"),
    ("conversions", "conv."),
    ("conversion_rate", "conv. %"),
    ("held_out_conversion_rate", "held out conv. %"),
    ("revenue", "revenue"),
)


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def lift_line(lift: Mapping[str, Any]) -> str:
    """A lift's conversion comparison in one line: rates, absolute lift with its interval, p."""
    c = lift["conversion"]
    rates = "-" if c["treated_rate"] is None else f"{100 * c['treated_rate']:.2f} %"
    held = "-" if c["held_out_rate"] is None else f"{100 * c['held_out_rate']:.2f} %"
    a = c["absolute_lift"]
    shown = "-" if a is None else f"{_points(a['value'])} points [{_points(a['low'])}, {_points(a['high'])}]"
    p = "-" if c["p_value"] is None else f"{c['p_value']:.2g}"
    return f"{rates} vs {held}: {shown}, p {p}"


def overview_table(found: Mapping[str, Any], title: str) -> Table:
    """The overview's journeys, each with its lift (measure/report.overview_report)."""
    from rich.markup import escape

    table = Table(title=title)
    table.add_column("journey")
    table.add_column("trigger")
    for _, label in OVERVIEW:
        table.add_column(label, justify="right")
    table.add_column("lift: treated vs held out (95 %, Newcomb; p: pooled z)")
    for row in found["journeys"]:
        table.add_row(
            escape(row["journey_id"]),
            row["trigger_type"],
            *(_cell(name, row[name]) for name, _ in OVERVIEW),
            "-" if row["lift"] is None else lift_line(row["lift"]),
        )
    return table


def _interval(rate: Mapping[str, Any]) -> str:
    if rate["value"] is None:
        return "-"
    return f"{100 * rate['value']:.1f} [{100 * rate['low']:.1f}, {100 * rate['high']:.1f}]"


def send_time_table(entry: Mapping[str, Any]) -> Table:
    """A send step timed by `send_time` (the journey report's `send_time` entries): its
    messages, opens and clicks by arm."""
    timed = "" if entry["timed_by"] == entry["step"] else f", timed by {entry['timed_by']}"
    explore = "unknown" if entry["explore"] is None else f"{100 * entry['explore']:g} %"
    table = Table(title=f"send time: {entry['step']}{timed} (explore {explore})")
    for label in ("arm", "sent", "opens", "open %", "clicks", "click %", "unsubs", "complaints"):
        table.add_column(label, justify="left" if label == "arm" else "right")
    for arm in entry["arms"]:
        names = ("sent", "unique_opens", "open_rate", "unique_clicks", "click_rate", "unsubscribes", "complaints")
        table.add_row(arm["arm"], *(_cell(name, arm[name]) for name in names))
    return table


def send_time_notes(entry: Mapping[str, Any]) -> list[str]:
    """The feature's choice against explore, on the open and the click rate: one line each,
    with the winner call (or why there is none yet) and any sample ratio mismatch."""
    from nudgeflow.measure.send_time_report import CHOSEN

    if entry["no_experiment"]:
        return [entry["no_experiment"]]
    lines = [f"compared: {entry['compared']}"]
    for metric in ("open_rate", "click_rate"):
        found = entry[metric]
        arms = {a["name"]: a for a in found["arms"]}
        versus = arms[CHOSEN]["versus_control"]
        lift = (
            "- (too few to compare)"
            if versus is None
            else f"{100 * versus['difference']:+.2f} points [{100 * versus['low']:+.2f}, {100 * versus['high']:+.2f}]"
        )
        lines.append(
            f"{metric.replace('_', ' ')}: {CHOSEN} {_interval(arms[CHOSEN]['primary'])} %, "
            f"explore {_interval(arms['explore']['primary'])} %; difference {lift}; {found['winner']['reason']}"
        )
        if found["sample_ratio"]["mismatch"]:
            lines.append(f"  {found['sample_ratio']['reason']}")
    return lines
