"""cli/experiment_table.py: an experiment section as the command prints it."""

from __future__ import annotations

from rich.console import Console

from nudgeflow.cli.experiment_table import experiment_lines, experiment_table
from nudgeflow.measure.report import experiments
from nudgeflow.model.journeys import Journey

JOURNEY = Journey.model_validate(
    {
        "id": "j",
        "name": "J",
        "trigger": {"type": "event", "event": "Signed Up"},
        "steps": {
            "mail": {
                "type": "send",
                "channel": "email",
                "primary_metric": "click",
                "variants": [{"name": "a", "template": "a", "weight": 1}, {"name": "b", "template": "b", "weight": 1}],
            }
        },
    }
)


def _row(arm: str, runs: int, clicks: int, unsubscribes: int) -> dict[str, object]:
    return {
        "version": 3,
        "step": "mail",
        "arm": arm,
        "runs": runs,
        "conversions": 0,
        "revenue": 0.0,
        "revenue_sq": 0.0,
        "opens": 0,
        "clicks": clicks,
        "unsubscribes": unsubscribes,
        "complaints": 0,
        "time_to_convert": {},
    }


def _printed(section: dict[str, object]) -> str:
    console = Console(width=250, record=True)
    console.print(experiment_table(section))
    return console.export_text()


def test_a_variant_experiment_on_clicks_with_a_guardrail_breach() -> None:
    [section] = experiments({3: JOURNEY}, [_row("a", 3000, 300, 3), _row("b", 3000, 450, 40)])
    text = _printed(section)
    assert "experiment mail (version 3, variants); primary metric: click" in text
    assert "click % [95 %]" in text and "conv. % [95 %]" in text  # conversion shown beside clicks
    assert "10.00 [" in text and "15.00 [" in text and "(control)" in text
    lines = experiment_lines(section)
    assert lines[0].startswith("sample ratio: as configured")
    assert lines[1].startswith("'b' wins on click")
    assert lines[2].startswith("guardrail breach: 'b' unsubscribe rate")


def test_a_mismatched_split_warns_and_calls_nothing() -> None:
    [section] = experiments({3: JOURNEY}, [_row("a", 3000, 300, 0), _row("b", 2000, 450, 0)])
    lines = experiment_lines(section)
    assert lines[0].startswith("WARNING sample ratio mismatch")
    assert lines[1].startswith("no winner yet: sample ratio mismatch")
    [empty] = experiments({3: JOURNEY}, [])
    assert experiment_lines(empty)[0] == "sample ratio: no runs yet"
    assert "-" in _printed(empty)
