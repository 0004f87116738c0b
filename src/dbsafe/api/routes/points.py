"""Recovery points and the log chain: what a server (or one database) can be restored to."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from dbsafe.api.deps import need, vault
from dbsafe.services.handle import Vault
from dbsafe.services.lifecycle import points_and_chain
from dbsafe.web.fields import Offset

router = APIRouter(tags=["points"])
MAX_POINTS = 5000  # a page: 90 days of 15-minute log backups are 8,640 points


@router.get("/servers/{server}/points", dependencies=[Depends(need("read"))])
def list_points(server: str, database: str | None = Query(None, max_length=63),
                deleted: bool = False, offset: Offset = 0,
                limit: int = Query(1000, ge=1, le=MAX_POINTS),
                v: Vault = Depends(vault)) -> dict:
    """A page of points (oldest first; ``total`` counts them all), the restorable log ranges
    and gaps, as `dbsafe points --json`."""
    return points_and_chain(v, server, database, deleted, offset, limit)
