"""`nudgeflow serve` as an operator runs it: a second engine on one database exits naming
the first; an ingest-only server and read-only commands still work beside it."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.runtime.serve_process import Serve, run


def test_a_second_engine_exits_naming_the_first_and_everything_else_works_beside_it(
    engine_server: tuple[str, Serve], database_url: str, tmp_path: Path
) -> None:
    workspace, first = engine_server
    second = Serve(database_url, tmp_path / "second.log", NUDGEFLOW_ENGINE="1")
    assert second.proc.wait(60) != 0
    said = " ".join((tmp_path / "second.log").read_text().split())
    assert "another engine is running on this database" in said
    assert f"pid {first.proc.pid}," in said and f"host {socket.gethostname()}" in said and "started 20" in said
    assert "NUDGEFLOW_ENGINE=0" in said and "Traceback" not in said

    ingest_only = Serve(database_url, tmp_path / "ingest.log", NUDGEFLOW_ENGINE="0")
    try:
        ingest_only.wait_ready()
    finally:
        ingest_only.stop()

    validated = run("journeys", "validate", "examples/journeys/welcome.yaml")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    simulated = run("simulate", "-j", "examples/journeys", "-e", "examples/events/sample.jsonl")
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    rendered = run(
        "templates", "render", "cart-1h-your-items", "--workspace", workspace, "--sample", "--database", database_url
    )
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert first.proc.poll() is None  # the engine ran throughout
