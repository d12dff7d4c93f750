"""What ingest needs of the running app: a Protocol, so that ingest depends on no web module.

The web layer's AppState (web/state.py) has these attributes and more, and is what the app
passes in; ingest sits below web and only names what it reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # types only: verification imports this module for IngestState
    from nudgeflow.core.clock import Clock
    from nudgeflow.ingest.auth import KeyCache
    from nudgeflow.ingest.ratelimit import RateLimiter
    from nudgeflow.ingest.verification import IdentityGate
    from nudgeflow.settings import Settings
    from nudgeflow.store.group_commit import GroupCommitter


class RejectCounter(Protocol):
    def reject(self, reason: str, count: int = 1) -> None:
        """Count events refused, by reason (the metrics' nudgeflow_events_rejected_total)."""

    def correct(self, field: str, count: int = 1) -> None:
        """Count events stored with a field corrected, by field (nudgeflow_events_corrected_total)."""


class IngestState(Protocol):
    # Read-only: ingest never replaces them (and a read-only member may be a subtype).
    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def committer(self) -> GroupCommitter: ...
    @property
    def metrics(self) -> RejectCounter: ...
    @property
    def limiter(self) -> RateLimiter: ...
    @property
    def keys(self) -> KeyCache: ...
    @property
    def identity(self) -> IdentityGate: ...
