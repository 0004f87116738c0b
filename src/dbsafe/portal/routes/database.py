"""A database's page: its state, policy and health, its restore timeline (portal/timeline.py
draws it), its recent backups and jobs, "Back up now", and the way into the restore wizard.

The points and the log chain come from services/lifecycle/points.points_and_chain, which reconciles
the server's points with the repository: slower than the catalog-only lists, and only done
here, where a user asked for this one database's points.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dbsafe.core.errors import DbsafeError
from dbsafe.portal import timeline
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import backup, fleet
from dbsafe.services.handle import Vault
from dbsafe.services.inventory import describe, get_server
from dbsafe.services.lifecycle import points_and_chain
from dbsafe.services.operations import Principal

router = APIRouter()
RECENT_POINTS = 50
RECENT_JOBS = 10


def _item(v: Vault, rows: list[dict], server: dict, db: str) -> dict:
    """The database's overview row (health and last backups); a discovered database that is
    not protected gets a row saying so; an unknown one is an error."""
    for row in rows:
        if row["server"] == server["name"] and row["database"] == db:
            return row
    names = [d["name"] for d in v.catalog.list_databases(server["instance_id"])]
    if db not in names:
        raise DbsafeError("protect.unknown_database", name=server["name"], database=db,
                          valid=", ".join(names))
    return {"server": server["name"], "database": db, "state": "not protected",
            "policy": None, "health": None, "reasons": [], "last_backup": None,
            "last_backup_type": None, "last_full": None, "last_log": None}


@router.get("/servers/{server}/databases/{db}", response_class=HTMLResponse)
def database_page(request: Request, server: str, db: str, window: str | None = None,
                  me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    found = get_server(v, server)
    item = _item(v, request.app.state.overview.get().items, found, db)
    chain = points_and_chain(v, server, db)
    name, start, end = timeline.window(window, datetime.now(UTC))
    drawn = timeline.build(chain["points"], chain["log_ranges"], chain["gaps"], start, end)
    backups = [p for p in reversed(chain["points"]) if p["type"] != "log"][:RECENT_POINTS]
    return page(request, "database.html", server=describe(found), item=item, chain=chain,
                tl=drawn, window=name, windows=list(timeline.WINDOWS), backups=backups,
                logs=sum(p["type"] == "log" for p in chain["points"]),
                jobs=v.catalog.newest_jobs(server, RECENT_JOBS))


@router.post("/servers/{server}/databases/{db}/backup")
def backup_now(request: Request, server: str, db: str, csrf_token: str = Form(""),
               type: Literal["full", "copy-only", "diff", "log"] = Form("full"),
               me: Principal = Depends(caller)) -> RedirectResponse:
    """Back up now (this database; a log backup is the instance's WAL): the job's page."""
    me.require("operate")
    check_csrf(me, csrf_token)

    asked = backup.BackupRequest(server, type, [db])  # the policy's compression
    job_id = request.app.state.launcher.start("backup", lambda v: fleet.take_backup(v, asked))
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
