"""What the dashboard shows beside the overview snapshot — the fleet's totals (every 2 s)
and the charts' reports (every minute) — and the reports page's report for each of its
ranges and servers (every minute), computed once for every caller. The dashboard is
asked for many times a second when many people keep it open (bench/portal_load.py): with
2,000 databases and 90 days of points the reports take ~0.2 s and the fleet's totals a few
queries that contend for the catalog.

One caller computes a value the first time, the others wait for it; an expired value is
served while one thread renews it; a change made through this process (the gate calls
``invalidate``) drops them all, so the next page shows it, as the overview does."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dbsafe.portal")


class DashboardCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple, tuple[float, Any]] = {}
        self._renewing: set[tuple] = set()
        self._first: dict[tuple, threading.Lock] = {}

    def get(self, key: tuple, compute: Callable[[], Any], ttl: float) -> Any:
        with self._lock:
            held = self._held.get(key)
            renew = held is not None and time.monotonic() - held[0] >= ttl \
                and key not in self._renewing
            if renew:
                self._renewing.add(key)
            first = self._first.setdefault(key, threading.Lock()) if held is None else None
        if first is not None:
            with first:  # one computes, the others wait for its value
                with self._lock:
                    held = self._held.get(key)
                return held[1] if held is not None else self._store(key, compute)
        if renew:
            threading.Thread(target=self._renew, args=(key, compute), name="dashboard",
                             daemon=True).start()
        assert held is not None
        return held[1]

    def invalidate(self) -> None:
        """Forget every value: something changed through this process."""
        with self._lock:
            self._held.clear()

    def _store(self, key: tuple, compute: Callable[[], Any]) -> Any:
        value = compute()
        with self._lock:
            self._held[key] = (time.monotonic(), value)
        return value

    def _renew(self, key: tuple, compute: Callable[[], Any]) -> None:
        try:
            self._store(key, compute)
        except Exception:  # the last value stays; the next request after it tries again
            log.exception("could not renew what the dashboard shows")
        finally:
            with self._lock:
                self._renewing.discard(key)
