"""Soft delete: a deleted point is kept, marked, for the vault's soft-delete retention
(14 days by default, as the seed), can be undeleted until then, and is purged after.

A soft-deleted point keeps its manifest, so garbage collection keeps its blocks, and its
marker ``deleted/<point id>`` (vault/softdelete.py) is the commit point of the deletion:
listings, chains, base choices, retention and restores leave it out (services/lifecycle/points.py).
Retention also keeps the WAL it would need restored (``wal_floor``). Write order: marker
then catalog columns; undelete removes the marker then clears them; purge is the hard
delete (manifest, row) then the marker. docs/deleting.md says what a user sees.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import wal
from dbsafe.services.activity.jobs import Job
from dbsafe.services.handle.vault_handle import Vault, protection_settings
from dbsafe.services.inventory.immutability import is_immutable, retention_holds
from dbsafe.services.lifecycle.points import list_points
from dbsafe.services.lifecycle.prune import describe_point, diff_bases, job_server, remove_points
from dbsafe.vault.softdelete import (
    MAX_DAYS,
    MIN_DAYS,
    delete_marker,
    marker_ids,
    read_marker,
    save_soft_delete_setting,
    soft_delete_setting,
)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


# settings --------------------------------------------------------------------------------------
def settings(vault: Vault) -> dict:
    """The vault's soft-delete and immutability settings (every client reads the same)."""
    return protection_settings(vault.repo.storage)


def set_soft_delete(vault: Vault, days: int | None, enabled: bool = True,
                    now: datetime | None = None) -> dict:
    """Turn soft delete on with ``days`` of retention (14..180; None keeps the current
    days) or off. An immutable vault refuses to turn it off or shorten it. Points already
    soft-deleted keep the ``purge_after`` they were given."""
    current = soft_delete_setting(vault.repo.storage)
    days = current["days"] if days is None else days
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise DbsafeError("softdelete.days_out_of_range", days=days, low=MIN_DAYS, high=MAX_DAYS)
    weaker = current["enabled"] and (not enabled or days < current["days"])
    if weaker and is_immutable(vault):
        now_days = f"{current['days']} days"
        raise DbsafeError("immutability.soft_delete_locked", current=now_days,
                          asked=f"{days} days" if enabled else "off")
    save_soft_delete_setting(vault.repo.storage, enabled, days, _iso(now or datetime.now(UTC)))
    return settings(vault)


# deleting, undeleting ------------------------------------------------------------------------
def undelete(vault: Vault, point_ids: list[str]) -> dict:
    """Bring soft-deleted points back, restorable as before, as an ``undelete`` job. A
    differential whose base full is soft-deleted too brings it back with it."""
    asked = list(dict.fromkeys(point_ids))
    marked = marker_ids(vault.repo.storage) & set(vault.repo.point_ids())
    for pid in asked:
        if pid not in marked:
            describe_point(vault, pid)  # prune.point_unknown when there is no such point
            raise DbsafeError("softdelete.not_deleted", point_id=pid)
    bases = diff_bases(vault)
    also = [bases[pid] for pid in asked if bases.get(pid) in marked and bases[pid] not in asked]
    points = [describe_point(vault, pid) for pid in asked + list(dict.fromkeys(also))]
    if not points:
        return {"undeleted": [], "job_id": None}
    with Job(vault.catalog, "undelete", job_server({p["server"] for p in points})) as job:
        # Bases first: a crash never leaves a live differential on a soft-deleted full.
        for p in sorted(points, key=lambda p: p["type"] == "diff"):
            delete_marker(vault.repo.storage, p["point_id"])
            vault.catalog.set_point_deleted(p["point_id"], None, None)
        result = {"undeleted": [{k: p[k] for k in ("point_id", "type", "server", "start_time")}
                                for p in points],
                  "bases_undeleted": also, "job_id": job.id}
        job.finish(result)
        return result


# purging ---------------------------------------------------------------------------------------
def purge_due(vault: Vault, now: datetime | None = None) -> dict:
    """Hard-delete the soft-deleted points whose ``purge_after`` has passed at ``now``, as a
    ``purge`` job (none when nothing is due). Left for a later purge: a point an immutable
    vault still retains (``held``), and a full that a differential still in the vault is
    based on (``waiting``: it goes after that differential). Markers left without their
    manifest (a purge that died) are removed."""
    now = now or datetime.now(UTC)
    storage = vault.repo.storage
    markers = {pid: read_marker(storage, pid) for pid in marker_ids(storage)}
    stored = set(vault.repo.point_ids())
    debris = [pid for pid in markers if pid not in stored]
    for pid in debris:
        delete_marker(storage, pid)
    due = [describe_point(vault, pid) for pid, m in sorted(markers.items())
           if pid not in debris and m and datetime.fromisoformat(m["purge_after"]) <= now]
    held = retention_holds(vault, due, now)
    due = [p for p in due if p["point_id"] not in held]
    going = {p["point_id"] for p in due}
    staying_diffs = {d: b for d, b in diff_bases(vault).items() if d not in going}
    waiting = {p["point_id"]: sorted(d for d, b in staying_diffs.items() if b == p["point_id"])
               for p in due}
    waiting = {pid: diffs for pid, diffs in waiting.items() if diffs}
    due = [p for p in due if p["point_id"] not in waiting]
    result = {"purged": [p["point_id"] for p in due], "held": held, "waiting": waiting,
              "markers_removed": len(debris), "job_id": None}
    if not due:
        return result
    with Job(vault.catalog, "purge", job_server({p["server"] for p in due})) as job:
        vault.catalog.update_job(job.id, reason="soft-delete retention ended")
        remove_points(vault, due)
        result["job_id"] = job.id
        job.finish(result)
        return result


# what retention must keep for soft-deleted points ----------------------------------------------
def wal_floor(vault: Vault, system_identifier: str) -> str | None:
    """The lowest start LSN of the soft-deleted points of a cluster lineage: pruning the log
    chain keeps the WAL from there, so that an undeleted full still has the log chain after
    it and an undeleted log point its WAL. None when no point of the lineage is deleted."""
    if not marker_ids(vault.repo.storage):
        return None
    lsns = [wal.parse_lsn(p["start_lsn"]) for s in vault.catalog.list_servers()
            if s["system_identifier"] == system_identifier
            for p in list_points(vault, s["name"], deleted=True)]
    return wal.format_lsn(min(lsns)) if lsns else None
