"""Replica sets: a primary and its streaming standbys, protected once, backed up from the
node the backup preference names (the decision itself is ``dbsafe.policy.node_choice``).

A set has its own entry among the servers (kind ``replica-set``): its protected items,
points, policy and recovery model live there, so a failover changes nothing for them, and
the log chain is the cluster lineage's (one system identifier) as for any server. That
entry mirrors the endpoint of the node last seen as primary; every backup looks at the
nodes again first (``look``), notices role changes, and then takes the chosen node's
endpoint for that one run (``node_for``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from dbsafe.catalog.base import parse_time
from dbsafe.core.errors import DbsafeError
from dbsafe.core.regions import check_region
from dbsafe.engines.postgres.roles import role_facts
from dbsafe.policy import node_choice
from dbsafe.policy.node_choice import NodeState
from dbsafe.services.activity import alerts
from dbsafe.services.activity.jobs import Job
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server, open_instance
from dbsafe.services.protection.archive_setup import archive_command, configure_archiving

log = logging.getLogger("dbsafe.replicasets")

# The fields of a set's entry that follow its primary (the node's endpoint).
ENDPOINT = ("pgdata", "port", "host", "bin_dir", "socket_dir", "data_checksums")
# an agent reports its host's nodes every REPORT_EVERY seconds (agent/worker.py); a report
# older than REPORT_FRESH says nothing of the node now
REPORT_EVERY = 5.0
REPORT_FRESH = 20.0
# a server that is no replica set's node is looked at as often, but reported only when what
# the health checks judge changed (it answers or not, its role, timeline or health) or
# every SERVER_REPORT_EVERY seconds: 40 idle agents reporting every 5 s cost the control
# plane 2.6 CPU s and 4,600 catalog statements a minute (bench/README.md); such a report
# is fresh for the health checks for SERVER_REPORT_FRESH seconds
SERVER_REPORT_EVERY = 30.0
SERVER_REPORT_FRESH = 75.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def get_set(vault: Vault, name: str) -> dict:
    found = vault.catalog.get_replica_set(name)
    if found is None:
        raise DbsafeError("replicaset.unknown", name=name)
    return found


def _check_preference(preference: str) -> str:
    if preference not in node_choice.PREFERENCES:
        raise DbsafeError("replicaset.bad_preference", preference=preference,
                          valid=", ".join(node_choice.PREFERENCES))
    return preference


def _vault_region(vault: Vault) -> str:
    region = vault.repo.config.get("region")
    if region is None:
        raise DbsafeError("replicaset.vault_region_missing")
    return region


def add_set(vault: Vault, name: str, preference: str) -> dict:
    _check_preference(preference)
    _vault_region(vault)
    if vault.catalog.get_server(name) is not None or vault.catalog.get_replica_set(name):
        raise DbsafeError("replicaset.name_taken", name=name)
    vault.catalog.add_replica_set(name, preference)
    return show(vault, name, look_now=False)


def set_preference(vault: Vault, name: str, preference: str) -> dict:
    get_set(vault, name)
    vault.catalog.update_replica_set(name, preference=_check_preference(preference))
    return show(vault, name)


def remove_set(vault: Vault, name: str) -> dict:
    """Forget the set (its nodes stay registered servers). Refused while it has items or
    points: they restore only through it."""
    get_set(vault, name)
    entry = vault.catalog.get_server(name)
    if entry is not None:
        items = vault.catalog.list_items(entry["instance_id"])
        points = vault.catalog.list_points(entry["instance_id"])
        if items or points:
            raise DbsafeError("replicaset.has_data", name=name,
                              what=f"{len(items)} item(s) and {len(points)} recovery point(s)")
    vault.catalog.remove_replica_set(name)
    return {"replica_set": name, "removed": True}


def add_node(vault: Vault, name: str, server: str, region: str | None = None) -> dict:
    """Make a registered server a node of the set, in ``region`` (default: the server's
    region, else the vault's). The first node defines the set's cluster lineage."""
    get_set(vault, name)
    vault_region = _vault_region(vault)
    node = get_server(vault, server)
    if node["kind"] != "server":
        raise DbsafeError("replicaset.name_taken", name=server)
    if node["replica_set"] and node["replica_set"] != name:
        raise DbsafeError("replicaset.node_elsewhere", server=server, other=node["replica_set"])
    protected = vault.catalog.list_protected(node["instance_id"])
    if protected:
        raise DbsafeError("replicaset.node_has_items", server=server,
                          items=", ".join(protected))
    entry = vault.catalog.get_server(name)
    if entry is not None and entry["system_identifier"] != node["system_identifier"]:
        raise DbsafeError("replicaset.other_cluster", server=server, name=name,
                          found=node["system_identifier"],
                          expected=entry["system_identifier"])
    region = check_region(region) if region else (node["region"] or vault_region)
    vault.catalog.update_server(server, region=region)
    if not node["replica_set"]:
        vault.catalog.add_node(name, server)
    archiving = None
    if entry is None:
        vault.catalog.add_server(name, "replica set", vault_region, {
            **{k: node[k] for k in ENDPOINT},
            "pg_version": node["pg_version"], "system_identifier": node["system_identifier"],
            "recovery_model": None, "wal_segment_size": node["wal_segment_size"],
        }, kind="replica-set")
    elif entry["recovery_model"] == "FULL":  # a node joining a protected set archives too

        archiving = configure_archiving(vault, node, "FULL", archive_command(vault),
                                        mode="always")
    return {**show(vault, name), "archiving": archiving}


def remove_node(vault: Vault, name: str, server: str) -> dict:
    get_set(vault, name)
    if not vault.catalog.remove_node(name, server):
        nodes = [n["server"] for n in vault.catalog.list_nodes(name)]
        raise DbsafeError("replicaset.not_a_node", server=server, name=name,
                          nodes=", ".join(nodes) or "none")
    return show(vault, name)


# looking at the nodes ------------------------------------------------------------------------
def _look_at(vault: Vault, node: dict) -> tuple[NodeState, int | None]:
    """What a node is now: asked of its cluster when it is on this host, else as its
    host's agent last reported it (docs/fleet.md), if that is fresh."""
    row = node_report(node) if vault.is_here(node) else _reported(vault, node)
    return (NodeState(node["name"], row["role"], node["region"], bool(row["healthy"]),
                      row["reason"], int(row["replay_lsn"] or 0)), row["timeline"])


def node_report(node: dict) -> dict:
    """What the cluster of a node on this host says of its role (what an agent reports of
    its host's nodes: ``report_node``); role ``unknown`` when it does not answer."""
    now = _now()
    try:
        with open_instance(node) as conn:
            facts = role_facts(conn)
    except DbsafeError as exc:
        return {"server": node["name"], "role": "unknown", "timeline": None, "healthy": 0,
                "reason": exc.message, "replay_lsn": 0, "reported": now}
    return {"server": node["name"], "role": facts.role, "timeline": facts.timeline,
            "healthy": int(facts.healthy), "reason": facts.reason,
            "replay_lsn": facts.replay_lsn, "reported": now}


def fresh_report(vault: Vault, server: str, within: float = REPORT_FRESH) -> dict | None:
    """The last report of ``server`` by the agent of its host, when at most ``within``
    seconds old."""
    row = vault.catalog.get_node_report(server)
    if row is None or (datetime.now(UTC) - parse_time(row["reported"])).total_seconds() \
            > within:
        return None
    return row


def _reported(vault: Vault, node: dict) -> dict:
    """The agent's last report of a node of another host; unknown when none is fresh."""
    row = fresh_report(vault, node["name"])
    if row is not None:
        return row
    old = vault.catalog.get_node_report(node["name"])
    reason = "the agent of its host has not reported it yet" if old is None else \
        f"the agent of its host last reported it at {old['reported']}"
    return {"server": node["name"], "role": "unknown", "timeline": None, "healthy": 0,
            "reason": reason, "replay_lsn": 0}


def look(vault: Vault, name: str) -> list[NodeState]:
    """Ask every node for its role now; record it, and notice role changes (logged, and the
    set's entry follows the primary). With two primaries, the one on the newer timeline is
    the primary; the other is reported unhealthy."""

    rows = {n["server"]: n for n in vault.catalog.list_nodes(name)}
    if not rows:
        raise DbsafeError("replicaset.no_nodes", name=name)
    seen = {s: _look_at(vault, get_server(vault, s)) for s in rows}
    primaries = [s for s, (st, _tl) in seen.items() if st.role == "primary"]
    if len(primaries) > 1:
        newest = max(primaries, key=lambda s: seen[s][1] or 0)
        for s in primaries:
            tl = seen[s][1] or 0
            if s != newest and tl < (seen[newest][1] or 0):
                st = seen[s][0]
                seen[s] = (NodeState(s, "stale-primary", st.region, False,
                                     f"runs as a primary on timeline {tl}, older than "
                                     f"{newest}'s: rebuild it as a standby", 0), tl)
    states = [st for st, _tl in seen.values()]
    if not vault.keeps_catalog:  # an agent decides from the same facts, and records nothing
        return states
    now = _now()
    for server, (state, timeline) in seen.items():
        before = rows[server]
        if before["role"] and before["role"] != state.role:
            message = (f"node {server} of replica set {name} was {before['role']}, "
                       f"is now {state.role}")
            log.warning(message)
            if state.role == "primary":
                alerts.raise_alert(vault.catalog, alerts.ROLE_CHANGED, "warning", message,
                                   server=name, item=server,
                                   details={"node": server, "was": before["role"],
                                            "now": state.role, "timeline": timeline})
        vault.catalog.update_node(server, role=state.role, healthy=int(state.healthy),
                                  reason=state.reason, timeline=timeline, checked=now)
    primary = [st.server for st in states if st.role == "primary"]
    entry = vault.catalog.get_server(name)
    if len(primary) == 1 and entry is not None:
        node = get_server(vault, primary[0])
        if any(entry[k] != node[k] for k in ENDPOINT):
            vault.catalog.update_instance(entry["instance_id"], **{k: node[k] for k in ENDPOINT})
        if entry.get("agent_id") != node.get("agent_id"):  # its host's agent runs its work
            vault.catalog.update_server(name, agent_id=node.get("agent_id"))
    return states


def choose_node(vault: Vault, name: str, backup_type: str) -> node_choice.Choice:
    """Which node takes ``backup_type`` now, after looking at the nodes."""
    preference = get_set(vault, name)["preference"]
    return node_choice.choose(look(vault, name), preference, vault.repo.config.get("region"),
                              backup_type)


def node_for(vault: Vault, entry: dict, backup_type: str, chosen: str | None = None) -> dict:
    """The set's entry with the chosen node's endpoint (and ``node``, ``node_reason``, and
    the node's ``agent_id``) for one backup run; ``replicasets.no_node`` with the reason when
    no node may take it now. ``chosen``: the node the control plane chose for the agent of
    that node's host (docs/fleet.md)."""
    name = entry["name"]
    if chosen is not None:
        node = get_server(vault, chosen)
        if node["replica_set"] != name:
            raise DbsafeError("replicaset.not_a_node", server=chosen, name=name,
                              nodes=", ".join(n["server"] for n in vault.catalog.list_nodes(name)))
        reason = "chosen by the control plane from its nodes' reports"
    else:
        choice = choose_node(vault, name, backup_type)
        if choice.server is None:
            raise DbsafeError("replicaset.no_node", name=name, type=backup_type,
                              reason=choice.reason)
        node, reason = get_server(vault, choice.server), choice.reason
    return {**get_server(vault, name), **{k: node[k] for k in ENDPOINT},
            "agent_id": node.get("agent_id"), "node": node["name"], "node_reason": reason}


def log_node(vault: Vault, name: str) -> str | None:
    """The node whose WAL the vault stores now (the agent asks, per archived file)."""
    return choose_node(vault, name, "log").server


def node_for_job(vault: Vault, entry: dict, backup_type: str, trigger: str,
                 reason: str | None, chosen: str | None = None) -> dict:
    """``node_for`` for a backup job: when no node may take it, the refusal is a failed job
    (and so an alert), since the set is protected and its schedule expects that backup."""

    try:
        return node_for(vault, entry, backup_type, chosen)
    except DbsafeError as exc:
        if exc.code != "replicaset.no_node":
            raise
        with Job(vault.catalog, "backup", entry["name"], backup_type=backup_type,
                 trigger=trigger, reason=reason):
            raise


def refuse_node_alone(server: dict, action: str) -> None:
    """A node of a set is protected and backed up through the set only."""
    if server.get("replica_set"):
        raise DbsafeError("replicaset.node_alone", name=server["name"],
                          set=server["replica_set"], action=action)


# what the CLI shows ---------------------------------------------------------------------------
def show(vault: Vault, name: str, look_now: bool = True) -> dict:
    rs = get_set(vault, name)
    nodes = vault.catalog.list_nodes(name)
    states = look(vault, name) if (look_now and nodes) else None
    vault_region = vault.repo.config.get("region")
    rows = {n["server"]: n for n in vault.catalog.list_nodes(name)}
    out_nodes = []
    for server, row in rows.items():
        node = get_server(vault, server)
        out_nodes.append({"server": server, "role": row["role"] or "unknown",
                          "region": node["region"], "healthy": bool(row["healthy"]),
                          "reason": row["reason"], "timeline": row["timeline"],
                          "in_vault_region": node["region"] == vault_region,
                          "pgdata": node["pgdata"], "port": node["port"],
                          "checked": row["checked"]})
    entry = vault.catalog.get_server(name)
    return {"name": name, "preference": rs["preference"], "vault_region": vault_region,
            "system_identifier": entry["system_identifier"] if entry else None,
            "recovery_model": (entry["recovery_model"] if entry else None),
            "protected": vault.catalog.list_protected(entry["instance_id"]) if entry else [],
            "nodes": out_nodes,
            "plan": (node_choice.plan(states, rs["preference"], vault_region)
                     if states is not None else None)}


def list_sets(vault: Vault) -> list[dict]:
    return [{"name": rs["name"], "preference": rs["preference"],
             "nodes": [n["server"] for n in vault.catalog.list_nodes(rs["name"])]}
            for rs in vault.catalog.list_replica_sets()]
