"""A database's page: its state, policy and health, its restore timeline (portal/timeline.py
draws it), its recent backups and jobs, "Back up now", the way into the restore wizard, and
deleting and undeleting its points (verify and drills of a point: routes/server_tasks.py).

The points and the log chain come from services/lifecycle/points.points_and_chain, which reconciles
the server's points with the repository: slower than the catalog-only lists, and only done
here, where a user asked for this one database's points.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dbsafe.core.errors import DbsafeError
from dbsafe.portal import timeline
from dbsafe.portal.web import caller, check_csrf, page, vault, when, zone_of
from dbsafe.services import backup, fleet, lifecycle, restore
from dbsafe.services.handle import Vault
from dbsafe.services.inventory import describe, get_server
from dbsafe.services.lifecycle import points_and_chain
from dbsafe.services.operations import Principal
from dbsafe.web.fields import PointId

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


def _deleted_points(v: Vault, server: str, db: str) -> list[dict]:
    """The soft-deleted points that hold the database, newest first. Listing them reads
    the log chain again: done only when the vault has a deleted point at all (rare; the
    catalog was just reconciled with the repository by the live listing)."""
    if not v.catalog.deleted_point_ids():
        return []
    return list(reversed(points_and_chain(v, server, db, deleted=True)["points"]))


def _database_page(request: Request, v: Vault, server: str, db: str,
                   window: str | None = None, status_code: int = 200,
                   done: str | None = None, refused: DbsafeError | None = None,
                   around: datetime | None = None) -> HTMLResponse:
    """The page; ``done`` or ``refused`` say what a point's deletion or undeletion did, in
    the points' section (a refusal answers with its status, so a script sees it too)."""
    found = get_server(v, server)
    item = _item(v, request.app.state.overview.get().items, found, db)
    chain = points_and_chain(v, server, db)
    name, start, end = timeline.window(window, datetime.now(UTC), around)
    drawn = timeline.build(chain["points"], chain["log_ranges"], chain["gaps"], start, end,
                           zone=zone_of(request) or UTC)
    backups = [p for p in reversed(chain["points"]) if p["type"] != "log"][:RECENT_POINTS]
    deleted = _deleted_points(v, server, db)
    if refused is not None:
        request.state.error_code = refused.code   # the audit log's outcome
    return page(request, "database.html", status_code=status_code, server=describe(found),
                item=item, chain=chain, tl=drawn, window=name, windows=list(timeline.WINDOWS),
                around=timeline.iso(around) if around else None,
                backups=backups, deleted=deleted[:RECENT_POINTS],
                logs=sum(p["type"] == "log" for p in chain["points"]),
                jobs=v.catalog.newest_jobs(server, RECENT_JOBS), done=done, refused=refused)


@router.get("/servers/{server}/databases/{db}", response_class=HTMLResponse)
def database_page(request: Request, server: str, db: str, window: str | None = None,
                  time: str | None = Query(None, max_length=64),
                  me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """The page; with ``time`` (an instant picked on the timeline, with its zone), the
    timeline zooms around it (15 minutes unless ``window`` says otherwise)."""
    me.require("read")
    around = restore.parse_bound(time) if time else None
    if around is not None and window is None:
        window = timeline.ZOOMED
    return _database_page(request, v, server, db, window, around=around)


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


@router.post("/servers/{server}/points/{point_id}/delete", response_class=HTMLResponse)
def delete_point(request: Request, server: str, point_id: PointId,
                 database: str = Form(..., max_length=63), csrf_token: str = Form(""),
                 me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """Delete a point (Backup Contributor, as ``DELETE /api/v1/servers/{server}/points/
    {id}``; the form asks to confirm first): soft-deleted, and undeletable, for the vault's
    soft-delete days, else at once. A refusal (an immutable vault's retention, a full a
    differential is based on, a backup running on it) is shown on the database's page."""
    me.require("delete")
    check_csrf(me, csrf_token)
    lifecycle.server_point(v, server, point_id)
    try:
        result = lifecycle.delete_points(v, [point_id], f"deleted in the portal by {me.name}")
    except DbsafeError as exc:
        return _database_page(request, v, server, database, status_code=exc.spec.http_status,
                              refused=exc)
    done = (f"point {point_id} deleted: kept until {when(result['purge_after'])}, and "
            "undeletable until then" if result["soft"] else
            f"point {point_id} deleted for good (soft delete is off); its blocks are freed "
            "by the next garbage collection")
    return _database_page(request, v, server, database, done=done)


@router.post("/servers/{server}/points/{point_id}/undelete", response_class=HTMLResponse)
def undelete_point(request: Request, server: str, point_id: PointId,
                   database: str = Form(..., max_length=63), csrf_token: str = Form(""),
                   me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """Bring a soft-deleted point back (a Backup Operator may: it only brings data back),
    with its base full when that is deleted too."""
    me.require("operate")
    check_csrf(me, csrf_token)
    lifecycle.server_point(v, server, point_id)
    try:
        result = lifecycle.undelete(v, [point_id])
    except DbsafeError as exc:
        return _database_page(request, v, server, database, status_code=exc.spec.http_status,
                              refused=exc)
    bases = result["bases_undeleted"]
    return _database_page(request, v, server, database, done=(
        f"point {point_id} undeleted: restorable as before"
        + (f" (with its base full {', '.join(bases)})" if bases else "")))
