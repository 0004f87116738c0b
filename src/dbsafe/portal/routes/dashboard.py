"""The dashboard: items by health, failed jobs, active alerts, what the vault holds."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from dbsafe.portal.web import caller, page, vault
from dbsafe.services import overview
from dbsafe.services.access import Principal
from dbsafe.services.vault import Vault

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, me: Principal = Depends(caller),
              v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    board = overview.dashboard(v, request.app.state.items_cache.get(v))
    return page(request, "dashboard.html", board=board)
