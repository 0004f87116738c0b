"""The audit log: who changed what, when, from where (CLI, API, portal), and the outcome;
newest first, 100 a page, paged back by id; for the role that manages users and tokens
(Backup Contributor), as the API's /audit is."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from dbsafe.portal.web import caller, page, vault
from dbsafe.services import operations
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()
PAGE = 100


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, actor: str = Query("", max_length=200),
               before: int | None = Query(None, ge=1, le=2**62),
               me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("admin")
    rows = operations.audit_log(v.catalog, PAGE, before, actor or None)
    for row in rows:
        row["detail_text"] = ", ".join(f"{k}: {val}" for k, val in sorted(
            (row.get("detail") or {}).items())) if isinstance(row.get("detail"), dict) \
            else str(row.get("detail") or "")
    return page(request, "audit.html", rows=rows, actor=actor, page=PAGE,
                older=rows[-1]["id"] if len(rows) == PAGE else None)
