"""Instant access: a recovery point served in place through FUSE (a read-only mount, or a
PostgreSQL instance started on it at any instant, its writes kept locally), and table
restores taken from such an instance (docs/instant-access.md). Modules: view (the point's
files read on demand), cow (a file's local pages), fusefs (the file system), runs (the
state of each mount or instance, and the clean-up after a crash), daemon (the process
behind one), instant (start, list, stop), plans, tables (a table restore). It sits above
restore, whose plans and file layout it reads. The names here are the group's published
surface.
"""

from __future__ import annotations

from dbsafe.services.access.instant import (
    fuse_problem,
    list_runs,
    mount_point,
    start_instant,
    stop_run,
)
from dbsafe.services.access.tables import check_tables, restore_tables

__all__ = ["check_tables", "fuse_problem", "list_runs", "mount_point", "restore_tables",
           "start_instant", "stop_run"]
