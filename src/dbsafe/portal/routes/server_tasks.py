"""Long work started from a server's page or a database's page: an instance backup, a
verify and a restore drill of the server (or of one point). Each is the API's endpoint in a
form (api/routes/backups.py, checks.py): the same role, the same service call through the
app's launcher, and the same rule that what fails before the job starts (an unknown server
or point, a backup or drill already running, nothing to drill) fails the request with its
error code. Once the job's row exists the answer is its page, where the user follows it;
the request never waits for the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from dbsafe.portal.web import caller, check_csrf
from dbsafe.services import backup, fleet
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()


def _job_page(request: Request, kind: str, work: Callable[[Vault], object]
              ) -> RedirectResponse:
    """Start ``work(vault)`` as the API does (its own vault handle, in a thread) and send
    the browser to the job it started."""
    job_id = request.app.state.launcher.start(kind, work)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/servers/{name}/backup")
def back_up_server(request: Request, name: str, csrf_token: str = Form(""),
                   type: Literal["full", "copy-only", "diff", "log"] = Form("full"),
                   me: Principal = Depends(caller)) -> RedirectResponse:
    """Back up the instance now: every protected database in one point (a log backup: the
    instance's WAL), as ``POST /api/v1/servers/{server}/backups`` without databases."""
    me.require("operate")
    check_csrf(me, csrf_token)
    asked = backup.BackupRequest(name, type)  # the policy's compression
    return _job_page(request, "backup", lambda v: fleet.take_backup(v, asked))


@router.post("/servers/{name}/verify")
def verify(request: Request, name: str, csrf_token: str = Form(""),
           point: str = Form("", max_length=100), deep: bool = Form(False),
           me: Principal = Depends(caller)) -> RedirectResponse:
    """Re-read every block of one point (``point``), or of every point of the server, and
    check its hash; ``deep`` also compares relation pages with the live files."""
    me.require("operate")
    check_csrf(me, csrf_token)
    point_id = point or None
    return _job_page(request, "verify",
                     lambda v: fleet.run_verify(v, name, point_id, deep=deep))


@router.post("/servers/{name}/drill")
def drill(request: Request, name: str, csrf_token: str = Form(""),
          point: str = Form("", max_length=100), amcheck: bool = Form(False),
          me: Principal = Depends(caller)) -> RedirectResponse:
    """Restore the newest restorable state (or ``point``) into a scratch cluster, check it
    and remove it; ``amcheck`` also checks every btree index."""
    me.require("operate")
    check_csrf(me, csrf_token)
    point_id = point or None
    return _job_page(request, "drill",
                     lambda v: fleet.run_drill(v, name, point_id, amcheck=amcheck))
