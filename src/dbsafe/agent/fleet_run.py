"""`dbsafe agent run` on a registered host: the agent of a fleet (docs/fleet.md). It says
hello to its control plane (which checks its credential), opens its client folder of the
repository with the control plane's catalog, serves this host's archive_command (the WAL
socket, agent/server.py) and runs the jobs queued for this host until SIGTERM or SIGINT; a
job that runs then is let finish."""

from __future__ import annotations

import logging
import signal
import threading

from dbsafe.agent.enrolment import Enrolment
from dbsafe.agent.remote_catalog import RemoteCatalog
from dbsafe.agent.server import SPOOL_AFTER, SPOOL_MAX_MIB, open_socket, serve_until_shutdown
from dbsafe.agent.worker import report_nodes, serve_jobs
from dbsafe.core.errors import DbsafeError
from dbsafe.core.sdk_logging import resident_logging

log = logging.getLogger("dbsafe.agent")
HELLO_RETRY = 5.0
ANSWERS_FILE = "answers.json"  # the control plane's last answers to the archive path


def run_registered(enrolment: Enrolment, jobs: int, *, json_lines: bool,
                   spool_max_mib: int = SPOOL_MAX_MIB, spool_after: float = SPOOL_AFTER
                   ) -> None:
    resident_logging(json_lines=json_lines)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per call is noise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    control = enrolment.control()
    try:
        # WAL first: archiving needs the repository, not the control plane (which may be
        # away now: its answers then come when it is back)
        outbox = enrolment.outbox()
        catalog = RemoteCatalog(control, outbox, enrolment.home / ANSWERS_FILE)
        vault = enrolment.open_vault(catalog)
        # archive_command's: this host's clusters
        wal_server, paths = open_socket(vault, spool_max_mib, spool_after)
        wal = threading.Thread(target=serve_until_shutdown, args=(wal_server, paths),
                               name="wal-socket")
        wal.start()
        threading.Thread(target=outbox.run_flusher, args=(catalog.send, stop), name="outbox",
                         daemon=True).start()
        try:
            if _hello(control, vault, stop):
                log.info("agent %s of host %s serving %s (vault %s)", enrolment.agent_id,
                         enrolment.host, enrolment.url, vault.repo.config["vault_id"])
                threading.Thread(target=report_nodes, args=(vault, stop), name="nodes",
                                 daemon=True).start()
                serve_jobs(vault, control, stop, concurrency=jobs)
        finally:
            wal_server.shutdown()
            wal.join()
    finally:
        control.close()


def _hello(control, vault, stop: threading.Event) -> bool:
    """Wait for the control plane to answer (it checks the credential); False when stopped
    first. A revoked or unknown agent, or another vault, ends the agent."""
    while not stop.is_set():
        try:
            hello = control.hello()
        except DbsafeError as exc:
            if exc.code != "agent.control_unreachable":
                raise  # revoked, unknown: waiting changes nothing
            log.warning("%s (again in %.0f s)", exc.message, HELLO_RETRY)
            stop.wait(HELLO_RETRY)
            continue
        if hello["vault_id"] != vault.repo.config["vault_id"]:
            raise DbsafeError("vault.tampered", path=vault.repo.location,
                              what=f"the control plane's vault is {hello['vault_id']}",
                              action="register this agent again (`dbsafe agent register "
                                     "--force`)")
        return True
    return False
