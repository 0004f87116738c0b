"""Long work started over HTTP: run a service call in a thread and answer with its job.

A backup or a restore takes minutes; the API answers ``202 Accepted`` with the job's id as
soon as the job's row exists, and the caller follows it (``GET /api/v1/jobs/{id}``, its
server-sent events, or the portal's job page). What fails before the job starts — an
unknown server, a backup already running, a bad target — fails the request itself, with
its error code, so a caller learns at once that nothing started.

Each launched call opens its own ``Vault`` (as the scheduler's runs do): a job never shares
a catalog connection or repository writer with the requests being served beside it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from dbsafe.services.activity import cancel_job, get_job, job_started
from dbsafe.services.handle import Vault

log = logging.getLogger("dbsafe.api")


class Launcher:
    """Starts service calls in threads; on shutdown asks their jobs to stop and waits."""

    def __init__(self, vault_path: Path) -> None:
        self.vault_path = vault_path
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, name: str, work: Callable[[Vault], object]) -> str:
        """Run ``work(vault)`` in a thread; the id of the job it starts. Raises what ``work``
        raised before starting a job."""
        started = threading.Event()
        box: dict[str, object] = {}

        def on_start(job_id: str) -> None:
            box.setdefault("job", job_id)
            started.set()

        def run() -> None:
            job_started.set(on_start)
            vault = None
            try:
                vault = Vault.open(self.vault_path)
                work(vault)
            except BaseException as exc:  # noqa: BLE001 - after the job started, its row has it
                box.setdefault("error", exc)
                if "job" in box:
                    log.info("%s: job %s ended with %s", name, box["job"], exc)
            finally:
                if vault is not None:
                    vault.catalog.close()
                started.set()

        thread = threading.Thread(target=run, name=f"api-{name}", daemon=True)
        thread.start()
        started.wait()
        if "job" in box:
            with self._lock:
                self._threads = {j: t for j, t in self._threads.items() if t.is_alive()}
                self._threads[str(box["job"])] = thread
            return str(box["job"])
        error = box.get("error")
        if isinstance(error, BaseException):
            raise error
        raise RuntimeError(f"{name} finished without starting a job")

    def shutdown(self, catalog, timeout: float = 30.0) -> None:
        """Ask every job still running to stop (each removes what it made) and wait."""
        with self._lock:
            running = [(j, t) for j, t in self._threads.items() if t.is_alive()]
        for job_id, _ in running:
            try:
                if get_job(catalog, job_id)["state"] == "running":
                    cancel_job(catalog, job_id)
            except Exception as exc:  # noqa: BLE001 - shutting down: log and go on
                log.warning("could not cancel job %s: %s", job_id, exc)
        for _, thread in running:
            thread.join(timeout)
