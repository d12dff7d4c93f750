"""`nudgeflow journeys publish`: what publishing does to the people already known.

Before a publish that looks at the past (the default), the draft is run over every profile
as the backfill will run it, writing nothing, to say how many people would enter at once;
above `--confirm-above` the publish needs `--yes`. `--from-now` publishes without the
backfill (only what happens from now on counts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine

from nudgeflow.store import journeys as store

DEFAULT_CONFIRM_ABOVE = 1000


@dataclass(frozen=True, slots=True)
class PublishPlan:
    profiles: int
    entering: int

    def line(self, journey_id: str) -> str:
        people = "person" if self.entering == 1 else "people"
        return (
            f"{journey_id}: {self.entering:,} {people} would enter at once "
            f"(of {self.profiles:,} {'profile' if self.profiles == 1 else 'profiles'} looked at)"
        )


def plan_publish(engine: Engine, workspace_id: str, journey_id: str, now_ms: int) -> PublishPlan | None:
    """The preview of the backfill this publish would start; None when it starts none (the
    draft is the live version already) or the draft does not read (publish then says why)."""
    from nudgeflow.runtime.backfill import preview  # the engine's code: only a publish loads it

    _yield_cpu()

    with engine.connect() as conn:
        info = store.get_journey(conn, workspace_id, journey_id)
        if info is None or not info["draft_changed"] or info["status"] == "archived":
            return None
        try:
            draft = store.parse_definition(orjson.dumps(info["draft"]).decode())
        except ValueError:
            return None
        seen = preview(conn, workspace_id, draft, now_ms)
    return PublishPlan(seen.profiles, seen.entering)


def _yield_cpu() -> None:
    """The count reads every profile: at a lower CPU priority, so that a server on the same
    machine keeps answering while it runs (the publish that follows is short)."""
    try:
        os.nice(5)
    except (AttributeError, OSError):  # not on this platform, or not allowed: count anyway
        pass


def refusal(journey_id: str, plan: PublishPlan, confirm_above: int) -> str:
    return (
        f"{journey_id}: not published: {plan.entering:,} people would enter at once, more than "
        f"--confirm-above {confirm_above:,}. Run again with --yes to publish, or with --from-now to "
        "publish without looking at the people already known."
    )
