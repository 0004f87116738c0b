"""The reports the dashboard draws, computed at most once a minute per vault: they change by
the day, and the dashboard is asked for many times a second when many people keep it open
(bench/portal_load.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

TTL = 60.0


class ReportCache:
    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._held: dict[tuple, tuple[float, Any]] = {}

    def get(self, key: tuple, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            held = self._held.get(key)
        if held is not None and now - held[0] < self.ttl:
            return held[1]
        value = compute()
        with self._lock:
            self._held[key] = (now, value)
        return value
