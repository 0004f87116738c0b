"""How many job event streams (server-sent events) may be open: each holds a connection and
reads its job from the catalog twice a second for as long as the job runs, so a caller
opening thousands would hold as many connections and catalog reads. They are capped per
caller and in total; beyond, 429 ``request.too_many_streams``."""

from __future__ import annotations

import threading
from collections import Counter

from dbsafe.core.errors import DbsafeError

PER_CALLER = 8   # a few browser tabs on job pages, and a script or two
TOTAL = 64
RETRY_AFTER = 5


class Slot:
    """One open stream; ``release`` may be called more than once (the stream's end, and
    the collection of a stream that never started)."""

    def __init__(self, slots: StreamSlots, caller: str) -> None:
        self._slots = slots
        self._caller = caller
        self._held = True

    def release(self) -> None:
        with self._slots.lock:
            if self._held:
                self._held = False
                self._slots.open[self._caller] -= 1
                if not self._slots.open[self._caller]:
                    del self._slots.open[self._caller]


class StreamSlots:
    def __init__(self, per_caller: int = PER_CALLER, total: int = TOTAL) -> None:
        self.per_caller = per_caller
        self.total = total
        self.open: Counter[str] = Counter()
        self.lock = threading.Lock()

    def take(self, caller: str) -> Slot:
        """A slot for one more stream of ``caller``; 429 when it or everyone has too many."""
        with self.lock:
            if self.open[caller] >= self.per_caller:
                raise DbsafeError("request.too_many_streams", retry_after=RETRY_AFTER,
                                  scope=f"{self.per_caller} of this caller")
            if sum(self.open.values()) >= self.total:
                raise DbsafeError("request.too_many_streams", retry_after=RETRY_AFTER,
                                  scope=f"{self.total} in all")
            self.open[caller] += 1
        return Slot(self, caller)
