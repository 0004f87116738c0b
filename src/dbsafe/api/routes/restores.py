"""Restores: an instance into a new data directory (started or not) or as files, or one
database into a running server under a new name — from a point, or to an instant."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from dbsafe.api.deps import launcher, need, vault
from dbsafe.api.launch import Launcher
from dbsafe.api.routes.backups import Started, started
from dbsafe.api.routes.fields import Folder as Path
from dbsafe.core import bounds
from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle import Vault
from dbsafe.services.restore import base_and_plan, check_restore, restore_database, run_restore

router = APIRouter(tags=["restores"])
Name = Annotated[str, Field(min_length=1, max_length=63)]


class DataDirectoryTarget(BaseModel):
    """A new, empty data directory on this host; ``start`` starts it on ``port``."""
    model_config = {"extra": "forbid", "strict": True}
    kind: Literal["pgdata"]
    path: Path
    port: int | None = Field(None, ge=bounds.RESTORE_PORT[0], le=bounds.RESTORE_PORT[1],
                             description="its owner starts it: 1024 or above")
    start: bool = False
    database: Name | None = Field(None, description="restore only this database")


class FilesTarget(BaseModel):
    """Files, WAL and a RESTORE.txt saying how to start them, in an empty folder."""
    model_config = {"extra": "forbid", "strict": True}
    kind: Literal["files"]
    path: Path


class ServerTarget(BaseModel):
    """One database into a running server (or a replica set's primary) under a new name."""
    model_config = {"extra": "forbid", "strict": True}
    kind: Literal["server"]
    server: Name
    database: Name
    new_name: Name
    overwrite: bool = False


class RestoreRequest(BaseModel):
    """Exactly one of ``point_id``, ``time``, ``lsn``, ``restore_point``."""
    model_config = {"extra": "forbid", "strict": True}
    point_id: str | None = Field(None, max_length=100)
    time: str | None = Field(None, max_length=64,
                             description="ISO 8601 with its zone (Z or +HH:MM); one without "
                                         "a zone is refused (400 time.zone_missing)")
    lsn: str | None = Field(None, max_length=32)
    restore_point: str | None = Field(None, max_length=63)
    pause: bool = Field(False, description="stay paused in recovery at the target")
    target: DataDirectoryTarget | FilesTarget | ServerTarget = Field(discriminator="kind")

    @model_validator(mode="after")
    def _one_source(self) -> RestoreRequest:
        given = [x for x in (self.point_id, self.time, self.lsn, self.restore_point)
                 if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of point_id, time, lsn, restore_point")
        if isinstance(self.target, DataDirectoryTarget) and self.target.start and \
                self.target.port is None:
            raise ValueError("start needs a port")
        return self


def restore_work(server: str, body: RestoreRequest):
    """The service call a restore request stands for (the portal's wizard uses it too)."""
    from pathlib import Path as FsPath

    target = body.target

    def work(v: Vault) -> dict:
        database = getattr(target, "database", None)
        point, plan = base_and_plan(v, server, body.point_id, body.time, body.lsn,
                                    body.restore_point, body.pause,
                                    databases=[database] if database else None)
        if isinstance(target, ServerTarget):
            return restore_database(v, server, target.database, point, plan, target.server,
                                    target.new_name, target.overwrite)
        if isinstance(target, FilesTarget):
            return run_restore(v, server, point, as_files=FsPath(target.path), recovery=plan)
        return run_restore(v, server, point, to_pgdata=FsPath(target.path), port=target.port,
                           start=target.start, recovery=plan,
                           databases=[target.database] if target.database else None)
    return work


@router.post("/servers/{server}/restores", status_code=202,
             dependencies=[Depends(need("operate"))])
def restore(server: str, body: RestoreRequest, run: Launcher = Depends(launcher)) -> Started:
    """Start a restore; 202 with its job. What can be checked before it starts (the point,
    the target's version, space and name, an empty folder, a free port) answers at once."""
    try:
        return started(run.start("restore", restore_work(server, body)))
    except ValueError as exc:  # a service's own argument check
        raise DbsafeError("request.invalid", reason=str(exc)) from exc


# --- restore checks (the portal's restore wizard) ----------------------------------------
@router.post("/servers/{server}/restores/check", dependencies=[Depends(need("operate"))])
def check(server: str, body: RestoreRequest, v: Vault = Depends(vault)) -> dict:
    """What the restore would find, each check ok or failed with its message, without
    starting or writing anything: the source resolves, the target's version is not older,
    there is space, the new name is free, an instance target's folder is empty and its port
    free. ``ok`` is true when all pass (services/restore/checks.py)."""
    return check_restore(v, server, body.target.model_dump(), **source_of(body))


def source_of(body: RestoreRequest) -> dict:
    return {"point_id": body.point_id, "time": body.time, "lsn": body.lsn,
            "restore_point": body.restore_point, "pause": body.pause}
