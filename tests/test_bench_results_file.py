"""benchmarks/RESULTS.md is written by several benchmarks, and people write notes between their
sections: a new run of one benchmark rewrites its own section and nothing else."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import ingest  # noqa: E402

INFO = {
    "date": "2026-12-07 11:00 UTC",
    "commit": "abc1234",
    "cpu": "a CPU",
    "cores": "2",
    "mem": "1 GiB",
    "os": "Linux",
    "python": "3.11",
    "sqlite": "3.40",
    "disk": "/dev/x (ext4, mounted on /), rotational",
    "load": "0.1 0.1 0.1",
}


def figures() -> ingest.Figures:
    run = ingest.LoadResult(done=100, elapsed=1.0, latencies=[0.001] * 100)
    return ingest.Figures(L=1000.0, C=100.0, batch_rate=500.0, track=run, half=run, events=10, users=2)


def test_an_ingest_run_keeps_everything_after_its_section_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "RESULTS.md"
    tail = (
        "\n\n<!-- engine benchmark: written by benchmarks/engine.py -->\nengine\n<!-- end of engine benchmark -->\n\n"
        "## Issue 99: notes written by hand between two sections\n\nkept, with its spacing.  \n\n"
        "<!-- segments benchmark: written by benchmarks/engine.py --phases segments -->\nsegments\n"
        "<!-- end of segments benchmark -->\n\n## More notes at the end\n"
    )
    results.write_text(
        "# Ingest benchmark results\n\n<!-- notes: kept as written -->\nmy note\n<!-- end of notes -->\n\n"
        "<!-- history: one line per run, newest first; the benchmark adds them -->\n\n| date |\n| --- |\n"
        "| 2026-01-01 00:00 UTC | old |\n\n<!-- end of ingest benchmark -->" + tail
    )
    monkeypatch.setattr(ingest, "RESULTS", results)
    monkeypatch.setattr(ingest, "ROOT", tmp_path)
    monkeypatch.setattr(ingest, "machine_lines", lambda info, software, disk=False: ["Machine: test"])
    args = argparse.Namespace(quick=True, events=10, seconds=1.0, warmup=1.0)
    ingest.write_results([("m", "f", "r", "met")], figures(), args, INFO)
    text = results.read_text()
    assert text.endswith("<!-- end of ingest benchmark -->" + tail)
    assert "my note" in text and "| 2026-01-01 00:00 UTC | old |" in text  # notes and history kept
    assert text.count("| 2026-12-07 11:00 UTC | abc1234 |") == 1  # this run's line, once
    # A second run keeps it all again.
    ingest.write_results([("m", "f", "r", "met")], figures(), args, {**INFO, "date": "2026-12-08 11:00 UTC"})
    assert results.read_text().endswith("<!-- end of ingest benchmark -->" + tail)


def test_the_committed_results_file_has_the_ingest_end_marker() -> None:
    # Without it, an ingest run would keep only the marked sections and drop hand-written notes.
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert text.count("<!-- end of ingest benchmark -->") == 1
    assert text.index("<!-- end of ingest benchmark -->") < text.index("<!-- engine benchmark:")
