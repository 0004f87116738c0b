"""Backup reports: stored bytes per server, usage per database, jobs' outcomes per server
and type, restore drills with their RTO and RPO, over the last N days; the portal's reports
page, its CSV files and `dbsafe report` give the same rows (services/operations/reports.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from dbsafe.api.deps import need, vault
from dbsafe.services import operations
from dbsafe.services.handle import Vault

router = APIRouter(tags=["reports"])
Days = Annotated[int, Query(ge=1, le=operations.MAX_DAYS,
                            description="the last N UTC days, today included")]


@router.get("/reports", dependencies=[Depends(need("read"))])
def backup_report(days: Days = 30, server: str | None = Query(None, max_length=100),
                  v: Vault = Depends(vault)) -> dict:
    """``{days, from, to, storage: [...], databases: [...], jobs: [...], drills: [...]}``:
    per server the bytes held at the start and the end of the range, the growth and the
    bytes its backups stored; per protected database (``database`` null: the instance's
    other files, its WAL and log backups) its size at the range's start and end (bytes,
    as backed up), the growth, the bytes its backups stored and those its live points
    hold; per server and job type the jobs and how they ended, with the success rate of
    those that ended; every drill of the range with its outcome, RTO and RPO (seconds).
    ``server``: that server's rows alone (404 ``server.unknown`` for a name not registered)."""
    return operations.report(v, days, server=server)
