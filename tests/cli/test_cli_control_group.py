"""The global control group from the command line, as a user runs it: `policies validate` names
the field that is wrong, `policies apply` / `show` keep the group, and `simulate --policies`
withholds the members' marketing with the reason `global_control`, sends their transactional
messages, and counts the group's runs per journey."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from nudgeflow.core.control_group import member, plan_for
from nudgeflow.model.policies import Policies
from tests.cli.support import create_workspace
from tests.cli.support import run as nudgeflow
from tests.core.engine_driver import ms
from tests.support import NUDGEFLOW

GROUP_DOC = {"control_group": {"share": 0.1, "reset": "quarterly", "salt": "cli-test"}}
GROUP = json.dumps(GROUP_DOC)  # JSON is YAML
WELCOME = """\
id: welcome
name: Welcome
trigger: {type: event, event: Signed Up}
goal: {event: Order Completed, within: 7d}
steps:
  hello: {type: send, channel: email, template: hello, next: receipt}
  receipt: {type: send, channel: email, template: receipt, marketing: false}
"""
ORDERS = """\
id: orders
name: Orders
control_group: exclude
trigger: {type: event, event: Signed Up}
steps:
  thanks: {type: send, channel: email, template: thanks}
"""
USERS = [f"user-{i}" for i in range(300)]


def simulate(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NUDGEFLOW, "simulate", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def setup(tmp_path: Path) -> list[str]:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "welcome.yaml").write_text(WELCOME)
    (folder / "orders.yaml").write_text(ORDERS)
    (tmp_path / "policies.yaml").write_text(GROUP)
    events: list[dict[str, Any]] = []
    for i, user in enumerate(USERS):
        at = f"2026-03-02T09:{i // 60:02d}:{i % 60:02d}Z"
        events.append({"type": "track", "userId": user, "event": "Signed Up", "timestamp": at})
        if i % 3 == 0:  # a third of everyone orders the next day, group or not
            next_day = at.replace("2026-03-02", "2026-03-03")
            events.append({"type": "track", "userId": user, "event": "Order Completed", "timestamp": next_day})
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return ["--journeys", str(folder), "--events", str(tmp_path / "events.jsonl")]


def test_simulate_withholds_the_members_marketing_and_counts_the_group(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    done = simulate([*base, "--policies", str(tmp_path / "policies.yaml"), "--json", "--horizon", "1d"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    *lines, last = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    summary = last["summary"]
    plan = plan_for(Policies.model_validate(GROUP_DOC))
    assert plan is not None
    members = {u for u in USERS if member(plan, u, ms("2026-03-02T09:00:00Z"))}  # Q1 2026, as every entry
    assert 10 <= len(members) <= 55  # 300 people at 10 %
    dropped = {(m["user_id"], m["journey"], m["step"]) for m in lines if m["status"] == "dropped"}
    assert dropped == {(u, "welcome", "hello") for u in members}
    assert all(m["reason"] == "global_control" for m in lines if m["status"] == "dropped")
    planned = [(m["user_id"], m["journey"], m["step"]) for m in lines if m["status"] == "planned"]
    assert sorted(planned) == sorted(
        [(u, "welcome", "hello") for u in USERS if u not in members]
        + [(u, "welcome", "receipt") for u in USERS]  # transactional: everyone
        + [(u, "orders", "thanks") for u in USERS]  # excluded from the group: everyone
    )
    welcome = summary["journeys"]["welcome"]
    assert welcome["entered"] == 300 and welcome["global_control"] == len(members)
    assert welcome["global_control_converted"] == sum(1 for u in members if USERS.index(u) % 3 == 0)
    assert welcome["converted"] == 100
    assert summary["journeys"]["orders"]["global_control"] == 0

    wide = {**env, "COLUMNS": "200"}  # the table's headers on one line each
    table = simulate([*base, "--policies", str(tmp_path / "policies.yaml"), "--horizon", "1d"], wide, tmp_path)
    assert table.returncode == 0, table.stderr
    assert "global control (converted)" in table.stdout
    plain = simulate([*base, "--horizon", "1d"], wide, tmp_path)  # no group: no column, nothing withheld
    assert "global control" not in plain.stdout


def test_policies_validate_names_the_field_and_apply_keeps_the_group(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("control_group:\n  share: 0.7\n  reset: weekly\n  salts: x\n")
    done = nudgeflow(["policies", "validate", str(bad)], env, tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert f"{bad}:2: control_group.share: 0.7 must be less than or equal to 0.5" in lines
    assert (
        f"{bad}:3: control_group.reset: unknown value 'weekly' (use one of never, yearly, quarterly, monthly)" in lines
    )
    assert f"{bad}:4: control_group.salts: unknown key 'salts' (did you mean 'salt'?)" in lines

    good = tmp_path / "policies.yaml"
    good.write_text(GROUP)
    assert nudgeflow(["policies", "validate", str(good)], env, tmp_path).returncode == 0
    ws = create_workspace(env, tmp_path)["workspace_id"]
    applied = nudgeflow(["policies", "apply", str(good), "--workspace", ws], env, tmp_path)
    assert applied.returncode == 0, applied.stderr
    shown = json.loads(nudgeflow(["policies", "show", "--workspace", ws, "--json"], env, tmp_path).stdout)
    assert shown["policies"]["control_group"] == {"share": 0.1, "reset": "quarterly", "salt": "cli-test"}
    # A new salt is a new version: the group is drawn again.
    good.write_text(GROUP.replace("cli-test", "cli-test-2"))
    again = nudgeflow(["policies", "apply", str(good), "--workspace", ws], env, tmp_path)
    assert again.stdout.startswith("policies: version 2 applied"), again.stdout + again.stderr


def test_journeys_validate_names_a_bad_control_group_setting(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(ORDERS.replace("control_group: exclude", "control_group: skip"))
    done = nudgeflow(["journeys", "validate", str(path)], env, tmp_path)
    assert done.returncode == 1
    assert f"{path}:3: control_group: unknown value 'skip' (use one of include, exclude)" in done.stdout.splitlines()
