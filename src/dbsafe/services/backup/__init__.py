"""Taking backups: full, copy-only, differential and log. Modules: copy, counts,
differential, healing, log_backup, selection, take. It imports only the groups below it
(handle, activity, inventory, logchain, lifecycle, protection). The names here are the
group's published surface: the CLI, the API, the portal, the scheduler and the agent
import them from here, never a module inside (import-linter holds both rules;
docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.backup.healing import effective_type
from dbsafe.services.backup.log_backup import WAIT_SECONDS, run_log_backup
from dbsafe.services.backup.take import run_backup

__all__ = [
    "WAIT_SECONDS",
    "effective_type",
    "run_backup",
    "run_log_backup",
]
