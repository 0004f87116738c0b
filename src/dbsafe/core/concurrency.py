"""Threads and processes: default parallelism, running tasks in parallel, liveness of a pid
and where a pid means anything (``pid_scope``)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


def default_workers() -> int:
    """One thread per core: the hot paths are CPU-bound in C code that releases the GIL."""
    return os.cpu_count() or 2


def run_parallel(workers: int, name: str,
                 calls: Iterable[tuple[Callable[..., object], tuple[object, ...]]]) -> None:
    """Run ``fn(*args)`` for every call on ``workers`` threads, in the order given
    (``calls`` may be a generator: it is advanced by one thread at a time, and what it
    raises is raised here as a call's error is).

    The threads take the calls one at a time from ``calls``: nothing is kept per call
    (an executor's future per call cost ~1 KB each, 0.6 GB for a backup of 600 k files).
    The first exception stops the calls not yet started and is raised once the running
    ones end, so a failure stops the work instead of letting it run to the end; so does
    an interrupt of the waiting thread (Ctrl-C).
    """
    pending = iter(calls)
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        while not stop.is_set():
            try:
                with lock:  # ``calls`` may be a generator: one thread advances it at a time
                    call = next(pending, None)
                if call is None:
                    return
                call[0](*call[1])
            except BaseException as exc:  # raised in the calling thread, below; a
                errors.append(exc)  # generator's too (it then ends: the others stop)
                stop.set()
                return

    threads = [threading.Thread(target=work, name=f"{name}_{i}")
               for i in range(max(1, workers))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:
        stop.set()
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]


Work = tuple[list[tuple[Callable[..., object], tuple[object, ...]]], Callable[[], None]]


def run_in_order(workers: int, name: str, work: Iterable[Work]) -> None:
    """For each piece of ``work`` (its calls, and what to do once they have all run), as
    the pieces come: run its calls on ``workers`` threads (``run_parallel``), then its
    ``done``, in the pieces' order and one at a time. A backup reads its files this way and
    writes their entries in path order, keeping nothing of a file once it is done: memory
    follows the files in flight, not the data directory."""
    pending: deque[list[Any]] = deque()  # [done, calls not yet run], in the pieces' order
    lock = threading.Lock()

    def drain() -> None:  # with ``lock`` held
        while pending and pending[0][1] == 0:
            pending.popleft()[0]()

    def run(piece: list[Any], fn: Callable[..., object], args: tuple[object, ...]) -> None:
        fn(*args)
        with lock:
            piece[1] -= 1
            drain()

    def calls() -> Iterator[tuple[Callable[..., object], tuple[object, ...]]]:
        for piece_calls, done in work:
            piece = [done, len(piece_calls)]
            with lock:
                pending.append(piece)
                drain()
            for fn, args in piece_calls:
                yield run, (piece, fn, args)

    run_parallel(workers, name, calls())
    with lock:
        drain()
    assert not pending, "a piece of work did not finish"


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


def boot_id() -> str | None:
    """This boot of the kernel (random at every boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat, field 22);
    None when there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


@functools.cache
def pid_scope() -> str:
    """Where a pid names one process, as 12 hex digits: this kernel boot, this pid
    namespace and, when readable (as root), this VM's DMI uuid. Two processes can judge
    each other's pids only in the same scope: a cloned VM boots with another boot id (and
    one resumed from a memory snapshot keeps it, but not its VM uuid), a container has its
    own pid namespace. Without /proc the scope says "unknown" to everyone."""
    parts = [boot_id() or ""]
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    with contextlib.suppress(OSError):
        parts.append(Path("/sys/class/dmi/id/product_uuid").read_text().strip())
    if not parts[0]:
        parts.append(os.urandom(8).hex())  # nothing to tell machines apart: judge nobody
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
