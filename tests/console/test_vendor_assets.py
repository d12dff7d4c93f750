"""The console's vendored JavaScript (scripts/console_assets): the committed bundle is there, ships
in the package, and its licences name every pinned package at the version the lock file holds."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "scripts" / "console_assets"
PACKAGE = REPO / "src" / "nudgeflow"
VENDOR = PACKAGE / "web" / "console" / "static" / "vendor"
TEST_VENDOR = Path(__file__).resolve().parent / "vendor"


def _locked_versions() -> dict[str, str]:
    lock = json.loads((ASSETS / "package-lock.json").read_text())
    return {
        path.removeprefix("node_modules/"): entry["version"]
        for path, entry in lock["packages"].items()
        if path.startswith("node_modules/") and "/node_modules/" not in path
    }


def _licensed(text: str) -> dict[str, str]:
    """The `==== name@version (licence)` headings build.mjs writes, as {name: version}."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^==== (@?[^@\s]+)@(\S+) \(", text, re.MULTILINE)}


def test_the_manifest_pins_exact_versions_and_the_lock_agrees() -> None:
    manifest = json.loads((ASSETS / "package.json").read_text())
    locked = _locked_versions()
    pinned = {**manifest["dependencies"], **manifest["devDependencies"]}
    assert {"@dagrejs/dagre", "codemirror", "uplot", "axe-core", "esbuild"} <= set(pinned)
    for name, version in pinned.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned to an exact version: {version}"
        assert locked.get(name) == version, f"{name}: package.json has {version}, the lock {locked.get(name)}"


def test_the_committed_bundle_is_there_and_sets_the_global() -> None:
    bundle = (VENDOR / "console-vendor.js").read_text()
    assert bundle.startswith("/* Nudgeflow console vendor bundle"), bundle[:200]
    assert "window.NFVendor=" in bundle
    # Minified: a handful of long lines, not the packages' sources.
    assert bundle.count("\n") < 100
    # Small enough to load on every page: well under a megabyte.
    assert 200_000 < len(bundle.encode()) < 1_000_000
    assert (VENDOR / "uPlot.min.css").read_text().startswith(".uplot")
    assert "axe" in (TEST_VENDOR / "axe.min.js").read_text()[:2000]


def test_licences_name_every_package_at_its_locked_version() -> None:
    manifest = json.loads((ASSETS / "package.json").read_text())
    locked = _locked_versions()
    licensed = _licensed((VENDOR / "LICENSES.txt").read_text())
    for name in manifest["dependencies"]:
        assert name in licensed, f"{name} is bundled but LICENSES.txt has no licence for it"
    # Transitive packages too (lezer, style-mod, graphlib, ...), each at the locked version: the
    # bundle was built from this lock file.
    assert len(licensed) > len(manifest["dependencies"])
    for name, version in licensed.items():
        assert locked.get(name) == version, f"LICENSES.txt has {name}@{version}, the lock {locked.get(name)}"
    test_licensed = _licensed((TEST_VENDOR / "LICENSES.txt").read_text())
    assert test_licensed == {"axe-core": locked["axe-core"]}
    # Every section carries a licence's words, not only a heading.
    for section in (VENDOR / "LICENSES.txt").read_text().split("\n==== ")[1:]:
        assert re.search(r"permission|licen[cs]e", section, re.IGNORECASE), section[:300]


def test_the_vendored_files_are_in_the_package_data() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["nudgeflow"]
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern) if path.is_file()}
    for name in ("console-vendor.js", "uPlot.min.css", "LICENSES.txt"):
        assert VENDOR / name in shipped, f"{name} is not in pyproject's package-data"
    # The test-only axe-core never ships.
    assert not any("axe" in path.name for path in shipped)


def test_every_page_template_and_script_is_in_the_package_data() -> None:
    """`pip install` gives a working console: each template and static file (scripts in
    subfolders too) matches a package-data pattern, so a wheel carries it."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["nudgeflow"]
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern) if path.is_file()}
    console = PACKAGE / "web" / "console"
    files = [p for folder in ("templates", "static") for p in (console / folder).rglob("*") if p.is_file()]
    assert any(p.parent.name == "journeys" and p.suffix == ".js" for p in files)  # a subfolder's script
    assert len(files) > 40
    missing = sorted(str(p.relative_to(PACKAGE)) for p in files if p not in shipped)
    assert missing == [], f"not in pyproject's package-data: {missing}"
