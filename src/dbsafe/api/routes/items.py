"""Protected items at a glance: every database with its last backups and health, and the
dashboard's counts (services/overview.py)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from dbsafe.api.deps import need
from dbsafe.services import overview

router = APIRouter(tags=["items"])
Health = Literal[overview.HEALTH]  # type: ignore[valid-type]


@router.get("/items", dependencies=[Depends(need("read"))])
def list_items(request: Request, search: str | None = Query(None, max_length=100),
               health: Health | None = None, server: str | None = Query(None, max_length=100),
               offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=2000)) -> dict:
    """A page of protected items (every state), by server and name: health, the reasons
    for it, last backup, last full, last log backup."""
    return overview.page(request.app.state.overview.get().items, search=search, health=health,
                         server=server, offset=offset, limit=limit)


@router.get("/dashboard", dependencies=[Depends(need("read"))])
def dashboard(request: Request) -> dict:
    """Counts by health, jobs of the last 24 hours, failed jobs, active alerts, vault use."""
    return request.app.state.overview.get().board
