"""dbsafe protect NAME (--db DB ... | --all) [--recovery-model full|simple] [--restart]"""

from __future__ import annotations

import typer

from dbsafe.agent import daemon
from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core.errors import DbsafeError
from dbsafe.services.protection import protect as protect_service


def protect(name: str = typer.Argument(..., help="A registered server."),
            db: list[str] = typer.Option(None, "--db", help="A database to protect (repeat)."),
            all_: bool = typer.Option(False, "--all", help="Protect every database."),
            recovery_model: str = typer.Option("full", "--recovery-model",
                                               help="full (WAL archived: log backups, "
                                                    "point-in-time restore) or simple."),
            restart: bool = typer.Option(False, "--restart",
                                         help="Restart PostgreSQL if archiving needs it."),
            no_config_change: bool = typer.Option(
                False, "--no-config-change",
                help="Do not ALTER SYSTEM: print the lines to add instead."),
            json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Choose the protected databases of a server and its recovery model."""
    render.state.json = json
    if bool(db) == all_:
        raise DbsafeError("protect.no_databases")
    if recovery_model.lower() not in ("full", "simple"):
        raise typer.BadParameter("must be full or simple", param_hint="--recovery-model")
    vault = open_vault()
    command = None
    if recovery_model.lower() == "full":
        vault_id = vault.repo.config["vault_id"]
        daemon.ensure_running(vault.path, vault_id)
        command = daemon.agent_paths(vault_id).archive_command()
    result = protect_service(vault, name, None if all_ else db, recovery_model, command,
                             change_config=not no_config_change, restart=restart)

    def human(r: dict) -> None:
        render.out.print(f"{name}: {len(r['databases'])} database(s) protected, recovery "
                         f"model {r['recovery_model']}")
        if r["config_lines"]:
            render.out.print("add these lines to postgresql.conf (or postgresql.auto.conf):")
            for line in r["config_lines"]:
                render.out.print(f"  {line}")
        if r["restart_needed"]:
            render.out.print("[yellow]restart PostgreSQL to start archiving[/yellow] "
                             f"(or run `dbsafe protect {name} ... --restart`)")
        elif r["recovery_model"] == "FULL" and r["archiving_active"]:
            render.out.print("WAL archiving into the vault is active")

    render.emit(result, human)
