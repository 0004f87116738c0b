"""Alerts: the active ones (and the resolved, on their own tab), 100 a page, with a resolve
button."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import activity
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal
from dbsafe.web.fields import Offset, RowId

router = APIRouter()
PAGE = 100


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, state: Literal["active", "resolved"] = "active",
                offset: Offset = 0, me: Principal = Depends(caller),
                v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    rows = activity.list_alerts(v.catalog, state, PAGE, offset)
    return page(request, "alerts.html", alerts=rows, state=state, offset=offset, page=PAGE)


@router.post("/alerts/{alert_id}/resolve")
def resolve(alert_id: RowId, csrf_token: str = Form(""), me: Principal = Depends(caller),
            v: Vault = Depends(vault)) -> RedirectResponse:
    me.require("operate")
    check_csrf(me, csrf_token)
    activity.resolve_alert(v.catalog, alert_id)
    return RedirectResponse("/alerts", status_code=303)
