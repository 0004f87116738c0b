"""Replica sets: a primary and its standbys, protected once and backed up from the node the
backup preference names (``dbsafe replicaset``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, vault
from dbsafe.policy.node_choice import PREFERENCES
from dbsafe.services import protection
from dbsafe.services.handle import Vault
from dbsafe.web.fields import Name

router = APIRouter(tags=["replica sets"])
Preference = Literal[PREFERENCES]  # type: ignore[valid-type]
PREFERENCE_HELP = ("which node takes log and copy-only backups; fulls and differentials "
                   "always run on the primary")


class ReplicaSetRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    name: Name
    preference: Preference = Field("primary", description=PREFERENCE_HELP)


class PreferenceChange(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    preference: Preference = Field(description=PREFERENCE_HELP)


class NodeRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    server: Name = Field(description="a registered server of the same cluster")
    region: str | None = Field(None, min_length=1, max_length=64,
                               description="default: the server's, else the vault's")


@router.get("/replica-sets", dependencies=[Depends(need("read"))])
def list_sets(v: Vault = Depends(vault)) -> list[dict]:
    return protection.list_sets(v)


@router.post("/replica-sets", status_code=201, dependencies=[Depends(need("operate"))])
def add_set(body: ReplicaSetRequest, v: Vault = Depends(vault)) -> dict:
    """Create a replica set; add its nodes next."""
    return protection.add_set(v, body.name, body.preference)


@router.get("/replica-sets/{name}", dependencies=[Depends(need("read"))])
def show_set(name: str, v: Vault = Depends(vault)) -> dict:
    """The nodes as they are now (role, region, health) and which takes each backup type."""
    return protection.show(v, name)


@router.patch("/replica-sets/{name}", dependencies=[Depends(need("operate"))])
def set_preference(name: str, body: PreferenceChange, v: Vault = Depends(vault)) -> dict:
    """Change the backup preference (it applies from the next backup)."""
    return protection.set_preference(v, name, body.preference)


@router.delete("/replica-sets/{name}", dependencies=[Depends(need("operate"))])
def remove_set(name: str, v: Vault = Depends(vault)) -> dict:
    """Forget a replica set (refused while it has items or points; its nodes stay)."""
    return protection.remove_set(v, name)


@router.post("/replica-sets/{name}/nodes", dependencies=[Depends(need("operate"))])
def add_node(name: str, body: NodeRequest, v: Vault = Depends(vault)) -> dict:
    """Make a registered server a node of the set."""
    return protection.add_node(v, name, body.server, body.region)


@router.delete("/replica-sets/{name}/nodes/{server}", dependencies=[Depends(need("operate"))])
def remove_node(name: str, server: str, v: Vault = Depends(vault)) -> dict:
    """Take a node out of the set (it stays a registered server)."""
    return protection.remove_node(v, name, server)
