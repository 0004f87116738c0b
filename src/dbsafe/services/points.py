"""Recovery points of a server: from the catalog, reconciled with the vault's manifests.

A manifest is the truth: one that the catalog lacks (the process died between writing the
manifest and the catalog row) is added when points are listed, and a row whose manifest is
gone (a deletion died between removing the manifest and the row) is dropped.
"""

from __future__ import annotations

import json

from dbsafe.core.errors import DbsafeError
from dbsafe.services.servers import get_server
from dbsafe.services.vault import Vault

POINT_FIELDS = ("point_id", "type", "copy_only", "start_time", "end_time", "start_lsn",
                "stop_lsn", "timeline", "bytes_read", "bytes_stored", "corrupt_pages",
                "databases", "base_point")


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
            "databases": json.dumps([d["name"] for d in manifest["databases"] if d["included"]])
            if "databases" in manifest else None, "base_point": manifest.get("base")}


def _belongs(manifest: dict, server: dict) -> bool:
    instance = manifest["instance"]
    return (instance["server"] == server["name"]
            and instance["system_identifier"] == server["system_identifier"])


def reconcile(vault: Vault, server: dict) -> None:
    known = {p["point_id"] for p in vault.catalog.list_points(server["instance_id"])}
    stored = vault.repo.point_ids()
    for point_id in known - set(stored):
        vault.catalog.delete_point(point_id)
    for point_id in stored:
        if point_id in known or vault.catalog.get_point(point_id) is not None:
            continue
        manifest, size = vault.repo.load_manifest_sized(point_id)
        if _belongs(manifest, server):
            vault.catalog.add_point(server["instance_id"], _point_row(manifest, size))


def list_points(vault: Vault, name: str) -> list[dict]:
    server = get_server(vault, name)
    reconcile(vault, server)
    points = vault.catalog.list_points(server["instance_id"])
    return [{**{k: (bool(p[k]) if k == "copy_only" else p[k]) for k in POINT_FIELDS},
             "databases": json.loads(p["databases"]) if p["databases"] else None}
            for p in points]


def lineage_points(vault: Vault, server: dict) -> list[dict]:
    """Points of every registered server of the same cluster lineage (system identifier):
    after a promotion the new primary's log chain continues from the old primary's fulls."""
    points = []
    for other in vault.catalog.list_servers():
        if other["system_identifier"] == server["system_identifier"]:
            points += [{**p, "server": other["name"]} for p in list_points(vault, other["name"])]
    return sorted(points, key=lambda p: (p["start_time"], p["point_id"]))


def points_and_chain(vault: Vault, name: str, database: str | None = None) -> dict:
    """Points, restorable log ranges and gaps of a server (what `dbsafe points` shows).

    With ``database``: only the points that can restore it (log points, and backups whose
    run included it); the log chain belongs to the instance and is the same.
    """
    from dbsafe.services.chain import log_chain

    server = get_server(vault, name)
    points = list_points(vault, name)
    chain = log_chain(vault, server, lineage_points(vault, server))
    if database is not None:
        points = [p for p in points if p["type"] == "log" or p["databases"] is None
                  or database in p["databases"]]
    return {"server": name, "recovery_model": server["recovery_model"] or "SIMPLE",
            "database": database, "points": points, "log_ranges": chain.ranges(),
            "gaps": chain.gaps}


def load_point(vault: Vault, name: str, point_id: str) -> tuple[dict, dict]:
    """(server, manifest) of a point of ``name``'s cluster lineage (the same system
    identifier: a standby's or former primary's backups restore it too)."""
    server = get_server(vault, name)
    try:
        manifest = vault.repo.load_manifest(point_id)
    except KeyError:
        raise DbsafeError("point.unknown", point_id=point_id, name=name) from None
    if manifest["instance"]["system_identifier"] != server["system_identifier"]:
        raise DbsafeError("point.unknown", point_id=point_id, name=name)
    return server, manifest
