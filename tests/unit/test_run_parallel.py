"""core.concurrency.run_parallel: calls in order, the first failure stops the rest, and
nothing is kept per call (a backup of 600 k files makes a call per file)."""

from __future__ import annotations

import threading
import tracemalloc

import pytest

from dbsafe.core.concurrency import run_parallel


def test_one_worker_runs_the_calls_in_the_order_given():
    seen: list[int] = []
    run_parallel(1, "t", [(seen.append, (i,)) for i in range(50)])
    assert seen == list(range(50))


def test_two_workers_run_every_call_on_threads_named_after_the_work():
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def note(i: int) -> None:
        with lock:
            seen.append((i, threading.current_thread().name))

    run_parallel(2, "dbsafe-copy", [(note, (i,)) for i in range(200)])
    assert sorted(i for i, _ in seen) == list(range(200))
    assert {name for _, name in seen} <= {"dbsafe-copy_0", "dbsafe-copy_1"}


def test_the_first_failure_stops_the_calls_not_started_and_is_raised():
    ran: list[int] = []

    def call(i: int) -> None:
        ran.append(i)
        if i == 10:
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_parallel(1, "t", [(call, (i,)) for i in range(1000)])
    assert ran == list(range(11))


def test_nothing_is_kept_per_call():
    calls = [(int, ()) for _ in range(100_000)]
    tracemalloc.start()
    try:
        run_parallel(2, "t", calls)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # an executor kept a future per call: ~100 MB for these 100,000 calls
    assert peak < 5_000_000, peak


def test_an_error_of_a_generator_of_calls_is_raised_not_taken_for_its_end():
    """A backup's calls come from a walk of the data directory as it copies: a walk that
    fails (a tablespace link gone wrong) must fail the backup, never end it early."""
    ran: list[int] = []

    def calls():
        for i in range(100):
            if i == 40:
                raise PermissionError("a folder cannot be read")
            yield ran.append, (i,)

    with pytest.raises(PermissionError, match="cannot be read"):
        run_parallel(2, "t", calls())
    assert sorted(ran) == list(range(40))
