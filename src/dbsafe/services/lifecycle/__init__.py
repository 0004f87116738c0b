"""Recovery points over time: listing, coverage, retention, pruning, soft delete. Modules:
coverage, deletion, expiry, manifest_checks, points, prune. It imports only the
groups below it (handle, activity, inventory, logchain). The names here are the group's
published surface: the CLI, the API, the portal, the scheduler and the agent import them
from here, never a module inside (import-linter holds both rules; docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.lifecycle.deletion import MAX_DAYS as SOFT_DELETE_MAX_DAYS
from dbsafe.services.lifecycle.deletion import MIN_DAYS as SOFT_DELETE_MIN_DAYS
from dbsafe.services.lifecycle.deletion import purge_due, set_soft_delete, settings, undelete
from dbsafe.services.lifecycle.expiry import apply_retention
from dbsafe.services.lifecycle.points import points_and_chain, reconcile, server_point
from dbsafe.services.lifecycle.prune import REPACK_UNUSED, delete_points, run_gc

__all__ = [
    "REPACK_UNUSED",
    "SOFT_DELETE_MAX_DAYS",
    "SOFT_DELETE_MIN_DAYS",
    "apply_retention",
    "delete_points",
    "points_and_chain",
    "purge_due",
    "reconcile",
    "server_point",
    "run_gc",
    "set_soft_delete",
    "settings",
    "undelete",
]
