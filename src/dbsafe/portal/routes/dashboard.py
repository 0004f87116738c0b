"""The dashboard: items by health, failed jobs, active alerts, what the vault holds, and
the fleet — hosts, agents by state, servers, jobs queued, running and failed, in all and
per host (services/fleet/views.fleet_totals: a few queries, whatever the fleet's size)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from dbsafe.portal.web import caller, page, vault
from dbsafe.services import fleet
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, me: Principal = Depends(caller),
              v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    return page(request, "dashboard.html", board=request.app.state.overview.get().board,
                fleet=fleet.fleet_totals(v))
