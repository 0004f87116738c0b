"""The database list: every protected item with its health and last backups, filtered and
paged (100 a page) from the catalog (services/operations/overview.py), never from the repository."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from dbsafe.portal.web import caller, fragments, page
from dbsafe.services import operations
from dbsafe.services.operations import Principal
from dbsafe.web.fields import Offset

router = APIRouter()
PAGE = 100
Health = Literal[operations.HEALTH]  # type: ignore[valid-type]


@router.get("/databases", response_class=HTMLResponse)
def databases(request: Request, search: str = Query("", max_length=100),
              health: Health | Literal[""] = "", server: str = Query("", max_length=100),
              offset: Offset = 0, me: Principal = Depends(caller)) -> HTMLResponse:
    me.require("read")
    snapshot = request.app.state.overview.get()
    query = {"search": search, "health": health, "server": server}
    found = operations.page(snapshot.items, search=search or None, health=health or None,
                          server=server or None, offset=offset, limit=PAGE)
    table = fragments.get(snapshot, (search, health, server, offset), "_items_table.html",
                          request, found=found, query=query)
    return page(request, "databases.html", table=table, health_values=operations.HEALTH,
                servers=sorted({r["server"] for r in snapshot.items}), query=query)
