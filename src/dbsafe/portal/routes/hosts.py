"""The servers page: the registered servers grouped by the host they run on, each host
with its agent (version, last contact, state), adding a server of this host, registering a
VM (a one-time token and the exact command to run there) and revoking an agent
(docs/fleet.md, *Fleet views*).

Registering and revoking are a Backup Contributor's (``admin``, as in the API): a token
makes a new agent, which runs jobs with the vault's data. The token is shown once, in the
answer to the form, never in a URL (no redirect after the POST carries it).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from dbsafe.core import bounds
from dbsafe.core.errors import DbsafeError
from dbsafe.portal.refusals import said
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.portal.web import items as overview_items
from dbsafe.services import fleet, inventory, operations
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()


def _worst(healths: list[str]) -> str | None:
    return min(healths, key=operations.HEALTH.index) if healths else None


def _servers_page(request: Request, v: Vault, status_code: int = 200,
                  registration: dict | None = None, error: str | None = None,
                  revoked: dict | None = None, added: dict | None = None,
                  add_refused: dict | None = None, draft: dict | None = None
                  ) -> HTMLResponse:
    by_server: dict[str, list[str]] = {}
    for row in overview_items(request):
        by_server.setdefault(row["server"], []).append(row["health"])
    groups = fleet.host_groups(v)
    for group in groups:
        group["servers"] = [{**s, "items": len(by_server.get(s["name"], [])),
                             "health": _worst(by_server.get(s["name"], []))}
                            for s in group["servers"]]
    return page(request, "servers.html", status_code=status_code, groups=groups,
                registration=registration, error=error, revoked=revoked,
                minutes=fleet.TOKEN_MINUTES, default_minutes=fleet.DEFAULT_TOKEN_MINUTES,
                added=added, add_refused=add_refused, draft=draft or {})


@router.get("/servers", response_class=HTMLResponse)
def servers_page(request: Request, me: Principal = Depends(caller),
                 v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    return _servers_page(request, v)


def _checked(name: str, pgdata: str, port: str, host: str
             ) -> tuple[str, Path, int, str | None]:
    """The form's fields as the API's request takes them (core/bounds.py: what the CLI
    takes too), each refusal naming the field as the form shows it."""
    if problem := bounds.name_problem(name):
        raise DbsafeError("request.invalid", reason=f"the server name {name!r}: {problem}")
    if not pgdata.startswith("/"):
        raise DbsafeError("request.invalid", reason="the data directory is a full path, "
                                                    "starting with /")
    if problem := bounds.path_problem(pgdata):
        raise DbsafeError("request.invalid", reason=f"the data directory: {problem}")
    if not (port.isdigit() and bounds.PORT[0] <= int(port) <= bounds.PORT[1]):
        raise DbsafeError("request.invalid", reason=f"the port is a whole number from "
                                                    f"{bounds.PORT[0]} to {bounds.PORT[1]}, "
                                                    f"not {port[:20]!r}")
    if any(c < " " or c == "\x7f" for c in host):
        raise DbsafeError("request.invalid", reason="the host holds no control characters")
    return name, Path(pgdata), int(port), host or None


@router.post("/servers", response_class=HTMLResponse)
def add_server(request: Request, name: str = Form("", max_length=100),
               pgdata: str = Form("", max_length=4096), port: str = Form("", max_length=20),
               host: str = Form("", max_length=255), csrf_token: str = Form(""),
               me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """Register a running PostgreSQL instance of this host (a Backup Operator's, as
    ``POST /api/v1/servers`` and `dbsafe server add`: the same service and checks). A
    refusal is shown beside the form with its code, in the form's words, the fields kept."""
    me.require("operate")
    check_csrf(me, csrf_token)
    draft = {"name": name, "pgdata": pgdata, "port": port, "host": host}
    try:
        added = inventory.add_server(v, *_checked(name.strip(), pgdata.strip(), port.strip(),
                                                  host.strip()))
    except DbsafeError as exc:
        request.state.error_code = exc.code   # the audit log's outcome
        return _servers_page(request, v, exc.spec.http_status, draft=draft,
                             add_refused={"code": exc.code, "message": said(exc)})
    return _servers_page(request, v, added=added)


@router.post("/servers/register-vm", response_class=HTMLResponse)
def register_vm(request: Request, host: str = Form("", max_length=253),
                expires: int = Form(fleet.DEFAULT_TOKEN_MINUTES, ge=fleet.TOKEN_MINUTES[0],
                                    le=fleet.TOKEN_MINUTES[1]),
                csrf_token: str = Form(""), me: Principal = Depends(caller),
                v: Vault = Depends(vault)) -> HTMLResponse:
    """A registration token for a VM, and the command to run there as root."""
    me.require("admin")
    check_csrf(me, csrf_token)
    try:
        registration = fleet.registration_token(v, me.name, host.strip() or None, expires)
    except DbsafeError as exc:  # a host name that is not one: said beside the form
        request.state.error_code = exc.code
        return _servers_page(request, v, exc.spec.http_status, error=exc.message)
    return _servers_page(request, v, registration=registration)


@router.post("/agents/{agent_id}/revoke", response_class=HTMLResponse)
def revoke_agent(request: Request, agent_id: str, csrf_token: str = Form(""),
                 me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """Cut an agent off (the form asks to confirm first): its calls are refused from now
    on, its queued jobs fail."""
    me.require("admin")
    check_csrf(me, csrf_token)
    return _servers_page(request, v, revoked=fleet.revoke(v, agent_id))
