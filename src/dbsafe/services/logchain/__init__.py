"""The WAL in the vault: archiving and the log chain. Modules: archive, chain. It imports
only the groups below it (handle, activity, inventory). The names here are the group's
published surface: the CLI, the API, the portal, the scheduler and the agent import them
from here, never a module inside (import-linter holds both rules; docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.logchain.archive import (
    already_held,
    archive_wal_bytes,
    archive_wal_file,
    content_checksum,
    read_wal_file,
)

__all__ = [
    "already_held",
    "archive_wal_bytes",
    "archive_wal_file",
    "content_checksum",
    "read_wal_file",
]
