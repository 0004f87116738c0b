"""Reading backups back: restores of an instance or a database, point in time, verify,
drills. Modules: checks, combine, database, drills, instance, instants, pitr, request, staging,
targets, verify. It imports only the groups below it (handle, activity, inventory,
logchain, lifecycle, protection, backup). The names here are the group's published
surface: the CLI, the API, the portal, the scheduler and the agent import them from
here, never a module inside (import-linter holds both rules; docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.restore.drills import list_drills, run_drill
from dbsafe.services.restore.instants import parse_bound
from dbsafe.services.restore.request import (
    DataDirectoryTarget,
    FilesTarget,
    RestoreRequest,
    ServerTarget,
    check_request,
    run_request,
)
from dbsafe.services.restore.targets import add_root, remove_root, restore_roots
from dbsafe.services.restore.verify import run_verify

__all__ = [
    "DataDirectoryTarget",
    "FilesTarget",
    "RestoreRequest",
    "ServerTarget",
    "check_request",
    "parse_bound",
    "run_request",
    "add_root",
    "list_drills",
    "remove_root",
    "restore_roots",
    "run_drill",
    "run_verify",
]
