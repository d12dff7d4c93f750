"""Profile states kept parsed between batches, each with the document it was written as.

Loading a person's state parses their whole document (runs, watches, history, segment
facts), and a person who acts several times in a few minutes has it parsed again for every
batch they are in: about a fifth of the engine's CPU per event (benchmarks/RESULTS.md,
issue 18). The engine keeps, for the people whose events it decided last, the state object
together with the document it saved, and reuses the object when the row it loads still
holds exactly that document (timers, backfills and segment applies reuse kept states but
keep none: runtime/processor.DecisionBatch says why).

Why this is safe without any invalidation:
- The stored document is the check. Any other writer (another engine worker after a lease
  moved, a merge, an erasure, a segment apply, a rolled-back transaction that never stored
  what was kept) leaves a different document in the row, and the state is parsed from the
  row as before. A document equal to the kept one means a state equal to the kept object:
  the document is that object's `to_json`, and `from_json(to_json(s))` decides as `s` does
  (tests/runtime/test_state_cache.py checks both on the example journeys).
- An entry is taken out when its state is used (`take`), and put back only when a batch has
  saved it (`keep`): a decision that fails half-way, or a batch that raises before writing,
  cannot leave a state the document does not describe. Two batches never share an object.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from nudgeflow.core.state import ProfileState

# Counted in document characters: a parsed state takes about five times its document in
# Python objects (measured on the benchmark's states, 1.5-2.5 KB each), and the document is
# kept beside it, so 16 MiB of documents is about 100 MB of memory, some 7,000 people.
#
# Off in a server unless NUDGEFLOW_ENGINE_STATE_CACHE_MB is set: with 2,000 people coming back
# within a few batches it saved 10-15 % of the engine's CPU an event, but with 100,000 people
# in random order (the engine benchmark's full size) about one decision in ten found its
# state, and the engine took a third more CPU an event with it than without (the heap the
# kept states make costs more than the parses saved; benchmarks/RESULTS.md).
DEFAULT_DOCUMENTS_MB = 16.0


class StateCache:
    """The states this process saved last, up to `capacity` characters of their documents,
    the least recently saved going first."""

    def __init__(self, capacity: int = int(DEFAULT_DOCUMENTS_MB * 2**20)) -> None:
        self.capacity = capacity
        self._size = 0
        self._entries: OrderedDict[str, tuple[str, ProfileState]] = OrderedDict()
        self._lock = threading.Lock()  # the embedded runtime fires timers and decides events on threads
        self.hits = 0
        self.misses = 0  # a kept state whose row holds another document now

    def take(self, profile_id: str, document: str) -> ProfileState | None:
        """The kept state if the row's `document` is the one it was saved as; it is no longer
        kept either way (the caller owns it until it saves it again)."""
        if not self.capacity:
            return None
        with self._lock:
            entry = self._entries.pop(profile_id, None)
            if entry is None:
                return None
            self._size -= len(entry[0])
            if entry[0] != document:
                self.misses += 1
                return None
            self.hits += 1
            return entry[1]

    def keep(self, profile_id: str, document: str, state: ProfileState) -> None:
        """`state`, just saved as `document` (in a transaction that may yet roll back: then
        the row keeps its old document, and `take` will not match)."""
        if not self.capacity:
            return
        if len(document) > self.capacity:
            return
        with self._lock:
            # Usually taken out by this batch's load: a new key, which goes in last.
            old = self._entries.pop(profile_id, None)
            if old is not None:
                self._size -= len(old[0])
            self._entries[profile_id] = (document, state)
            self._size += len(document)
            while self._size > self.capacity:
                self._size -= len(self._entries.popitem(last=False)[1][0])

    def forget(self, profile_ids: list[str]) -> None:
        """Drop these people's states (erased: their rows are gone, so no batch would use
        them again, but their data should not stay in memory until pushed out)."""
        with self._lock:
            for pid in profile_ids:
                entry = self._entries.pop(pid, None)
                if entry is not None:
                    self._size -= len(entry[0])

    @property
    def size(self) -> int:
        """Characters of the documents kept."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self._entries
