"""Every backup, restore, verify and drill runs as a job recorded in the catalog.

A job row is written when the work starts, its progress (bytes done of total) at most a few
times a second, and its end state with an error code and message when it fails. A job whose
process died without finishing (killed, power loss) is shown as failed, ``job.abandoned``.

States: queued (waiting for the agent of its server's host: docs/fleet.md), running (in
progress), completed, completed_with_warnings, failed, cancelling,
cancelled. Cancellation works across processes: ``cancel_job`` sets a flag in the catalog and
the job, which reads it back with each progress write, stops with ``job.cancelled`` — a
backup leaves nothing visible (its manifest is never written), a restore removes what it
created.

Backups of one server exclude each other by kind: a full, copy-only or differential while
another of these runs, or a log backup while a log backup runs, is refused with
``backup.already_running``; a log backup may run beside a full (as the seed's do).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from dbsafe.catalog.base import Catalog
from dbsafe.core.concurrency import pid_alive
from dbsafe.core.errors import DbsafeError, os_error
from dbsafe.core.stamps import recorded, utcnow
from dbsafe.services.activity import alerts

ProgressFn = Callable[[int, int], None]
# What jobs do: the work a user starts, the deletions it leads to, and the steps of
# `dbsafe serve` recorded when they fail or warn (scheduler/steps.py).
TYPES = ("backup", "restore", "verify", "drill", "delete", "undelete", "purge", "prune-wal",
         "gc", "retention", "discovery", "health-check", "agent", "schedule", "fleet",
         "server-add", "protect", "archiving", "restore-check", "mount", "instant")
ACTIVE = ("queued", "running", "cancelling")
FINAL = ("completed", "completed_with_warnings", "failed", "cancelled")
MAX_KEPT_REPORT = 1 << 20  # bytes of a failed job's report kept as its result (_kept_report)
STATES = ACTIVE + FINAL
# Backup kinds that may not run at the same time on one server.
EXCLUSIVE = {"full": ("full", "copy-only", "diff"), "copy-only": ("full", "copy-only", "diff"),
             "diff": ("full", "copy-only", "diff"), "log": ("log",)}


def new_job_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


HOST = socket.gethostname()
# The id of a job an agent claimed from the control plane's queue (docs/fleet.md): the first
# Job started in this context takes that row over instead of making one.
claimed_job: ContextVar[list[str] | None] = ContextVar("claimed_job", default=None)


def _claimed_id() -> str | None:
    """The claimed job's id, once: a second Job in the same run (a drill's restore) is a
    job of its own."""
    holder = claimed_job.get()
    return holder.pop() if holder else None


# Told the id of the first job that starts in this context: the API starts work in a thread
# and answers with the job's id as soon as its row exists (api/launch.py), while an error
# raised before that (an unknown server, a backup already running) is answered at once.
job_started: ContextVar[Callable[[str], None] | None] = ContextVar("job_started", default=None)


class Job:
    """Context manager: ``with Job(catalog, "backup", server) as job: ... job.finish(result)``.

    ``backup_type`` makes the job exclusive with running backups of the same server (see
    the module docstring); ``trigger`` is "on-demand" or "scheduled"; ``reason`` says why
    the job is what it is (a differential turned into a full, ...).
    """

    PROGRESS_INTERVAL = 0.5

    def __init__(self, catalog: Catalog, type: str, server: str | None,
                 on_progress: ProgressFn | None = None, *, backup_type: str | None = None,
                 trigger: str = "on-demand", items: list[str] | None = None,
                 reason: str | None = None, node: str | None = None) -> None:
        self.catalog = catalog
        self.type = type
        self.server = server
        self.backup_type = backup_type
        self.id = _claimed_id() or new_job_id(type)
        self.on_progress = on_progress
        self._extra = {"trigger": trigger, "backup_type": backup_type,
                       "items": json.dumps(items) if items is not None else None,
                       "reason": reason, "node": node}
        self._last_write = 0.0
        self._writing = False  # a thread writes the job's progress now (``advance``)
        self._done = 0
        self._total = 0
        self._lock = threading.Lock()
        self._result: dict | None = None
        self.warnings: list[dict] = []

    def __enter__(self) -> Job:
        conflicts = EXCLUSIVE.get(self.backup_type or "", ()) if self.type == "backup" else ()
        busy = self.catalog.create_job(self.id, self.type, self.server, os.getpid(), utcnow(),
                                       conflicts=conflicts, alive=job_alive, host=HOST,
                                       **self._extra)
        if busy and busy["id"] == self.id:  # an agent's claimed job, ended meanwhile
            raise DbsafeError("job.no_longer_running", job_id=self.id, state=busy["state"])
        if busy:
            raise DbsafeError("backup.already_running", type=busy["backup_type"] or "backup",
                              name=self.server, job_id=busy["id"])
        notify = job_started.get()
        if notify is not None:
            notify(self.id)
        # the first progress write after PROGRESS_INTERVAL, not at the first bytes: a short
        # job's row is written at its end only (on an agent, each write is a call to the
        # control plane)
        self._last_write = time.monotonic()
        return self

    def expect(self, nbytes: int) -> None:
        """Add ``nbytes`` to the work this job has to do."""
        with self._lock:
            self._total += nbytes

    def advance(self, nbytes: int) -> None:
        """Record ``nbytes`` more done; called from many threads. Raises ``job.cancelled``
        when a cancel was requested. The row is written by one thread at a time, outside
        the lock: the other threads go on copying meanwhile (on an agent a write is a call
        to the control plane, 2-12 ms), and skip the write while one is under way."""
        with self._lock:
            self._done += nbytes
            done, total = self._done, self._total
            now = time.monotonic()
            write = not self._writing and (now - self._last_write >= self.PROGRESS_INTERVAL
                                           or done >= total)
            if write:
                self._writing = True
                self._last_write = now
            if self.on_progress:
                self.on_progress(done, total)
        if not write:
            return
        try:
            cancelled = self.catalog.update_job(self.id, bytes_done=done, bytes_total=total)
        finally:
            with self._lock:
                self._writing = False
        if cancelled:
            raise DbsafeError("job.cancelled", job_id=self.id)

    def progress(self) -> tuple[int, int]:
        """(bytes done, bytes expected) so far."""
        with self._lock:
            return self._done, self._total

    def check_cancelled(self) -> None:
        """For waits that make no progress (a log backup waiting for its segment)."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_write >= self.PROGRESS_INTERVAL:
                self._last_write = now
                self._check_cancel()

    def _check_cancel(self) -> None:
        row = self.catalog.get_job(self.id)
        if row and row["cancel_requested"]:
            raise DbsafeError("job.cancelled", job_id=self.id)

    def warn(self, warning: dict) -> None:
        self.warnings.append(warning)

    def finish(self, result: dict, state: str = "completed") -> None:
        if self.warnings:
            result.setdefault("warnings", [])
            result["warnings"] = [*result["warnings"], *self.warnings]
            state = "completed_with_warnings" if state == "completed" else state
        self._result = result
        with self._lock:
            self.catalog.update_job(self.id, state=state, end_time=utcnow(),
                                    bytes_done=self._total, bytes_total=self._total,
                                    warnings=json.dumps(result.get("warnings") or []) or None,
                                    result=json.dumps(result, default=str))
        _run_hooks(self.catalog, self.id)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            if self._result is None:
                self.finish({})
            return
        self.catalog.update_job(self.id, **failure(exc), **_kept_report(exc))
        _run_hooks(self.catalog, self.id)


def _kept_report(exc: BaseException) -> dict:
    """What a failed verify or drill found (``exc.report``), kept as the failed job's
    result: the caller of an agent's job reads it there (fleet/dispatch.py ``follow``). One
    too long for a catalog call (a vault damaged throughout) is kept as its size only."""
    report = getattr(exc, "report", None)
    if not isinstance(report, dict):
        return {}
    text = json.dumps(report, default=str)
    if len(text) > MAX_KEPT_REPORT:
        text = json.dumps({"report_omitted": f"{len(text)} bytes, over the "
                                             f"{MAX_KEPT_REPORT} kept with a job"})
    return {"result": text}


def failure(exc: BaseException) -> dict:
    """The end of a job that raised ``exc``: state, end time, error code and message."""
    if isinstance(exc, DbsafeError):
        code, message = exc.code, exc.message
    elif isinstance(exc, KeyboardInterrupt):
        code, message = "job.interrupted", DbsafeError("job.interrupted").message
    elif (host_error := os_error(exc)) is not None:  # the host's condition, not a bug
        code, message = host_error.code, host_error.message
    else:
        code, message = "internal", f"{type(exc).__name__}: {exc}"
    return {"state": "cancelled" if code == "job.cancelled" else "failed",
            "end_time": utcnow(), "error_code": code, "error_message": message}


def record_job(catalog: Catalog, type: str, server: str | None, *, started: str,
               error: BaseException | None = None, result: dict | None = None,
               trigger: str = "scheduled", backup_type: str | None = None,
               reason: str | None = None) -> str:
    """Record, after the fact, work that ran without a job of its own: a scheduled backup
    that failed before its job could start (the server was down), a step of ``dbsafe
    serve`` that failed or warned (retention, discovery, ...). It failed with ``error``, or
    completed with ``result`` (with warnings when ``result["warnings"]``); its alerts are
    raised as for any job. Returns the job's id."""
    job_id = new_job_id(type)
    catalog.create_job(job_id, type, server, os.getpid(), started, host=HOST,
                       trigger=trigger, backup_type=backup_type, reason=reason)
    if error is not None:
        catalog.update_job(job_id, **failure(error))
    else:
        result = result or {}
        warnings = result.get("warnings") or []
        catalog.update_job(job_id, state="completed_with_warnings" if warnings else "completed",
                           end_time=utcnow(), warnings=json.dumps(warnings),
                           result=json.dumps({**result, "job_id": job_id}, default=str))
    _run_hooks(catalog, job_id)
    return job_id


def _run_hooks(catalog: Catalog, job_id: str) -> None:
    """Alerts for the job's end (failed, or a success that resolves an earlier failure);
    they never fail the job that triggered them (``alerts.job_finished`` does not raise).
    An agent's catalog (``delivers_alerts`` false) leaves them to the control plane, which
    runs them when the job's end reaches it (fleet/scope.py)."""

    if not getattr(catalog, "delivers_alerts", True):
        return
    job_ended(catalog, job_id)


def job_ended(catalog: Catalog, job_id: str) -> None:
    """The alerts of a job that ended (run by the control plane for its agents' jobs)."""
    job = catalog.get_job(job_id)
    assert job is not None  # the job that just ended
    alerts.job_finished(catalog, _decode(job))


def _decode(job: dict) -> dict:
    for key in ("result", "warnings", "items"):
        if isinstance(job.get(key), str):
            job[key] = json.loads(job[key])
    return job


def job_alive(job: dict) -> bool:
    """Whether a job's process runs: an agent's job while it is queued or its agent reported
    on it within AGENT_LOST_AFTER (the control plane fails it after that: fleet/queue.py);
    else checked by pid on its own host; a job of another host (a catalog shared by
    several) is taken as running."""
    if job.get("agent_id"):
        return True
    if job.get("host") not in (None, HOST):
        return True
    return pid_alive(job["pid"])


def end_job(catalog: Catalog, job_id: str, fields: dict) -> bool:
    """End a job that is still queued or running with ``fields`` (state, end time, error)
    and raise its alerts; whether it was still active."""
    if not catalog.fail_job_if_active(job_id, fields):
        return False
    _run_hooks(catalog, job_id)
    return True


def _reap(catalog: Catalog, job: dict) -> dict:
    """A running job whose process is gone: failed (abandoned), or cancelled if asked."""
    if job["state"] in ACTIVE and not job_alive(job):
        if job["state"] == "cancelling":
            fields = {"state": "cancelled", "end_time": utcnow(), "error_code": "job.cancelled",
                      "error_message": "cancelled (its process had ended)"}
        else:
            fields = {"state": "failed", "end_time": utcnow(), "error_code": "job.abandoned",
                      "error_message": DbsafeError("job.abandoned", pid=job["pid"]).message}
        catalog.update_job(job["id"], **fields)
        job.update(fields)
        _run_hooks(catalog, job["id"])
    return job


def list_jobs(catalog: Catalog, limit: int = 100, *, state: str | None = None,
              server: str | None = None, type: str | None = None,
              backup_type: str | None = None, item: str | None = None,
              trigger: str | None = None, offset: int = 0, since: datetime | None = None,
              until: datetime | None = None) -> list[dict]:
    """Jobs, newest first, filtered, the first ``offset`` left out (a page); ``since``
    (included) and ``until`` (excluded) bound their start. Running jobs whose process is
    gone are reaped, and then left out of a ``state`` filter they no longer match."""
    if state is not None and state not in STATES:
        raise DbsafeError("job.bad_state", state=state, valid=", ".join(STATES))
    equal: dict[str, Any] = {"state": state, "server": server, "type": type,
                             "backup_type": backup_type, "trigger": trigger,
                             **_bounds(since, until)}
    if item is None:
        if offset:
            equal["offset"] = offset
        rows = catalog.list_jobs(limit, **equal)
    else:  # a job's items are JSON: filtered here, over the newest 5,000 at most
        rows = catalog.list_jobs(max(limit + offset, 5000), **equal)
    jobs = []
    for job in rows:
        job = _decode(_reap(catalog, job))
        if state and job["state"] != state:
            continue
        if item and item not in (job.get("items") or []):
            continue
        jobs.append(job)
    return jobs[offset:offset + limit] if item is not None else jobs


def count_jobs(catalog: Catalog, *, state: str | None = None, server: str | None = None,
               type: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> int:
    """How many jobs ``list_jobs`` pages through with the same filters."""
    return catalog.count_jobs(state=state, server=server, type=type, **_bounds(since, until))


def _bounds(since: datetime | None, until: datetime | None) -> dict[str, str]:
    """A time range as the catalog compares start times (given bounds only: an agent's
    catalog takes no keyword it was not asked for)."""
    return {name: recorded(t) for name, t in (("since", since), ("until", until))
            if t is not None}


def get_job(catalog: Catalog, job_id: str) -> dict:
    job = catalog.get_job(job_id)
    if job is None:
        raise DbsafeError("job.unknown", job_id=job_id)
    return _decode(_reap(catalog, job))


def cancel_job(catalog: Catalog, job_id: str) -> dict:
    """Ask a running job to stop; it ends as ``cancelled`` at its next progress write."""
    job = get_job(catalog, job_id)
    if job["state"] not in ACTIVE:
        raise DbsafeError("job.not_running", job_id=job_id, state=job["state"])
    if job["state"] == "queued":  # no agent took it yet: it ends here
        end_job(catalog, job_id, {"state": "cancelled", "end_time": utcnow(),
                                  "cancel_requested": 1, "error_code": "job.cancelled",
                                  "error_message": "cancelled before its agent took it"})
    else:
        catalog.update_job(job_id, cancel_requested=1, state="cancelling")
    return get_job(catalog, job_id)



def running_job(catalog: Catalog, type: str, server: str) -> dict | None:
    """A live job of ``type`` on ``server``, if any (for kinds without a backup_type); not
    the job an agent claimed to run now (queued for it, so it counted when it was queued)."""
    holder = claimed_job.get()
    for job in catalog.list_jobs(200, server=server, type=type):
        if holder and job["id"] in holder:
            continue
        if _reap(catalog, job)["state"] in ACTIVE:
            return job
    return None
