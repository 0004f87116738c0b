"""Deleting recovery points, bringing soft-deleted ones back, and purging those whose
soft-delete retention ended (``dbsafe delete-point``, ``undelete``, ``purge``, ``gc``).

Deleting and purging destroy backup data: Backup Contributor only ("delete"). Undeleting
only brings data back: a Backup Operator may."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from dbsafe.api.deps import launcher, need, vault
from dbsafe.api.launch import Launcher
from dbsafe.api.routes.backups import Started, started
from dbsafe.services import lifecycle
from dbsafe.services.handle import Vault
from dbsafe.web.fields import PointId

router = APIRouter(tags=["points"])


@router.delete("/servers/{server}/points/{point_id}", dependencies=[Depends(need("delete"))])
def delete_point(server: str, point_id: PointId,
                 reason: str = Query("deleted by the user", min_length=1, max_length=500),
                 v: Vault = Depends(vault)) -> dict:
    """Delete a point: soft-deleted (kept, undeletable) for the vault's soft-delete days,
    else at once; its blocks are freed by the next garbage collection."""
    lifecycle.server_point(v, server, point_id)
    return lifecycle.delete_points(v, [point_id], reason)


@router.post("/servers/{server}/points/{point_id}/undelete",
             dependencies=[Depends(need("operate"))])
def undelete_point(server: str, point_id: PointId, v: Vault = Depends(vault)) -> dict:
    """Bring a soft-deleted point back (with its base full when that is deleted too)."""
    lifecycle.server_point(v, server, point_id)
    return lifecycle.undelete(v, [point_id])


@router.post("/vault/purge", tags=["vault"], dependencies=[Depends(need("delete"))])
def purge(v: Vault = Depends(vault)) -> dict:
    """Delete for good the soft-deleted points whose soft-delete retention has ended."""
    return lifecycle.purge_due(v)


@router.post("/vault/gc", tags=["vault"], status_code=202,
             dependencies=[Depends(need("delete"))])
def gc(run: Launcher = Depends(launcher)) -> Started:
    """Start a garbage collection: delete the packs no point and no WAL file uses."""
    return started(run.start("gc", lambda v: lifecycle.run_gc(v)))
