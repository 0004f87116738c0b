"""What the vault knows of: servers, policies, limits, immutability, other backup tools.
Modules: coexistence, immutability, limits, policies, servers. It imports only the
groups below it (handle, activity). The names here are the group's published surface:
the CLI, the API, the portal, the scheduler and the agent import them from here, never a
module inside (import-linter holds both rules; docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.inventory.immutability import set_immutability
from dbsafe.services.inventory.limits import MAX_PER_REQUEST
from dbsafe.services.inventory.policies import (
    compression_for,
    create_policy,
    delete_policy,
    get_policy,
    list_policies,
    show_policy,
    whole_number,
)
from dbsafe.services.inventory.servers import (
    add_server,
    describe,
    get_server,
    list_servers,
    remove_server,
    set_options,
)

__all__ = [
    "MAX_PER_REQUEST",
    "add_server",
    "compression_for",
    "create_policy",
    "delete_policy",
    "describe",
    "get_policy",
    "get_server",
    "list_policies",
    "list_servers",
    "remove_server",
    "set_immutability",
    "set_options",
    "show_policy",
    "whole_number",
]
