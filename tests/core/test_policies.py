"""Send policies in the pure core (issue 14 items 6-10): caps, fewer, quiet hours, collisions,
deferral and release, on a virtual clock."""

from __future__ import annotations

import random
from typing import Any

import pytest

from nudgeflow.core.catalog import PAUSED, Catalog, JourneyVersion
from nudgeflow.core.effects import MessageWithheld, SendMessage
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.policies import MAX_LEDGER, plan_for
from nudgeflow.core.segment_index import SegmentVersion
from nudgeflow.core.state import ProfileState
from nudgeflow.core.turn import unit_hash
from nudgeflow.model.journeys import EventMatch, Exit, Journey
from nudgeflow.model.policies import EMPTY, Policies
from nudgeflow.model.segments import Segment
from tests.core.engine_driver import T0, D, Driver, H, M, journey, ms

EMAIL_DAILY = {"id": "email-daily", "channel": "email", "limit": 2, "window": "24h"}


def rules(**document: Any) -> Policies:
    return Policies.model_validate(document)


def cat(*journeys: Journey, statuses: dict[str, str] | None = None, **document: Any) -> Catalog:
    return Catalog([JourneyVersion(j.id, 1, j) for j in journeys], statuses=statuses, policies=rules(**document))


def pinger(id: str, event: str = "Ping", *, priority: int = 0, channel: str = "email", **send: Any) -> Journey:
    """A journey that sends one message on every `event`."""
    step = {"type": "send", "channel": channel, "template": f"{id}-t", **send}
    return journey(
        id, {"type": "event", "event": event}, {"hello": step}, entry={"reentry": "always"}, priority=priority
    )


def outcomes(d: Driver, since: int = 0) -> list[tuple[Any, ...]]:
    """Each message decision: ("send", journey, at) or (status, journey, reason, until)."""
    out: list[tuple[Any, ...]] = []
    for _, e in d.log[since:]:
        if isinstance(e, SendMessage):
            out.append(("send", e.journey_id, e.at_ms))
        elif isinstance(e, MessageWithheld):
            out.append((e.status, e.journey_id, e.reason, e.until_ms))
    return out


def ping(d: Driver, at: int, name: str = "Ping") -> None:
    d.advance_to(at)
    d.track(name)


# --- the plan ----------------------------------------------------------------------------------


def test_no_rules_no_plan_and_sends_go_out_at_once() -> None:
    assert plan_for(EMPTY) is None
    assert plan_for(rules(max_deferral="1d", timezone="Europe/Paris")) is None
    d = Driver(cat=Catalog([JourneyVersion("a", 1, pinger("a"))]))
    d.track("Ping")
    assert outcomes(d) == [("send", "a", T0)]
    assert d.state.sends == [] and b"sends" not in d.state.to_json()
    assert d.state.runs[d.run_id(1)].messages["hello"] == {"key": f"{d.run_id(1)}:hello:1", "statuses": ["sent"]}


# --- frequency caps ------------------------------------------------------------------------------


def test_rolling_cap_drops_the_third_email_in_24_hours() -> None:
    d = Driver(cat=cat(pinger("a"), pinger("b", "Pong"), frequency_caps=[EMAIL_DAILY]), roundtrip=True)
    ping(d, T0)
    ping(d, T0 + 1 * H, "Pong")  # caps count across journeys
    ping(d, T0 + 2 * H)
    assert d.state.runs[d.run_id(3)].messages["hello"] == {
        "key": f"{d.run_id(3)}:hello:1",
        "statuses": ["capped", "dropped"],
        "reason": "frequency_cap:email-daily",
    }
    ping(d, T0 + 23 * H)  # (T0-1h, T0+23h] holds two
    ping(d, T0 + 24 * H)  # (T0, T0+24h] holds one: the window excludes its start
    assert outcomes(d) == [
        ("send", "a", T0),
        ("send", "b", T0 + H),
        ("dropped", "a", "frequency_cap:email-daily", None),
        ("dropped", "a", "frequency_cap:email-daily", None),
        ("send", "a", T0 + 24 * H),
    ]


def test_rolling_cap_defers_to_when_the_oldest_counted_message_leaves_the_window() -> None:
    d = Driver(cat=cat(pinger("a", on_cap="defer"), frequency_caps=[EMAIL_DAILY]), roundtrip=True)
    ping(d, T0)
    ping(d, T0 + 1 * H)
    ping(d, T0 + 2 * H)
    third = d.run_id(3)
    key = f"{third}:hello:1"
    assert outcomes(d)[2] == ("deferred", "a", "frequency_cap:email-daily", T0 + 24 * H)
    assert d.timers[f"release:{key}"][0] == T0 + 24 * H
    mark = d.mark()
    d.advance_to(T0 + 30 * H)
    (sent,) = [e for _, e in d.log[mark:] if isinstance(e, SendMessage)]
    assert (sent.key, sent.at_ms) == (key, T0 + 24 * H)  # the same key: the outbox row is updated
    assert d.state.runs[third].messages["hello"]["statuses"] == ["capped", "deferred", "sent"]
    assert [e[0] for e in d.state.sends] == [T0 + H, T0 + 24 * H]  # T0 is out of every window now


def test_several_caps_apply_at_once_and_the_latest_time_wins() -> None:
    caps = [
        {"id": "day", "channel": "email", "limit": 2, "window": "1d"},
        {"id": "week", "channel": "email", "limit": 3, "window": "7d"},
        {"id": "push-4h", "channel": "push", "limit": 1, "window": "4h"},
    ]
    d = Driver(cat=cat(pinger("a", on_cap="defer"), pinger("p", "Tap", channel="push"), frequency_caps=caps))
    ping(d, T0)
    ping(d, T0 + 1 * H)
    ping(d, T0 + 1 * D + 1 * H)
    ping(d, T0 + 1 * D + 2 * H)  # the day allows it at T0+2d+1h, the week only at T0+7d
    ping(d, T0 + 1 * D + 3 * H, "Tap")
    ping(d, T0 + 1 * D + 4 * H, "Tap")
    assert outcomes(d) == [
        ("send", "a", T0),
        ("send", "a", T0 + H),
        ("send", "a", T0 + D + H),
        ("deferred", "a", "frequency_cap:week", T0 + 7 * D),
        ("send", "p", T0 + D + 3 * H),
        ("dropped", "p", "frequency_cap:push-4h", None),
    ]


def test_a_cap_of_zero_stops_the_channel_even_when_the_step_defers() -> None:
    d = Driver(
        cat=cat(
            pinger("a", on_cap="defer"), frequency_caps=[{"id": "off", "channel": "email", "limit": 0, "window": "1d"}]
        )
    )
    d.track("Ping")
    assert outcomes(d) == [("dropped", "a", "frequency_cap:off", None)]


def test_max_deferral_drops_keeping_the_cap_as_the_reason() -> None:
    d = Driver(cat=cat(pinger("a", on_cap="defer", max_deferral="6h"), frequency_caps=[EMAIL_DAILY]))
    ping(d, T0)
    ping(d, T0 + 1 * H)
    ping(d, T0 + 2 * H)  # would wait until T0+24h: more than 6 h
    assert outcomes(d)[2] == ("dropped", "a", "frequency_cap:email-daily", None)
    d2 = Driver(cat=cat(pinger("a", on_cap="defer"), frequency_caps=[EMAIL_DAILY], max_deferral="12h"))
    ping(d2, T0)
    ping(d2, T0 + 1 * H)
    ping(d2, T0 + 2 * H)
    assert outcomes(d2)[2] == ("dropped", "a", "frequency_cap:email-daily", None)


def test_a_late_event_does_not_slip_a_message_in_before_those_already_sent() -> None:
    d = Driver(cat=cat(pinger("a"), frequency_caps=[{"id": "one", "channel": "email", "limit": 1, "window": "24h"}]))
    ping(d, T0)
    d.advance_to(T0 + 1 * H)
    d.track("Ping", ts=T0 - 2 * H)  # from an offline queue: it happened before the first one
    assert outcomes(d) == [("send", "a", T0), ("dropped", "a", "frequency_cap:one", None)]


def test_topic_and_category_narrow_a_rule() -> None:
    offers = {"id": "offers", "channel": "email", "limit": 1, "window": "1d", "topic": "offers"}
    receipts = {"id": "receipts", "channel": "email", "limit": 1, "window": "1d", "category": "transactional"}
    d = Driver(
        cat=cat(
            pinger("offer", "Offer", topic="offers"),
            pinger("news", "News", topic="news"),
            pinger("receipt", "Order", marketing=False),
            frequency_caps=[offers, receipts],
        )
    )
    for name in ("Offer", "Offer", "News", "News", "Order", "Order"):
        d.track(name)
    assert [o[:3] for o in outcomes(d)] == [
        ("send", "offer", T0),
        ("dropped", "offer", "frequency_cap:offers"),
        ("send", "news", T0),
        ("send", "news", T0),
        ("send", "receipt", T0),
        ("dropped", "receipt", "frequency_cap:receipts"),
    ]


def test_transactional_messages_pass_rules_that_do_not_name_them_and_do_not_use_them_up() -> None:
    one = {"id": "one", "channel": "email", "limit": 1, "window": "1d"}
    d = Driver(cat=cat(pinger("a"), pinger("receipt", "Order", marketing=False), frequency_caps=[one]))
    d.track("Order")
    d.track("Order")
    d.track("Ping")
    d.track("Order")
    d.track("Ping")
    assert [o[:3] for o in outcomes(d)] == [
        ("send", "receipt", T0),
        ("send", "receipt", T0),
        ("send", "a", T0),
        ("send", "receipt", T0),
        ("dropped", "a", "frequency_cap:one"),
    ]


# --- calendar windows, time zones, DST -------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "second"),
    [
        # 03:30Z is 22:30 on 1 March in New York and 12:30 on 2 March in Tokyo; 06:30Z is the next
        # local day in New York (01:30), the same one in Tokyo (15:30): capped until Tokyo's midnight.
        ("America/New_York", ("send", "a", ms("2026-03-02T06:30:00Z"))),
        ("Asia/Tokyo", ("deferred", "a", "frequency_cap:daily", ms("2026-03-02T15:00:00Z"))),
    ],
)
def test_calendar_day_is_the_persons_local_day(zone: str, second: tuple[Any, ...]) -> None:
    daily = {"id": "daily", "channel": "email", "limit": 1, "calendar": "day"}
    d = Driver(cat=cat(pinger("a", on_cap="defer"), frequency_caps=[daily]), now=ms("2026-03-02T00:00:00Z"))
    d.identify({"timezone": zone})
    ping(d, ms("2026-03-02T03:30:00Z"))
    ping(d, ms("2026-03-02T06:30:00Z"))
    assert outcomes(d) == [("send", "a", ms("2026-03-02T03:30:00Z")), second]


def test_calendar_day_across_the_spring_forward_is_23_hours() -> None:
    # New York moves its clocks from 02:00 to 03:00 on Sunday 8 March 2026: that local day runs
    # from 05:00Z to 04:00Z the next day, so the next day starts at 04:00Z, not 05:00Z.
    daily = {"id": "daily", "channel": "email", "limit": 1, "calendar": "day"}
    d = Driver(cat=cat(pinger("a", on_cap="defer"), frequency_caps=[daily]), now=ms("2026-03-08T00:00:00Z"))
    d.identify({"timezone": "America/New_York"})
    ping(d, ms("2026-03-08T14:00:00Z"))  # 10:00 EDT
    ping(d, ms("2026-03-09T00:00:00Z"))  # 20:00 EDT, still 8 March
    assert outcomes(d)[1] == ("deferred", "a", "frequency_cap:daily", ms("2026-03-09T04:00:00Z"))
    d.advance_to(ms("2026-03-10T00:00:00Z"))
    assert outcomes(d)[2] == ("send", "a", ms("2026-03-09T04:00:00Z"))


def test_calendar_week_is_the_iso_week_in_the_workspace_zone_by_default() -> None:
    weekly = {"id": "weekly", "channel": "email", "limit": 1, "calendar": "week"}
    d = Driver(
        cat=cat(pinger("a", on_cap="defer"), frequency_caps=[weekly], timezone="Europe/Paris"),
        now=ms("2026-03-01T00:00:00Z"),
    )
    ping(d, ms("2026-03-01T22:30:00Z"))  # Sunday 23:30 in Paris: the week of 23 February
    ping(d, ms("2026-03-01T23:30:00Z"))  # Monday 00:30 in Paris: a new week
    ping(d, ms("2026-03-05T12:00:00Z"))  # Thursday: capped until Monday 9 March, 00:00 Paris
    assert outcomes(d) == [
        ("send", "a", ms("2026-03-01T22:30:00Z")),
        ("send", "a", ms("2026-03-01T23:30:00Z")),
        ("deferred", "a", "frequency_cap:weekly", ms("2026-03-08T23:00:00Z")),
    ]


# --- fewer emails ----------------------------------------------------------------------------------


def test_fewer_emails_adds_the_stricter_caps_for_the_people_who_chose_it() -> None:
    catalog = cat(
        pinger("a"),
        frequency_caps=[EMAIL_DAILY],
        fewer={"caps": [{"id": "fewer-weekly", "channel": "email", "limit": 1, "window": "7d"}]},
    )
    plain, fewer = Driver(cat=catalog, profile="bob"), Driver(cat=catalog, roundtrip=True)
    fewer.track("Subscription Preferences Updated", {"subscribed": True, "frequency": "fewer", "topics": {}})
    assert fewer.state.frequency == {"value": "fewer", "at": T0}
    for d in (plain, fewer):
        ping(d, T0 + 1 * H)
        ping(d, T0 + 2 * H)
    assert [o[0] for o in outcomes(plain)] == ["send", "send"]
    assert outcomes(fewer) == [("send", "a", T0 + H), ("dropped", "a", "frequency_cap:fewer-weekly", None)]
    # Back to "as they come": only the workspace's caps.
    fewer.track("Subscription Preferences Updated", {"frequency": "normal"})
    ping(fewer, T0 + 3 * H)
    assert outcomes(fewer)[-1] == ("send", "a", T0 + 3 * H)
    # A late event with an older choice does not undo a newer one.
    fewer.track("Subscription Preferences Updated", {"frequency": "fewer"}, ts=T0)
    assert fewer.state.frequency == {"value": "normal", "at": T0 + 2 * H}
    # A sender's event of the name (the public write key, any userId) is not the person's choice:
    # only the preference center's, which Nudgeflow records with an id of its own, is.
    fewer.track("Subscription Preferences Updated", {"frequency": "fewer"}, message_id="forged-1")
    assert fewer.state.frequency == {"value": "normal", "at": T0 + 2 * H}


# --- quiet hours -----------------------------------------------------------------------------------


def quiet_catalog(action: str = "defer", spread: str = "30m", **more: Any) -> Catalog:
    quiet = {"channel": "email", "start": "22:00", "end": "08:00", "action": action, "spread": spread}
    return cat(pinger("a"), pinger("receipt", "Order", marketing=False), quiet_hours=[quiet], **more)


def test_quiet_hours_defer_to_their_end_spread_by_person() -> None:
    night = ms("2026-03-02T22:00:00Z")  # 23:00 in Paris
    morning = ms("2026-03-03T07:00:00Z")  # 08:00 in Paris
    untils = {}
    for person in ("ada", "bob", "cy", "dee"):
        d = Driver(cat=quiet_catalog(), profile=person, now=night)
        d.identify({"timezone": "Europe/Paris"})
        d.track("Ping")
        d.track("Order")  # transactional: quiet hours for marketing leave it alone
        ((status, _, reason, until), receipt) = outcomes(d)
        assert (status, reason, receipt) == ("deferred", "quiet_hours", ("send", "receipt", night))
        assert until == morning + int(unit_hash("quiet", person, "2026-03-03") * 30 * M)
        untils[person] = until
        d.advance_to(morning + 1 * H)
        assert outcomes(d)[-1] == ("send", "a", until)
    assert len(set(untils.values())) == 4  # spread, not all at 08:00
    assert all(morning <= u < morning + 30 * M for u in untils.values())


def test_quiet_hours_before_midnight_and_after_end_on_the_same_morning() -> None:
    d = Driver(cat=quiet_catalog(spread="0m"), now=ms("2026-03-03T05:00:00Z"))  # UTC person: 05:00
    d.track("Ping")
    ping(d, ms("2026-03-03T08:00:00Z"))  # the end is not inside
    assert outcomes(d)[:2] == [
        ("deferred", "a", "quiet_hours", ms("2026-03-03T08:00:00Z")),
        ("send", "a", ms("2026-03-03T08:00:00Z")),
    ]


def test_quiet_hours_ending_in_the_repeated_fall_back_hour_end_at_its_second_occurrence() -> None:
    # New York falls back from 02:00 EDT to 01:00 EST on 1 November 2026 (06:00Z), so 01:00-01:59
    # happens twice. At 01:10 EST (06:10Z) the wall clock is inside 23:00-01:30 again; the quiet
    # hours end at 01:30 EST (06:30Z). Their first 01:30 (05:30Z) is already past: deferring to
    # it (or to t + 1 ms) would release the message into the quiet hours it is in, again and again.
    quiet = {"channel": "email", "start": "23:00", "end": "01:30"}
    d = Driver(cat=cat(pinger("a"), quiet_hours=[quiet]), now=ms("2026-11-01T06:10:00Z"))
    d.identify({"timezone": "America/New_York"})
    d.track("Ping")
    assert outcomes(d) == [("deferred", "a", "quiet_hours", ms("2026-11-01T06:30:00Z"))]
    d.advance_to(ms("2026-11-01T07:00:00Z"))
    assert outcomes(d)[1:] == [("send", "a", ms("2026-11-01T06:30:00Z"))]
    # In the first occurrence of that hour the quiet hours end at the first 01:30 (05:30Z).
    first = Driver(cat=cat(pinger("a"), quiet_hours=[quiet]), now=ms("2026-11-01T05:10:00Z"))
    first.identify({"timezone": "America/New_York"})
    first.track("Ping")
    assert outcomes(first) == [("deferred", "a", "quiet_hours", ms("2026-11-01T05:30:00Z"))]


@pytest.mark.parametrize(
    ("zone", "end", "wanted", "released"),
    [
        # New York jumps from 02:00 EST to 03:00 EDT on 8 March 2026 (07:00Z): 02:30 never shows.
        ("America/New_York", "02:30", "2026-03-08T04:00:00Z", "2026-03-08T07:00:00Z"),
        # London from 01:00 GMT to 02:00 BST on 29 March 2026 (01:00Z).
        ("Europe/London", "01:30", "2026-03-28T23:00:00Z", "2026-03-29T01:00:00Z"),
        # Lord Howe Island from 02:00 +10:30 to 02:30 +11 on 4 October 2026 (15:30Z on the 3rd).
        ("Australia/Lord_Howe", "02:15", "2026-10-03T12:00:00Z", "2026-10-03T15:30:00Z"),
    ],
)
def test_quiet_hours_ending_at_a_time_the_clocks_skip_end_when_the_clocks_jump(
    zone: str, end: str, wanted: str, released: str
) -> None:
    """The end is the first instant the clock reads the end or later (03:00 EDT for 02:30 in
    New York), not the end moved forward by the gap (03:30 EDT); a message wanted after the
    jump is outside the quiet hours."""
    quiet = {"channel": "email", "start": "22:00", "end": end}
    d = Driver(cat=cat(pinger("a"), quiet_hours=[quiet]), now=ms(wanted))
    d.identify({"timezone": zone})
    d.track("Ping")
    assert outcomes(d) == [("deferred", "a", "quiet_hours", ms(released))]
    d.advance_to(ms(released) + 1 * M)
    assert outcomes(d)[1:] == [("send", "a", ms(released))]
    ping(d, ms(released) + 10 * M)  # the clock reads past the end: not quiet
    assert outcomes(d)[2:] == [("send", "a", ms(released) + 10 * M)]


@pytest.mark.parametrize(
    ("zone", "start", "first_pass", "second_pass", "released"),
    [
        # New York goes back from 02:00 EDT to 01:00 EST on 1 November 2026 (06:00Z): quiet
        # hours from 01:30 begin at 01:30 EDT (05:30Z); at 01:10 EST (06:10Z) they still hold.
        ("America/New_York", "01:30", "2026-11-01T05:10:00Z", "2026-11-01T06:10:00Z", "2026-11-01T10:00:00Z"),
        # Lord Howe Island goes back 30 minutes, from 02:00 +11 to 01:30 +10:30, on 5 April 2026
        # (15:00Z on the 4th): from 01:45 (14:45Z), 01:35 +10:30 (15:05Z) is inside.
        ("Australia/Lord_Howe", "01:45", "2026-04-04T14:35:00Z", "2026-04-04T15:05:00Z", "2026-04-04T18:30:00Z"),
    ],
)
def test_quiet_hours_that_began_hold_through_the_second_pass_of_the_repeated_hour(
    zone: str, start: str, first_pass: str, second_pass: str, released: str
) -> None:
    quiet = {"channel": "email", "start": start, "end": "05:00"}
    d = Driver(cat=cat(pinger("a"), quiet_hours=[quiet]), now=ms(first_pass))
    d.identify({"timezone": zone})
    d.track("Ping")  # the first pass, before the start: not quiet
    ping(d, ms(second_pass))  # the clock reads before the start again, but the night began
    assert outcomes(d) == [
        ("send", "a", ms(first_pass)),
        ("deferred", "a", "quiet_hours", ms(released)),
    ]
    # Overnight hours that start in the repeated hour hold through it the same way.
    night = Driver(cat=cat(pinger("a"), quiet_hours=[{**quiet, "end": "00:30"}]), now=ms(second_pass))
    night.identify({"timezone": zone})
    night.track("Ping")
    [(status, _, reason, until)] = outcomes(night)
    assert (status, reason) == ("deferred", "quiet_hours") and until - ms(second_pass) > 20 * H


def test_quiet_hours_drop() -> None:
    d = Driver(cat=quiet_catalog(action="drop"), now=ms("2026-03-02T23:59:00Z"))
    d.track("Ping")
    assert outcomes(d) == [("dropped", "a", "quiet_hours", None)]
    assert d.state.runs[d.run_id(1)].messages["hello"]["statuses"] == ["dropped"]


def promo_journey(*after: tuple[str, dict[str, Any]]) -> Journey:
    steps: dict[str, Any] = {"offer": {"type": "send", "channel": "email", "template": "offer"}}
    if after:
        steps["offer"]["next"] = after[0][0]
        steps.update(dict(after))
    return journey(
        "promo",
        {"type": "event", "event": "Cart Viewed"},
        steps,
        goal={"event": "Order Completed", "within": "3d", "exit": True},
    )


@pytest.mark.parametrize("then_wait", [False, True])
def test_a_message_deferred_by_quiet_hours_is_dropped_when_the_person_converts_overnight(then_wait: bool) -> None:
    # The run is done after its one send, or still waiting in a later step: either way the
    # conversion (a goal with exit: true) drops the deferred message, reason run_ended.
    wait = ("wait", {"type": "wait", "duration": "2d", "next": None})
    promo = promo_journey(wait) if then_wait else promo_journey()
    quiet = {"channel": "email", "start": "21:00", "end": "08:00", "spread": "15m"}
    d = Driver(cat=cat(promo, quiet_hours=[quiet]), now=ms("2026-03-02T22:00:00Z"), roundtrip=True)
    d.track("Cart Viewed")
    ((status, _, reason, until),) = outcomes(d)
    assert (status, reason) == ("deferred", "quiet_hours")
    run_id = d.run_id(1)
    # The walk went on without waiting for the message; a done run is kept for it.
    assert d.state.runs[run_id].status == ("active" if then_wait else "done")
    d.advance_to(ms("2026-03-03T06:00:00Z"))
    d.track("Order Completed")
    run = d.state.runs[run_id]
    assert run.converted_at == ms("2026-03-03T06:00:00Z")
    assert outcomes(d)[-1] == ("dropped", "promo", "run_ended", None)
    assert run.messages["offer"]["statuses"] == ["deferred", "dropped"]
    assert "until" not in run.messages["offer"]
    assert not any(key.startswith("release:") for key in d.timers)
    d.advance_to(until + 3 * D)
    assert not d.sends() and len(outcomes(d)) == 2


def test_an_exit_event_drops_the_deferred_message_of_a_done_run_and_a_release_keeps_it_going() -> None:
    promo = promo_journey().model_copy(update={"exit": Exit(events=[EventMatch(event="Unsubscribed")])})
    quiet = {"channel": "email", "start": "21:00", "end": "08:00"}
    d = Driver(cat=cat(promo, quiet_hours=[quiet]), now=ms("2026-03-02T22:00:00Z"))
    d.track("Cart Viewed")
    d.advance_to(ms("2026-03-03T06:00:00Z"))
    d.track("Unsubscribed")
    assert outcomes(d)[-1] == ("dropped", "promo", "run_ended", None)
    other = Driver(cat=cat(promo, quiet_hours=[quiet]), now=ms("2026-03-02T22:00:00Z"))
    other.track("Cart Viewed")
    other.advance_to(ms("2026-03-03T09:00:00Z"))
    assert outcomes(other)[-1] == ("send", "promo", ms("2026-03-03T08:00:00Z"))


@pytest.mark.parametrize("then_wait", [False, True])
def test_leaving_the_exit_segment_drops_the_deferred_message_of_a_run_done_or_not(then_wait: bool) -> None:
    # Leaving its exit segment would have ended the run: a done run's deferred message is
    # dropped then, as an exit event or a conversion with exit: true drops it.
    steps: dict[str, Any] = {"offer": {"type": "send", "channel": "email", "template": "offer"}}
    if then_wait:
        steps["offer"]["next"] = "wait"
        steps["wait"] = {"type": "wait", "duration": "2d", "next": None}
    promo = journey("promo", {"type": "event", "event": "Cart Viewed"}, steps, exit={"segment": "browsing"})
    browsing = Segment.model_validate(
        {"id": "browsing", "name": "browsing", "when": {"not": {"performed": "Order Completed", "within": "30d"}}}
    )
    quiet = {"channel": "email", "start": "21:00", "end": "08:00"}
    catalog = Catalog(
        [JourneyVersion("promo", 1, promo)],
        segments=[SegmentVersion("browsing", 1, browsing)],
        policies=rules(quiet_hours=[quiet]),
    )
    d = Driver(cat=catalog, now=ms("2026-03-02T22:00:00Z"), roundtrip=True)
    d.track("Cart Viewed")
    run_id = d.run_id(1)
    assert d.state.runs[run_id].status == ("active" if then_wait else "done")
    d.advance_to(ms("2026-03-03T06:00:00Z"))
    d.track("Order Completed")  # out of the segment overnight
    assert "browsing" not in d.state.membership
    assert outcomes(d)[-1] == ("dropped", "promo", "run_ended", None)
    assert d.state.runs[run_id].messages["offer"]["statuses"] == ["deferred", "dropped"]
    assert not any(key.startswith("release:") for key in d.timers)
    d.advance_to(ms("2026-03-03T09:00:00Z"))
    assert not d.sends()


def test_released_message_of_a_paused_journey_is_dropped() -> None:
    quiet = {"channel": "email", "start": "22:00", "end": "08:00"}
    a = pinger("a")
    d = Driver(cat=cat(a, quiet_hours=[quiet]), now=ms("2026-03-02T23:00:00Z"))
    d.track("Ping")
    d.use(cat(a, statuses={"a": PAUSED}, quiet_hours=[quiet]))
    d.advance_to(ms("2026-03-03T09:00:00Z"))
    assert outcomes(d)[-1] == ("dropped", "a", "journey_paused", None)


# --- collisions and priority -----------------------------------------------------------------------

COLLISION = {"window": "10m", "channels": ["email"]}


def test_five_journeys_on_one_event_send_one_email_and_say_why_not_the_others() -> None:
    journeys = [pinger(f"j{i}", "Signed Up", priority=p) for i, p in enumerate([1, 5, 3, 5, 0])]
    d = Driver(cat=cat(*journeys, collision=COLLISION))
    d.track("Signed Up")
    assert outcomes(d) == [
        ("send", "j1", T0),  # priority 5, and before j3 (also 5) in the order of entry
        ("deferred", "j3", "collision:j1", T0 + 10 * M),
        ("deferred", "j2", "collision:j1", T0 + 10 * M),
        ("deferred", "j0", "collision:j1", T0 + 10 * M),
        ("deferred", "j4", "collision:j1", T0 + 10 * M),
    ]
    # At release they collide with each other in turn: one message per 10 minutes.
    d.advance_to(T0 + 1 * H)
    sends = [(o[1], o[2]) for o in outcomes(d) if o[0] == "send"]
    assert sends == [("j1", T0), ("j3", T0 + 10 * M), ("j2", T0 + 20 * M), ("j0", T0 + 30 * M), ("j4", T0 + 40 * M)]


def test_collision_drop_and_transactional_messages_never_collide() -> None:
    d = Driver(
        cat=cat(
            pinger("high", "Signed Up", priority=2),
            pinger("low", "Signed Up", on_collision="drop"),
            pinger("receipt", "Signed Up", marketing=False),
            pinger("push", "Signed Up", channel="push"),  # not a channel of the window
            collision=COLLISION,
        )
    )
    d.track("Signed Up")
    assert sorted(outcomes(d)) == sorted(
        [
            ("send", "high", T0),
            ("dropped", "low", "collision:high", None),
            ("send", "receipt", T0),
            ("send", "push", T0),
        ]
    )


def test_the_higher_priority_wins_the_turn_whatever_reached_its_send_step_first() -> None:
    waiting = journey(
        "waiting",
        {"type": "event", "event": "Start"},
        {
            "w": {"type": "wait_for_event", "event": "Signed Up", "timeout": "1d", "on_event": "s", "on_timeout": None},
            "s": {"type": "send", "channel": "email", "template": "w"},
        },
    )
    d = Driver(cat=cat(waiting, pinger("vip", "Signed Up", priority=9), collision=COLLISION))
    d.track("Start")
    d.advance("1m")
    d.track("Signed Up")  # the waiting run reacts before the trigger enters vip
    assert outcomes(d) == [("send", "vip", T0 + M), ("deferred", "waiting", "collision:vip", T0 + 11 * M)]


def test_across_calls_the_first_message_holds_the_window_and_its_own_journey_never_collides() -> None:
    series = journey(
        "series",
        {"type": "event", "event": "Ping"},
        {
            "a": {"type": "send", "channel": "email", "template": "a", "next": "b"},
            "b": {"type": "send", "channel": "email", "template": "b"},
        },
    )
    d = Driver(cat=cat(series, pinger("vip", "Tap", priority=9), collision=COLLISION))
    ping(d, T0)
    ping(d, T0 + 5 * M, "Tap")
    ping(d, T0 + 10 * M, "Tap")  # exactly a window after: free again
    assert outcomes(d) == [
        ("send", "series", T0),
        ("send", "series", T0),
        ("deferred", "vip", "collision:series", T0 + 10 * M),
        ("send", "vip", T0 + 10 * M),
        ("send", "vip", T0 + 10 * M),  # the release (vip's own messages do not collide)
    ]


# --- what a run remembers: branches -----------------------------------------------------------------


def fallback_journey() -> Journey:
    return journey(
        "fallback",
        {"type": "event", "event": "Ping"},
        {
            "mail": {"type": "send", "channel": "email", "template": "m", "on_cap": "defer", "next": "check"},
            "check": {
                "type": "branch",
                "cases": [
                    {"when": [{"message": "mail", "status": "capped"}], "next": "push"},
                    {"when": [{"message": "mail", "status": "deferred"}], "next": "later"},
                ],
                "default": None,
            },
            "push": {"type": "send", "channel": "push", "template": "p"},
            "later": {"type": "send", "channel": "push", "template": "later"},
        },
        entry={"reentry": "always"},
    )


def test_a_journey_branches_on_capped_and_deferred_right_after_the_send() -> None:
    one = {"id": "one", "channel": "email", "limit": 1, "window": "1d"}
    quiet = {"channel": "email", "start": "22:00", "end": "08:00"}
    d = Driver(cat=cat(fallback_journey(), frequency_caps=[one], quiet_hours=[quiet]), now=ms("2026-03-02T12:00:00Z"))
    d.track("Ping")  # sent: neither case, the run is done
    d.track("Ping")  # capped (and deferred): the push goes instead
    assert d.state.runs[d.run_id(2)].messages["mail"]["statuses"] == ["capped", "deferred"]
    ping(d, ms("2026-03-04T23:00:00Z"))  # quiet hours: deferred, not capped
    assert d.state.runs[d.run_id(3)].messages["mail"]["statuses"] == ["deferred"]
    assert [(e.channel, e.template) for e in d.sends() if e.channel == "push"] == [("push", "p"), ("push", "later")]


# --- batching does not change decisions ----------------------------------------------------------


def batch_catalog() -> Catalog:
    return cat(
        pinger("welcome", "Signed Up", priority=3),
        pinger("promo", "Signed Up", priority=1, on_collision="drop"),
        pinger("cart", "Product Added", on_cap="defer"),
        pinger("digest", "Digest", on_cap="drop"),
        pinger("receipt", "Order Completed", marketing=False),
        frequency_caps=[
            {"id": "day", "channel": "email", "limit": 2, "calendar": "day"},
            {"id": "h4", "channel": "email", "limit": 3, "window": "4h"},
        ],
        quiet_hours=[{"channel": "email", "start": "22:00", "end": "07:00", "spread": "20m"}],
        collision={"window": "15m"},
        timezone="America/Chicago",
    )


EVENTS = [
    ("Signed Up", "2026-03-02T15:00:00Z"),
    ("Product Added", "2026-03-02T15:05:00Z"),
    ("Order Completed", "2026-03-02T15:06:00Z"),
    ("Digest", "2026-03-02T16:00:00Z"),
    ("Product Added", "2026-03-02T17:00:00Z"),
    ("Signed Up", "2026-03-03T04:30:00Z"),  # 22:30 in Chicago: quiet
    ("Digest", "2026-03-03T04:40:00Z"),
]


def decisions(d: Driver) -> list[tuple[Any, ...]]:
    """What was decided for each message, leaving out the processing time."""
    out = []
    for _, e in d.log:
        if isinstance(e, SendMessage):
            out.append((e.key, "sent"))
        elif isinstance(e, MessageWithheld):
            out.append((e.key, e.status, e.reason, e.until_ms))
    return sorted(out)


def test_the_same_events_one_at_a_time_or_in_one_batch_give_the_same_decisions() -> None:
    one_by_one = Driver(cat=batch_catalog(), now=ms("2026-03-02T14:00:00Z"), roundtrip=True)
    for name, at in EVENTS:
        one_by_one.advance_to(ms(at))
        one_by_one.track(name)
    one_by_one.advance_to(ms("2026-03-05T00:00:00Z"))
    batched = Driver(cat=batch_catalog(), now=ms("2026-03-03T05:00:00Z"))  # all decided after the last one
    for name, at in EVENTS:
        batched.track(name, ts=ms(at))
    batched.advance_to(ms("2026-03-05T00:00:00Z"))
    assert decisions(batched) == decisions(one_by_one)
    statuses = {d[1:3] for d in decisions(batched)}
    assert {("dropped", "collision:welcome"), ("deferred", "quiet_hours"), ("dropped", "frequency_cap:day")} <= statuses


def test_a_release_deferred_again_to_before_a_late_event_is_decided_before_it() -> None:
    # Three journeys collide on Signed Up at T0: j1 goes, j2 and j0 wait until T0+10m; there j2
    # goes and j0 waits again, until T0+20m. A Ping at T0+25m (priority 9) then collides with
    # j0's message of T0+20m. An engine busy until T0+25m (no timer fired on time) must decide
    # the same: j0 at T0+20m too, before the Ping, not after it.
    def run(busy: bool) -> tuple[list[tuple[Any, ...]], list[Any]]:
        journeys = [pinger(f"j{i}", "Signed Up", priority=p) for i, p in enumerate([1, 5, 3])]
        wide = {"id": "wide", "channel": "email", "limit": 100, "window": "1d"}  # keeps a day of ledger
        d = Driver(cat=cat(*journeys, pinger("late", "Ping", priority=9), collision=COLLISION, frequency_caps=[wide]))
        d.track("Signed Up")
        if busy:
            d.now = T0 + 25 * M
        else:
            d.advance_to(T0 + 25 * M)
        d.track("Ping")
        d.advance_to(T0 + 3 * H)
        return decisions(d), [(e[0] - T0) // M for e in d.state.sends]

    on_time, busy = run(busy=False), run(busy=True)
    assert on_time[1] == [0, 10, 20, 30]  # j1, j2, j0, then the Ping deferred past j0's window
    assert busy == on_time


def busy_catalog() -> Catalog:
    """Caps that defer, quiet hours, a collision window, a transactional journey, an exit."""
    offer = {"type": "send", "channel": "email", "template": "offer", "on_cap": "defer"}
    return cat(
        pinger("welcome", "Signed Up", priority=3),
        pinger("promo", "Signed Up", priority=1, on_collision="drop"),
        pinger("cart", "Product Added", on_cap="defer"),
        pinger("digest", "Digest", on_cap="defer", max_deferral="1d"),
        pinger("nudge", "Digest", channel="push", on_cap="defer"),
        pinger("receipt", "Order Completed", marketing=False),
        journey(
            "offer",
            {"type": "event", "event": "Cart Viewed"},
            {"offer": offer},
            entry={"reentry": "always"},
            exit={"events": [{"event": "Unsubscribed"}]},
            goal={"event": "Order Completed", "within": "2d", "exit": True},
        ),
        frequency_caps=[
            {"id": "day", "channel": "email", "limit": 2, "calendar": "day"},
            {"id": "h4", "channel": "email", "limit": 3, "window": "4h"},
            {"id": "p", "channel": "push", "limit": 1, "window": "2h"},
        ],
        quiet_hours=[
            {"channel": "email", "start": "22:00", "end": "07:00", "spread": "20m"},
            {"channel": "push", "start": "21:00", "end": "08:00"},
        ],
        collision={"window": "15m"},
        timezone="America/Chicago",
    )


@pytest.mark.parametrize("seed", range(60))
def test_random_days_decided_as_they_come_or_in_one_late_batch_give_the_same_decisions(seed: int) -> None:
    names = ["Signed Up", "Product Added", "Digest", "Order Completed", "Cart Viewed", "Unsubscribed"]
    rnd = random.Random(seed)
    start = ms("2026-03-07T12:00:00Z")  # Chicago moves its clocks on the 8th
    times = sorted(start + rnd.randrange(20 * H // M) * M for _ in range(rnd.randint(3, 25)))
    events = [(rnd.choice(names), at) for at in times]
    as_they_come = Driver(cat=busy_catalog(), now=start)
    for name, at in events:
        as_they_come.advance_to(at)
        as_they_come.track(name)
    late = Driver(cat=busy_catalog(), now=times[-1] + 1 * H)  # no timer fired until then
    for name, at in events:
        late.track(name, ts=at)
    for d in (as_they_come, late):
        d.advance_to(start + 5 * D)

    def decided(d: Driver) -> tuple[list[Any], list[Any]]:
        withheld = sorted((e.journey_id, e.status, e.reason, e.until_ms) for e in d.withheld())
        return withheld, d.state.sends  # run ids (in the keys) carry the processing time

    assert decided(late) == decided(as_they_come)


# --- the ledger --------------------------------------------------------------------------------------


def test_the_ledger_round_trips_and_forgets_what_no_rule_reads() -> None:
    receipts = {"id": "receipts", "channel": "email", "limit": 9, "window": "1h", "category": "transactional"}
    r = pinger("r", "Order", marketing=False, topic="orders")
    d = Driver(cat=cat(pinger("a"), r, collision=COLLISION, frequency_caps=[receipts]))
    d.track("Ping")
    d.track("Order")
    state = ProfileState.from_json("ada", d.state.to_json())
    assert state.sends == [[T0, "email", "a", 0, None], [T0, "email", "r", 1, "orders"]]
    ping(d, T0 + 1 * D)
    assert d.state.sends == [[T0 + D, "email", "a", 0, None]]


def test_messages_no_rule_reads_take_no_place_in_the_ledger() -> None:
    # A chat app's transactional pushes (no rule names them) must not crowd the week's email
    # out of the ledger, which keeps MAX_LEDGER entries: the weekly email cap still sees it.
    weekly = {"id": "weekly", "channel": "email", "limit": 1, "window": "7d"}
    chat = pinger("chat", "Message Received", channel="push", marketing=False)
    d = Driver(cat=cat(pinger("a"), chat, frequency_caps=[weekly], collision=COLLISION))
    d.track("Ping")
    for minute in range(1, MAX_LEDGER + 1):
        d.now = T0 + minute * M
        d.track("Message Received")
    assert len([s for s in d.sends() if s.journey_id == "chat"]) == MAX_LEDGER
    assert d.state.sends == [[T0, "email", "a", 0, None]]
    ping(d, T0 + 2 * D)
    assert outcomes(d)[-1] == ("dropped", "a", "frequency_cap:weekly", None)


def test_a_release_still_decided_when_the_event_input_has_no_matching_run() -> None:
    # A release timer of a run forgotten since (state lost or merged away) drops the message.
    a = pinger("a")
    d = Driver(cat=cat(a, quiet_hours=[{"channel": "email", "start": "22:00", "end": "08:00"}]))
    payload = {
        "kind": "release",
        "run_id": "run_gone",
        "journey": "a",
        "version": 1,
        "step": "hello",
        "key": "run_gone:hello:1",
        "template": "a-t",
        "variant": None,
        "first": T0,
    }
    d.add_timer("release:run_gone:hello:1", T0, payload)
    d.advance("1m")
    assert outcomes(d) == [("dropped", "a", "run_ended", None)]
    d.event(EventInput("x", "track", "Nothing", d.now))


def test_two_journeys_in_one_batch_can_never_both_pass_a_cap_of_one() -> None:
    one = {"id": "one", "channel": "email", "limit": 1, "window": "1d"}
    d = Driver(cat=cat(pinger("a", "Signed Up"), pinger("b", "Order"), frequency_caps=[one]), roundtrip=True)
    d.now = T0 + 5 * M  # one batch, decided after both happened, at the same millisecond
    d.track("Order", ts=T0)
    d.track("Signed Up", ts=T0)
    assert outcomes(d) == [("send", "b", T0 + 5 * M), ("dropped", "a", "frequency_cap:one", None)]


def test_a_send_after_a_timer_is_judged_at_the_due_time_not_when_the_timer_fired() -> None:
    series = journey(
        "series",
        {"type": "event", "event": "Ping"},
        {
            "w": {"type": "wait", "duration": "1h", "next": "s"},
            "s": {"type": "send", "channel": "email", "template": "s"},
        },
    )
    quiet = {"channel": "email", "start": "22:00", "end": "08:00"}
    d = Driver(cat=cat(series, quiet_hours=[quiet], collision=COLLISION), now=ms("2026-03-02T20:30:00Z"))
    d.track("Ping")  # the wait ends at 21:30, before the quiet hours
    d.now = ms("2026-03-02T22:15:00Z")  # the runtime gets to the timer late
    d.fire(f"run:{d.run_id(1)}")
    assert outcomes(d) == [("send", "series", ms("2026-03-02T22:15:00Z"))]
    assert d.state.sends[0][0] == ms("2026-03-02T21:30:00Z")
