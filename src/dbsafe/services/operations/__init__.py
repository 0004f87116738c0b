"""Watching the whole: health checks, RPO, the overview, /metrics' figures, access and
audit. Modules: access, figures, monitor, overview, reports, restorable. It imports only the groups
below it (handle, activity, inventory, logchain, lifecycle, protection, backup, restore).
The names here are the group's published surface: the CLI, the API, the portal, the
scheduler and the agent import them from here, never a module inside (import-linter holds
both rules; docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.operations.access import (
    DEVICE_MAX,
    MIN_PASSWORD,
    PERMISSIONS,
    ROLES,
    SESSION_MAX,
    Principal,
    add_user,
    audit,
    audit_log,
    cli_principal,
    create_token,
    device_user,
    end_session,
    list_tokens,
    login,
    remember_device,
    remove_user,
    revoke_token,
    session_principal,
    shown_name,
    token_login,
    token_principal,
)
from dbsafe.services.operations.figures import vault_figures
from dbsafe.services.operations.monitor import check_health, checks_not_run
from dbsafe.services.operations.overview import HEALTH, OverviewCache, Snapshot, page
from dbsafe.services.operations.reports import (
    COLUMNS,
    MAX_DAYS,
    jobs_per_day,
    report,
    rpo_over_time,
    stored_over_time,
    usage_per_item,
)

__all__ = [
    "COLUMNS",
    "DEVICE_MAX",
    "HEALTH",
    "MAX_DAYS",
    "MIN_PASSWORD",
    "OverviewCache",
    "PERMISSIONS",
    "Principal",
    "ROLES",
    "SESSION_MAX",
    "Snapshot",
    "add_user",
    "audit",
    "audit_log",
    "check_health",
    "checks_not_run",
    "cli_principal",
    "create_token",
    "device_user",
    "end_session",
    "jobs_per_day",
    "list_tokens",
    "login",
    "page",
    "remember_device",
    "remove_user",
    "report",
    "revoke_token",
    "rpo_over_time",
    "session_principal",
    "shown_name",
    "stored_over_time",
    "usage_per_item",
    "token_login",
    "token_principal",
    "vault_figures",
]
