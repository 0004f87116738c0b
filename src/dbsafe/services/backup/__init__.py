"""Taking backups: full, copy-only, differential and log. Modules: copy, counts,
differential, healing, log_backup, request, selection, take. It imports only the groups below it
(handle, activity, inventory, logchain, lifecycle, protection). The names here are the
group's published surface: the CLI, the API, the portal, the scheduler and the agent
import them from here, never a module inside (import-linter holds both rules;
docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.backup.healing import effective_type
from dbsafe.services.backup.request import REQUEST_TYPES, BackupRequest, take_backup

__all__ = ["REQUEST_TYPES", "BackupRequest", "effective_type", "take_backup"]
