"""A fleet: agents on other hosts, the jobs queued for them, and what each may ask of the
catalog (docs/fleet.md). Modules: agents (registration tokens, credentials, revocation),
queue (queued jobs: claim, reports, lost agents), scope (the rule of every catalog call an
agent makes), dispatch (a job run here or queued for its server's agent), checks (verify
and drills, run by the server's agent), enrolment (a registration token with the command
to run on the VM), views (the host of each server, servers grouped by host, the fleet's
totals). It imports only the groups below it (every other group). The names here are the
group's published surface: the CLI, the API, the portal, the scheduler and the agent
import them from here, never a module inside (import-linter holds both rules;
docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.fleet.agents import (
    DEFAULT_TOKEN_MINUTES,
    TOKEN_MINUTES,
    AgentIdentity,
    authenticate,
    create_token,
    list_agents,
    register,
    revoke,
    show_agent,
    touch,
)
from dbsafe.services.fleet.checks import run_drill, run_verify
from dbsafe.services.fleet.dispatch import (
    ProtectRequest,
    add_server,
    check_restore,
    discover,
    discovers_now,
    protect,
    restore,
    run_claimed,
    take_backup,
)
from dbsafe.services.fleet.enrolment import registration_token
from dbsafe.services.fleet.queue import (
    DEFAULT_POLL_WAIT,
    LOST_AFTER,
    POLL_WAIT,
    REPORT_EVERY,
    JobNotifications,
    add_listener,
    claim,
    reap,
    report,
)
from dbsafe.services.fleet.scope import SET_RESULTS, Scopes, call
from dbsafe.services.fleet.views import (
    THIS_HOST,
    fleet_totals,
    host_groups,
    server_with_host,
    servers_with_hosts,
)
from dbsafe.services.fleet.watch import watch_agents

__all__ = [
    "DEFAULT_POLL_WAIT",
    "DEFAULT_TOKEN_MINUTES",
    "LOST_AFTER",
    "POLL_WAIT",
    "REPORT_EVERY",
    "SET_RESULTS",
    "THIS_HOST",
    "TOKEN_MINUTES",
    "AgentIdentity",
    "JobNotifications",
    "ProtectRequest",
    "Scopes",
    "add_listener",
    "add_server",
    "authenticate",
    "call",
    "check_restore",
    "claim",
    "create_token",
    "discover",
    "discovers_now",
    "fleet_totals",
    "host_groups",
    "list_agents",
    "protect",
    "reap",
    "restore",
    "register",
    "registration_token",
    "report",
    "revoke",
    "run_claimed",
    "run_drill",
    "run_verify",
    "server_with_host",
    "servers_with_hosts",
    "show_agent",
    "take_backup",
    "touch",
    "watch_agents",
]
