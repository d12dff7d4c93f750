"""`nudgeflow templates …`, run as a user runs it: a real process per command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support import NUDGEFLOW

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "templates"


def run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NUDGEFLOW, *args, "--database", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_apply_list_render(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    created = run("workspace", "create", "shop", db=db)
    assert created.returncode == 0, created.stderr
    ws = next(word for word in created.stdout.split() if word.startswith("ws_"))

    applied = run("templates", "apply", str(EXAMPLES), "--workspace", ws, db=db)
    assert applied.returncode == 0, applied.stderr
    assert "cart-1h-your-items: version 1" in applied.stdout
    again = run("templates", "apply", str(EXAMPLES / "cart-1h-your-items.yaml"), "--workspace", ws, db=db)
    assert again.stdout.strip() == "cart-1h-your-items: version 1 (unchanged)"

    listed = run("templates", "list", "--workspace", ws, "--json", db=db)
    names = {t["name"] for t in json.loads(listed.stdout)}
    assert len(names) == 20 and "push-level-up" in names

    shown = run("templates", "render", "cart-1h-your-items", "--workspace", ws, "--sample", db=db)
    assert shown.returncode == 0, shown.stderr
    assert "Ana, you left something in your cart" in shown.stdout and "Stoneware Mug" in shown.stdout
    html = run("templates", "render", "cart-1h-your-items", "--workspace", ws, "--sample", "--html-only", db=db)
    assert html.stdout.lstrip().lower().startswith("<!doctype html>") and "Gooseneck Kettle" in html.stdout
    push = run("templates", "render", "push-level-up", "--workspace", ws, "--sample", db=db)
    assert "Level up, Ana!" in push.stdout

    assert run("templates", "render", "nope", "--workspace", ws, "--sample", db=db).returncode == 1
    assert run("templates", "render", "push-level-up", "--workspace", ws, db=db).returncode == 1


def test_apply_refuses_a_broken_file(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    ws = next(w for w in run("workspace", "create", "shop", db=db).stdout.split() if w.startswith("ws_"))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "ok.yaml").write_text("subject: Hi\nbody: <p>x</p>\n")
    (tmp_path / "t" / "zz-broken.yaml").write_text("subject: Hi\nbody: |\n  <p>\n  {% if x %}\n")
    out = run("templates", "apply", str(tmp_path / "t"), "--workspace", ws, db=db)
    assert out.returncode == 1 and "zz-broken.yaml" in out.stderr and "body:2:" in out.stderr
    assert json.loads(run("templates", "list", "--workspace", ws, "--json", db=db).stdout) == []
