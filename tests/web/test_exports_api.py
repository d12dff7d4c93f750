"""Exports for a warehouse: exposures, messages and conversions as CSV and Parquet, over HTTP on
a live server and from the command line, on SQLite and PostgreSQL (store/exports.py)."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from nudgeflow.cli import app as cli_app
from nudgeflow.core.effects import DROPPED, MessageWithheld, RunChanged, SendMessage
from nudgeflow.core.state import Run
from nudgeflow.store.effects_writer import EffectsBatch
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

DAY = 86_400_000
T0 = 1_780_000_000_000  # 2026-05-28T20:26:40Z


def _people(live: LiveServer, ws: NewWorkspace, api: httpx.Client, *users: str) -> dict[str, str]:
    with live.client(auth=(ws.write_key, "")) as client:
        for user in users:
            client.post("/v1/identify", json={"userId": user, "traits": {"plan": "pro"}}).raise_for_status()
    return {user: api.get(f"/api/profiles/{user}").json()["id"] for user in users}


def _message(kind: type, key: str, run_id: str, **fields: Any) -> Any:
    common: dict[str, Any] = {
        "key": key,
        "run_id": run_id,
        "journey_id": "welcome",
        "version": 2,
        "step": "hello",
        "channel": "email",
        "template": "welcome-1",
        "variant": None,
        "marketing": True,
        "at_ms": T0 + 10**10,  # far ahead: the live server's dispatcher leaves them pending
    }
    return kind(**{**common, **fields})


def _facts(live: LiveServer, ws: NewWorkspace, ids: dict[str, str]) -> None:
    """ada: treated, sent variant `short` (queued at T0+1d), converted at T0+2d for 42.5; bob: held
    out, converted at T0+3d; cy: treated, her message dropped by a policy, not converted; dee: in
    the global control group and the journey's holdout, converted at T0+4d for 7."""
    # Run ids and message keys are the workspace's own: tests share one PostgreSQL database.
    w = ws.workspace_id
    runs = {
        "ada": Run(f"{w}-ada", "welcome", 2, T0, {}, converted_at=T0 + 2 * DAY, revenue=42.5),
        "bob": Run(f"{w}-bob", "welcome", 2, T0 + 1, {}, holdout=True, converted_at=T0 + 3 * DAY),
        "cy": Run(f"{w}-cy", "welcome", 2, T0 + 2, {}),
        "dee": Run(
            f"{w}-dee",
            "welcome",
            2,
            T0 + 3,
            {},
            holdout=True,
            control=True,
            control_cohort="",
            converted_at=T0 + 4 * DAY,
            revenue=7.0,
        ),
    }

    def write(conn: Any) -> None:
        batch = EffectsBatch()
        for user, run in runs.items():
            if user not in ids:  # a test that does without her
                continue
            effects: list[Any] = [RunChanged(run.as_row(ids[user]))]
            if user == "ada":
                effects.append(_message(SendMessage, "k-ada", run.id, variant="short"))
            if user == "cy":
                effects.append(_message(MessageWithheld, "k-cy", run.id, status=DROPPED, reason="cap:daily"))
            batch.add(ws.workspace_id, ids[user], effects, T0 + DAY if user == "ada" else T0 + DAY + 5)
        batch.write(conn, T0 + DAY)

    live.state.committer.submit_job(write).result(timeout=30)


def _parquet(data: bytes | Any) -> Any:
    # ParquetFile without threads, not pq.read_table: the dataset reader's thread pool can
    # abort the interpreter at exit (apache/arrow#34314), and pytest's exit code with it.
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    return pq.ParquetFile(source).read(use_threads=False)


def _csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_exposures_messages_and_conversions_as_csv(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    ids = _people(live, ws, api, "ada", "bob", "cy", "dee")
    _facts(live, ws, ids)

    exposures = _csv(api.get("/api/exports/exposures"))
    assert [(e["kind"], e["arm"], e["user_id"], e["step"]) for e in exposures] == [
        ("journey", "treated", "ada", ""),
        ("journey", "holdout", "bob", ""),
        ("journey", "treated", "cy", ""),
        ("journey", "control", "dee", ""),
        ("variant", "short", "ada", "hello"),
    ]
    assert exposures[0]["at"] == "2026-05-28T20:26:40.000Z" and exposures[0]["journey_version"] == "2"

    messages = _csv(api.get("/api/exports/messages"))
    assert [(m["user_id"], m["status"], m["reason"], m["variant"], m["marketing"]) for m in messages] == [
        ("ada", "pending", "", "short", "true"),
        ("cy", "dropped", "cap:daily", "", "true"),
    ]
    assert "payload" not in messages[0] and "context" not in messages[0]  # what was sent is not exported

    conversions = _csv(api.get("/api/exports/conversions"))
    assert [(c["user_id"], c["arm"], c["revenue"], c["converted_at"]) for c in conversions] == [
        ("ada", "treated", "42.5", "2026-05-30T20:26:40.000Z"),
        ("bob", "holdout", "", "2026-05-31T20:26:40.000Z"),
        ("dee", "control", "7.0", "2026-06-01T20:26:40.000Z"),
    ]
    # The time range: from included, to excluded, dates or date-times.
    later = _csv(api.get("/api/exports/conversions", params={"from": "2026-05-31"}))
    assert [c["user_id"] for c in later] == ["bob", "dee"]
    until = _csv(api.get("/api/exports/conversions", params={"to": "2026-05-31T20:26:40Z"}))
    assert [c["user_id"] for c in until] == ["ada"]


def test_parquet_has_typed_columns(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    ids = _people(live, ws, api, "ada", "bob", "cy")
    _facts(live, ws, ids)
    got = api.get("/api/exports/conversions", params={"format": "parquet"})
    assert got.status_code == 200, got.text
    assert got.headers["content-disposition"] == 'attachment; filename="conversions.parquet"'
    table = _parquet(got.content)
    assert str(table.schema.field("converted_at").type) == "timestamp[ms, tz=UTC]"
    assert str(table.schema.field("revenue").type) == "double"
    assert table.column("user_id").to_pylist() == ["ada", "bob"]
    assert table.column("revenue").to_pylist() == [42.5, None]
    assert table.schema.field("arm").metadata == {b"doc": b"treated, holdout or control (the global control group)"}
    empty = api.get("/api/exports/messages", params={"format": "parquet", "from": "2030-01-01"})
    assert _parquet(empty.content).num_rows == 0


def test_only_the_tokens_workspace_and_bad_input_named(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    ids = _people(live, ws, api, "ada", "bob", "cy")
    _facts(live, ws, ids)
    other = live.workspace()
    with live.admin(other.admin_token) as theirs:
        assert _csv(theirs.get("/api/exports/messages")) == []
    with live.client() as anonymous:
        assert anonymous.get("/api/exports/messages").status_code == 401
    assert api.get("/api/exports/everything").status_code == 422
    bad = api.get("/api/exports/messages", params={"from": "yesterday"})
    assert bad.status_code == 422 and "from: not a date" in bad.text
    backwards = api.get("/api/exports/messages", params={"from": "2026-06-02", "to": "2026-06-01"})
    assert backwards.status_code == 422 and "after from" in backwards.text
    assert api.get("/api/exports/messages", params={"format": "xlsx"}).status_code == 422


def test_a_cell_a_spreadsheet_would_run_is_quoted(live: LiveServer, ws: NewWorkspace, api: httpx.Client) -> None:
    with live.client(auth=(ws.write_key, "")) as client:
        client.post("/v1/identify", json={"userId": '=HYPERLINK("http://x")'}).raise_for_status()
    pid = api.get('/api/profiles/=HYPERLINK("http://x")').json()["id"]

    def write(conn: Any) -> None:
        batch = EffectsBatch()
        run = Run(f"{ws.workspace_id}-r1", "welcome", 1, T0, {})
        batch.add(ws.workspace_id, pid, [RunChanged(run.as_row(pid))], T0)
        batch.write(conn, T0)

    live.state.committer.submit_job(write).result(timeout=30)
    [row] = _csv(api.get("/api/exports/exposures"))
    assert row["user_id"] == '\'=HYPERLINK("http://x")'


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_the_command_line_writes_the_same(
    live: LiveServer, ws: NewWorkspace, api: httpx.Client, runner: CliRunner, tmp_path: Any
) -> None:
    ids = _people(live, ws, api, "ada", "bob", "cy")
    _facts(live, ws, ids)
    env = {"NUDGEFLOW_DATABASE_URL": live.state.settings.database_url, "COLUMNS": "250"}
    done = runner.invoke(cli_app, ["export", "conversions", "-w", ws.workspace_id], env=env)
    assert done.exit_code == 0, done.output
    assert (
        done.stdout.splitlines()[0]
        == "converted_at,journey_id,journey_version,arm,entered_at,revenue,run_id,profile_id,user_id"
    )
    assert api.get("/api/exports/conversions").text == done.stdout
    path = tmp_path / "m.parquet"
    done = runner.invoke(
        cli_app, ["export", "messages", "-w", ws.workspace_id, "--format", "parquet", "-o", str(path)], env=env
    )
    assert done.exit_code == 0, done.output
    assert _parquet(str(path)).num_rows == 2
    refused = runner.invoke(cli_app, ["export", "messages", "-w", ws.workspace_id, "--format", "parquet"], env=env)
    assert refused.exit_code == 2 and "--output" in refused.output
    wrong = runner.invoke(cli_app, ["export", "messages", "-w", ws.workspace_id, "--from", "soon"], env=env)
    assert wrong.exit_code == 2 and "--from: not a date" in wrong.output


def test_split_paths_are_exposures_and_a_control_members_variant_is_not(
    live: LiveServer, ws: NewWorkspace, api: httpx.Client
) -> None:
    """fay, treated, took split path `left` then variant `short`; eve, in the global control
    group, drew both too, but her variant's message was withheld: she was exposed to neither."""
    ids = _people(live, ws, api, "eve", "fay")
    w = ws.workspace_id
    paths = {"pick": "left", "hello": "short"}
    eve = Run(f"{w}-eve", "welcome", 2, T0, {}, control=True, control_cohort="", paths=dict(paths))
    fay = Run(f"{w}-fay", "welcome", 2, T0 + 1, {}, paths=dict(paths))

    def write(conn: Any) -> None:
        batch = EffectsBatch()
        withheld = _message(MessageWithheld, "k-eve", eve.id, variant="short", status=DROPPED, reason="global_control")
        batch.add(w, ids["eve"], [RunChanged(eve.as_row(ids["eve"])), withheld], T0 + DAY)
        sent = _message(SendMessage, "k-fay", fay.id, variant="short")
        batch.add(w, ids["fay"], [RunChanged(fay.as_row(ids["fay"])), sent], T0 + DAY)
        batch.write(conn, T0 + DAY)

    live.state.committer.submit_job(write).result(timeout=30)
    exposures = _csv(api.get("/api/exports/exposures"))
    assert [(e["kind"], e["arm"], e["user_id"], e["step"], e["at"]) for e in exposures] == [
        ("journey", "control", "eve", "", "2026-05-28T20:26:40.000Z"),
        ("journey", "treated", "fay", "", "2026-05-28T20:26:40.001Z"),
        ("split", "left", "fay", "pick", "2026-05-29T20:26:40.000Z"),
        ("variant", "short", "fay", "hello", "2026-05-29T20:26:40.000Z"),
    ]
