"""The dispatch loop of a running dispatcher (`serve`, every role that dispatches): claims,
sends and records overlap.

One event loop, on the dispatcher's thread, runs two coroutines over one `Sends`
(runtime/sends.py, at most the dispatcher's `max_concurrency` sends at once):

- the claimer claims a round (Dispatcher.claim_and_sink, in a transaction of its own, on a
  thread of its own), starts its remote sends one per turn of the loop as slots free up, and
  claims the next round as soon as the last send of this one has started: while up to
  `max_concurrency` sends of the round before are still under way. When a claim comes back
  short it waits to be woken (the engine queued messages) or `poll_s`.
- the recorder records finished outcomes (Dispatcher.record_remote) as they come, in
  batches: whatever finished while the transaction before ran, after waiting at most
  `RECORD_LINGER_S` for more.

So the rules of runtime/dispatcher.py hold per claimed row, not per round: each row keeps
its own lease, and no send starts with less than `lease_margin_ms` of its lease left (it is
handed back, due at once, without counting an attempt). A dispatcher that claims more than
it starts in time (a slow provider, too few connections) halves its claims, down to
`max_concurrency`; a full claim that starts in time lets it double them, up to the batch.
It starts at `max_concurrency`: a dispatcher's first sends are its slowest, and a dispatcher
killed before it sent has lost a claim of every row it claimed (their leases run out, each
a possible resend; runtime/dispatcher.py bounds lost claims with `max_lost_claims`).

Stopping (the runtime's `stop` event, SIGTERM through `serve`) drains: no more claims,
the sends of a claim not yet started are handed back at once, those under way get `grace_s`
and are then cancelled and handed back, and everything is recorded before `run` returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from nudgeflow.runtime.dispatcher import HANDED_BACK, Dispatcher, DispatchRound, Outcome
from nudgeflow.runtime.sends import Sends
from nudgeflow.runtime.stages import OUTAGE

log = logging.getLogger("nudgeflow.dispatch")

T = TypeVar("T")
# How long the recorder waits for more outcomes before recording what it has: one
# transaction for many sends, far below a lease. Not part of trigger-to-send.
RECORD_LINGER_S = 0.05

# (the round claimed, the claim's limit), or None when the claim failed and was dealt with
Claim = Callable[[int], tuple[DispatchRound, int] | None]


class DispatchPipeline:
    def __init__(
        self,
        dispatcher: Dispatcher,
        claim: Claim,
        record: Callable[[list[Outcome]], int],
        *,
        batch: int,
        stop: threading.Event,
        wake: threading.Event,
        poll_s: float,
        grace_s: float,
        on_events: Callable[[], None] = lambda: None,
        before_claim: Callable[[], None] = lambda: None,
        turn: Any = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.claim = claim
        self.record = record
        self.batch = max(1, batch)
        self.stop = stop  # set when the runtime stops (it sets `wake` too)
        self.stopping = stop.is_set
        self.wake = wake
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.on_events = on_events  # engagement events were appended: the engine's to decide
        self.before_claim = before_claim  # on the loop's thread (the push channel's set-up)
        # The runtime's dispatch turn (a threading.Lock): held while anything claimed is not
        # yet recorded, so that run_until_idle never sees a round half done.
        self.turn = turn
        self._holding = False
        self.min_cap = max(1, min(self.batch, dispatcher.max_concurrency))
        # The most one claim takes (see the module docstring). A dispatcher starts small: its
        # first sends are its slowest (templates to compile, connections to open), and a
        # dispatcher killed then has lost a claim of every row it claimed.
        self.cap = self.min_cap
        self.sends: Sends[Outcome] = Sends(dispatcher.max_concurrency, self.stopping, lost=self._lost)
        self._began: set[int] = set()
        self._leased: dict[int, Outcome] = {}  # row -> what to record if its send is cancelled
        self._recording = False
        self._ending = False
        # Claims, records and waits block: on threads of their own, never behind the channels'
        # reads (asyncio.to_thread's pool is theirs).
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="nudgeflow-dispatch-db")
        self.claims = 0  # claims made (a test looks at how they overlap the sends)

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    # -- the two coroutines ------------------------------------------------------------------

    async def run(self) -> None:
        """Claim, send and record until stopping; then drain (see the module docstring)."""
        recorder = asyncio.ensure_future(self._recorder())
        try:
            await self._claimer()
        finally:
            for row_id in await self.sends.settle(self.grace_s):
                held = self._leased.pop(row_id, None)
                if held is not None:  # under way when the grace ended: it may have been accepted
                    self.sends.put(
                        Outcome(row_id, held.message, held.attempts, HANDED_BACK, started=row_id in self._began)
                    )
            self._ending = True
            self.sends.wake()
            await recorder
            self._release_turn()
            self._pool.shutdown(wait=False)

    async def _claimer(self) -> None:
        outage = 0
        while not self.stopping():
            self.wake.clear()
            self.before_claim()
            if not self._holding and self.turn is not None:
                await self._blocking(self.turn.acquire)
                self._holding = True
            try:
                claimed = await self._blocking(self.claim, self.cap)
                outage = 0
            except OUTAGE as exc:
                if self.stopping():
                    return
                outage += 1
                log.warning("dispatch waits for the database", extra={"error": type(exc).__name__})
                await self._wait(self.stop.wait, min(5.0, 0.1 * 2**outage))
                continue
            except Exception:
                log.exception("dispatch loop error")
                await self._wait(self.stop.wait, 1.0)
                continue
            if claimed is None:  # a claim that failed and was dealt with (runtime/stages.py)
                continue
            round_, limit = claimed
            self.claims += 1
            if round_.events_appended:
                self.on_events()
            late = self.dispatcher.sends_past_deadline
            await self._start(round_)
            more = round_.claimed >= limit
            self._adapt(late, more)
            if not more:
                if self._idle():
                    self._release_turn()
                await self._wait(self.wake.wait, self.poll_s)

    async def _start(self, round_: DispatchRound) -> None:
        """Start the round's sends, one per turn of the loop, as slots free up."""
        for row_id, message, channel in self.dispatcher.deadlined(round_.remote, round_.lease_until_ms):
            self._leased[row_id] = Outcome(row_id, message, message.attempt, HANDED_BACK, started=False)
            started = await self.sends.start(
                row_id, partial(self.dispatcher.send_one, row_id, message, channel, self._began)
            )
            if not started:  # stopping: handed back at once, not counted as an attempt
                self.sends.put(self._leased[row_id])

    def _adapt(self, late_before: int, full: bool) -> None:
        if self.dispatcher.sends_past_deadline > late_before:
            self.cap = max(self.min_cap, self.cap // 2)
        elif full:
            self.cap = min(self.batch, self.cap * 2)

    async def _recorder(self) -> None:
        outage = 0
        while True:
            if not self.sends.finished:
                if self._ending:
                    return
                await self.sends.wait_finished()
                if not self._ending and self.sends.finished < self.sends.limit:
                    await asyncio.sleep(RECORD_LINGER_S)  # more, for the same transaction
            outcomes = self.sends.take()
            if not outcomes:
                continue
            self._recording = True
            try:
                appended = await self._blocking(self.record, outcomes)
                outage = 0
            except OUTAGE as exc:
                if self._ending or self.stopping():
                    log.warning(
                        "dispatcher stopping: outcomes not recorded, their leases will run out",
                        extra={"messages": len(outcomes), "error": type(exc).__name__},
                    )
                    self._forget(outcomes)
                    continue
                outage += 1
                log.warning("dispatch waits for the database to record", extra={"error": type(exc).__name__})
                for o in outcomes:
                    self.sends.put(o)  # kept, to be recorded when the database is back
                await self._wait(self.stop.wait, min(5.0, 0.1 * 2**outage))
                continue
            except Exception:  # a bug: the rows stay leased, and are sent again when it runs out
                log.exception("recording outcomes failed")
                self._forget(outcomes)
                continue
            finally:
                self._recording = False
            self._forget(outcomes)
            if appended:
                self.on_events()

    # -- helpers -----------------------------------------------------------------------------

    def _forget(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            held = self._leased.get(o.row_id)
            if held is not None and held.message is not o.message:
                # Claimed again while this outcome was being recorded (a hand-back makes its
                # row due at once): what is held now is the new send's, not this one's.
                continue
            self._leased.pop(o.row_id, None)
            self._began.discard(o.row_id)

    def _lost(self, row_id: int) -> None:
        """A send that ended with no outcome (it raised; logged by Sends): its row stays
        leased and is sent again when the lease runs out. Nothing of it is held here, or the
        dispatcher would never count itself idle (and run_until_idle would wait for ever)."""
        self._leased.pop(row_id, None)
        self._began.discard(row_id)

    def _idle(self) -> bool:
        return not (self.sends.in_flight or self.sends.finished or self._recording or self._leased)

    def _release_turn(self) -> None:
        if self._holding and self.turn is not None:
            self._holding = False
            self.turn.release()

    async def _wait(self, wait: Callable[[float], Any], seconds: float) -> None:
        await self._blocking(wait, seconds)
