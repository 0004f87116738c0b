"""The dashboard's reports cache (portal/report_cache.py): the first request computes,
later ones get the last value at once while one thread renews it."""

from __future__ import annotations

import threading
import time

from dbsafe.portal.report_cache import ReportCache


def test_a_stale_value_is_served_while_one_thread_renews_it():
    cache = ReportCache(ttl=0.05)
    calls: list[int] = []
    release = threading.Event()

    def compute() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(5)  # the renewal is slow: requests meanwhile must not wait for it
        return len(calls)

    assert cache.get(("k",), compute) == 1            # the first one computes
    time.sleep(0.1)
    assert [cache.get(("k",), compute) for _ in range(5)] == [1] * 5   # stale, at once
    cache.ttl = 60  # the renewed value stays fresh from here on
    release.set()
    deadline = time.monotonic() + 5
    while cache.get(("k",), compute) != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get(("k",), compute) == 2 and len(calls) == 2        # renewed once
