"""The reasons a message is not sent: one vocabulary, bounded families."""

from __future__ import annotations

from nudgeflow.core import policies
from nudgeflow.model import reasons
from nudgeflow.store import consent


def test_families_are_the_words_before_the_colon_and_anything_else_is_other() -> None:
    assert reasons.family_of("frequency_cap:email-daily") == "frequency_cap"
    assert reasons.family_of("collision:welcome") == "collision"
    assert reasons.family_of("unsubscribed:*") == "unsubscribed"
    assert reasons.family_of("quiet_hours") == "quiet_hours"
    assert reasons.family_of("no_target") == "no_target"
    for odd in (None, "", "profile has no email", "frequency cap:x", "Collision:x"):
        assert reasons.family_of(odd) == reasons.OTHER


def test_every_reason_the_engine_and_dispatch_give_is_in_the_vocabulary() -> None:
    engine = [policies.RUN_ENDED, policies.JOURNEY_PAUSED, policies.QUIET_HOURS, "frequency_cap:x", "collision:y"]
    allowed = consent.decide(None, {}, marketing=True, topic=None)
    dispatch = [
        consent.decide("complaint", {}, marketing=False, topic=None).reason,
        consent.decide(None, {consent.ALL: consent.Choice(False)}, marketing=True, topic=None).reason,
        consent.decide(None, {"offers": consent.Choice(False)}, marketing=True, topic="offers").reason,
        consent.decide(None, {}, marketing=True, topic="offers", mode=consent.OPT_IN).reason,
        reasons.NO_TARGET,
    ]
    assert allowed.reason is None
    assert dispatch == ["suppressed:complaint", "unsubscribed:*", "unsubscribed:offers", "no_consent", "no_target"]
    assert all(reasons.family_of(r) in reasons.FAMILIES for r in [*engine, *dispatch])
