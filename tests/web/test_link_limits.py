"""The public links' rate limits (web/link_limits.py) over HTTP on a live server: a person's
opens, clicks and push reports, a person's consent pages, and tokens of workspaces not yet
known per client address; 429 with Retry-After beyond, and a one-click unsubscribe that no
flood of opens or clicks can keep from working."""

from __future__ import annotations

from nudgeflow.content import links
from nudgeflow.web.link_limits import CONSENT_BURST, CONSENT_RATE, ENGAGEMENT_BURST, LOOKUP_BURST
from tests.web.push_report_ctx import PushReportCtx
from tests.web.tracking_ctx import TrackingCtx

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_persons_opens_and_clicks_past_the_burst_are_429_until_the_bucket_refills(tracking: TrackingCtx) -> None:
    open_url = tracking.url("open")
    click_url = tracking.url("click", destination="https://shop.example/x")
    with tracking.public() as client:
        for i in range(ENGAGEMENT_BURST):
            answer = client.get(open_url if i % 2 else click_url)
            assert answer.status_code in (200, 302), (i, answer.text)
        for url in (open_url, click_url):
            refused = client.get(url)
            assert refused.status_code == 429, refused.text
            assert refused.headers["retry-after"] == "1" and "location" not in refused.headers
        # Another person's links are not theirs to use up.
        other = tracking.path(links.open_pixel_url(tracking.live.url, tracking.secret, tracking.wid, "m", "p-other"))
        assert client.get(other).status_code == 200
        tracking.live.state.clock.advance(1)
        assert client.get(open_url).status_code == 200


def test_a_flood_of_opens_and_clicks_never_stops_a_one_click_unsubscribe(tracking: TrackingCtx) -> None:
    with tracking.public() as client:
        for _ in range(ENGAGEMENT_BURST + 5):
            client.get(tracking.url("open"))
        assert client.get(tracking.url("open")).status_code == 429
        answer = client.post(tracking.url("unsub"), content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code == 200, answer.text
    assert tracking.subscriptions()["subscribed"] is False


def test_a_persons_consent_pages_past_their_burst_are_a_429_page(tracking: TrackingCtx) -> None:
    with tracking.public() as client:
        for _ in range(CONSENT_BURST):
            assert client.get(tracking.url("prefs")).status_code == 200
        refused = client.post(tracking.url("unsub"), content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(round(1 / CONSENT_RATE))
        assert "Too many requests" in refused.text and refused.headers["content-type"].startswith("text/html")
        assert tracking.subscriptions()["subscribed"] is True  # refused: nothing was done
        tracking.live.state.clock.advance(1 / CONSENT_RATE)
        answer = client.post(tracking.url("unsub"), content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code == 200, answer.text
    assert tracking.subscriptions()["subscribed"] is False


def test_push_reports_past_the_burst_are_a_429_the_service_worker_can_read(push_report: PushReportCtx) -> None:
    for _ in range(ENGAGEMENT_BURST):
        assert push_report.report({"event": "delivered"}).status_code == 200
    refused = push_report.report({"event": "clicked", "action": None})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1" and refused.headers["access-control-allow-origin"] == "*"
    assert refused.json()["success"] is False and "too many requests" in refused.json()["message"]
    assert push_report.events("Push Clicked") == []


def test_made_up_tokens_of_unknown_workspaces_are_limited_per_client_address(tracking: TrackingCtx) -> None:
    known = tracking.url("open")
    with tracking.public() as client:
        assert client.get(known).status_code == 200  # the workspace's secret is read (one lookup), and kept
        for i in range(LOOKUP_BURST - 1):
            made_up = links.sign("guess", links.LinkToken(links.OPEN, f"ws_nope{i}", "k", "p"))
            assert client.get(f"/t/o/{made_up}.gif").status_code == 200  # a pixel, recording nothing
        made_up = links.sign("guess", links.LinkToken(links.UNSUBSCRIBE, "ws_nope", "k", "p"))
        refused = client.post(f"/u/{made_up}", content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        # A link of a workspace already known reads nothing: the limit does not touch it.
        assert client.get(known).status_code == 200
        answer = client.post(tracking.url("unsub"), content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code == 200
