"""Another backup solution on the same instance, detected at protection and every backup.

The support matrix warns that two backup solutions on one server make backups fail. On
PostgreSQL that is: another tool's archive_command (or archive_library), another dbsafe
vault's agent archiving the same server, a base backup streaming to another tool right now
(pg_basebackup, Barman: pg_stat_progress_basebackup), or a backup_label left in the data
directory (an exclusive-mode backup from before PostgreSQL 15, or a file copy in progress).
Each finding says what to do.
"""

from __future__ import annotations

from pathlib import Path

from dbsafe.engines.postgres import archiving, status


def our_command(vault) -> str:
    from dbsafe.engines.postgres import agent_process as daemon

    return daemon.agent_paths(vault.repo.config["vault_id"]).archive_command()


def same_agent(command: str, ours: str) -> bool:
    """Whether an archive_command of dbsafe's hands WAL to the agent of ``ours`` (the same
    client path; an older dbsafe ran it through ``python3 -I -S``)."""
    return ours.split()[0] in command.split()


def other_solutions(conn, pgdata: Path, ours: str | None) -> list[dict]:
    """Findings: each {"kind", "detail", "action"}; empty when dbsafe is alone."""
    found = []
    settings = archiving.read_settings(conn)
    owner = settings.owner
    if owner not in (None, "dbsafe"):
        found.append({"kind": "archive_command",
                      "detail": f"WAL is archived by {owner} "
                                f"({settings.command or settings.library})",
                      "action": "keep one backup solution: stop the other tool's archiving, "
                                "or do not protect this server with dbsafe"})
    elif owner == "dbsafe" and ours and not same_agent(settings.command, ours):
        found.append({"kind": "other_vault",
                      "detail": f"another dbsafe vault's agent archives this server's WAL "
                                f"({settings.command})",
                      "action": "protect a server in one vault only: stop protection in "
                                "the other vault first"})
    streaming = status.base_backups_streaming(conn)
    if streaming:
        found.append({"kind": "base_backup_running",
                      "detail": f"{streaming} base backup(s) are streaming to another tool "
                                "(pg_basebackup, Barman, ...) right now",
                      "action": "let it finish; schedule the other tool away from dbsafe's "
                                "backups, or retire it"})
    if (Path(pgdata) / "backup_label").exists():
        found.append({"kind": "backup_label",
                      "detail": f"{pgdata}/backup_label exists: an exclusive-mode backup or "
                                "a file-level copy of the data directory is in progress",
                      "action": "finish or cancel that backup; remove backup_label only if "
                                "no backup is running"})
    return found
