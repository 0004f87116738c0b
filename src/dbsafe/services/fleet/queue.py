"""Jobs queued for agents: queued by the control plane, claimed by the owning host's agent,
reported on while they run, failed when their agent falls silent (docs/fleet.md, *Jobs go to
the host that owns the cluster*).

The queue is the catalog's ``jobs`` table (state ``queued``, ``agent_id``): a claim is one
``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)``, so a job is taken once however
many polls run. A waiting poll is woken, not repeated: ``queue_job`` tells the listeners of
this process (``add_listener``: the agents' API's event loop), and with a PostgreSQL catalog
every control plane process also hears the catalog's ``NOTIFY`` (``JobNotifications``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow
from dbsafe.services.activity.jobs import end_job
from dbsafe.services.fleet.agents import AgentIdentity, get_agent
from dbsafe.services.handle.vault_handle import Vault

log = logging.getLogger("dbsafe.fleet")
LOST_AFTER = timedelta(seconds=60)  # a running job its agent said nothing of for longer: lost
REPORT_EVERY = 10.0                 # seconds between an agent's reports on a running job
POLL_WAIT = (0.0, 30.0)             # bounds of a long poll's wait, in seconds
DEFAULT_POLL_WAIT = 25.0

_listeners: list[Callable[[str | None], None]] = []
_listeners_lock = threading.Lock()


def add_listener(listener: Callable[[str | None], None]) -> Callable[[], None]:
    """Call ``listener(agent_id)`` (from any thread) whenever a job is queued for that agent
    (None: maybe for any); returns the remover."""
    with _listeners_lock:
        _listeners.append(listener)

    def remove() -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)
    return remove


def wake_listeners(agent_id: str | None) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(agent_id)
        except Exception:  # a listener's failure must not fail the queueing
            log.exception("a job-queue listener failed")


def queue_job(vault: Vault, agent_id: str, type: str, server: str, request: dict, *,
              trigger: str = "on-demand", backup_type: str | None = None,
              reason: str | None = None, job_id: str) -> str:
    """Queue a job for ``agent_id``; the agent runs ``request`` (a service request as JSON)
    with this job's id. Returns the id."""
    agent = get_agent(vault, agent_id)
    if agent["revoked"] is not None:
        raise DbsafeError("agent.revoked", agent_id=agent_id, host=agent["host"],
                          revoked=agent["revoked"])
    vault.catalog.queue_job({"id": job_id, "type": type, "server": server, "state": "queued",
                             "start_time": utcnow(), "host": agent["host"],
                             "agent_id": agent_id, "request": json.dumps(request),
                             "trigger": trigger, "backup_type": backup_type,
                             "reason": reason})
    wake_listeners(agent_id)
    return job_id


def claim(vault: Vault, agent: AgentIdentity) -> dict | None:
    """The agent's oldest queued job, now running, with its ``request`` decoded; None."""
    row = vault.catalog.claim_job(agent.id, utcnow())
    if row is None:
        return None
    return {"id": row["id"], "type": row["type"], "server": row["server"],
            "trigger": row["trigger"], "backup_type": row["backup_type"],
            "reason": row["reason"], "request": json.loads(row["request"] or "{}")}


def own_job(vault: Vault, agent: AgentIdentity, job_id: str) -> dict:
    """A job queued for this agent; ``agent.out_of_scope`` for any other."""
    row = vault.catalog.get_job(job_id)
    if row is None or row.get("agent_id") != agent.id:
        raise DbsafeError("agent.out_of_scope", agent_id=agent.id, host=agent.host,
                          action="report on job", what=f"job {job_id!r}")
    return row


def report(vault: Vault, agent: AgentIdentity, job_id: str) -> dict:
    """An agent's heartbeat on a running job: its time is recorded; the answer says whether
    the job was cancelled or ended meanwhile (then the agent stops it)."""
    row = own_job(vault, agent, job_id)
    if row["state"] in ("running", "cancelling"):
        vault.catalog.update_job(job_id, reported=utcnow())
    return {"state": row["state"], "cancel": bool(row["cancel_requested"])}


def reap(vault: Vault, now: datetime | None = None,
         lost_after: timedelta = LOST_AFTER) -> list[str]:
    """Fail the running jobs whose agent said nothing of them for LOST_AFTER
    (``job.agent_lost``), the jobs queued that long for an agent silent that long (the
    same), and the queued jobs of revoked agents (``agent.revoked``): a job is never
    "running" or "queued" forever. Returns the ids ended."""
    now = now or datetime.now(UTC)
    ended = []
    for job in vault.catalog.lost_jobs((now - lost_after).isoformat(timespec="milliseconds")):
        agent = vault.catalog.get_agent(job["agent_id"]) or {"host": job["host"]}
        error = DbsafeError("job.agent_lost", host=agent["host"], last=job["reported"],
                            seconds=int(lost_after.total_seconds()),
                            agent_id=job["agent_id"])
        if end_job(vault.catalog, job["id"], {"state": "failed", "end_time": utcnow(),
                                              "error_code": error.code,
                                              "error_message": error.message}):
            log.warning("job %s: %s", job["id"], error.message)
            vault.catalog.notify_job_update(job["id"])  # its followers: fleet/follow.py
            ended.append(job["id"])
    cutoff = now - lost_after
    for agent in vault.catalog.list_agents():
        silent = agent["last_contact"] is None or \
            datetime.fromisoformat(agent["last_contact"]) < cutoff
        if agent["revoked"] is None and not silent:
            continue
        for job in vault.catalog.list_jobs(1000, agent_id=agent["id"], state="queued"):
            if agent["revoked"] is not None:
                error = DbsafeError("agent.revoked", agent_id=agent["id"], host=agent["host"],
                                    revoked=agent["revoked"])
            elif datetime.fromisoformat(job["start_time"]) < cutoff:
                error = DbsafeError("job.agent_lost", host=agent["host"],
                                    last=agent["last_contact"],
                                    seconds=int(lost_after.total_seconds()),
                                    agent_id=agent["id"])
            else:
                continue
            if end_job(vault.catalog, job["id"], {"state": "failed", "end_time": utcnow(),
                                                  "error_code": error.code,
                                                  "error_message": error.message}):
                vault.catalog.notify_job_update(job["id"])
                ended.append(job["id"])
    return ended


class JobNotifications:
    """Wakes this process's listeners for jobs queued by other processes (a `dbsafe backup`
    run beside `serve`, another API process). With a PostgreSQL catalog, a thread LISTENs
    on its jobs channel and wakes the agent each NOTIFY names (reconnecting after a
    failure). SQLite has no notifications: one query for the whole process, every
    ``SQLITE_EVERY`` seconds, names the agents with a job queued (SQLite is the catalog of
    one machine or a small fleet: docs/fleet.md). ``stop`` ends it."""

    RETRY_SECONDS = 5.0
    SQLITE_EVERY = 1.0

    def __init__(self, vault: Vault) -> None:
        self.catalog = vault.catalog
        self._stop = threading.Event()
        target = self._listen if hasattr(vault.catalog, "listen_jobs") else self._look
        self._thread = threading.Thread(target=target, name="job-notifications",
                                        daemon=True)

    @classmethod
    def start_for(cls, vault: Vault) -> JobNotifications:
        notifications = cls(vault)
        notifications._thread.start()
        return notifications

    def _look(self) -> None:
        while not self._stop.wait(self.SQLITE_EVERY):
            try:
                for agent_id in self.catalog.queued_agents():
                    wake_listeners(agent_id)
            except Exception as exc:  # a busy or briefly unreadable catalog: next time
                log.debug("looking for queued jobs failed: %s", exc)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self.catalog.listen_jobs() as conn:  # type: ignore[attr-defined]
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            wake_listeners(note.payload or None)
            except Exception as exc:  # the catalog's server restarts: listen again
                log.warning("listening for queued jobs failed (%s); again in %.0f s", exc,
                            self.RETRY_SECONDS)
                self._stop.wait(self.RETRY_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
