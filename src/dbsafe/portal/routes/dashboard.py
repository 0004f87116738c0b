"""The dashboard: items by health, failed jobs, active alerts, what the vault holds."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from dbsafe.portal.web import caller, page
from dbsafe.services.operations import Principal

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, me: Principal = Depends(caller)) -> HTMLResponse:
    me.require("read")
    return page(request, "dashboard.html", board=request.app.state.overview.get().board)
