"""The browser SDK and its service worker in headless Chromium (Debian's, by path), against a
real Nudgeflow server on loopback that also serves the shop's page.

What is real: the browser, the SDK as served at /sdk/nudgeflow.js, localStorage, fetch
with keepalive, the service worker registered from /sdk/sw.js, notification permission,
showNotification, the server, its database. What is not: the browser's push service. A
headless browser cannot reach FCM (and Chromium refuses Push in an off-the-record
profile), so `PushManager.subscribe` / `getSubscription` are replaced in the page by a
stand-in that records the applicationServerKey it was given and returns a subscription of
the same shape; and a push message reaches the service worker through the DevTools
protocol (ServiceWorker.deliverPushMessage), which is what the push service's delivery
would do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import select

from nudgeflow.content import links
from nudgeflow.core.clock import to_ms
from nudgeflow.store import consent
from nudgeflow.store.profiles import resolve_profile_id
from nudgeflow.store.push_targets import targets_of
from nudgeflow.store.schema import events, profiles
from tests.browser.fake_push import FAKE_PUSH_SERVICE, Vapid
from tests.browser.shop_site import Site

QUEUE_EMPTY = "() => !Object.keys(localStorage).some((k) => k.startsWith('nudgeflow:queue:'))"


# -- helpers --------------------------------------------------------------------------------------


def stored(site: Site, name: str | None = None) -> list[dict[str, Any]]:
    with site.state.engine.connect() as conn:
        query = (
            select(events.c.payload, events.c.profile_id, events.c.type)
            .where(events.c.workspace_id == site.ws.workspace_id)
            .order_by(events.c.seq)
        )
        if name is not None:
            query = query.where(events.c.event == name)
        return [{**orjson.loads(r.payload), "_profile": r.profile_id} for r in conn.execute(query)]


def profile_of(site: Site, ref: str) -> str | None:
    with site.state.engine.connect() as conn:
        return resolve_profile_id(conn, site.ws.workspace_id, ref)


def endpoints_of(site: Site, ref: str) -> list[str]:
    pid = profile_of(site, ref)
    if pid is None:
        return []
    with site.state.engine.connect() as conn:
        return [t.address for t in targets_of(conn, site.ws.workspace_id, pid)]


def eventually(page: Any, check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll `check` while the browser works (Playwright's wait lets its events run)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(50)


# -- events -----------------------------------------------------------------------------------------


def test_identify_track_and_page_land_in_the_database_with_the_visitors_ids(page: Any, site: Site) -> None:
    page.goto(site.shop())
    anonymous_id = page.evaluate("nudgeflow.user().anonymousId")
    assert (
        page.evaluate("""async () => {
        nudgeflow.page();
        nudgeflow.identify("ada", { email: "ada@example.com", plan: "pro" });
        nudgeflow.track("Product Viewed", { sku: "B-1", price: 89.5 });
        nudgeflow.page("Boots", { category: "shoes" });
        return await nudgeflow.flush();
    }""")
        is True
    )

    landed = stored(site)
    assert [(e["type"], e.get("event") or e.get("name")) for e in landed] == [
        ("page", None),
        ("identify", None),
        ("track", "Product Viewed"),
        ("page", "Boots"),
    ]
    first, _identify, track, named_page = landed
    assert first["anonymousId"] == anonymous_id and "userId" not in first
    for event in landed[1:]:
        assert event["userId"] == "ada" and event["anonymousId"] == anonymous_id
    # One person: the anonymous visit and the identified one are the same profile.
    pid = profile_of(site, "ada")
    assert pid is not None and {e["_profile"] for e in landed} == {pid}
    assert profile_of(site, anonymous_id) == pid
    with site.state.engine.connect() as conn:
        traits = orjson.loads(conn.execute(select(profiles.c.traits).where(profiles.c.id == pid)).scalar_one())
    assert traits["email"] == "ada@example.com" and traits["plan"] == "pro"

    assert track["properties"] == {"sku": "B-1", "price": 89.5}
    assert (
        named_page["properties"]["category"] == "shoes" and named_page["properties"]["title"] == "Boots - Example Shop"
    )
    assert first["properties"]["url"] == site.shop() and first["properties"]["path"] == "/shop/boots"
    for event in landed:
        assert event["context"]["library"]["name"] == "nudgeflow.js"
        assert "Chrome" in event["context"]["userAgent"]
        assert event["context"]["page"]["url"] == site.shop()
        assert event["sentAt"] and event["receivedAt"] and event["timestamp"]
    assert len({e["messageId"] for e in landed}) == 4


def test_events_queued_while_offline_are_sent_by_the_next_page_load(page: Any, site: Site) -> None:
    page.goto(site.shop())
    page.route("**/v1/batch", lambda route: route.abort("internetdisconnected"))
    assert (
        page.evaluate("""async () => {
        nudgeflow.track("Offline 1");
        nudgeflow.track("Offline 2");
        return await nudgeflow.flush();
    }""")
        is False
    )
    assert page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('nudgeflow:queue:')).length") == 1
    page.unroute("**/v1/batch")
    page.reload()  # the new page finds the queue and sends it
    page.wait_for_function(QUEUE_EMPTY)
    assert [e["event"] for e in stored(site) if e["type"] == "track"] == ["Offline 1", "Offline 2"]


def test_a_failed_send_is_retried_and_an_answer_lost_on_the_way_stores_nothing_twice(page: Any, site: Site) -> None:
    page.goto(site.shop(fi=20, rb=50))
    answers: list[str] = []

    def flaky(route: Any) -> None:
        if not answers:
            answers.append("503")
            route.fulfill(status=503, headers={"Retry-After": "0"}, json={"success": False})
        elif len(answers) == 1:
            answers.append("stored, answer lost")
            route.fetch()  # the server stores the batch...
            route.abort("connectionreset")  # ...and the browser never hears back
        else:
            answers.append("ok")
            route.continue_()

    page.route("**/v1/batch", flaky)
    page.evaluate("nudgeflow.track('Checkout Started', { step: 1 })")
    page.wait_for_function(QUEUE_EMPTY)
    assert answers == ["503", "stored, answer lost", "ok"]
    assert [e["event"] for e in stored(site) if e["type"] == "track"] == ["Checkout Started"]


# -- push -------------------------------------------------------------------------------------------


def subscribe_by_click(page: Any) -> str:
    page.click("#notify")
    page.wait_for_function("document.getElementById('result').textContent !== ''")
    return str(page.text_content("#result"))


def test_the_service_worker_registers_and_the_subscription_lands_on_the_profile(
    page: Any, site: Site, vapid: Vapid
) -> None:
    page.goto(site.shop())
    anonymous_id = page.evaluate("nudgeflow.user().anonymousId")
    assert subscribe_by_click(page) == "subscribed"

    worker = page.evaluate("""async () => {
        const registration = await navigator.serviceWorker.ready;
        return { scope: registration.scope, script: registration.active.scriptURL, state: registration.active.state };
    }""")
    assert worker == {"scope": site.url + "/", "script": site.url + "/sdk/sw.js", "state": "activated"}
    [call] = page.evaluate("window.__push.subscribeCalls")
    assert call == {"userVisibleOnly": True, "key": vapid.public_key, "workerState": "activated"}

    endpoint = page.evaluate("window.subscribing.then((s) => s.endpoint)")
    assert endpoints_of(site, anonymous_id) == [endpoint]
    [subscribed] = stored(site, "Push Subscribed")
    assert subscribed["anonymousId"] == anonymous_id and subscribed["context"]["library"]["name"] == "nudgeflow.js"

    # Logging in: the subscription belongs to the known person from now on.
    page.evaluate("async () => { nudgeflow.identify('ada'); await nudgeflow.flush(); await nudgeflow.push.sync(); }")
    assert endpoints_of(site, "ada") == [endpoint]
    assert profile_of(site, anonymous_id) == profile_of(site, "ada")

    # A new page load with nothing changed registers nothing again.
    page.reload()
    page.evaluate("nudgeflow.push.sync()")
    assert page.evaluate("window.__push.subscribeCalls.length") == 0
    assert len(stored(site, "Push Subscribed")) == 2  # anonymous, then as ada


def test_a_rotated_vapid_key_makes_the_next_page_subscribe_again(page: Any, site: Site, vapid: Vapid) -> None:
    page.goto(site.shop())
    assert subscribe_by_click(page) == "subscribed"
    anonymous_id = page.evaluate("nudgeflow.user().anonymousId")
    old = endpoints_of(site, anonymous_id)
    new_key = vapid.rotate()
    page.reload()
    page.evaluate("nudgeflow.push.sync()")
    [call] = page.evaluate("window.__push.subscribeCalls")
    assert call["key"] == new_key
    assert page.evaluate("window.__push.unsubscribed") == old  # the browser dropped the old one
    current = endpoints_of(site, anonymous_id)
    assert len(current) == 1 and current != old  # and the server forgot it


def test_unsubscribe_removes_the_subscription_here_and_on_the_server(page: Any, site: Site) -> None:
    page.goto(site.shop())
    assert subscribe_by_click(page) == "subscribed"
    anonymous_id = page.evaluate("nudgeflow.user().anonymousId")
    assert len(endpoints_of(site, anonymous_id)) == 1
    page.evaluate("nudgeflow.push.unsubscribe()")
    assert endpoints_of(site, anonymous_id) == []
    assert page.evaluate("nudgeflow.push.subscription()") is None
    assert len(stored(site, "Push Unsubscribed")) == 1


def test_without_permission_subscribe_fails_with_a_code_and_registers_nothing(browser: Any, site: Site) -> None:
    ctx = browser.new_context()  # notifications not granted: headless Chromium denies the prompt
    ctx.add_init_script(FAKE_PUSH_SERVICE)
    try:
        page = ctx.new_page()
        page.goto(site.shop())
        assert subscribe_by_click(page) in ("error permission_denied", "error permission_default")
        assert page.evaluate("window.__push.subscribeCalls") == []
    finally:
        ctx.close()
    assert stored(site, "Push Subscribed") == []


def test_a_push_is_shown_by_the_service_worker_and_reported_delivered_across_origins(
    page: Any, context: Any, site: Site
) -> None:
    page.goto(site.shop())
    assert subscribe_by_click(page) == "subscribed"
    page.evaluate("async () => { nudgeflow.identify('ada'); await nudgeflow.flush(); }")
    pid = profile_of(site, "ada")
    assert pid is not None
    with site.state.engine.begin() as conn:
        secret = consent.tracking_secret(conn, site.ws.workspace_id, to_ms(site.state.clock.now()))
    # The report URL on another origin than the page (localhost vs 127.0.0.1), as when
    # Nudgeflow's public URL is not the shop's: the worker's fetch goes through CORS.
    other_origin = site.url.replace("127.0.0.1", "localhost")
    report_url = links.push_report_url(other_origin, secret, site.ws.workspace_id, "run-1:nudge:1", pid)
    notification = {
        "title": "Your boots are waiting",
        "body": "Size 42, Ada",
        "key": "run-1:nudge:1",
        "icon": site.url + "/icon.png",
        "url": site.url + "/shop/boots?from=push",
        "actions": [{"action": "buy", "title": "Buy now", "url": site.url + "/checkout"}],
        "data": {"sku": "B-1"},
        "report_url": report_url,
    }

    # What the worker hands to showNotification, once Chromium has accepted it. (Read from
    # the worker rather than from getNotifications(): headless Chromium's notification
    # center closes notifications by itself, after ~25 s, and under load sooner.)
    worker = eventually(
        page,
        lambda: next((w for w in context.service_workers if w.url == site.url + "/sdk/sw.js"), None),
        "the service worker",
    )
    worker.evaluate("""() => {
        const registration = self.registration;
        const show = registration.showNotification.bind(registration);
        self.__shown = [];
        registration.showNotification = (title, options) => show(title, options).then(() => {
            self.__shown.push({ title, body: options.body, tag: options.tag, icon: options.icon,
                                actions: options.actions, data: options.data });
        });
    }""")
    cdp = context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    registration = eventually(
        page,
        lambda: next((r for r in registrations if r["scopeURL"] == site.url + "/" and not r["isDeleted"]), None),
        "the service worker's registration",
    )
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": site.url, "registrationId": registration["registrationId"], "data": json.dumps(notification)},
    )

    shown = eventually(page, lambda: worker.evaluate("self.__shown"), "the notification")
    assert shown == [
        {
            "title": "Your boots are waiting",
            "body": "Size 42, Ada",
            "tag": "run-1:nudge:1",
            "icon": site.url + "/icon.png",
            "actions": [{"action": "buy", "title": "Buy now"}],
            "data": {
                "key": "run-1:nudge:1",
                "url": site.url + "/shop/boots?from=push",
                "report_url": report_url,
                "actionUrls": {"buy": site.url + "/checkout"},
                "data": {"sku": "B-1"},
            },
        }
    ]
    [delivered] = eventually(page, lambda: stored(site, "Push Delivered"), "the Push Delivered event")
    assert delivered["userId"] == "ada" and delivered["_profile"] == pid
    assert delivered["properties"]["message_key"] == "run-1:nudge:1"
