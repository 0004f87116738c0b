"""Protection: a server's protected items, protecting databases with a policy, and stopping
protection (``dbsafe protect``, ``dbsafe unprotect``, ``dbsafe items``).

Stopping with ``delete_data`` deletes backup data, which only a Backup Contributor may do:
that role is checked from the body before the server is looked up."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, vault
from dbsafe.core.errors import DbsafeError
from dbsafe.core.fields import Database, Name
from dbsafe.services import fleet, protection
from dbsafe.services.handle import Vault
from dbsafe.services.inventory import get_server
from dbsafe.services.operations import Principal

router = APIRouter(tags=["protection"])
Databases = list[Database]


class ProtectRequest(BaseModel):
    """Exactly one of ``databases``, ``all`` and ``auto`` (all, and those created later)."""
    model_config = {"extra": "forbid", "strict": True}
    databases: Databases | None = Field(None, min_length=1, max_length=2000)
    all: bool = False
    auto: bool = False
    policy: Name | None = Field(None, description="default: 'default' (daily full, hourly "
                                                  "logs); none with recovery_model simple")
    recovery_model: Literal["full", "simple"] | None = Field(
        None, description="follows the policy when omitted")
    restart: bool = Field(False, description="restart PostgreSQL if archiving needs it")
    change_config: bool = Field(True, description="false: do not ALTER SYSTEM, answer the "
                                                  "lines to add instead")


class StopRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    databases: Databases | None = Field(None, min_length=1, max_length=2000,
                                        description="default: every protected database")
    delete_data: bool = Field(False, description="delete the points only these use "
                                                 "(Backup Contributor); else every point "
                                                 "is kept")


@router.get("/servers/{server}/items", dependencies=[Depends(need("read"))])
def server_items(server: str, v: Vault = Depends(vault)) -> list[dict]:
    """The server's protected items: each database with its policy, state and warnings."""
    return v.catalog.list_items(get_server(v, server)["instance_id"])


@router.post("/servers/{server}/protection", dependencies=[Depends(need("operate"))])
def protect(server: str, body: ProtectRequest, v: Vault = Depends(vault)) -> dict:
    """Protect databases with a policy and its recovery model (WAL archiving is set up for
    FULL); the answer says whether a restart or config lines are still needed."""
    if sum((body.databases is not None, body.all, body.auto)) != 1:
        raise DbsafeError("protect.no_databases")
    return fleet.protect(v, fleet.ProtectRequest(
        server, body.databases, body.recovery_model, change_config=body.change_config,
        restart=body.restart, policy=body.policy, auto=body.auto))


@router.post("/servers/{server}/protection/stop")
def stop_protection(server: str, body: StopRequest,
                    caller: Principal = Depends(need("operate")),
                    v: Vault = Depends(vault)) -> dict:
    """Stop protecting databases, keeping their points, or with ``delete_data`` deleting
    the points no still-protected database shares (soft-deleted when the vault says)."""
    if body.delete_data:
        caller.require("delete")
    return protection.unprotect(v, server, body.databases, retain=not body.delete_data)
