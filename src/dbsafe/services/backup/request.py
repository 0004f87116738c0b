"""A backup asked for, the same from every interface: the CLI's `dbsafe backup`, the API's
`POST /servers/{server}/backups`, the portal's "Back up now" and the scheduler's runs all
build a ``BackupRequest`` and hand it to ``take_backup``, which alone decides what the type
means: ``log`` is a log backup (the WAL up to now, services/backup/log_backup.py), the
others a backup of the data files (services/backup/take.py)."""

from __future__ import annotations

from dataclasses import dataclass

from dbsafe.core.defaults import BACKUP_TYPES, LOG_WAIT_SECONDS
from dbsafe.services.activity.jobs import ProgressFn
from dbsafe.services.backup.log_backup import run_log_backup
from dbsafe.services.backup.take import run_backup
from dbsafe.services.handle.vault_handle import Vault

REQUEST_TYPES = (*BACKUP_TYPES, "log")


@dataclass(frozen=True)
class BackupRequest:
    """``databases``: None backs up the protected ones (the WAL is the instance's: for a log
    backup they are only checked). ``compress_level`` None: the policy's compression.
    ``workers`` None: the core count. ``wait``: how long a log backup waits for the WAL to
    reach the vault. ``trigger`` and ``reason`` are recorded with the job. ``synthetic``:
    services/backup/synthetic.py."""

    server: str
    type: str = "full"
    databases: list[str] | None = None
    compress_level: int | None = None
    workers: int | None = None
    wait: float = LOG_WAIT_SECONDS
    trigger: str = "on-demand"
    reason: str | None = None
    node: str | None = None  # a replica set's node the control plane chose (docs/fleet.md)
    synthetic: bool | None = None  # a full built from the last full + the WAL: True asks
    # for it, False reads, None: as the policy says when scheduled, else reads

    def __post_init__(self) -> None:
        if self.type not in REQUEST_TYPES:
            raise ValueError(f"backup type {self.type!r} is not one of {REQUEST_TYPES}")


def take_backup(vault: Vault, request: BackupRequest,
                on_progress: ProgressFn | None = None) -> dict:
    """Run the backup ``request`` asks for; its result (a log backup's or a data backup's)."""
    if request.type == "log":
        return run_log_backup(vault, request.server, request.wait, on_progress,
                              databases=request.databases, trigger=request.trigger,
                              reason=request.reason, node_name=request.node)
    return run_backup(vault, request.server, request.type, request.compress_level,
                      request.workers, on_progress, databases=request.databases,
                      trigger=request.trigger, reason=request.reason, node=request.node,
                      synthetic=request.synthetic)
