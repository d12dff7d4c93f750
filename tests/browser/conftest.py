"""The browser SDK's tests: the shop's site, and a browser profile on it with the push
stand-ins of fake_push.py, in headless Chromium (the `browser` fixture, tests/conftest.py;
how it is found or installed: tests/chromium.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
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
