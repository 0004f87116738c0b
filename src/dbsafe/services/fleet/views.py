"""What the CLI, the API and the portal show of a fleet (docs/fleet.md, *Fleet views*): the
host each server runs on, the servers grouped by host with that host's agent, and the
fleet's totals for the dashboard.

A server with an agent runs on that agent's host; one without runs on the control plane's
own host, shown as ``THIS_HOST``. Everything is read from the catalog in a few queries
(servers, agents, two job counts), whatever the number of servers: the servers page and the
dashboard are asked for often.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbsafe.services.fleet.agents import public, state_of
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import describe, get_server

THIS_HOST = "this host"
JOB_WINDOW = timedelta(hours=24)  # failed jobs are counted over the last day


def _placed(server: dict, agents: dict[str, dict], now: datetime) -> dict:
    """A server as ``describe`` shows it, with where it runs: ``agent_id`` (None: this
    host), ``runs_on`` (its agent's host name, or THIS_HOST) and ``agent_state``."""
    agent_id = server.get("agent_id")
    agent = agents.get(agent_id) if agent_id else None
    runs_on = agent["host"] if agent else (agent_id if agent_id else THIS_HOST)
    return {**describe(server), "agent_id": agent_id, "runs_on": runs_on,
            "agent_state": state_of(agent, now) if agent else None}


def _agents(vault: Vault) -> dict[str, dict]:
    return {a["id"]: a for a in vault.catalog.list_agents()}


def servers_with_hosts(vault: Vault) -> list[dict]:
    """Every registered server (``dbsafe server list``, ``GET /servers``) with the host it
    runs on."""
    agents, now = _agents(vault), datetime.now(UTC)
    return [_placed(s, agents, now) for s in vault.catalog.list_servers()]


def server_with_host(vault: Vault, name: str) -> dict:
    """One server (``GET /servers/{server}``) with the host it runs on."""
    server = get_server(vault, name)
    agents = {server["agent_id"]: vault.catalog.get_agent(server["agent_id"])} \
        if server.get("agent_id") else {}
    return _placed(server, {k: v for k, v in agents.items() if v}, datetime.now(UTC))


def host_groups(vault: Vault) -> list[dict]:
    """The servers page: one group per host — this host first (when it has servers or no
    agent exists), then each agent by host name, with its servers (even none: a VM just
    registered shows at once). Each group: ``host``, ``agent`` (``public``; None for this
    host) and ``servers`` (as ``servers_with_hosts``)."""
    now = datetime.now(UTC)
    agents = _agents(vault)
    rows = [_placed(s, agents, now) for s in vault.catalog.list_servers()]
    mine = [r for r in rows if r["agent_id"] is None]
    groups: list[dict] = [{"host": THIS_HOST, "agent": None, "servers": mine}] \
        if mine or not agents else []
    for agent in agents.values():  # ordered by host, then id (the catalog's order)
        theirs = [r for r in rows if r["agent_id"] == agent["id"]]
        groups.append({"host": agent["host"], "servers": theirs,
                       "agent": public(agent, [r["name"] for r in theirs], now)})
    return groups


def _host_row(host: str, agent: dict | None, servers: int, now: datetime) -> dict:
    return {"host": host, "agent_id": agent["id"] if agent else None,
            "state": state_of(agent, now) if agent else None, "servers": servers,
            "queued": 0, "running": 0, "failed_24h": 0}


def fleet_totals(vault: Vault, now: datetime | None = None) -> dict:
    """The dashboard's fleet figures: hosts (this one and the hosts of agents not revoked),
    agents by state, servers, and jobs queued and running now and failed in the last
    24 hours — in all and per host (``per_host``, this host first)."""
    now = now or datetime.now(UTC)
    agents = _agents(vault)
    servers = vault.catalog.list_servers()
    owner = {s["name"]: s.get("agent_id") for s in servers}
    counted: dict[str | None, int] = {}
    for s in servers:
        counted[s.get("agent_id")] = counted.get(s.get("agent_id"), 0) + 1
    per: dict[str | None, dict] = {None: _host_row(THIS_HOST, None, counted.get(None, 0), now)}
    for a in agents.values():
        per[a["id"]] = _host_row(a["host"], a, counted.get(a["id"], 0), now)

    def row_of(job: dict) -> dict:
        """A job's host: its agent's (queued for one), else its server's owner's."""
        return per.get(job["agent_id"] or owner.get(job["server"])) or per[None]
    for job in vault.catalog.count_live_jobs():
        row_of(job)["queued" if job["state"] == "queued" else "running"] += job["n"]
    since = (now - JOB_WINDOW).isoformat(timespec="milliseconds")
    for job in vault.catalog.count_jobs_grouped_since(since):
        if job["state"] == "failed":
            row_of(job)["failed_24h"] += job["n"]
    states = [r["state"] for r in per.values() if r["agent_id"]]
    rows = list(per.values())
    return {"hosts": 1 + len({a["host"] for a in agents.values()
                              if state_of(a, now) != "revoked"}),
            "agents": {s: states.count(s) for s in ("active", "silent", "revoked")},
            "servers": len(servers),
            "jobs": {k: sum(r[k] for r in rows) for k in ("queued", "running", "failed_24h")},
            "per_host": rows}
