"""Servers known only from the repository: a client that connects to an existing vault with
its own catalog (another server, or a rebuilt one after losing the original VM) learns the
backed-up servers from their manifests, so it can list and restore their points.

An adopted server is recorded as it was when backed up (its data directory, version and
system identifier, from the newest manifest); port 0 marks that it was never reached from
this client. `dbsafe server add` on the live cluster is what protects it again.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import cluster

if TYPE_CHECKING:
    from dbsafe.services.handle.vault_handle import Vault

UNKNOWN_PORT = 0
DEFAULT_SEGMENT = 16 << 20


def adopt_servers(vault: Vault) -> dict:
    """Register the servers the repository's manifests name and this catalog lacks.
    A name the catalog holds for another cluster (another system identifier) is left
    alone and reported. Needs the vault key for an encrypted vault."""
    known = {s["name"]: s for s in vault.catalog.list_servers()}
    newest: dict[str, dict] = {}
    for point_id in vault.repo.point_ids():  # sorted by start time: the newest wins
        manifest = vault.repo.load_manifest(point_id)
        instance = manifest["instance"]
        wal = manifest.get("wal") or []
        newest[instance["server"]] = {**instance,
                                      "segment": wal[0]["size"] if wal else DEFAULT_SEGMENT}
    adopted, clashes = [], []
    for name, instance in sorted(newest.items()):
        if name in known:
            if known[name]["system_identifier"] != instance["system_identifier"]:
                clashes.append(name)
            continue
        vault.catalog.add_server(name, socket.gethostname(), None, {
            "pgdata": instance["pgdata"], "port": UNKNOWN_PORT, "host": None,
            "bin_dir": _bin_dir(instance["pg_version"]), "socket_dir": None,
            "pg_version": instance["pg_version"],
            "system_identifier": instance["system_identifier"], "recovery_model": None,
            "data_checksums": 0, "wal_segment_size": instance["segment"]})
        adopted.append(name)
    return {"adopted": adopted, "name_clashes": clashes}


def _bin_dir(major: int) -> str:
    try:
        return cluster.find_bin_dir(major)
    except DbsafeError:
        return ""  # restoring as files still works; starting needs this version installed
