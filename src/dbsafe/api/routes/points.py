"""Recovery points and the log chain: what a server (or one database) can be restored to."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from dbsafe.api.deps import need, vault
from dbsafe.services.points import points_and_chain
from dbsafe.services.vault import Vault

router = APIRouter(tags=["points"])


@router.get("/servers/{server}/points", dependencies=[Depends(need("read"))])
def list_points(server: str, database: str | None = Query(None, max_length=63),
                deleted: bool = False, v: Vault = Depends(vault)) -> dict:
    """Points (oldest first), restorable log ranges and gaps, as `dbsafe points --json`."""
    return points_and_chain(v, server, database, deleted)
