"""Charts drawn on the server: the geometry of small line and bar charts, in numbers, for the
console's templates to draw as inline SVG (templates/charts.html). No JavaScript, nothing to
load, and every number a chart shows is also in a table beside it (screen readers, copying).

Only numbers and the labels given go into a chart; the template escapes the labels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The plot's margins inside the SVG's viewBox: room for the y labels on the left and the
# x labels under the axis.
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 8, 22


@dataclass(frozen=True)
class Line:
    name: str
    points: str  # "x,y x,y …" for a <polyline>
    total: float
    index: int  # which of the stylesheet's series colours


@dataclass(frozen=True)
class Tick:
    at: float  # the coordinate in the viewBox
    label: str


@dataclass(frozen=True)
class LineChart:
    title: str
    width: int
    height: int
    lines: tuple[Line, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    left: int = LEFT
    bottom: float = 0.0  # the x axis's y coordinate

    @property
    def empty(self) -> bool:
        return not self.lines


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above `value` (1 for nothing): the top of an axis."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # not reached: 10 × power is always at or above


def short_number(value: float, *, money: bool = False) -> str:
    """12, 1.2k, 3.4M: an axis label."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            text = f"{value / limit:.1f}".removesuffix(".0") + suffix
            break
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".") if money else f"{value:g}"
    return sign + text


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    width: int = 640,
    height: int = 180,
    money: bool = False,
) -> LineChart:
    """One line per series over the x `labels` (days, say); every series as long as `labels`.
    Series whose values are all zero are left out (no line to draw)."""
    for name, values in series.items():
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
    drawn = {name: values for name, values in series.items() if any(values)}
    top = nice_ceiling(max((max(v) for v in drawn.values()), default=0.0))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    bottom = TOP + plot_h

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(labels) - 1) if len(labels) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return bottom - plot_h * value / top

    lines = tuple(
        Line(
            name,
            " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values)),
            float(sum(values)),
            index % 6,
        )
        for index, (name, values) in enumerate(drawn.items())
    )
    every = max(1, math.ceil(len(labels) / 6))  # at most about six dates under the axis
    x_ticks = tuple(Tick(x(i), labels[i]) for i in range(0, len(labels), every))
    y_ticks = tuple(Tick(y(top * k / 4), short_number(top * k / 4, money=money)) for k in range(5))
    return LineChart(title, width, height, lines, x_ticks, y_ticks, bottom=bottom)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    share: float  # of the largest bar, 0..1: its drawn length


def bars(rows: Sequence[tuple[str, float]]) -> list[Bar]:
    """Horizontal bars, each as long as its share of the largest value."""
    largest = max((value for _, value in rows), default=0.0)
    return [Bar(label, value, value / largest if largest > 0 else 0.0) for label, value in rows]
