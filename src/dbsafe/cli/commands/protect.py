"""dbsafe protect NAME (--db DB ... | --all | --auto) [--policy P] · unprotect · items"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core.errors import DbsafeError


def protect(name: str = typer.Argument(..., help="A registered server."),
            db: list[str] = typer.Option(None, "--db", help="A database to protect (repeat)."),
            all_: bool = typer.Option(False, "--all", help="Protect every database."),
            auto: bool = typer.Option(False, "--auto",
                                      help="Protect every database, and those created later."),
            policy: str = typer.Option(None, "--policy",
                                       help="Backup policy (default: 'default', daily full "
                                            "and hourly logs)."),
            recovery_model: str = typer.Option(None, "--recovery-model",
                                               help="full (WAL archived: log backups, "
                                                    "point-in-time restore) or simple; "
                                                    "follows the policy when omitted."),
            restart: bool = typer.Option(False, "--restart",
                                         help="Restart PostgreSQL if archiving needs it."),
            no_config_change: bool = typer.Option(
                False, "--no-config-change",
                help="Do not ALTER SYSTEM: print the lines to add instead.")) -> None:
    """Protect databases of a server with a policy (and its recovery model)."""
    from dbsafe.services import fleet

    if sum((bool(db), all_, auto)) != 1:
        raise DbsafeError("protect.no_databases")
    if recovery_model and recovery_model.lower() not in ("full", "simple"):
        raise typer.BadParameter("must be full or simple", param_hint="--recovery-model")
    result = fleet.protect(open_vault(), fleet.ProtectRequest(
        name, db or None, recovery_model, change_config=not no_config_change, restart=restart,
        policy=policy, auto=auto))

    def human(r: dict) -> None:
        render.out.print(f"{name}: {len(r['databases'])} database(s) protected, policy "
                         f"{r['policy'] or 'none (on-demand backups only)'}, recovery model "
                         f"{r['recovery_model']}" + (", auto-protection on" if auto else ""))
        for warning in r["warnings"]:
            render.out.print(f"[yellow]warning:[/yellow] {warning}")
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


def unprotect(name: str = typer.Argument(..., help="A registered server."),
              db: list[str] = typer.Option(None, "--db", help="A database (repeat); "
                                           "default: all protected databases."),
              retain_data: bool = typer.Option(False, "--retain-data",
                                               help="Keep every point (never pruned)."),
              delete_data: bool = typer.Option(False, "--delete-data",
                                               help="Delete the points only these use.")) -> None:
    """Stop protecting databases; protect them again to resume."""
    from dbsafe.services import protection

    if retain_data == delete_data:
        raise DbsafeError("unprotect.choose_data", name=name)
    result = protection.unprotect(open_vault(), name, db or None, retain=retain_data)

    def human(r: dict) -> None:
        render.out.print(
            f"{name}: protection stopped for {', '.join(r['databases'])}, data {r['data']}"
            + (f" ({len(r['points_deleted'])} point(s) deleted)" if r["points_deleted"]
               else "")
            + (f"; soft-deleted: kept until {r['purge_after']} (`dbsafe undelete` brings "
               "them back)" if r["points_deleted"] and r["soft_deleted"] else ""))
        if r["restart_needed"]:
            render.out.print("[yellow]restart PostgreSQL[/yellow]: archive_mode stays on "
                             "until then, and PostgreSQL keeps every WAL segment meanwhile")

    render.emit(result, human)


def items(name: str = typer.Argument(None, help="A registered server (default: all).")) -> None:
    """Protected items: each database with its policy, state and warnings."""
    vault = open_vault()
    instance = None
    if name:
        from dbsafe.services.inventory import get_server

        instance = get_server(vault, name)["instance_id"]
    rows = vault.catalog.list_items(instance)
    render.emit(rows, lambda r: render.table(
        [{**i, "policy": i["policy"] or "none", "note": i["state_reason"] or i["warning"] or ""}
         for i in r], ["server", "name", "policy", "state", "since", "note"]))
