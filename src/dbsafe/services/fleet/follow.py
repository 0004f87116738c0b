"""Following a job queued for an agent until it ends (docs/fleet.md, *Jobs go to the host
that owns the cluster*).

The command, API request or scheduler pass that queued a job waits here for its end, so its
caller gets the job's result, progress and errors as if the work had run in its process.

A follower must learn of the end at once: a backup through an agent may cost at most 5 %
more than one run here, and looking at the job's row every 0.1 s left it ~0.07 s
late on average (bench/README.md). With a PostgreSQL catalog the control plane NOTIFYs
every write an agent makes on its job (services/fleet/scope.py), and each process holds one
LISTEN connection for all its followers (``JobUpdates``): a follower reads the row when its
job is named, and every ``HEARD_EVERY`` seconds anyway (a notification lost while the
listener reconnects, a job failed by the control plane). SQLite has no notifications: its
followers look at the row soon at first, then every half second.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow
from dbsafe.services.activity.jobs import FINAL, ProgressFn, end_job, job_started
from dbsafe.services.handle.vault_handle import Vault

log = logging.getLogger("dbsafe.fleet")
# seconds between two looks at a followed job without notifications: soon at first (most
# jobs are short), then less often; for a job's first seconds every 0.1 s at most
FOLLOW_EVERY = (0.02, 0.5)
FOLLOW_CLOSELY = (5.0, 0.1)
# with notifications: the longest wait between two looks at the row
HEARD_EVERY = 2.0


def follow(vault: Vault, job_id: str, on_progress: ProgressFn | None = None, *,
           within: float | None = None,
           late: Callable[[], DbsafeError] | None = None) -> dict:
    """Wait for a queued job to end (telling ``job_started`` its id at once, and
    ``on_progress`` its bytes); its result, or its error raised here. A job still active
    after ``within`` seconds is ended here as failed with the error ``late`` makes (for
    jobs that write nothing: a check)."""
    notify = job_started.get()
    if notify is not None:
        notify(job_id)
    updates = JobUpdates.of(vault.catalog)
    with (updates.watching(job_id) if updates is not None
          else contextlib.nullcontext()) as heard:
        row = _wait_for_end(vault, job_id, heard, on_progress, within, late)
    if row["state"] in ("failed", "cancelled"):
        error = DbsafeError.reported(row["error_code"] or "internal",
                                     row["error_message"] or "the job failed")
        if row["result"]:  # what the failed work found (a verify's, a drill's report)
            error.report = json.loads(row["result"])
        raise error
    return {**json.loads(row["result"] or "{}"), "job_id": job_id}


def _wait_for_end(vault: Vault, job_id: str, heard: threading.Event | None,
                  on_progress: ProgressFn | None, within: float | None,
                  late: Callable[[], DbsafeError] | None) -> dict:
    """The job's row once it ended: read when ``heard`` is set (its job was written), or
    after a while."""
    seen = (-1, -1)
    every = FOLLOW_EVERY[0]
    followed = time.monotonic()
    give_up = None if within is None else followed + within
    while True:
        if give_up is not None and late is not None and time.monotonic() > give_up:
            error = late()
            end_job(vault.catalog, job_id, {"state": "failed", "end_time": utcnow(),
                                            "error_code": error.code,
                                            "error_message": error.message})
            give_up = None  # ended here, or it ended meanwhile: its row says which
        if heard is not None:
            heard.clear()  # before the read: a write after it wakes the next wait
        row = vault.catalog.get_job(job_id)
        if row is None:
            raise DbsafeError("job.unknown", job_id=job_id)
        progress = (row["bytes_done"], row["bytes_total"])
        if on_progress is not None and progress != seen and row["state"] != "queued":
            on_progress(*progress)
            seen = progress
        if row["state"] in FINAL:
            return row
        wait = HEARD_EVERY if heard is not None else every
        if give_up is not None:
            wait = max(0.0, min(wait, give_up - time.monotonic()))
        if heard is not None:
            heard.wait(wait)
            continue
        time.sleep(wait)
        closely = time.monotonic() - followed < FOLLOW_CLOSELY[0]
        every = min(every * 1.5, FOLLOW_CLOSELY[1] if closely else FOLLOW_EVERY[1])


class JobUpdates:
    """One LISTEN connection of this process on its PostgreSQL catalog's job updates
    channel, shared by every follower: ``watching(job_id)`` gives an event set whenever
    that job is written. The connection is opened by the first follower and closed once
    none has followed for ``IDLE_CLOSE`` seconds (a CLI's follow, the scheduler's bursts);
    a follower that cannot have it within ``READY_WAIT`` seconds looks at its row on its
    own (``watching`` gives None)."""

    IDLE_CLOSE = 10.0
    READY_WAIT = 5.0
    RETRY_SECONDS = 1.0
    _all: weakref.WeakKeyDictionary[Any, JobUpdates] = weakref.WeakKeyDictionary()
    _all_lock = threading.Lock()

    def __init__(self, catalog: Any) -> None:
        self._catalog = catalog
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @classmethod
    def of(cls, catalog: Any) -> JobUpdates | None:
        """The listener of ``catalog``; None for a catalog without notifications."""
        if not callable(getattr(type(catalog), "listen_job_updates", None)):
            return None
        with cls._all_lock:
            found = cls._all.get(catalog)
            if found is None:
                found = cls._all[catalog] = cls(catalog)
            return found

    @contextlib.contextmanager
    def watching(self, job_id: str) -> Iterator[threading.Event | None]:
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(job_id, set()).add(event)
            if self._thread is None:
                self._ready.clear()
                self._thread = threading.Thread(target=self._listen, name="job-updates",
                                                daemon=True)
                self._thread.start()
        try:
            # the row is read after LISTEN holds: a write before it is in the row, one
            # after it sets the event
            yield event if self._ready.wait(self.READY_WAIT) else None
        finally:
            with self._lock:
                events = self._waiting.get(job_id, set())
                events.discard(event)
                if not events:
                    self._waiting.pop(job_id, None)

    def _listen(self) -> None:
        idle_since: float | None = None
        while True:
            try:
                with self._catalog.listen_job_updates() as conn:
                    self._ready.set()
                    while True:
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake(note.payload)
                        idle_since = self._idle(idle_since)
                        if idle_since is None:
                            continue
                        if time.monotonic() - idle_since > self.IDLE_CLOSE and self._end():
                            return
            except Exception as exc:  # the catalog's server restarts: followers look alone
                self._ready.clear()
                log.debug("listening for job updates failed: %s", exc)
                idle_since = self._idle(idle_since)
                if idle_since is not None and self._end():
                    return
                time.sleep(self.RETRY_SECONDS)

    def _wake(self, job_id: str) -> None:
        with self._lock:
            for event in self._waiting.get(job_id, ()):
                event.set()

    def _idle(self, since: float | None) -> float | None:
        """When the listener was last left without followers (None: it has some)."""
        with self._lock:
            if self._waiting:
                return None
        return since if since is not None else time.monotonic()

    def _end(self) -> bool:
        """Stop listening, unless a follower came meanwhile."""
        with self._lock:
            if self._waiting:
                return False
            self._thread = None
            self._ready.clear()
            return True
