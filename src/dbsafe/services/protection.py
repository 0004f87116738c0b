"""Protection: which databases of an instance are backed up, and its recovery model.

As in the support matrix, the protected item is a database; the WAL (log) chain belongs to
the instance. FULL turns WAL archiving into the vault on (log backups, point-in-time
restore); SIMPLE turns dbsafe's archiving off (fulls and differentials only). Bulk-logged
has no PostgreSQL counterpart (see engines/postgres/discover.py).
"""

from __future__ import annotations

from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import archiving, discover
from dbsafe.services.servers import get_server, open_instance
from dbsafe.services.vault import Vault

MODELS = ("FULL", "SIMPLE")


def protect(vault: Vault, name: str, databases: list[str] | None, recovery_model: str,
            archive_command: str | None, change_config: bool = True,
            restart: bool = False) -> dict:
    """Protect ``databases`` (None: all) of ``name`` under ``recovery_model``.

    ``archive_command`` is the agent's (FULL only). With ``change_config`` false, or when
    the connected role may not ALTER SYSTEM, the result carries the lines to add instead.
    """
    import psycopg

    model = recovery_model.upper()
    if model not in MODELS:
        raise ValueError(f"recovery model {recovery_model!r} is not one of {MODELS}")
    server = get_server(vault, name)
    with open_instance(server) as conn:
        dbs = discover.databases(conn, Path(server["pgdata"]))
        names = [d["name"] for d in dbs]
        chosen = names if databases is None else databases
        for db in chosen:
            if db not in names:
                raise DbsafeError("protect.unknown_database", name=name, database=db,
                                  valid=", ".join(names))
        settings = archiving.read_settings(conn)
        owner = settings.owner
        if model == "FULL" and owner not in (None, "dbsafe"):
            raise DbsafeError("protect.archive_owned", name=name, tool=owner,
                              command=settings.command or settings.library)
        lines: list[str] = []
        restart_needed = False
        if model == "FULL" and not (owner == "dbsafe" and settings.command == archive_command
                                    and settings.active_ours):
            if change_config:
                try:
                    restart_needed = archiving.enable(conn, archive_command)
                except psycopg.errors.InsufficientPrivilege:
                    lines = archiving.config_lines(archive_command)
            else:
                lines = archiving.config_lines(archive_command)
                restart_needed = settings.mode not in ("on", "always")
        elif model == "SIMPLE" and owner == "dbsafe":
            restart_needed = archiving.disable(conn)
    restarted = False
    if restart_needed and restart and not lines:
        archiving.restart(Path(server["pgdata"]), server["bin_dir"],
                          _owner(Path(server["pgdata"])))
        restarted, restart_needed = True, False
    vault.catalog.update_instance(server["instance_id"], recovery_model=model)
    oids = {d["name"]: d["oid"] for d in dbs}
    vault.catalog.protect_items(server["instance_id"], [(n, oids[n]) for n in chosen], None)
    with open_instance(server) as conn:
        now = archiving.read_settings(conn)
    return {"server": name, "recovery_model": model, "databases": chosen,
            "archiving_active": now.active_ours, "archive_command": archive_command,
            "restart_needed": restart_needed, "restarted": restarted,
            "config_lines": lines}


def _owner(pgdata: Path) -> str:
    import pwd

    return pwd.getpwuid(pgdata.stat().st_uid).pw_name


def protected_databases(vault: Vault, server: dict) -> list[str]:
    return vault.catalog.list_protected(server["instance_id"])
