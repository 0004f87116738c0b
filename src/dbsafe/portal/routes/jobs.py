"""Jobs: the newest 100 (by state, server, type) and one job's page, whose progress bar
follows the API's server-sent events (/api/v1/jobs/{id}/events; the session cookie
authenticates the EventSource), with its result and a cancel button while it runs."""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import activity
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()
LIMIT = 100
State = Literal[activity.STATES]  # type: ignore[valid-type]


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, state: State | Literal[""] = "",
              server: str = Query("", max_length=100), type: str = Query("", max_length=40),
              me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    rows = activity.list_jobs(v.catalog, LIMIT, state=state or None, server=server or None,
                                 type=type or None)
    return page(request, "jobs.html", jobs=rows, states=activity.STATES, types=activity.TYPES,
                servers=[s["name"] for s in v.catalog.list_servers()], limit=LIMIT,
                query={"state": state, "server": server, "type": type})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, me: Principal = Depends(caller),
             v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    job = activity.get_job(v.catalog, job_id)
    return page(request, "job.html", job=job, active=job["state"] in activity.ACTIVE,
                result=json.dumps(job["result"], indent=2, sort_keys=True, default=str)
                if job.get("result") is not None else None)


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, csrf_token: str = Form(""), me: Principal = Depends(caller),
           v: Vault = Depends(vault)) -> RedirectResponse:
    me.require("operate")
    check_csrf(me, csrf_token)
    activity.cancel_job(v.catalog, job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
