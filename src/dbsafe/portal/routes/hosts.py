"""The servers page: the registered servers grouped by the host they run on, each host
with its agent (version, last contact, state), registering a VM (a one-time token and the
exact command to run there) and revoking an agent (docs/fleet.md, *Fleet views*).

Registering and revoking are a Backup Contributor's (``admin``, as in the API): a token
makes a new agent, which runs jobs with the vault's data. The token is shown once, in the
answer to the form, never in a URL (no redirect after the POST carries it).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from dbsafe.core.errors import DbsafeError
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.portal.web import items as overview_items
from dbsafe.services import fleet, operations
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()


def _worst(healths: list[str]) -> str | None:
    return min(healths, key=operations.HEALTH.index) if healths else None


def _servers_page(request: Request, v: Vault, status_code: int = 200,
                  registration: dict | None = None, error: str | None = None,
                  revoked: dict | None = None) -> HTMLResponse:
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
                minutes=fleet.TOKEN_MINUTES, default_minutes=fleet.DEFAULT_TOKEN_MINUTES)


@router.get("/servers", response_class=HTMLResponse)
def servers_page(request: Request, me: Principal = Depends(caller),
                 v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    return _servers_page(request, v)


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
