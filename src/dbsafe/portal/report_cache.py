"""The reports the dashboard draws, computed at most once a minute per vault, in the
background: they change by the day, the dashboard is asked for many times a second when
many people keep it open (bench/portal_load.py), and computing them takes ~0.2 s with 90
days of 2,000 databases' points. Only the very first request waits; later ones get the
last value while one thread renews it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

TTL = 60.0
log = logging.getLogger("dbsafe.portal")


class ReportCache:
    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._held: dict[tuple, tuple[float, Any]] = {}
        self._renewing: set[tuple] = set()

    def get(self, key: tuple, compute: Callable[[], Any]) -> Any:
        with self._lock:
            held = self._held.get(key)
            stale = held is not None and time.monotonic() - held[0] >= self.ttl
            renew = stale and key not in self._renewing
            if renew:
                self._renewing.add(key)
        if held is None:
            return self._store(key, compute)
        if renew:
            threading.Thread(target=self._renew, args=(key, compute), name="reports",
                             daemon=True).start()
        return held[1]

    def _store(self, key: tuple, compute: Callable[[], Any]) -> Any:
        value = compute()
        with self._lock:
            self._held[key] = (time.monotonic(), value)
        return value

    def _renew(self, key: tuple, compute: Callable[[], Any]) -> None:
        try:
            self._store(key, compute)
        except Exception:  # the last value stays; the next request after it tries again
            log.exception("could not renew the dashboard's reports")
        finally:
            with self._lock:
                self._renewing.discard(key)
