"""Instant access (docs/instant-access.md): start PostgreSQL on the vault at an instant or
at a point's end (a job, as `dbsafe instant`), list what runs on this host, stop one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from dbsafe.api.deps import launcher, need, vault
from dbsafe.api.launch import Launcher
from dbsafe.api.routes.backups import Started, started
from dbsafe.services import access
from dbsafe.services.handle import Vault

router = APIRouter(tags=["instant access"])
RUN_ID = r"^(mount|instant)-[0-9a-f]{8}$"


class InstantRequest(BaseModel):
    """An instant of the log chain (``time``, ISO 8601 with its zone) or a point's end."""

    time: str | None = Field(None, max_length=64)
    point_id: str | None = Field(None, max_length=100, pattern=r"^[0-9A-Za-z-]+$")
    ttl_seconds: int = Field(4 * 3600, ge=60, le=7 * 24 * 3600)
    promote: bool = Field(False, description="writable, instead of paused at the target")
    port: int | None = Field(None, ge=1024, le=65535)


@router.post("/servers/{server}/instant", status_code=202,
             dependencies=[Depends(need("operate"))])
def open_instant(server: str, body: InstantRequest,
                 run: Launcher = Depends(launcher)) -> Started:
    """Start an instance; 202 with its job, whose result holds the connection string.
    What can be checked first (the target in the chain, FUSE here, a free port) answers
    at once."""
    return started(run.start("instant", lambda v: access.start_instant(
        v, server, body.time, body.point_id, body.port, body.ttl_seconds, body.promote)))


@router.get("/instant", dependencies=[Depends(need("read"))])
def list_instant(v: Vault = Depends(vault)) -> list[dict]:
    """The mounts and instances running on this host, with the time each has left."""
    return access.list_runs(v)


@router.delete("/instant/{run_id}", dependencies=[Depends(need("operate"))])
def stop_instant(run_id: Annotated[str, Path(pattern=RUN_ID)],
                 v: Vault = Depends(vault)) -> dict:
    """Stop one and remove everything it wrote; 404 ``instant.unknown`` if none has the id."""
    return access.stop_run(v, run_id)
