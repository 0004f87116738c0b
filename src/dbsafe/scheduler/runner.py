"""Runs scheduled work on threads, at most ``per_server`` at a time per server, ``total``
at a time on this host, and ``per_host`` at a time for each agent's host (those runs are
jobs the agent runs; here they are only followed: docs/fleet.md); the rest waits in a
queue, first in first out (a busy server or host does not hold back the others)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dbsafe.scheduler.due import Work

log = logging.getLogger("dbsafe.scheduler")
DEFAULT_PER_SERVER = 3
DEFAULT_TOTAL = 4
DEFAULT_PER_HOST = 4


class Runner:
    def __init__(self, execute: Callable[[Work], None], per_server: int = DEFAULT_PER_SERVER,
                 total: int = DEFAULT_TOTAL,
                 limit_of: Callable[[str], int | None] = lambda server: None,
                 host_of: Callable[[str], str | None] = lambda server: None,
                 per_host: int = DEFAULT_PER_HOST) -> None:
        """``host_of(server)``: the agent whose host runs the server's work (None: this
        host's); ``limit_of(server)``: the server's own limit, if it has one."""
        self._execute = execute
        self._per_server = per_server
        self._total = total
        self._per_host = per_host
        self._limit_of = limit_of
        self._host_of = host_of
        self._lock = threading.Lock()
        self._queue: list[Work] = []
        self._running: dict[tuple[int, str], threading.Thread] = {}
        self._per: dict[str, int] = {}
        # of the queued and running work, read when it is submitted: its host, its
        # server's limit (the queue is walked under the lock at every start and end)
        self._hosts: dict[tuple[int, str], str | None] = {}
        self._limits: dict[tuple[int, str], int] = {}
        self._on_host: dict[str | None, int] = {}
        self.max_seen: dict[str, int] = {}

    def submit(self, work: Work) -> None:
        host = self._host_of(work.server)  # read once, outside the lock
        limit = self._limit_of(work.server) or self._per_server
        with self._lock:
            self._queue.append(work)
            self._hosts[work.key], self._limits[work.key] = host, limit
        self._pump()

    def busy(self) -> set[tuple[int, str]]:
        """(instance, kind) queued or running."""
        with self._lock:
            return {w.key for w in self._queue} | set(self._running)

    def queued(self) -> list[Work]:
        with self._lock:
            return list(self._queue)

    def _pump(self) -> None:
        with self._lock:
            for work in list(self._queue):
                host = self._hosts[work.key]
                if self._on_host.get(host, 0) >= (self._total if host is None
                                                  else self._per_host):
                    continue
                if self._per.get(work.server, 0) >= self._limits[work.key]:
                    continue
                self._queue.remove(work)
                self._on_host[host] = self._on_host.get(host, 0) + 1
                self._per[work.server] = self._per.get(work.server, 0) + 1
                self.max_seen[work.server] = max(self.max_seen.get(work.server, 0),
                                                 self._per[work.server])
                thread = threading.Thread(target=self._run, args=(work,), daemon=True,
                                          name=f"dbsafe-{work.server}-{work.kind}")
                self._running[work.key] = thread
                thread.start()

    def _run(self, work: Work) -> None:
        try:
            self._execute(work)
        except Exception:  # noqa: BLE001 - one failed run must not stop the scheduler
            log.exception("scheduled %s of %s failed", work.kind, work.server)
        finally:
            with self._lock:
                self._running.pop(work.key, None)
                self._per[work.server] -= 1
                self._on_host[self._hosts.pop(work.key, None)] -= 1
                self._limits.pop(work.key, None)
            self._pump()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for running work (queued work is dropped: its slot is retried at restart)."""
        with self._lock:
            for work in self._queue:
                self._hosts.pop(work.key, None)
                self._limits.pop(work.key, None)
            self._queue.clear()
            threads = list(self._running.values())
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)
