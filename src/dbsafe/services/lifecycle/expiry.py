"""Applying a policy's retention to an instance's points: what expires is decided by
``dbsafe.policy.retention.decide`` (pure), per protected database from the points that hold
it (a full taken with ``--db`` does not stand for the others); this deletes it, without
breaking a chain.

Points that hold a database whose protection was stopped with "retain data" are pinned:
never expired. The WAL older than the base of the retained log chain is pruned, but only
when a single registered server carries that cluster lineage (another server of the same
system identifier, a standby or a restored copy, may need older WAL; its own retention does
not run here). The nodes of a replica set do not count: the set stands for them.

In an immutable vault a point is not expired while the retention it was given at backup
time runs (``held``; services/inventory/immutability.py), whatever the policy says now, and the WAL
of a held log point is kept.

Expired points are deleted for good (hard): soft delete guards against a person's deletion,
retention is the policy itself. Soft-deleted points take no part in the decision, but a
full stays while a soft-deleted differential is based on it, and the WAL they would need
restored is kept (``softdelete.wal_floor``) until they are purged.
"""

from __future__ import annotations

from datetime import datetime

from dbsafe.engines.postgres.wal import parse_lsn
from dbsafe.policy.retention import PointInfo, decide
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.immutability import instance_holds
from dbsafe.services.inventory.policies import get_policy
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.lifecycle.deletion import wal_floor
from dbsafe.services.lifecycle.points import list_points
from dbsafe.services.lifecycle.prune import delete_points, prune_wal


def apply_retention(vault: Vault, name: str, now: datetime) -> dict:
    """Expire what the instance's policy no longer keeps; returns what was done."""

    server = get_server(vault, name)
    items = vault.catalog.list_items(server["instance_id"])
    names = {i["policy"] for i in items if i["state"] != "stopped" and i["policy"]}
    if len(names) != 1:
        return {"server": name, "skipped": "no single policy governs this instance"}
    policy = get_policy(vault, names.pop())
    pinned_dbs = {i["name"] for i in items if i["state"] == "stopped"}
    points = list_points(vault, name)
    decision = decide([PointInfo.of(p) for p in points], policy, now,
                      vault.catalog.list_protected(server["instance_id"]))
    pinned = {p["point_id"] for p in points if set(p["databases"] or ()) & pinned_dbs}
    held = instance_holds(vault, server["instance_id"], now)  # immutable: frozen retention
    expire = [pid for pid in decision.expire if pid not in pinned and pid not in held]
    expiring = set(expire)
    bases = {p["base_point"] for p in list_points(vault, name, deleted=None)
             if p["point_id"] not in expiring and p.get("base_point")}
    expire = [pid for pid in expire if pid not in bases]
    result = {"server": name, "policy": policy.name, "expired": expire,
              "kept": decision.keep, "held": {p: held[p] for p in decision.expire if p in held},
              "wal": None}
    if expire:
        delete_points(vault, expire, reason=f"retention of policy {policy.name}", soft=False,
                      now=now)
    base = vault.catalog.get_point(decision.wal_base_point) if decision.wal_base_point else None
    lineage = [s for s in vault.catalog.list_servers()  # a set's nodes count as the set
               if s["system_identifier"] == server["system_identifier"] and not s["replica_set"]]
    if base is not None and len(lineage) == 1 and server["recovery_model"] == "FULL":
        keep_from = base["start_lsn"]
        floors = [wal_floor(vault, server["system_identifier"])] + [
            p["start_lsn"] for p in points if p["type"] == "log" and p["point_id"] in held]
        keep_from = min([f for f in floors if f is not None] + [keep_from], key=parse_lsn)
        result["wal"] = prune_wal(vault, server["system_identifier"], keep_from,
                                  base["timeline"])
    return result
