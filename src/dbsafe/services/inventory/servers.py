"""Registering servers (one PostgreSQL instance each, for now); their databases are
rediscovered by services/protection/discovery.py."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.core.regions import check_region
from dbsafe.engines.postgres import archiving, cluster, discover
from dbsafe.engines.postgres.client import connect
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory import limits
from dbsafe.services.inventory.coexistence import our_command, same_agent
from dbsafe.services.inventory.immutability import refuse_server_removal

if TYPE_CHECKING:
    import psycopg


def get_server(vault: Vault, name: str) -> dict:
    server = vault.catalog.get_server(name)
    if server is None:
        raise DbsafeError("server.unknown", name=name)
    return server


def live_endpoint(pgdata: Path, port: int, host: str | None) -> tuple[int, str]:
    """Check the cluster runs on ``port``; return (port, host or its socket folder)."""
    postmaster = cluster.running_postmaster(pgdata)
    if postmaster.port != port:
        raise DbsafeError("server.wrong_port", pgdata=pgdata, actual=postmaster.port, given=port)
    return port, host or postmaster.socket_dir or "localhost"


def open_instance(server: dict, dbname: str = "postgres") -> psycopg.Connection:
    """A connection to a registered instance (to database ``dbname``), after checking it
    is the same cluster."""
    pgdata = Path(server["pgdata"])
    cluster.major_version(pgdata)
    port, host = live_endpoint(pgdata, server["port"], server["host"])
    conn = connect(port, host, dbname)
    found = discover.instance_facts(conn)["system_identifier"]
    if found != server["system_identifier"]:
        conn.close()
        raise DbsafeError("server.system_changed", pgdata=pgdata, name=server["name"],
                          found=found, expected=server["system_identifier"])
    return conn


def add_server(vault: Vault, name: str, pgdata: Path, port: int, host: str | None = None,
               bin_dir: str | None = None, region: str | None = None) -> dict:
    if vault.catalog.get_server(name) is not None:
        raise DbsafeError("server.exists", name=name)
    pgdata = Path(pgdata).resolve() if Path(pgdata).exists() else Path(pgdata)
    for other in vault.catalog.list_servers():  # a path is one cluster on one host only
        if other["kind"] == "server" and vault.is_here(other) and \
                Path(other["pgdata"]) == pgdata:
            raise DbsafeError("server.pgdata_registered", pgdata=pgdata, name=other["name"])
    major = cluster.major_version(pgdata)
    bin_dir = cluster.find_bin_dir(major, bin_dir)
    if region is not None:
        region = check_region(region)
    port, conn_host = live_endpoint(pgdata, port, host)
    with connect(port, conn_host) as conn:
        facts = discover.instance_facts(conn)
        # deployment (refused); a system the test suite does not run on (a warning)
        warnings = limits.check_registration(pgdata, facts["data_directory"])
        dbs = discover.databases(conn, pgdata)
    vault.catalog.add_server(name, socket.gethostname(), region, {
        "pgdata": str(pgdata), "port": port, "host": host, "bin_dir": bin_dir,
        "socket_dir": conn_host if not host else None, "pg_version": facts["major"],
        "system_identifier": facts["system_identifier"],
        "recovery_model": facts["recovery_model"],
        "data_checksums": int(facts["data_checksums"]),
        "wal_segment_size": facts["wal_segment_size"],
    })
    server = get_server(vault, name)
    vault.catalog.replace_databases(server["instance_id"], dbs)
    # its databases were listed just now: the server's page says when, not "never"
    vault.catalog.update_instance(server["instance_id"],
                                  discovered=datetime.now(UTC).isoformat(timespec="seconds"))
    return {**describe(server), "warnings": warnings}


def describe(server: dict) -> dict:
    return {"name": server["name"], "kind": server["kind"],
            # the replica set a server is a node of (a set's own entry: None)
            "replica_set": server["replica_set"],
            "pgdata": server["pgdata"], "port": server["port"],
            "host": server["host"], "bin_dir": server["bin_dir"],
            "pg_version": server["pg_version"], "region": server["region"],
            "system_identifier": server["system_identifier"],
            "recovery_model": server["recovery_model"],
            "data_checksums": bool(server["data_checksums"]),
            "auto_protect_policy": server.get("auto_protect_policy") or None,
            "max_concurrent": server.get("max_concurrent"),
            # why the next scheduled differential or log backup will be a full, if it will
            "next_backup_full_because": server.get("needs_full")}


def list_servers(vault: Vault) -> list[dict]:
    return [describe(s) for s in vault.catalog.list_servers()]


def remove_server(vault: Vault, name: str) -> None:
    """Forget a server (its catalog rows; its manifests stay in the repository).

    Refused while it is protected or its cluster still archives through this vault's agent
    (PostgreSQL would keep handing WAL to an agent that no longer takes it, and pg_wal
    would grow until production stops): ``dbsafe unprotect`` turns archiving off first. A
    cluster that does not answer is judged by its protected items alone. An immutable
    vault also refuses while the server holds points whose retention runs.
    """
    server = get_server(vault, name)
    if server["kind"] == "replica-set":
        raise DbsafeError("replicaset.remove_with_command", name=name)
    protected = vault.catalog.list_protected(server["instance_id"])
    if protected:
        raise DbsafeError("server.protected", name=name, items=", ".join(protected))
    command = _our_archiving(vault, server)
    if command is not None:
        raise DbsafeError("server.archiving_ours", name=name, command=command)
    refuse_server_removal(vault, server)
    vault.catalog.remove_server(name)


def _our_archiving(vault: Vault, server: dict) -> str | None:
    """The cluster's archive_command when it hands WAL to this vault's agent; None when it
    does not, or when the cluster does not answer."""
    try:
        with open_instance(server) as conn:
            settings = archiving.read_settings(conn)
    except DbsafeError:
        return None
    if settings.owner == "dbsafe" and same_agent(settings.command, our_command(vault)):
        return settings.command
    return None


def set_options(vault: Vault, name: str, max_concurrent: int | None) -> dict:
    """Per-server settings of the scheduler (None leaves a setting as it is)."""
    server = get_server(vault, name)
    if max_concurrent is not None:
        vault.catalog.update_instance(server["instance_id"], max_concurrent=max_concurrent)
    server = get_server(vault, name)
    return {"server": name, "max_concurrent": server["max_concurrent"]}
