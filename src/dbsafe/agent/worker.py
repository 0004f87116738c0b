"""An agent's job loop: wait for the control plane's next job for this host (a long poll),
run it with the control plane's own services, report on it while it runs
(docs/fleet.md, *Jobs go to the host that owns the cluster*); and what it reports of its
host's replica set nodes.

At most ``concurrency`` jobs run at once; a poll is open only while a slot is free. A
running job reports every ``REPORT_EVERY`` seconds besides its progress, so that the
control plane can tell a slow job from a dead agent. With the control plane unreachable the
loop waits (1 s, doubling to 30 s) and polls again.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dbsafe.agent.control import ControlPlane
from dbsafe.core.errors import DbsafeError
from dbsafe.services import activity, fleet, protection
from dbsafe.services.handle import Vault

log = logging.getLogger("dbsafe.agent")
DEFAULT_CONCURRENCY = 2
# seconds between two listings of this host's servers by ``report_nodes``: listing them at
# every look (5 s) was most of the catalog statements of 40 idle agents (bench/README.md);
# a server added, or made a replica set's node, is reported within this
SERVERS_EVERY = 15.0
BACKOFF = (1.0, 30.0)


def serve_jobs(vault: Vault, control: ControlPlane, stop: threading.Event,
               concurrency: int = DEFAULT_CONCURRENCY,
               wait: float = fleet.DEFAULT_POLL_WAIT) -> None:
    slots = threading.Semaphore(concurrency)
    backoff = BACKOFF[0]
    with ThreadPoolExecutor(concurrency, thread_name_prefix="job") as pool:
        while not stop.is_set():
            if not slots.acquire(timeout=1.0):
                continue
            try:
                job = control.next_job(wait)
            except DbsafeError as exc:
                slots.release()
                log.warning("%s (again in %.0f s)", exc.message, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF[1])
                continue
            backoff = BACKOFF[0]
            if job is None:
                slots.release()
                continue
            log.info("job %s: %s of %s", job["id"], job["backup_type"] or job["type"],
                     job["server"])
            pool.submit(_run_one, vault, control, job, slots)


def _run_one(vault: Vault, control: ControlPlane, job: dict,
             slots: threading.Semaphore) -> None:
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(control, job["id"], done),
                            name=f"report-{job['id']}", daemon=True)
    beat.start()
    try:
        fleet.run_claimed(vault, job)
        log.info("job %s ended", job["id"])
    except BaseException as exc:  # noqa: BLE001 - every failure ends the job, then the loop goes on
        log.warning("job %s failed: %s", job["id"], getattr(exc, "message", exc))
        _end_unstarted(vault, job["id"], exc)
    finally:
        done.set()
        slots.release()


def _heartbeat(control: ControlPlane, job_id: str, done: threading.Event) -> None:
    while not done.wait(fleet.REPORT_EVERY):
        try:
            control.report(job_id)
        except DbsafeError as exc:
            log.warning("job %s: no report reached the control plane: %s", job_id, exc.message)


def _end_unstarted(vault: Vault, job_id: str, exc: BaseException) -> None:
    """A job that failed before its service's own job took the claimed row over (an
    unreachable cluster, a bad request) would stay running: end it here."""
    try:
        row = vault.catalog.get_job(job_id)
        if row is not None and row["state"] == "running" and row["pid"] is None:
            vault.catalog.update_job(job_id, **activity.failure(exc))
    except DbsafeError as report_error:
        log.warning("job %s: its failure did not reach the control plane: %s", job_id,
                    report_error.message)


def report_nodes(vault: Vault, stop: threading.Event) -> None:
    """Until ``stop``: every ``protection.REPORT_EVERY`` seconds, look at what this host's
    servers are (role, timeline, health, WAL position, or why the cluster did not answer)
    and report it: the control plane, and the agents of a replica set's other nodes, choose
    the node of each backup type from a set's reports (sent every time), and the control
    plane's health checks judge reachability and the archiving lag from every server's
    (sent when what they judge changed, else every ``SERVER_REPORT_EVERY`` seconds)."""
    sent: dict[str, tuple[float, tuple]] = {}  # server: (when, what the checks judge)
    nodes: list[dict] = []
    listed = -SERVERS_EVERY
    while not stop.wait(protection.REPORT_EVERY):
        try:
            if time.monotonic() - listed >= SERVERS_EVERY:
                nodes = [s for s in vault.catalog.list_servers()
                         if s["kind"] == "server" and vault.is_here(s)]
                listed = time.monotonic()
            for node in nodes:
                report = protection.node_report(node)
                judged = (report["role"], report["timeline"], report["healthy"],
                          report["reason"])
                last = sent.get(node["name"])
                if not node["replica_set"] and last is not None and last[1] == judged and \
                        time.monotonic() - last[0] < protection.SERVER_REPORT_EVERY:
                    continue  # nothing the health checks judge changed: sent later
                vault.catalog.report_node(report)
                sent[node["name"]] = (time.monotonic(), judged)
        except DbsafeError as exc:
            log.warning("the nodes of this host were not reported: %s", exc.message)
