"""The People pages over HTTP (a live server, a signed-in console session): search, a person's
page with its timeline, reasons, timers and the "why" answer, another workspace's person a
404, and erase kept to admins by the admin API itself."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import httpx
import pytest

from tests.console.people_support import add_plain_person, seed_console_person
from tests.console.support import ConsoleApp
from tests.store.person_seed import Seeded


@pytest.fixture(scope="module")
def ada(console_app: ConsoleApp) -> Seeded:
    return seed_console_person(console_app)


def text_of(response: httpx.Response) -> str:
    """The page's text without tags, entities decoded, spaces folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


def test_search_finds_by_user_id_prefix_email_and_anonymous_id(
    ada: Seeded, signed_in: Callable[[str], httpx.Client]
) -> None:
    viewer = signed_in("viewer")
    for q, matched in (
        ("ada-1", "userId ada-1"),
        ("ada-", "userId ada-1"),
        ("ADA@example.COM", "email ada@example.com"),
        ("anon-a", "anonymousId anon-ada"),
    ):
        page = viewer.get("/people", params={"q": q})
        assert page.status_code == 200, page.text
        assert f'href="/people/{ada.pid}"' in page.text, q
        assert matched in text_of(page), q
    none = viewer.get("/people", params={"q": "nobody-like-this"})
    assert "No one in this workspace matches nobody-like-this" in text_of(none)
    assert viewer.get("/people", params={"q": "a\x00b"}).status_code == 422


def test_the_person_page_shows_the_timeline_with_reasons_timers_and_identities(
    ada: Seeded, signed_in: Callable[[str], httpx.Client]
) -> None:
    page = signed_in("viewer").get(f"/people/{ada.pid}")
    assert page.status_code == 200, page.text
    text = text_of(page)
    assert "anon-ada" in text and ada.merged in text  # identities and merges
    assert "Message welcome-letter (email) suppressed" in text and "why: unsubscribed:*" in text
    assert "Message cart-nudge (email) dropped" in text and "why: frequency_cap:daily" in text
    assert "why: quiet_hours" in text and "decided again at" in text
    assert "Exited journey cart reason converted" in text and "Assigned arm b (split)" in text
    assert "the deferred message of step hello (template hello) is decided again" in text  # a timer
    # The same person by userId and by anonymousId; the newest item first.
    for ref in ("ada-1", "anon-ada", ada.merged):
        again = signed_in("viewer").get(f"/people/{ref}")
        assert again.status_code == 200 and f">{ada.pid}</code>" in again.text
    order = [text.index(s) for s in ("Exited journey cart", "welcome-letter", "Product Viewed")]
    assert order == sorted(order)


def test_the_timeline_pages_with_its_cursor_and_refuses_a_forged_one(
    console_app: ConsoleApp, ada: Seeded, signed_in: Callable[[str], httpx.Client]
) -> None:
    viewer = signed_in("viewer")
    first = viewer.get(f"/people/{ada.pid}")
    assert 'data-testid="timeline-older"' not in first.text  # 14 items: one page
    bad = viewer.get(f"/people/{ada.pid}", params={"before": "[1,2"})
    assert bad.status_code == 400 and "not a timeline cursor" in text_of(bad)


def test_why_did_or_didn_t_they_get_it(ada: Seeded, signed_in: Callable[[str], httpx.Client]) -> None:
    viewer = signed_in("viewer")
    nudge = text_of(viewer.get(f"/people/{ada.pid}", params={"journey": "cart", "template": "cart-nudge"}))
    assert "No: 1 message(s) of template 'cart-nudge' were decided but none went out" in nudge
    assert "the frequency cap rule 'daily' was reached (frequency_cap:daily)" in nudge
    assert "exited at 2027-01-15T08:09:00Z at step 'remind', reason 'converted'" in nudge
    reminder = text_of(viewer.get(f"/people/{ada.pid}", params={"journey": "cart", "template": "cart-reminder"}))
    assert "Yes: 1 message(s) of template 'cart-reminder' from journey 'cart' went out." in reminder
    assert '<option value="cart" selected>' in viewer.get(f"/people/{ada.pid}", params={"journey": "cart"}).text
    unknown = text_of(viewer.get(f"/people/{ada.pid}", params={"journey": "nope"}))
    assert "There is no journey 'nope' in this workspace." in unknown


def test_a_person_of_another_workspace_is_no_one(
    console_app: ConsoleApp, ada: Seeded, signed_in: Callable[[str], httpx.Client]
) -> None:
    other = console_app.server.workspace("people-other").workspace_id
    theirs = seed_console_person(console_app, other)
    viewer = signed_in("viewer")
    for ref in (theirs.pid, theirs.merged):
        page = viewer.get(f"/people/{ref}")
        assert page.status_code == 404 and "No person in this workspace" in text_of(page)
    # ada-1 is a userId in both: each workspace finds its own.
    assert f">{ada.pid}</code>" in viewer.get("/people/ada-1").text
    assert theirs.pid not in viewer.get("/people", params={"q": "ada"}).text


def test_erase_is_an_admin_s_and_export_a_viewer_s(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    other = console_app.server.workspace("people-erase").workspace_id
    victim = seed_console_person(console_app, other)
    viewer, editor, admin = signed_in("viewer"), signed_in("editor"), signed_in("admin")
    # The console's session acts in its own workspace only: another's person is a 404 to every role.
    assert admin.delete(f"/api/profiles/{victim.pid}").status_code == 404
    mine = add_plain_person(console_app, "erase-me")
    exported = viewer.get(f"/api/profiles/{mine}/export")
    assert exported.status_code == 200 and exported.json()["id"] == mine
    assert viewer.delete(f"/api/profiles/{mine}").status_code == 403
    assert editor.delete(f"/api/profiles/{mine}").status_code == 403
    page = editor.get(f"/people/{mine}")
    assert 'data-testid="erase-person"' not in page.text and "Erasing a person takes the admin role" in page.text
    assert 'data-testid="erase-person"' in admin.get(f"/people/{mine}").text
    erased = admin.delete(f"/api/profiles/{mine}")
    assert erased.status_code == 200 and erased.json()["erased"] == mine
    assert viewer.get(f"/people/{mine}").status_code == 404


def test_the_person_page_shows_push_targets_masked_and_segments(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    """A browser subscription and an APNs device, shown by provider and device but only by
    their ends (an endpoint is the capability to push to the browser), and a membership."""
    from sqlalchemy import insert

    from nudgeflow.model.segments import Segment
    from nudgeflow.store import segments
    from nudgeflow.store.schema import device_tokens, push_subscriptions
    from tests.store.person_seed import T0

    pid = add_plain_person(console_app, "pushy")
    ws = console_app.workspace_id
    endpoint = "https://push.example.net/wpush/v2/secret-capability-0123456789abcdefWXYZ"
    token = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0dead"
    with console_app.state.engine.begin() as conn:
        conn.execute(
            insert(push_subscriptions).values(
                workspace_id=ws,
                endpoint_hash="0" * 64,
                profile_id=pid,
                endpoint=endpoint,
                p256dh="k",
                auth="a",
                user_agent="Firefox",
                created_at_ms=T0,
                updated_at_ms=T0,
            )
        )
        conn.execute(
            insert(device_tokens).values(
                workspace_id=ws,
                token=token,
                profile_id=pid,
                provider="apns",
                platform="ios",
                app_id="com.example.shop",
                created_at_ms=T0,
                updated_at_ms=T0,
            )
        )
        # A membership is of a segment the workspace has (a person's are found segment by segment).
        segments.apply(
            conn, ws, Segment.model_validate({"id": "push-people", "name": "Push", "when": {"reachable": "push"}}), T0
        )
        segments.write_changes(conn, {(ws, "push-people", pid): (True, T0)})
    page = signed_in("viewer").get(f"/people/{pid}")
    assert page.status_code == 200, page.text
    assert endpoint not in page.text and token not in page.text
    text = text_of(page)
    assert "webpush https://push.example.net/…WXYZ Firefox" in text
    assert "apns a1b2…dead ios com.example.shop" in text
    assert 'href="/segments/push-people"' in page.text
