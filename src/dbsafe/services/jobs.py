"""Every backup, restore and verify runs as a job recorded in the catalog.

A job row is written when the work starts, its progress (bytes done of total) at most a few
times a second, and its end state with an error code and message when it fails. A job whose
process died without finishing (killed, power loss) is shown as failed, ``job.abandoned``.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from dbsafe.catalog.base import Catalog
from dbsafe.core.concurrency import pid_alive
from dbsafe.core.errors import DbsafeError

ProgressFn = Callable[[int, int], None]


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_job_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class Job:
    """Context manager: ``with Job(catalog, "backup", server) as job: ... job.finish(result)``."""

    PROGRESS_INTERVAL = 0.5

    def __init__(self, catalog: Catalog, type: str, server: str | None,
                 on_progress: ProgressFn | None = None) -> None:
        self.catalog = catalog
        self.type = type
        self.server = server
        self.id = new_job_id(type)
        self.on_progress = on_progress
        self._last_write = 0.0
        self._done = 0
        self._total = 0
        self._lock = threading.Lock()
        self._result: dict | None = None

    def __enter__(self) -> Job:
        self.catalog.create_job(self.id, self.type, self.server, os.getpid(), utcnow())
        return self

    def expect(self, nbytes: int) -> None:
        """Add ``nbytes`` to the work this job has to do."""
        with self._lock:
            self._total += nbytes

    def advance(self, nbytes: int) -> None:
        """Record ``nbytes`` more done; called from many threads."""
        with self._lock:
            self._done += nbytes
            done, total = self._done, self._total
            now = time.monotonic()
            write = now - self._last_write >= self.PROGRESS_INTERVAL or done >= total
            if write:
                self._last_write = now
                self.catalog.update_job(self.id, bytes_done=done, bytes_total=total)
            if self.on_progress:
                self.on_progress(done, total)

    def finish(self, result: dict, state: str = "completed") -> None:
        self._result = result
        with self._lock:
            self.catalog.update_job(self.id, state=state, end_time=utcnow(),
                                    bytes_done=self._total, bytes_total=self._total,
                                    result=json.dumps(result, default=str))

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            if self._result is None:
                self.finish({})
            return
        if isinstance(exc, DbsafeError):
            code, message = exc.code, exc.message
        elif isinstance(exc, KeyboardInterrupt):
            code, message = "job.interrupted", "interrupted by the user"
        else:
            code, message = "internal", f"{type(exc).__name__}: {exc}"
        self.catalog.update_job(self.id, state="failed", end_time=utcnow(), error_code=code,
                                error_message=message)


def list_jobs(catalog: Catalog, limit: int = 100) -> list[dict]:
    """Jobs, newest first; running jobs whose process is gone are marked abandoned."""
    jobs = catalog.list_jobs(limit)
    for job in jobs:
        if job["state"] == "running" and not pid_alive(job["pid"]):
            fields = {"state": "failed", "end_time": utcnow(), "error_code": "job.abandoned",
                      "error_message": f"the process that ran it (pid {job['pid']}) ended "
                                       "without finishing; nothing it wrote is visible"}
            catalog.update_job(job["id"], **fields)
            job.update(fields)
        job["result"] = json.loads(job["result"]) if job.get("result") else None
    return jobs


def running_job(catalog: Catalog, type: str, server: str) -> dict | None:
    for job in list_jobs(catalog, 200):
        if job["state"] == "running" and job["type"] == type and job["server"] == server:
            return job
    return None
