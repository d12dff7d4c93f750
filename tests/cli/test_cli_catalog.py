"""`nudgeflow catalog import|list`, run as a user runs it: a real process per command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support import NUDGEFLOW


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NUDGEFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_and_list(env: dict[str, str], tmp_path: Path) -> None:
    created = run(["workspace", "create", "shop", "--json"], env, tmp_path)
    assert created.returncode == 0, created.stderr
    ws = json.loads(created.stdout)["workspace_id"]
    (tmp_path / "products.csv").write_text(
        "id,name,price,currency,category,stock,color\n"
        "p1,Linen shirt,49.9,EUR,shirts,3,blue\n"
        "p2,,10,EUR,shirts,1,\n"
        "p3,Belt,twenty,EUR,belts,1,\n"
        "p4,Socks,8,EUR,socks,,\n"
    )
    done = run(["catalog", "import", "products", "products.csv", "--workspace", ws], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4 rows: 2 imported (2 new, 0 updated), 2 rejected"
    assert "products.csv: line 3: name is missing (id 'p2')" in done.stderr
    assert "products.csv: line 4: price must be a number" in done.stderr

    again = run(["catalog", "import", "products", "products.csv", "-w", ws, "--json"], env, tmp_path)
    report = json.loads(again.stdout)
    assert (report["created"], report["updated"], report["rejected"]) == (0, 2, 2)

    (tmp_path / "stores.jsonl").write_text('{"id": "s1", "name": "Fifth", "latitude": 40.7, "longitude": -73.9}\n')
    assert run(["catalog", "import", "places", "stores.jsonl", "-w", ws], env, tmp_path).returncode == 0

    listed = run(["catalog", "list", "products", "-w", ws, "--json"], env, tmp_path)
    items = json.loads(listed.stdout)
    assert [(i["id"], i["price"], i["attributes"]) for i in items] == [("p1", 49.9, {"color": "blue"}), ("p4", 8.0, {})]
    table = run(["catalog", "list", "places", "-w", ws], env, tmp_path)
    assert "Fifth" in table.stdout and "1 places" in table.stderr


def test_refusals(env: dict[str, str], tmp_path: Path) -> None:
    created = run(["workspace", "create", "shop", "--json"], env, tmp_path)
    ws = json.loads(created.stdout)["workspace_id"]
    (tmp_path / "bad.json").write_text("[1, 2")
    (tmp_path / "all_bad.json").write_text('[{"id": "x"}]')
    assert run(["catalog", "import", "stores", "bad.json", "-w", ws], env, tmp_path).returncode == 2
    unreadable = run(["catalog", "import", "products", "bad.json", "-w", ws], env, tmp_path)
    assert unreadable.returncode == 1 and "nothing imported" in unreadable.stderr
    assert run(["catalog", "import", "products", "all_bad.json", "-w", ws], env, tmp_path).returncode == 1
    assert run(["catalog", "import", "products", "missing.csv", "-w", ws], env, tmp_path).returncode == 1
    unknown_ws = run(["catalog", "list", "products", "-w", "ws_nope"], env, tmp_path)
    assert unknown_ws.returncode == 1 and "ws_nope" in unknown_ws.stderr
