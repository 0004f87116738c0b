"""Servers: register, list, show, change and forget them, and discovery — the PostgreSQL
instances of this host, and a server's databases read again (``dbsafe server``,
``dbsafe discover``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, vault
from dbsafe.core import bounds
from dbsafe.core.fields import Folder, Name
from dbsafe.services import fleet, inventory, protection
from dbsafe.services.handle import Vault
from dbsafe.web.fields import Port

router = APIRouter(tags=["servers"])


class ServerRequest(BaseModel):
    """A running PostgreSQL instance of this host to register (version, port and connection
    are checked). Its programs' folder is the one found for its version: only a
    contributor at the command line picks another (`dbsafe server add --bin-dir`), since
    dbsafe runs what is in it."""
    model_config = {"extra": "forbid", "strict": True}
    name: Name
    pgdata: Folder
    port: Port
    host: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$",
                             description="host or socket folder (default: from "
                                         "postmaster.pid)")
    region: str | None = Field(None, min_length=1, max_length=64)


class ServerChange(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    max_concurrent: int | None = Field(None, ge=bounds.RUNS_AT_A_TIME[0],
                                       le=bounds.RUNS_AT_A_TIME[1],
                                       description="scheduled runs at a time on this server")


@router.get("/servers", dependencies=[Depends(need("read"))])
def list_servers(v: Vault = Depends(vault)) -> list[dict]:
    """Registered servers, and replica sets (kind ``replica-set``), each with the host it
    runs on: ``runs_on`` (its agent's host, or "this host") and ``agent_id``."""
    return fleet.servers_with_hosts(v)


@router.post("/servers", status_code=201, dependencies=[Depends(need("operate"))])
def add_server(body: ServerRequest, v: Vault = Depends(vault)) -> dict:
    """Register a running instance, as `dbsafe server add`."""
    return inventory.add_server(v, body.name, Path(body.pgdata), body.port, body.host,
                              region=body.region)


@router.get("/servers/{server}", dependencies=[Depends(need("read"))])
def show_server(server: str, v: Vault = Depends(vault)) -> dict:
    return fleet.server_with_host(v, server)


@router.patch("/servers/{server}", dependencies=[Depends(need("operate"))])
def change_server(server: str, body: ServerChange, v: Vault = Depends(vault)) -> dict:
    """Change a server's settings (those not given stay)."""
    return inventory.set_options(v, server, body.max_concurrent)


@router.delete("/servers/{server}", dependencies=[Depends(need("delete"))])
def remove_server(server: str, v: Vault = Depends(vault)) -> dict:
    """Forget a server (Backup Contributor: its points leave the catalog); refused while it
    is protected or archives through dbsafe, and in an immutable vault while it holds
    retained points. Its manifests stay in the vault."""
    inventory.remove_server(v, server)
    return {"removed": server}


@router.get("/instances", tags=["discovery"], dependencies=[Depends(need("read"))])
def local_instances(v: Vault = Depends(vault)) -> list[dict]:
    """The PostgreSQL instances of this host, each with the server registered for it."""
    return protection.local_instances(v)


@router.post("/servers/{server}/discovery", tags=["discovery"],
             dependencies=[Depends(need("operate"))])
def discover(server: str, v: Vault = Depends(vault)) -> dict:
    """Read the server's databases again: new ones (auto-protected when the server is),
    dropped and renamed ones, and why a database cannot be protected."""
    return fleet.discover(v, server)
