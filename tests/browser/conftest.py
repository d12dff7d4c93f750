"""Headless Chromium for the browser SDK's tests: Debian's chromium, driven by Playwright; the
shop's site, and a browser profile on it with the push stand-ins of fake_push.py.

Playwright's own browser downloads are never used: the tests launch /usr/bin/chromium by
its path. A fresh machine has no chromium, so the session installs Debian's package
(`apt-get update && apt-get install -y chromium`, as root, which is how CI runs) and fails
loudly, naming what to do, if that is not possible. These tests never skip silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import HTMLResponse

from nudgeflow.core.clock import SystemClock, to_ms
from nudgeflow.settings import Settings
from nudgeflow.store.workspaces import create_workspace
from nudgeflow.web.app import create_app
from nudgeflow.web.embedded import serve_in_thread
from nudgeflow.web.state import AppState
from tests.browser.fake_push import FAKE_PUSH_SERVICE, Vapid
from tests.browser.shop_site import Site

CHROMIUM = Path(os.environ.get("NUDGEFLOW_TEST_CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get update && apt-get install -y chromium"


def _install_chromium() -> str:
    """Install Debian's chromium; returns what went wrong, or "" when it is there."""
    if os.geteuid() != 0:
        return f"not root, so cannot run `{INSTALL}`; run it as root (or with sudo) once"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine: install Chromium and set NUDGEFLOW_TEST_CHROMIUM to its path"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
    return ""


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        problem = _install_chromium()
        if problem or not CHROMIUM.exists():
            pytest.fail(
                f"The browser SDK tests need Debian's chromium at {CHROMIUM}, and it could not be installed: "
                f"{problem or 'the package installed, but the binary is not there'}",
                pytrace=False,
            )
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an asyncio loop running in this
    # thread while it is open, and every later test that calls asyncio.run() would fail.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=chromium_path, headless=True)
        except Exception as exc:  # a broken install is a failure, not a skip
            pytest.fail(f"Chromium at {chromium_path} did not start: {exc}", pytrace=False)
        yield launched
        launched.close()


# The site's page: it loads the SDK from the server, as a site would, and passes the write
# key and the SDK's options in its query string so that a reload runs the same setup.
SHOP_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Boots - Example Shop</title></head>
<body>
<h1>Boots</h1>
<button id="notify" type="button">Notify me</button>
<p id="result"></p>
<script src="/sdk/nudgeflow.js"></script>
<script>
  const query = new URLSearchParams(location.search);
  nudgeflow.load({ writeKey: query.get("wk"), flushInterval: Number(query.get("fi") || 200),
                   retryBase: Number(query.get("rb") || 1000) });
  document.getElementById("notify").addEventListener("click", () => {
    window.subscribing = nudgeflow.push.subscribe().then(
      (sub) => { document.getElementById("result").textContent = "subscribed"; return sub; },
      (err) => { document.getElementById("result").textContent = "error " + err.code; throw err; });
  });
</script>
</body></html>
"""


@pytest.fixture
def site() -> Iterator[Site]:
    # SQLite only: these tests are about the browser; the endpoints are tested on both databases.
    # The system clock: the browser's timestamps are real ones.
    directory = tempfile.mkdtemp(prefix="nudgeflow-browser-")
    settings = Settings(
        database_url=f"sqlite:///{directory}/nudgeflow.db",
        sqlite_synchronous="NORMAL",
        ingest_rate_per_second=0,
        webpush_hosts=("push.example.net",),
    )
    app = create_app(settings, clock=SystemClock())
    app.add_api_route("/shop/boots", lambda: HTMLResponse(SHOP_PAGE), include_in_schema=False)
    running = serve_in_thread(app, name="nudgeflow-browser-test")
    state: AppState = app.state.nudgeflow
    with state.engine.begin() as conn:
        ws = create_workspace(conn, "shop", to_ms(state.clock.now()))
    yield Site(running.url, state, ws, running)
    running.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def vapid(site: Site) -> Vapid:
    """The shop workspace's VAPID public key, as the page will fetch it."""
    return Vapid(site)


@pytest.fixture
def context(browser: Any, site: Site, vapid: Vapid) -> Iterator[Any]:
    """A fresh browser profile that has allowed the shop's notifications."""
    ctx = browser.new_context()
    ctx.grant_permissions(["notifications"], origin=site.url)
    ctx.add_init_script(FAKE_PUSH_SERVICE)
    vapid.attach(ctx)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()
