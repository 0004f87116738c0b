"""Backup now: start a full, copy-only, differential or log backup of a server."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dbsafe.api.deps import launcher, need
from dbsafe.api.launch import Launcher
from dbsafe.services import backup, fleet

router = APIRouter(tags=["backups"])


class BackupRequest(BaseModel):
    model_config = {"extra": "forbid"}
    type: Literal["full", "copy-only", "diff", "log"] = "full"
    databases: list[str] | None = Field(None, max_length=2000,
                                        description="default: the protected databases")
    compress_level: int | None = Field(
        None, ge=0, le=22, strict=True,
        description="zstd level for this backup's new blocks (0: raw); default: the "
                    "compression of the server's policy (level 1 without a policy)")
    synthetic: bool | None = Field(
        None, strict=True,
        description="a full only: true builds it from the latest full plus the pages the "
                    "WAL says changed, when the rules allow (else it reads every file and "
                    "its result says why); false or absent reads every file")


class Started(BaseModel):
    job_id: str
    job: str = Field(description="where to follow it")
    events: str = Field(description="its progress as server-sent events")


def started(job_id: str) -> Started:
    return Started(job_id=job_id, job=f"/api/v1/jobs/{job_id}",
                   events=f"/api/v1/jobs/{job_id}/events")


@router.post("/servers/{server}/backups", status_code=202,
             dependencies=[Depends(need("operate"))])
def backup_now(server: str, body: BackupRequest,
               run: Launcher = Depends(launcher)) -> Started:
    """Start a backup; 202 with its job once it runs (checks that fail first answer at
    once with their error)."""
    request = backup.BackupRequest(server, body.type, body.databases, body.compress_level,
                                   synthetic=bool(body.synthetic))
    return started(run.start("backup", lambda v: fleet.take_backup(v, request)))
