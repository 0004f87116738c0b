"""The restore wizard: 1 source (a point, or an instant), 2 target (a new database in a
registered server of any host, a new data directory or files on this host or an agent's,
or tables into a server, from an instant instance: services/access/tables.py),
3 check — the checks of services/restore/checks run without starting anything, on the host
the restore would run on (fleet.check_restore), and only when all pass does "Start restore"
appear. Starting builds the services' RestoreRequest (the API's body too) and starts it
through the app's launcher as ``POST /api/v1/servers/{server}/restores`` does, then shows
the job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from dbsafe.core.errors import DbsafeError
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import access, fleet
from dbsafe.services.handle import Vault
from dbsafe.services.inventory import get_server
from dbsafe.services.operations import Principal
from dbsafe.services.restore import RestoreRequest, restore_roots

router = APIRouter()


def _form(server: dict, database: str | None, point: str | None, time: str | None) -> dict:
    """The wizard's fields on first display: the source the timeline picked, a new database
    in the same server named after the source and the day."""
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M")
    return {"source": "point" if point and not time else "time", "point": point or "",
            "time": time or "", "database": database or "", "target": "server",
            "target_server": server["name"],
            "new_name": f"{database}_restored_{stamp}" if database else "",
            "path": "", "port": "", "start": False, "only_database": True, "files_path": "",
            "host": "", "tables": "", "tables_server": server["name"], "table_as": ""}


def _request(f: dict) -> RestoreRequest:
    """The restore request for the wizard's fields (pydantic checks them as the API does)."""
    source = {"point_id": f["point"].strip() or None} if f["source"] == "point" else \
        {"time": f["time"].strip() or None}
    if f["target"] == "server":
        target = {"kind": "server", "server": f["target_server"], "database": f["database"],
                  "new_name": f["new_name"].strip()}
    elif f["target"] == "pgdata":
        target = {"kind": "pgdata", "path": f["path"].strip(), "host": f["host"] or None,
                  "port": int(f["port"]) if f["port"].strip() else None, "start": f["start"],
                  "database": f["database"] if f["only_database"] and f["database"] else None}
    else:
        target = {"kind": "files", "path": f["files_path"].strip(), "host": f["host"] or None}
    return RestoreRequest.model_validate({**source, "target": target})


def _invalid(exc: ValidationError | ValueError) -> dict:
    if isinstance(exc, ValidationError):
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
                            for e in exc.errors())
    else:
        reasons = str(exc)
    return {"ok": False, "checks": [{"check": "form", "ok": False, "message": reasons,
                                     "code": "request.invalid"}]}


def _unchecked(exc: DbsafeError) -> dict:
    """The checks could not run where the restore would (an agent that does not answer,
    a host no agent has): one failed check saying so."""
    return {"ok": False, "checks": [
        {"check": "host", "ok": False, "message": exc.message, "code": exc.code}]}


def _render(request: Request, v: Vault, server: dict, form: dict, result: dict | None,
            status_code: int = 200) -> HTMLResponse:
    """The wizard. Target servers are grouped by the host they run on; a data directory or
    files may go to this host or to the host of any agent not revoked (``hosts``: value,
    label)."""
    groups = fleet.host_groups(v)
    hosts = [("", fleet.THIS_HOST)] + [
        (g["agent"]["id"], g["host"] if g["agent"]["state"] == "active"
         else f"{g['host']} ({g['agent']['state']})")
        for g in groups if g["agent"] is not None and g["agent"]["state"] != "revoked"]
    return page(request, "restore.html", status_code=status_code, server=server, f=form,
                result=result, roots=[str(r) for r in restore_roots(v)],
                databases=[d["name"] for d in v.catalog.list_databases(server["instance_id"])
                           if d["kind"] == "user" or d["name"] == "postgres"],
                server_groups=[(g["host"], [s["name"] for s in g["servers"]])
                               for g in groups if g["servers"]], hosts=hosts)


@router.get("/servers/{server}/restore", response_class=HTMLResponse)
def wizard(request: Request, server: str, database: str | None = None,
           point: str | None = None, time: str | None = None,
           me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("operate")
    found = get_server(v, server)
    return _render(request, v, found, _form(found, database, point, time), None)


@router.post("/servers/{server}/restore", response_class=HTMLResponse, response_model=None)
def check_or_start(request: Request, server: str, csrf_token: str = Form(""),
                   action: Literal["check", "start"] = Form("check"),
                   source: Literal["point", "time"] = Form("time"),
                   point: str = Form("", max_length=100), time: str = Form("", max_length=64),
                   database: str = Form("", max_length=63),
                   target: Literal["server", "pgdata", "files", "tables"] = Form("server"),
                   target_server: str = Form("", max_length=63),
                   new_name: str = Form("", max_length=63),
                   path: str = Form("", max_length=4096), port: str = Form("", max_length=5),
                   start: bool = Form(False), only_database: bool = Form(False),
                   files_path: str = Form("", max_length=4096),
                   host: str = Form("", max_length=253),
                   tables: str = Form("", max_length=4096),
                   tables_server: str = Form("", max_length=63),
                   table_as: str = Form("", max_length=63),
                   me: Principal = Depends(caller),
                   v: Vault = Depends(vault)) -> HTMLResponse | RedirectResponse:
    """Check (step 3), or start when every check passes (they run again first: the state
    may have changed since they were shown)."""
    me.require("operate")
    check_csrf(me, csrf_token)
    found = get_server(v, server)
    form = {"source": source, "point": point, "time": time, "database": database,
            "target": target, "target_server": target_server, "new_name": new_name,
            "path": path, "port": port, "start": start, "only_database": only_database,
            "files_path": files_path, "host": host, "tables": tables,
            "tables_server": tables_server, "table_as": table_as}
    if target == "tables":
        return _tables(request, v, found, form, action)
    try:
        body = _request(form)
    except (ValidationError, ValueError) as exc:
        return _render(request, v, found, form, _invalid(exc), status_code=422)
    try:
        result = fleet.check_restore(v, server, body)
    except DbsafeError as exc:
        if exc.code not in ("restore.check_unanswered", "agent.unknown", "agent.revoked"):
            raise
        result = _unchecked(exc)
    if action == "start" and result["ok"]:
        job_id = request.app.state.launcher.start(
            "restore", lambda job_vault: fleet.restore(job_vault, server, body))
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)
    return _render(request, v, found, form, result)


def _tables(request: Request, v: Vault, server: dict, f: dict, action: str
            ) -> HTMLResponse | RedirectResponse:
    """A table restore (services/access/tables.py): its checks, then its start."""
    names = [t.strip() for t in f["tables"].split(",") if t.strip()]
    at = f["time"].strip() or None if f["source"] == "time" else None
    point = f["point"].strip() or None if f["source"] == "point" else None
    as_name = f["table_as"].strip() or None
    if not f["database"]:
        return _render(request, v, server, f, _invalid(ValueError(
            "choose the database the tables are in (step 1)")), status_code=422)
    args = (server["name"], f["database"], names, f["tables_server"], at, point, as_name)
    result = access.check_tables(v, *args)
    if action == "start" and result["ok"]:
        job_id = request.app.state.launcher.start(
            "restore", lambda job_vault: access.restore_tables(job_vault, *args))
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)
    return _render(request, v, server, f, result)
