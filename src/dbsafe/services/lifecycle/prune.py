"""Deleting recovery points, pruning the log chain, and garbage collection of their blocks.

Retention (dbsafe.policy) decides what expires; this module carries it out and refuses the
mistakes that would leave something unrestorable: a full deleted under a differential that
stays, or under a differential being taken. Write order and crash behaviour are in
docs/repository-format.md (*Deleting*, *Garbage collection*): manifest or record first,
catalog row after, blocks only when garbage collection finds nothing using them.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow
from dbsafe.engines.postgres import wal
from dbsafe.services.activity.jobs import Job, running_job
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.immutability import refuse_if_held
from dbsafe.services.lifecycle import coverage
from dbsafe.services.lifecycle.points import list_points
from dbsafe.services.logchain.archive import reconcile_wal
from dbsafe.vault.gc import REPACK_UNUSED, collect_garbage
from dbsafe.vault.softdelete import delete_marker, marker_ids, soft_delete_setting, write_marker

DEFAULT_SEGMENT_SIZE = 16 << 20
# Segment-named WAL files other than segments: a promoted server's last partial segment and
# backup history files. They go with their segment.
_SEGMENT_PREFIXED = re.compile(r"^([0-9A-F]{24})(\.partial|\.[0-9A-F]{8}\.backup)$")


# points ------------------------------------------------------------------------------------
def describe_point(vault: Vault, point_id: str) -> dict:
    """What deleting a point needs to know, from its manifest (the truth) or, when the
    manifest is already gone (a deletion that died half-way), its catalog row."""
    try:
        m = vault.repo.load_manifest(point_id)
    except KeyError:
        row = vault.catalog.get_point(point_id)
        if row is None:
            raise DbsafeError("prune.point_unknown", point_id=point_id) from None
        return {"point_id": point_id, "type": row["type"], "copy_only": bool(row["copy_only"]),
                "server": None, "start_time": row["start_time"], "end_time": row["end_time"]}
    return {"point_id": point_id, "type": m["type"], "copy_only": m["copy_only"],
            "server": m["instance"]["server"], "start_time": m["start_time"],
            "end_time": m["end_time"]}


def diff_bases(vault: Vault) -> dict[str, str]:
    """{differential: its base full} for every differential in the vault."""
    out = {}
    for point_id in vault.repo.point_ids():
        row = vault.catalog.get_point(point_id)
        if row is not None and row["type"] != "diff":
            continue
        base = row["base_point"] if row is not None else None
        if base is None:
            try:
                manifest = vault.repo.load_manifest(point_id)
            except KeyError:
                continue
            base = manifest.get("base")
        if base is not None:
            out[point_id] = base
    return out


def _check_busy(vault: Vault, point: dict) -> None:
    """Refuse the latest full that holds the databases of a running backup of its server
    (a differential reads it as its base, and would name it in a manifest written after the
    deletion)."""
    if point["type"] != "full" or point["copy_only"] or point["server"] is None:
        return
    if vault.catalog.get_server(point["server"]) is None:
        return
    busy = running_job(vault.catalog, "backup", point["server"])
    if busy is None:
        return
    fulls = [p for p in list_points(vault, point["server"])
             if p["type"] == "full" and not p["copy_only"]]
    latest = coverage.newest(fulls, json.loads(busy.get("items") or "[]"))
    if latest is not None and latest["point_id"] == point["point_id"]:
        raise DbsafeError("prune.point_in_use", point_id=point["point_id"],
                          name=point["server"], job_id=busy["id"])


def remove_points(vault: Vault, points: list[dict]) -> None:
    """Differentials before the fulls they are based on; per point, the row marked as being
    deleted, the manifest, the row, then a soft-delete marker the point may have (one left
    by a crash is removed by the next purge: a marker without its manifest marks nothing).
    The mark tells the next listing that the manifest went by dbsafe's hand."""
    for p in sorted(points, key=lambda p: (p["type"] != "diff", p["start_time"])):
        vault.catalog.mark_point_deleting(p["point_id"], utcnow())  # not a vanished manifest
        vault.repo.delete_manifest(p["point_id"])
        vault.catalog.delete_point(p["point_id"])
        delete_marker(vault.repo.storage, p["point_id"])


def job_server(servers: set[str | None]) -> str | None:
    """The server a job is recorded under: the one concerned, or none when several are."""
    return servers.pop() if len(servers) == 1 else None


def mark_deleted(vault: Vault, points: list[dict], reason: str, job_id: str, now: datetime,
                 days: int) -> str:
    """Soft-delete ``points`` (checked by ``delete_points``): marker, then catalog columns
    (services/lifecycle/deletion.py undeletes and purges them). Returns their
    ``purge_after``."""
    at = now.astimezone(UTC).isoformat(timespec="seconds")
    purge_after = (now + timedelta(days=days)).astimezone(UTC).isoformat(timespec="seconds")
    for p in points:
        write_marker(vault.repo.storage, {"point_id": p["point_id"], "deleted_at": at,
                                          "purge_after": purge_after, "reason": reason,
                                          "job_id": job_id})
        vault.catalog.set_point_deleted(p["point_id"], at, purge_after)
    return purge_after


def delete_points(vault: Vault, point_ids: list[str], reason: str, *,
                  soft: bool | None = None, now: datetime | None = None) -> dict:
    """Delete these points, recorded as a ``delete`` job with ``reason``.

    Soft (the vault's soft-delete setting unless ``soft`` says): each point gets a marker
    and is purged after the soft-delete retention (``services.softdelete``); until then it
    can be undeleted. Hard: manifests then catalog rows go now (a soft-deleted point too).
    Blocks stay until garbage collection (``run_gc``) finds them unused. ``now`` (default:
    the clock) dates the deletion and is what an immutable vault's retention is checked at.

    Refuses (nothing deleted) an unknown point, a full that a differential outside the
    request is based on (a soft-deleted one counts only for a hard delete), a server's
    latest full while a backup of that server runs, an already soft-deleted point for a
    soft delete, and in an immutable vault a point whose retention has not ended.
    """
    now = now or datetime.now(UTC)
    points = [describe_point(vault, pid) for pid in dict.fromkeys(point_ids)]
    setting = soft_delete_setting(vault.repo.storage)
    soft = setting["enabled"] if soft is None else soft
    result: dict = {"deleted": [], "reason": reason, "soft": soft, "purge_after": None,
              "job_id": None}
    if not points:
        return result
    asked = {p["point_id"] for p in points}
    marked = marker_ids(vault.repo.storage)
    bases = diff_bases(vault)
    for p in points:
        if soft and p["point_id"] in marked:
            raise DbsafeError("softdelete.already_deleted", point_id=p["point_id"])
        staying = sorted(d for d, b in bases.items() if b == p["point_id"] and d not in asked
                         and not (soft and d in marked))
        if staying:
            raise DbsafeError("prune.base_in_use", point_id=p["point_id"],
                              diffs=", ".join(staying))
        _check_busy(vault, p)
    refuse_if_held(vault, points, now)
    with Job(vault.catalog, "delete", job_server({p["server"] for p in points})) as job:
        vault.catalog.update_job(job.id, reason=reason)
        if soft:

            result["purge_after"] = mark_deleted(vault, points, reason, job.id, now,
                                                 setting["days"])
        else:
            remove_points(vault, points)
        result["deleted"] = [{k: p[k] for k in ("point_id", "type", "server", "start_time")}
                             for p in points]
        result["job_id"] = job.id
        job.finish(result)
        return result


# the log chain -------------------------------------------------------------------------------
def _segment_size(vault: Vault, system_id: str, rows: list[dict]) -> int:
    for r in rows:
        if r["segment_size"]:
            return r["segment_size"]
    for s in vault.catalog.list_servers():
        if s["system_identifier"] == system_id and s["wal_segment_size"]:
            return s["wal_segment_size"]
    return DEFAULT_SEGMENT_SIZE


def _segment_of(name: str, segment_size: int) -> tuple[int, int] | None:
    """(timeline, segment number) a WAL file belongs to; None for history files."""
    m = _SEGMENT_PREFIXED.match(name)
    return wal.parse_segment_name(m.group(1) if m else name, segment_size)


def _first_segment(vault: Vault, system_id: str, segment_size: int) -> str | None:
    """The oldest segment the vault holds for the lineage (where its chain starts)."""
    found = [(at[1], at[0], n) for n in vault.repo.wal_names(system_id)
             if (at := wal.parse_segment_name(n, segment_size)) is not None]
    return min(found)[2] if found else None


def _lineage(vault: Vault, system_id: str) -> list[str]:
    """The registered servers of one cluster lineage (a primary and its standbys)."""
    return [s["name"] for s in vault.catalog.list_servers()
            if s["system_identifier"] == system_id and not s["replica_set"]]


def prune_wal(vault: Vault, system_identifier: str, keep_from_lsn: str,
              keep_timeline: int) -> dict:
    """Delete the WAL records (and catalog rows) of the lineage ``system_identifier`` that
    end at or before ``keep_from_lsn`` on timelines up to ``keep_timeline``, and the log
    points whose end lies in that WAL. History files are kept.

    The chain then starts later: the segment holding ``keep_from_lsn`` is kept, and a base
    backup whose stop LSN lies in the kept WAL makes it restorable from that backup's end.
    A base backup's own consistency WAL is in its manifest (``wal``), never needed here.
    """
    keep = wal.parse_lsn(keep_from_lsn)
    reconcile_wal(vault, system_identifier)
    rows = {r["name"]: r for r in vault.catalog.list_wal_files(system_identifier)}
    seg = _segment_size(vault, system_identifier, list(rows.values()))

    def pruned(timeline: int, lsn: int) -> bool:
        """Whether the segment holding ``lsn`` goes."""
        return timeline <= keep_timeline and (lsn // seg + 1) * seg <= keep

    victims = []
    for name in vault.repo.wal_names(system_identifier):
        at = _segment_of(name, seg)
        if at is not None and pruned(at[0], at[1] * seg):
            victims.append((at[1], at[0], name))
    victims.sort()  # oldest first: a crash leaves the chain starting later, never a hole
    servers = _lineage(vault, system_identifier)
    log_points = [p for name in servers  # soft-deleted ones too: their WAL goes
                  for p in list_points(vault, name, deleted=None)
                  if p["type"] == "log" and pruned(p["timeline"], wal.parse_lsn(p["stop_lsn"]) - 1)]
    result = {"system_identifier": system_identifier, "keep_from_lsn": keep_from_lsn,
              "keep_timeline": keep_timeline, "wal_files_deleted": len(victims),
              "bytes_deleted": sum(rows[v[2]]["size"] for v in victims if v[2] in rows),
              "log_points_deleted": [p["point_id"] for p in log_points]}
    if not victims and not log_points:  # nothing to do: no job row (retention calls often)
        return {**result, "first_kept": _first_segment(vault, system_identifier, seg),
                "job_id": None}
    with Job(vault.catalog, "prune-wal", job_server(set(servers))) as job:
        vault.catalog.update_job(job.id, reason=f"keep WAL from {keep_from_lsn} "
                                                f"(timelines up to {keep_timeline})")
        # Log points first: none may vouch for WAL that is gone.
        remove_points(vault, log_points)
        for _, _, name in victims:
            vault.repo.delete_wal_record(system_identifier, name)
        vault.catalog.delete_wal_files(system_identifier, [v[2] for v in victims])
        result["first_kept"] = _first_segment(vault, system_identifier, seg)
        result["job_id"] = job.id
        job.finish(result)
        return result


# garbage collection ----------------------------------------------------------------------------
def run_gc(vault: Vault, wait_seconds: float = 0.0,
           repack_unused: float = REPACK_UNUSED) -> dict:
    """Garbage collection of the vault's packs as a ``gc`` job (vault/gc.py)."""
    with Job(vault.catalog, "gc", None) as job:
        result = {**collect_garbage(vault.repo, wait_seconds, repack_unused=repack_unused,
                                  exclusive=vault.exclusive("gc")),
                  "job_id": job.id}
        job.finish(result)
        return result
