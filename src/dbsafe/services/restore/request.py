"""A restore asked for, the same from every interface: the CLI's `dbsafe restore`, the
API's `POST /servers/{server}/restores` (its body is ``RestoreRequest``), the portal's
restore wizard, and the checks each shows before starting (`/restores/check`). Where a
restore starts from (a point as it is, or the base and plan that reach a time, an LSN or a
named restore point) and what it writes (a new data directory, files, or one database into
a running server) are decided here once (``run_request``, ``check_request``).

The request is a pydantic model: the API takes it as its body, the portal validates the
wizard's fields with it, and the CLI builds it from its options, so every interface refuses
the same input with the same words."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from dbsafe.core import bounds
from dbsafe.core.fields import Folder
from dbsafe.services.activity.jobs import ProgressFn
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.restore.checks import check_restore
from dbsafe.services.restore.database import restore_database
from dbsafe.services.restore.instance import run_restore
from dbsafe.services.restore.pitr import base_and_plan

Name = Annotated[str, Field(min_length=1, max_length=63)]


HOST_HELP = ("the host to restore on: an agent's id or host name (`dbsafe agent list`); "
             "default: the control plane's own host")


class DataDirectoryTarget(BaseModel):
    """A new, empty data directory on this host (or ``host``); ``start`` starts it on
    ``port``."""
    model_config = {"extra": "forbid", "strict": True}
    kind: Literal["pgdata"]
    path: Folder
    host: str | None = Field(None, min_length=1, max_length=253, description=HOST_HELP)
    port: int | None = Field(None, ge=bounds.RESTORE_PORT[0], le=bounds.RESTORE_PORT[1],
                             description="its owner starts it: 1024 or above")
    start: bool = False
    database: Name | None = Field(None, description="restore only this database")


class FilesTarget(BaseModel):
    """Files, WAL and a RESTORE.txt saying how to start them, in an empty folder."""
    model_config = {"extra": "forbid", "strict": True}
    kind: Literal["files"]
    path: Folder
    host: str | None = Field(None, min_length=1, max_length=253, description=HOST_HELP)
    database: Name | None = Field(None, description="restore only this database")


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

    def source(self) -> dict:
        """Where the restore starts from, as the checks take it."""
        return {"point_id": self.point_id, "time": self.time, "lsn": self.lsn,
                "restore_point": self.restore_point, "pause": self.pause}


def run_request(vault: Vault, server: str, request: RestoreRequest, *,
                tablespace_map: dict[str, str] | None = None, owner: str | None = None,
                workers: int | None = None, on_progress: ProgressFn | None = None) -> dict:
    """Restore what ``request`` asks of ``server``'s backups. The keywords are the CLI's own
    knobs for a new data directory (tablespaces elsewhere, another OS owner, reader threads)."""
    target = request.target
    database = getattr(target, "database", None)
    point, plan = base_and_plan(vault, server, request.point_id, request.time, request.lsn,
                                request.restore_point, request.pause,
                                databases=[database] if database else None)
    if isinstance(target, ServerTarget):
        return restore_database(vault, server, target.database, point, plan, target.server,
                                target.new_name, target.overwrite, workers, on_progress)
    if isinstance(target, FilesTarget):
        return run_restore(vault, server, point, as_files=Path(target.path),
                           tablespace_map=tablespace_map, owner=owner, workers=workers,
                           on_progress=on_progress, recovery=plan,
                           databases=[database] if database else None)
    return run_restore(vault, server, point, to_pgdata=Path(target.path), port=target.port,
                       start=target.start, tablespace_map=tablespace_map, owner=owner,
                       workers=workers, on_progress=on_progress, recovery=plan,
                       databases=[database] if database else None)


def check_request(vault: Vault, server: str, request: RestoreRequest) -> dict:
    """Every check of ``request`` without starting or writing anything
    (services/restore/checks.py)."""
    return check_restore(vault, server, request.target.model_dump(), **request.source())
