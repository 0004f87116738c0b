"""Recovery points of a server: from the catalog, reconciled with the vault's manifests.

A manifest is the truth: one that the catalog lacks (the process died between writing the
manifest and the catalog row) is added when points are listed, and a row whose manifest is
gone is dropped: quietly when dbsafe was deleting the point (a deletion died between
removing the manifest and the row), with a critical alert (``manifest_missing``) when the
manifest vanished without dbsafe deleting it: someone who can write the storage removed a
backup. Soft-deleted
points (a marker ``deleted/<point id>`` beside the manifest, docs/deleting.md) are mirrored
the same way into the rows' ``deleted_at`` and ``purge_after``; listings leave them out
unless asked, and a soft-deleted point is not loaded for a restore until it is undeleted.
"""

from __future__ import annotations

import json

from dbsafe.core.errors import DbsafeError
from dbsafe.services.activity import alerts
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.immutability import retention_column
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.lifecycle import coverage, manifest_checks
from dbsafe.services.logchain.chain import log_chain
from dbsafe.vault.softdelete import marker_ids, read_marker

POINT_FIELDS = ("point_id", "type", "copy_only", "start_time", "end_time", "start_lsn",
                "stop_lsn", "timeline", "bytes_read", "bytes_stored", "corrupt_pages",
                "databases", "left_out", "base_point", "build")


def _point_row(manifest: dict, manifest_size: int) -> dict:
    """The catalog row of a point; ``bytes_stored`` counts the manifest too, as a backup's
    own result does (the manifest's stats cannot count the manifest itself)."""
    return {"point_id": manifest["point_id"], "type": manifest["type"],
            "copy_only": int(manifest["copy_only"]), "start_time": manifest["start_time"],
            "end_time": manifest["end_time"], "start_lsn": manifest["start_lsn"],
            "stop_lsn": manifest["stop_lsn"], "timeline": manifest["timeline"],
            "bytes_read": manifest["stats"]["bytes_read"],
            "bytes_stored": manifest["stats"]["bytes_stored"] + manifest_size,
            "corrupt_pages": manifest["stats"]["corrupt_pages"],
            **(coverage.columns(manifest["databases"]) if "databases" in manifest else {}),
            "base_point": manifest.get("base"),
            "build": (manifest.get("build") or {}).get("kind"),
            "item_usage": json.dumps(manifest["stats"]["usage"])
            if "usage" in manifest["stats"] else None,
            # the retention frozen at backup time (services/inventory/immutability.py)
            "retention": retention_column(manifest["retention"])
            if "retention" in manifest else None}


def _belongs(manifest: dict, server: dict) -> bool:
    instance = manifest["instance"]
    return (instance["server"] == server["name"]
            and instance["system_identifier"] == server["system_identifier"])


def reconcile(vault: Vault) -> None:
    """The catalog's rows follow the repository's manifests and soft-delete markers, for
    every server at once, once per vault handle: listing the repository is listing every
    server's manifests (170,000 for 20 servers with 90 days of log backups), so it is done
    once, not per server or per read. The scheduler's runs, each with their own handle,
    repair what a crash left; a long-lived handle (the API's) reads the catalog after."""
    if vault.reconciled or not vault.keeps_catalog:
        return
    # The catalog is read before and after the listing. A backup saves its manifest before
    # its row, so a row already there before the listing began has a manifest the listing
    # must see; a row added meanwhile (a backup finishing now, on any host) proves nothing
    # yet. The read after says whether dbsafe started deleting a point meanwhile.
    before = set(vault.catalog.point_ids())
    stored = set(vault.repo.point_ids())
    deletions = vault.catalog.point_deletions()
    known = set(deletions)
    servers = vault.catalog.list_servers()
    vanished = (known & before) - stored
    _report_vanished(vault, {p for p in vanished if deletions[p] is None}, servers)
    for point_id in vanished:
        vault.catalog.delete_point(point_id)
    for point_id in stored - known:
        manifest, size = vault.repo.load_manifest_sized(point_id)
        owner = next((s for s in servers if _belongs(manifest, s)), None)
        if owner is not None:
            vault.catalog.add_point(owner["instance_id"], _point_row(manifest, size))
    _reconcile_markers(vault, stored)
    vault.reconciled = True


def _report_vanished(vault: Vault, point_ids: set[str], servers: list[dict]) -> None:
    """A critical alert per point whose manifest vanished without dbsafe deleting it."""
    names = {s["instance_id"]: s["name"] for s in servers}
    for point_id in sorted(point_ids):
        row = vault.catalog.get_point(point_id) or {}
        alerts.raise_alert(
            vault.catalog, alerts.MANIFEST_MISSING, alerts.KINDS[alerts.MANIFEST_MISSING],
            f"the manifest of point {point_id} ({row.get('type')} backup of "
            f"{row.get('start_time')}) vanished from the repository without dbsafe "
            "deleting it: the point cannot be restored and is no longer listed; find out "
            "who can write the vault's storage, and put the manifest back from a copy if "
            "there is one", server=names.get(row.get("instance_id")), item=point_id,
            details={**{k: row.get(k) for k in ("type", "start_time", "end_time",
                                                "start_lsn", "stop_lsn")},
                     "databases": json.loads(row["databases"]) if row.get("databases")
                     else None})


def _reconcile_markers(vault: Vault, stored: set[str]) -> None:
    """Rows follow the markers: a soft delete or undelete that died between the marker
    (its commit point) and the row is completed here."""
    marked = marker_ids(vault.repo.storage) & stored
    deleted = vault.catalog.deleted_point_ids()
    for point_id in marked - deleted:
        marker = read_marker(vault.repo.storage, point_id)
        if marker is not None:
            vault.catalog.set_point_deleted(point_id, marker["deleted_at"],
                                            marker["purge_after"])
    for point_id in deleted - marked:
        vault.catalog.set_point_deleted(point_id, None, None)


def list_points(vault: Vault, name: str, deleted: bool | None = False) -> list[dict]:
    """The server's points, oldest first: live ones (``deleted=False``), soft-deleted ones
    (``True``: with ``deleted_at`` and ``purge_after``), or all (``None``)."""
    server = get_server(vault, name)
    reconcile(vault)
    points = [p for p in vault.catalog.list_points(server["instance_id"])
              if deleted is None or (p["deleted_at"] is not None) == deleted]
    extra = ("deleted_at", "purge_after") if deleted is not False else ()
    return [{**{k: (bool(p[k]) if k == "copy_only" else p[k]) for k in POINT_FIELDS + extra},
             **{k: json.loads(p[k]) if p[k] else None for k in ("databases", "left_out")}}
            for p in points]


def lineage_points(vault: Vault, server: dict) -> list[dict]:
    """Points of every registered server of the same cluster lineage (system identifier):
    after a promotion the new primary's log chain continues from the old primary's fulls."""
    points = []
    for other in vault.catalog.list_servers():
        if other["system_identifier"] == server["system_identifier"]:
            points += [{**p, "server": other["name"]} for p in list_points(vault, other["name"])]
    return sorted(points, key=lambda p: (p["start_time"], p["point_id"]))


def points_and_chain(vault: Vault, name: str, database: str | None = None,
                     deleted: bool = False, offset: int = 0,
                     limit: int | None = None) -> dict:
    """Points, restorable log ranges and gaps of a server (what `dbsafe points` shows).

    With ``database``: only the points that can restore it (log points, and backups whose
    run included it), and the log chain's ranges as they are for it: restorable from the
    end of a backup that holds it (the WAL belongs to the instance). With
    ``deleted``: the soft-deleted points instead (the log chain is that of the live ones).
    ``limit`` points from ``offset`` (oldest first; None: every one); ``total`` counts them
    all.
    """

    server = get_server(vault, name)
    points = list_points(vault, name, deleted)
    lineage = lineage_points(vault, server)
    if database is not None:
        points = [p for p in points if coverage.holds(p, [database])]
        lineage = [p for p in lineage if coverage.holds(p, [database])]
    chain = log_chain(vault, server, lineage)
    page = points[offset:] if limit is None else points[offset:offset + limit]
    return {"server": name, "recovery_model": server["recovery_model"] or "SIMPLE",
            "database": database, "total": len(points), "offset": offset, "points": page,
            "log_ranges": chain.ranges(), "gaps": chain.gaps}


def load_point(vault: Vault, name: str, point_id: str) -> tuple[dict, dict]:
    """(server, manifest) of a point of ``name``'s cluster lineage (the same system
    identifier: a standby's or former primary's backups restore it too); a manifest that
    breaks the format's rules is refused (``vault.manifest_invalid``) before anyone acts on
    it. Its file entries: ``manifest_checks.files`` (checked as they are read)."""
    server = get_server(vault, name)
    try:
        manifest = vault.repo.load_manifest(point_id)
    except KeyError:
        raise DbsafeError("point.unknown", point_id=point_id, name=name) from None
    if manifest["instance"]["system_identifier"] != server["system_identifier"]:
        raise DbsafeError("point.unknown", point_id=point_id, name=name)
    marker = read_marker(vault.repo.storage, point_id)
    if marker is not None:
        raise DbsafeError("point.soft_deleted", point_id=point_id,
                          purge_after=marker["purge_after"])
    return server, manifest_checks.checked(manifest, point_id, vault.repo)


def server_point(vault: Vault, server: str, point_id: str) -> dict:
    """The catalog row of ``point_id`` when it is one of ``server``'s points, else
    ``point.unknown``: a request names a point and the server it came from, and acts on
    nothing of another server's (the API's and the portal's point actions)."""
    row = vault.catalog.get_point(point_id)
    if row is None or row["instance_id"] != get_server(vault, server)["instance_id"]:
        raise DbsafeError("point.unknown", point_id=point_id, name=server)
    return row
