"""Time, injectable: the real clock for ``serve``, a fake one for tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...
    def wait(self, seconds: float, stop: threading.Event) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(seconds)


class FakeClock:
    """A clock that only moves when told (``advance``) — or by ``wait``, instantly."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def wait(self, seconds: float, stop: threading.Event) -> None:
        self._now += timedelta(seconds=seconds)
