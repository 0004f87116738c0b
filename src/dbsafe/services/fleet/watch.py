"""The control plane's watch over its agents, at every pass of its scheduler: jobs whose
agent fell silent are failed (queue.reap), and an agent that has not called for longer than
``SILENT_AFTER`` raises ``agent_unreachable`` until it calls again (docs/fleet.md, *States
and alerts*)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbsafe.services.activity.alerts import (
    AGENT_UNREACHABLE,
    KINDS,
    active_keys,
    raise_alert,
    resolve_alerts,
)
from dbsafe.services.fleet.agents import SILENT_AFTER, state_of
from dbsafe.services.fleet.queue import LOST_AFTER, reap
from dbsafe.services.handle.vault_handle import Vault


def alert_item(agent_id: str) -> str:
    """The alert key's item of an agent (its server is None: an agent is a host's)."""
    return f"agent:{agent_id}"


def watch_agents(vault: Vault, now: datetime | None = None,
          lost_after: timedelta = LOST_AFTER) -> dict:
    """Fail lost jobs, raise or resolve each agent's ``agent_unreachable``; what it did."""
    now = now or datetime.now(UTC)
    ended = reap(vault, now, lost_after)
    active = active_keys(vault.catalog)
    silent = []
    for agent in vault.catalog.list_agents():
        key = (AGENT_UNREACHABLE, None, alert_item(agent["id"]))
        state = state_of(agent, now)
        if state == "silent":
            silent.append(agent["id"])
            raise_alert(vault.catalog, AGENT_UNREACHABLE, KINDS[AGENT_UNREACHABLE],
                        f"the agent of host {agent['host']} (agent {agent['id']}) has not "
                        f"called since {agent['last_contact'] or 'its registration'} (more "
                        f"than {int(SILENT_AFTER.total_seconds())} s): its servers' jobs wait "
                        "and fail when it does not come back; check the agent on that host "
                        "(`dbsafe agent run` under systemd)",
                        item=alert_item(agent["id"]),
                        details={"agent_id": agent["id"], "host": agent["host"]})
        elif key in active:  # called again, or revoked: nothing to wait for
            resolve_alerts(vault.catalog, AGENT_UNREACHABLE, item=alert_item(agent["id"]))
    return {"ended": ended, "silent": silent}
