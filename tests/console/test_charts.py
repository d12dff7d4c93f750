"""The server-drawn charts' geometry (web/console/charts.py): axes that hold the largest value,
points where the values put them, and nothing drawn for a series of zeros."""

from __future__ import annotations

import pytest

from nudgeflow.web.console.charts import BOTTOM, LEFT, TOP, bars, line_chart, nice_ceiling, short_number


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1.0), (0.3, 0.5), (1, 1.0), (7, 10.0), (11, 20.0), (240, 250.0), (251, 500.0), (1e6, 1e6)]
)
def test_an_axis_ends_at_a_round_number_at_or_above_the_largest_value(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_labels_are_short() -> None:
    assert [short_number(v) for v in (0, 12, 1200, 2_500_000, 3e9)] == ["0", "12", "1.2k", "2.5M", "3G"]
    assert short_number(12.5, money=True) == "12.5"


def test_points_sit_where_their_values_put_them() -> None:
    chart = line_chart("Sent", ["d1", "d2", "d3"], {"email": [0, 5, 10], "push": [0, 0, 0]}, width=200, height=100)
    assert [line.name for line in chart.lines] == ["email"]  # all zeros: nothing to draw
    (email,) = chart.lines
    points = [tuple(map(float, p.split(","))) for p in email.points.split()]
    plot_h = 100 - TOP - BOTTOM
    assert points[0] == (LEFT, TOP + plot_h)  # 0 on the axis, at the left edge
    assert points[2] == (200 - 8, TOP)  # 10 is the axis's top, at the right edge
    assert points[1][1] == pytest.approx(TOP + plot_h / 2)
    assert email.total == 15
    assert [t.label for t in chart.y_ticks] == ["0", "2.5", "5", "7.5", "10"]
    assert not chart.empty and line_chart("x", ["d"], {"a": [0]}).empty


def test_a_series_must_match_the_labels() -> None:
    with pytest.raises(ValueError, match="has 2 values for 3 labels"):
        line_chart("x", ["a", "b", "c"], {"s": [1, 2]})


def test_bars_are_shares_of_the_largest() -> None:
    assert [(b.label, b.share) for b in bars([("a", 5), ("b", 10), ("c", 0)])] == [("a", 0.5), ("b", 1.0), ("c", 0.0)]
    assert [b.share for b in bars([("a", 0)])] == [0.0]
