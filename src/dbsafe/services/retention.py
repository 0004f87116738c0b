"""Applying a policy's retention to an instance's points: what expires is decided by
``dbsafe.policy.retention.decide`` (pure); this deletes it, without breaking a chain.

Points that hold a database whose protection was stopped with "retain data" are pinned:
never expired. The WAL older than the base of the retained log chain is pruned, but only
when a single registered server carries that cluster lineage (another server of the same
system identifier, a standby or a restored copy, may need older WAL; its own retention does
not run here). The nodes of a replica set do not count: the set stands for them.

Expired points are deleted for good (hard): soft delete guards against a person's deletion,
retention is the policy itself. Soft-deleted points take no part in the decision, but a
full stays while a soft-deleted differential is based on it, and the WAL they would need
restored is kept (``softdelete.wal_floor``) until they are purged.
"""

from __future__ import annotations

from datetime import datetime

from dbsafe.engines.postgres.wal import parse_lsn
from dbsafe.services.points import list_points
from dbsafe.services.servers import get_server
from dbsafe.services.vault import Vault


def point_info(row: dict):  # -> PointInfo
    """A point (a catalog row or a listed point) as retention sees it: the catalog's type
    ``copy-only`` is a full with ``copy_only`` set."""
    from dbsafe.policy.retention import PointInfo

    return PointInfo(row["point_id"], "full" if row["type"] == "copy-only" else row["type"],
                     bool(row["copy_only"]), datetime.fromisoformat(row["end_time"]),
                     row.get("base_point"))


def apply_retention(vault: Vault, name: str, now: datetime) -> dict:
    """Expire what the instance's policy no longer keeps; returns what was done."""
    from dbsafe.policy.retention import decide
    from dbsafe.services.policies import get_policy
    from dbsafe.services.prune import delete_points, prune_wal
    from dbsafe.services.softdelete import wal_floor

    server = get_server(vault, name)
    items = vault.catalog.list_items(server["instance_id"])
    names = {i["policy"] for i in items if i["state"] != "stopped" and i["policy"]}
    if len(names) != 1:
        return {"server": name, "skipped": "no single policy governs this instance"}
    policy = get_policy(vault, names.pop())
    pinned_dbs = {i["name"] for i in items if i["state"] == "stopped"}
    points = list_points(vault, name)
    infos = [point_info(p) for p in points]
    decision = decide(infos, policy, now)
    pinned = {p["point_id"] for p in points if set(p["databases"] or ()) & pinned_dbs}
    expire = [pid for pid in decision.expire if pid not in pinned]
    bases = {p["base_point"] for p in list_points(vault, name, deleted=None)
             if p["point_id"] not in expire and p.get("base_point")}
    expire = [pid for pid in expire if pid not in bases]
    result = {"server": name, "policy": policy.name, "expired": expire,
              "kept": decision.keep, "wal": None}
    if expire:
        delete_points(vault, expire, reason=f"retention of policy {policy.name}", soft=False,
                      now=now)
    base = vault.catalog.get_point(decision.wal_base_point) if decision.wal_base_point else None
    lineage = [s for s in vault.catalog.list_servers()  # a set's nodes count as the set
               if s["system_identifier"] == server["system_identifier"] and not s["replica_set"]]
    if base is not None and len(lineage) == 1 and server["recovery_model"] == "FULL":
        keep_from = base["start_lsn"]
        floor = wal_floor(vault, server["system_identifier"])
        if floor is not None and parse_lsn(floor) < parse_lsn(keep_from):
            keep_from = floor
        result["wal"] = prune_wal(vault, server["system_identifier"], keep_from,
                                  base["timeline"])
    return result
