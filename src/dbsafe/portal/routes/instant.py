"""Instant instances from the portal: the timeline's "Open at this instant" leads to a
server's instant page, which asks to confirm and starts one (as `dbsafe instant`: a job,
followed on its page), and lists the server's running instances with their connection
string and the time they have left, each with a Stop button (docs/instant-access.md).
What fails before the job starts (no FUSE here, an instant outside the log chain) is shown
on the page with its code.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dbsafe.core.errors import DbsafeError
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import access
from dbsafe.services.handle import Vault
from dbsafe.services.inventory import get_server
from dbsafe.services.operations import Principal

router = APIRouter()
TTLS = {"1h": 3600, "4h": 4 * 3600, "8h": 8 * 3600, "24h": 24 * 3600}


def _page(request: Request, v: Vault, server: str, time: str | None, point: str | None,
          refused: DbsafeError | None = None, status_code: int = 200) -> HTMLResponse:
    get_server(v, server)
    running = [r for r in access.list_runs(v) if r["server"] == server]
    if refused is not None:
        request.state.error_code = refused.code
    return page(request, "instant.html", status_code=status_code, server=server, time=time,
                point=point, running=running, ttls=list(TTLS), refused=refused,
                fuse=access.fuse_problem())


@router.get("/servers/{server}/instant", response_class=HTMLResponse)
def instant_page(request: Request, server: str,
                 time: str | None = Query(None, max_length=64),
                 point: str | None = Query(None, max_length=100),
                 me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    return _page(request, v, server, time or None, point or None)


@router.post("/servers/{server}/instant", response_class=HTMLResponse, response_model=None)
def open_instant(request: Request, server: str, csrf_token: str = Form(""),
                 time: str = Form("", max_length=64), point: str = Form("", max_length=100),
                 ttl: str = Form("4h"), me: Principal = Depends(caller),
                 v: Vault = Depends(vault)) -> HTMLResponse | RedirectResponse:
    """Start an instance at the instant (paused there, read only) or at a point's end."""
    me.require("operate")
    check_csrf(me, csrf_token)
    seconds = TTLS.get(ttl, TTLS["4h"])
    at, pid = time or None, point or None
    try:
        job_id = request.app.state.launcher.start(
            "instant", lambda w: access.start_instant(w, server, at, pid, ttl=seconds))
    except DbsafeError as exc:
        return _page(request, v, server, at, pid, refused=exc,
                     status_code=exc.spec.http_status)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/servers/{server}/instant/{run_id}/stop")
def stop_instant(request: Request, server: str, run_id: str, csrf_token: str = Form(""),
                 me: Principal = Depends(caller),
                 v: Vault = Depends(vault)) -> RedirectResponse:
    me.require("operate")
    check_csrf(me, csrf_token)
    access.stop_run(v, run_id)
    return RedirectResponse(f"/servers/{server}/instant", status_code=303)
