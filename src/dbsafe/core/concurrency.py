"""Threads and processes: default parallelism, running tasks in parallel, liveness of a pid."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path


def default_workers() -> int:
    """One thread per core: the hot paths are CPU-bound in C code that releases the GIL."""
    return os.cpu_count() or 2


def run_parallel(workers: int, name: str, calls: Sequence[tuple[Callable, tuple]]) -> None:
    """Run ``fn(*args)`` for every call on ``workers`` threads, in the order given.

    The first exception cancels the calls not yet started and is raised once the running
    ones end, so a failure stops the work instead of letting it run to the end.
    """
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix=name) as pool:
        futures = [pool.submit(fn, *args) for fn, args in calls]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in done:
            if fut.exception() is not None:
                for other in futures:
                    other.cancel()
                raise fut.exception()


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid runs on this host. A process that has exited but
    is not yet reaped by its parent (a zombie: a stopped server until init collects it,
    often a second or two later) has ended: waiting for it to vanish waits for nothing."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal said it exists
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
