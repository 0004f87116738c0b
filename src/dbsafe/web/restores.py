"""The restore a request stands for: the request (a source: a point, a time, an LSN or a
restore point; a target: a data directory, files, or a database into a running server) and
the service call that runs it. The API's restore endpoints and the portal's wizard build
the same request."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from dbsafe.core import bounds
from dbsafe.services.handle import Vault
from dbsafe.services.restore import base_and_plan, restore_database, run_restore
from dbsafe.web.fields import Folder as Path

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


def source_of(body: RestoreRequest) -> dict:
    return {"point_id": body.point_id, "time": body.time, "lsn": body.lsn,
            "restore_point": body.restore_point, "pause": body.pause}
