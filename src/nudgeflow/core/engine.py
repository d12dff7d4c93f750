"""The pure core: (profile state, event or timer, now) -> effects. No I/O, no wall clock."""

from __future__ import annotations

from nudgeflow.core.catalog import Catalog
from nudgeflow.core.effects import Effect
from nudgeflow.core.inputs import EventInput, TimerInput
from nudgeflow.core.state import ProfileState


class Engine:
    """Decides for one workspace. `state` is changed in place; the effects say what to do."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]:
        raise NotImplementedError("being written")

    def on_timer(self, state: ProfileState, timer: TimerInput, now_ms: int) -> list[Effect]:
        raise NotImplementedError("being written")
