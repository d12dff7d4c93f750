"""A machine's open or click (`machine: true` / `bot: true`, model/engagement_signals.py) is not
the person's engagement: "opened"/"clicked" message conditions, `engaged` segments and
inactivity triggers pass over it. Event triggers, waits, `performed` and goals see the
event as stored, and a `where` on the flag leaves it out (docs/consent.md)."""

from __future__ import annotations

from typing import Any

from nudgeflow.core.catalog import Catalog
from nudgeflow.core.effects import SegmentChanged
from nudgeflow.core.segment_index import SegmentVersion
from nudgeflow.model import event_names
from nudgeflow.model.segments import Segment
from tests.core.engine_driver import T0, D, Driver, H, iso, journey

OPENED, CLICKED = event_names.EMAIL_OPENED, event_names.EMAIL_LINK_CLICKED
MPP = {"machine": True, "machine_reason": "apple_mpp"}
SCANNER = {"bot": True, "bot_reason": "fast_click"}


def moves(d: Driver) -> list[tuple[str, str, int]]:
    return [
        (e.segment_id, "entered" if e.entered else "exited", e.at_ms) for _, e in d.log if isinstance(e, SegmentChanged)
    ]


def send(template: str, next: str | None = None) -> dict[str, Any]:
    return {"type": "send", "channel": "email", "template": template, "next": next}


def engagement_branch():
    return journey(
        "onboard",
        {"type": "event", "event": "Signed Up"},
        {
            "first": send("welcome", "w"),
            "w": {"type": "wait", "duration": "2d", "next": "b"},
            "b": {
                "type": "branch",
                "cases": [
                    {"when": [{"message": "first", "status": "clicked"}], "next": "clicked"},
                    {"when": [{"message": "first", "status": "opened"}], "next": "opened"},
                ],
                "default": "unopened",
            },
            "clicked": send("thanks"),
            "opened": send("tips"),
            "unopened": send("resend"),
        },
    )


def test_an_mpp_open_and_a_scanners_click_do_not_make_the_message_opened() -> None:
    d = Driver(engagement_branch(), roundtrip=True)
    d.track("Signed Up")
    key = d.sends()[0].key
    d.track(event_names.MESSAGE_DELIVERED, {"message_key": key})
    d.track(OPENED, {"message_key": key, **MPP})
    d.track(CLICKED, {"message_key": key, "url": "https://shop.example/", **SCANNER})
    assert d.state.runs[d.run_id(1)].messages["first"]["statuses"] == ["sent", "delivered"]
    d.advance("2d")
    assert d.sent() == [("first", iso(T0)), ("unopened", iso(T0 + 2 * D))]


def test_the_persons_open_after_a_machine_open_counts() -> None:
    d = Driver(engagement_branch())
    d.track("Signed Up")
    key = d.sends()[0].key
    d.track(OPENED, {"message_key": key, **MPP})
    d.advance("5h")
    d.track(OPENED, {"message_key": key})  # the person, in a client that loads images
    d.track(CLICKED, {"message_key": key, **SCANNER})
    d.advance("2d")
    assert d.sent()[-1] == ("opened", iso(T0 + 2 * D))
    # A flag that is not `true` is no flag: the event counts as it always did.
    d2 = Driver(engagement_branch())
    d2.track("Signed Up")
    d2.track(CLICKED, {"message_key": d2.sends()[0].key, "bot": "maybe"})
    d2.advance("2d")
    assert d2.sent()[-1] == ("clicked", iso(T0 + 2 * D))


def test_engaged_segments_pass_over_machine_opens_and_lapse_from_the_persons_last() -> None:
    openers = Segment.model_validate(
        {"id": "openers", "name": "openers", "when": {"engaged": "opened", "channel": "email", "within": "7d"}}
    )
    welcome = Segment.model_validate(
        {"id": "welcome", "name": "welcome", "when": {"engaged": "opened", "journey": "onboard", "within": "7d"}}
    )
    d = Driver(cat=Catalog([], segments=[SegmentVersion("openers", 1, openers), SegmentVersion("welcome", 1, welcome)]))
    d.roundtrip = True  # the flags kept in the history survive the state's JSON
    d.track(OPENED, {"message_key": "r:first:1", "journey_id": "onboard", **MPP})
    d.track(CLICKED, {"message_key": "r:first:1", "journey_id": "onboard", **SCANNER})
    assert moves(d) == []
    d.advance("1d")
    d.track(OPENED, {"message_key": "r:first:1", "journey_id": "onboard"})
    assert moves(d) == [("openers", "entered", T0 + D), ("welcome", "entered", T0 + D)]
    for day in range(2, 12):  # Apple's proxy fetches every new message: none of it is the person
        d.advance_to(T0 + day * D)
        d.track(OPENED, {"message_key": f"r{day}:first:1", "journey_id": "onboard", **MPP})
    d.advance_to(T0 + 20 * D)
    assert moves(d) == [
        ("openers", "entered", T0 + D),
        ("welcome", "entered", T0 + D),
        ("openers", "exited", T0 + 8 * D),
        ("welcome", "exited", T0 + 8 * D),
    ]


def test_machine_opens_are_not_activity_for_an_inactivity_trigger() -> None:
    winback = journey(
        "winback",
        {"type": "inactivity", "events": ["Session Started", OPENED], "window": "7d"},
        {"miss": send("we_miss_you")},
    )
    d = Driver(winback)
    d.track("Session Started")
    for day in range(1, 10):
        d.advance_to(T0 + day * D)
        d.track(OPENED, {"message_key": f"r{day}:m:1", **MPP})
    assert d.sent() == [("miss", iso(T0 + 7 * D))]
    # The person's own open is activity, as before.
    d2 = Driver(winback)
    d2.track("Session Started")
    d2.advance("3d")
    d2.track(OPENED, {"message_key": "r:m:1"})
    d2.advance("20d")
    assert d2.sent() == [("miss", iso(T0 + 10 * D))]


def test_event_triggers_see_flagged_events_and_a_where_on_the_flag_leaves_them_out() -> None:
    every = journey("every", {"type": "event", "event": OPENED}, {"s": send("a")}, entry={"reentry": "always"})
    persons = journey(
        "persons",
        {"type": "event", "event": OPENED, "where": [{"property": "machine", "op": "ne", "value": True}]},
        {"s": send("b")},
        entry={"reentry": "always"},
    )
    d = Driver(every, persons)
    d.track(OPENED, {"message_key": "r:m:1", **MPP})
    d.advance("1h")
    d.track(OPENED, {"message_key": "r:m:1"})
    assert sorted((s.journey_id, s.at_ms) for s in d.sends()) == [("every", T0), ("every", T0 + H), ("persons", T0 + H)]
