"""Protecting databases: discovery, replica sets, protect and unprotect. Modules:
archive_setup, discovery, items, replica_sets. It imports only the groups below it
(handle, activity, inventory, logchain, lifecycle). The names here are the group's
published surface: the CLI, the API, the portal, the scheduler and the agent import them
from here, never a module inside (import-linter holds both rules; docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.protection.archive_setup import archive_command
from dbsafe.services.protection.discovery import live_databases, local_instances, refresh
from dbsafe.services.protection.items import (
    auto_protect_off,
    change_policy,
    protect,
    resolve,
    unprotect,
)
from dbsafe.services.protection.replica_sets import (
    REPORT_EVERY,
    SERVER_REPORT_EVERY,
    SERVER_REPORT_FRESH,
    add_node,
    add_set,
    list_sets,
    log_node,
    node_report,
    remove_node,
    remove_set,
    set_preference,
    show,
)

__all__ = [
    "REPORT_EVERY",
    "SERVER_REPORT_EVERY",
    "SERVER_REPORT_FRESH",
    "add_node",
    "add_set",
    "archive_command",
    "auto_protect_off",
    "change_policy",
    "list_sets",
    "live_databases",
    "local_instances",
    "log_node",
    "node_report",
    "protect",
    "refresh",
    "remove_node",
    "remove_set",
    "resolve",
    "set_preference",
    "show",
    "unprotect",
]
