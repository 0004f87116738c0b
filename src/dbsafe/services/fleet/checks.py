"""Verify and restore drills run where the server's agent is (docs/fleet.md, *Verify and
drills*).

A drill starts a scratch cluster with the server's own PostgreSQL binaries and owner: only
the server's host has them, so its agent runs it. Verify only reads the repository, which
every host reaches; it runs on the agent too, so that a fleet's checks load the hosts that
own the data rather than the control plane (which runs the scheduler, the API and the
portal for every server). A server without an agent is checked here, as on one machine.

The interfaces and the scheduler call ``run_verify`` and ``run_drill`` here; the agent runs
the restore group's own services under the claimed job's id (``dispatch.run_claimed``), so
the caller gets the same result, progress and errors, and the same report when a check
fails (kept in the failed job's result).
"""

from __future__ import annotations

from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.services.activity.jobs import ProgressFn, new_job_id, running_job
from dbsafe.services.fleet.follow import follow
from dbsafe.services.fleet.queue import queue_job
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.lifecycle.points import load_point

# the restore group (drills, verify) is loaded where a check is dispatched: its package
# brings pydantic (12 MB), which a backup importing the fleet group does not need


def run_verify(vault: Vault, name: str, point_id: str | None = None,
               workers: int | None = None, on_progress: ProgressFn | None = None,
               deep: bool = False) -> dict:
    """Verify one point, or every point of ``name``, on its agent's host (else here: with
    ``deep``, the host whose data directory it compares); raises ``verify.failed`` with the
    report when a block is damaged."""
    from dbsafe.services.restore import verify

    agent_id = get_server(vault, name).get("agent_id")
    if agent_id is None:
        return verify.run_verify(vault, name, point_id, workers, on_progress, deep)
    if point_id is not None:  # an unknown point is refused at once, as here: no failed job
        load_point(vault, name, point_id)
    job_id = queue_job(vault, agent_id, "verify", name,
                       {"server": name, "point_id": point_id, "workers": workers,
                        "deep": deep},
                       job_id=new_job_id("verify"))
    return follow(vault, job_id, on_progress)


def run_drill(vault: Vault, name: str, point_id: str | None = None, *, amcheck: bool = False,
              scratch_root: Path | None = None) -> dict:
    """A restore drill of ``name`` on its agent's host (else here): its row, as listed.
    ``scratch_root`` is a folder of the host that runs it. A drill already queued or
    running for the server refuses a second one, as here."""
    from dbsafe.services.restore import drills

    server = get_server(vault, name)
    agent_id = server.get("agent_id")
    if agent_id is None:
        return drills.run_drill(vault, name, point_id, amcheck=amcheck,
                                scratch_root=scratch_root)
    busy = running_job(vault.catalog, "drill", name)
    if busy:
        raise DbsafeError("drill.already_running", name=name, job_id=busy["id"])
    # nothing to restore, or an unknown point: refused at once, as here (the agent chooses
    # again when it runs: a newer point may have come meanwhile)
    drills.choose_target(vault, server, point_id)
    job_id = queue_job(vault, agent_id, "drill", name,
                       {"server": name, "point_id": point_id, "amcheck": amcheck,
                        "scratch_root": None if scratch_root is None else str(scratch_root)},
                       job_id=new_job_id("drill"))
    return follow(vault, job_id)

