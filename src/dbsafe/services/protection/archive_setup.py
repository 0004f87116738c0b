"""Setting up WAL archiving on an instance for a recovery model: the agent's
``archive_command`` with ``archive_mode`` at least as asked (FULL), or none (SIMPLE), and
another tool's or another vault's archiving refused. Used by protect and by replica sets
(every node archives, ``archive_mode=always``); the statements are the engine's
(engines/postgres/archiving.py)."""

from __future__ import annotations

from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import archiving, cluster
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory import coexistence
from dbsafe.services.inventory.servers import open_instance


def archive_command(vault: Vault) -> str:
    """The agent's archive_command for this vault; starts the agent when it is not running."""
    from dbsafe.engines.postgres import agent_process as daemon

    vault_id = vault.repo.config["vault_id"]
    daemon.ensure_running(vault.path, vault_id)
    return daemon.agent_paths(vault_id).archive_command()


def configure_archiving(vault: Vault, server: dict, model: str, command: str | None,
                        change_config: bool = True, restart: bool = False,
                        mode: str = "on") -> dict:
    """One instance's archive settings for ``model``: ours with archive_mode at least
    ``mode`` (FULL), or none (SIMPLE); another tool's or another vault's are refused."""
    import psycopg

    name = server["name"]
    with open_instance(server) as conn:
        settings = archiving.read_settings(conn)
        owner = settings.owner
        if model == "FULL" and owner not in (None, "dbsafe"):
            raise DbsafeError("protect.archive_owned", name=name, tool=owner,
                              command=settings.command or settings.library)
        ours = command or coexistence.our_command(vault)
        if owner == "dbsafe" and not coexistence.same_agent(settings.command, ours):
            raise DbsafeError("protect.other_vault", name=name, command=settings.command)
        lines: list[str] = []
        restart_needed = False
        if model == "FULL" and not (owner == "dbsafe" and settings.command == command
                                    and settings.active_ours
                                    and archiving.mode_suffices(settings.mode, mode)):
            assert command is not None  # FULL: every caller gives the agent's command
            if change_config:
                try:
                    restart_needed = archiving.enable(conn, command, mode)
                except psycopg.errors.InsufficientPrivilege:
                    lines = archiving.config_lines(command, mode)
            else:
                lines = archiving.config_lines(command, mode)
                restart_needed = not archiving.mode_suffices(settings.mode, mode)
        elif model == "SIMPLE" and owner == "dbsafe":
            restart_needed = archiving.disable(conn)
    restarted = False
    if restart_needed and restart and not lines:
        archiving.restart(Path(server["pgdata"]), server["bin_dir"],
                          cluster.owner_of(Path(server["pgdata"])))
        restarted, restart_needed = True, False
    with open_instance(server) as conn:
        now = archiving.read_settings(conn)
    return {"server": name, "recovery_model": model,
            "archiving_active": now.active_ours and archiving.mode_suffices(now.mode, mode),
            "archive_command": command, "restart_needed": restart_needed,
            "restarted": restarted, "config_lines": lines}
