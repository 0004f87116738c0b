"""Restores: an instance into a new data directory (started or not) or as files, or one
database into a running server under a new name — from a point, or to an instant. The body
is the services' request (services/restore/request.py), shared with the CLI and the portal."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dbsafe.api.deps import launcher, need, vault
from dbsafe.api.launch import Launcher
from dbsafe.api.routes.backups import Started, started
from dbsafe.core.errors import DbsafeError
from dbsafe.services import fleet
from dbsafe.services.handle import Vault
from dbsafe.services.restore import RestoreRequest

router = APIRouter(tags=["restores"])


@router.post("/servers/{server}/restores", status_code=202,
             dependencies=[Depends(need("operate"))])
def restore(server: str, body: RestoreRequest, run: Launcher = Depends(launcher)) -> Started:
    """Start a restore; 202 with its job. What can be checked before it starts (the point,
    the target's version, space and name, an empty folder, a free port) answers at once."""
    try:
        return started(run.start(
            "restore", lambda job_vault: fleet.restore(job_vault, server, body)))
    except ValueError as exc:  # a service's own argument check
        raise DbsafeError("request.invalid", reason=str(exc)) from exc


# --- restore checks (the portal's wizard shows them) -------------------------------------
@router.post("/servers/{server}/restores/check", dependencies=[Depends(need("operate"))])
def check(server: str, body: RestoreRequest, v: Vault = Depends(vault)) -> dict:
    """What the restore would find, each check ok or failed with its message, without
    starting or writing anything: the source resolves, the target's version is not older,
    there is space, the new name is free, an instance target's folder is empty and its port
    free. ``ok`` is true when all pass (services/restore/checks.py). They run on the host
    the restore would run on (``host``: null for this one), an agent's through a short job
    of it; 503 ``restore.check_unanswered`` when that agent does not answer."""
    return fleet.check_restore(v, server, body)
