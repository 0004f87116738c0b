"""What dbsafe records of its work: jobs, alerts and their delivery. Modules: alerts,
delivery, jobs. It imports only the groups below it (handle). The names here are the
group's published surface: the CLI, the API, the portal, the scheduler and the agent
import them from here, never a module inside (import-linter holds both rules;
docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.activity.alerts import (
    KINDS,
    STEP_FAILED,
    WAL_SPOOL_FILLING,
    WAL_SPOOLED,
    active_keys,
    add_channel,
    deliver_row,
    list_alerts,
    list_channels,
    raise_alert,
    remove_channel,
    resolve_alert,
    resolve_alerts,
    test_channel,
    vault_writable,
)
from dbsafe.services.activity.jobs import (
    ACTIVE,
    FINAL,
    STATES,
    TYPES,
    cancel_job,
    claimed_job,
    count_jobs,
    end_job,
    failure,
    get_job,
    job_ended,
    job_started,
    list_jobs,
    record_job,
)

__all__ = [
    "ACTIVE",
    "FINAL",
    "KINDS",
    "STATES",
    "STEP_FAILED",
    "TYPES",
    "WAL_SPOOLED",
    "WAL_SPOOL_FILLING",
    "active_keys",
    "add_channel",
    "deliver_row",
    "cancel_job",
    "claimed_job",
    "count_jobs",
    "end_job",
    "failure",
    "get_job",
    "job_ended",
    "job_started",
    "list_alerts",
    "list_channels",
    "list_jobs",
    "raise_alert",
    "record_job",
    "remove_channel",
    "resolve_alert",
    "resolve_alerts",
    "test_channel",
    "vault_writable",
]
