"""What the dashboard shows beside the overview (portal/dashboard_cache.py): computed once
for every caller, an expired value served while one thread renews it, and dropped by a
change made through the process."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dbsafe.portal.dashboard_cache import DashboardCache


def test_the_first_value_is_computed_once_however_many_ask_at_once():
    cache = DashboardCache()
    calls: list[int] = []
    started = threading.Event()

    def compute() -> str:
        calls.append(1)
        started.set()
        time.sleep(0.2)  # slow: the others arrive meanwhile
        return "v"

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: cache.get(("k",), compute, 60), range(8)))
    assert got == ["v"] * 8 and len(calls) == 1


def test_a_stale_value_is_served_while_one_thread_renews_it_and_a_change_drops_it():
    cache = DashboardCache()
    calls: list[int] = []
    release = threading.Event()

    def compute() -> int:
        calls.append(1)
        if len(calls) == 2:
            release.wait(5)  # the renewal is slow: requests meanwhile must not wait for it
        return len(calls)

    assert cache.get(("k",), compute, 0.05) == 1
    time.sleep(0.1)
    assert [cache.get(("k",), compute, 0.05) for _ in range(5)] == [1] * 5  # stale, at once
    release.set()
    deadline = time.monotonic() + 5
    while cache.get(("k",), compute, 60) != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get(("k",), compute, 60) == 2 and len(calls) == 2         # renewed once
    cache.invalidate()
    assert cache.get(("k",), compute, 60) == 3                             # computed again
