"""dbsafe vault init | connect | info | region | restore-roots list|add|remove"""

from __future__ import annotations

from pathlib import Path

import typer

from dbsafe.cli import render
from dbsafe.cli.commands import softdelete
from dbsafe.cli.context import checked_path, vault_path

app = typer.Typer(help="Create and inspect the vault.", no_args_is_help=True)


REPOSITORY_HELP = ("Where backups are stored: a folder (default: the vault folder), "
                   "s3://BUCKET/PREFIX?endpoint=URL or azure://CONTAINER/PREFIX?account=NAME; "
                   "credentials come from the environment (docs/storage.md).")
CATALOG_HELP = ("The catalog: SQLite in the vault folder (default), or a PostgreSQL DSN "
                "shared by every server using the vault (docs/catalog.md).")


@app.command("init")
def init(region: str = typer.Option(None, help="Region of the vault (e.g. 'West Europe')."),
         repository: str = typer.Option(None, help=REPOSITORY_HELP),
         catalog: str = typer.Option(None, help=CATALOG_HELP),
         encryption: str = typer.Option("off", help="on: encrypt everything stored (AES-256-GCM"
                                        "); the key's passphrase comes from DBSAFE_PASSPHRASE "
                                        "or a prompt, unless --key-file."),
         key_file: Path = typer.Option(None, help="Encrypted vaults: the key in this file "
                                       "(created, mode 0600, when absent).")) -> None:
    """Create an empty vault (repository and catalog)."""
    from dbsafe.services import handle

    if encryption not in ("on", "off"):
        raise typer.BadParameter("on or off", param_hint="--encryption")
    vault = handle.Vault.init(vault_path(), region, repository=repository, catalog=catalog,
                       encryption=encryption == "on", key_file=key_file)
    render.emit(vault.describe(), _created)


def _created(d: dict) -> None:
    render.out.print(f"vault created at {d['path']} (id {d['vault_id']})")
    if d["encrypted"]:
        render.out.print("[bold]encrypted[/]: without its key nobody can read it, you "
                         "included. Keep a copy now: `dbsafe key export FILE`.")


@app.command("connect")
def connect(repository: str = typer.Option(..., help=REPOSITORY_HELP),
            catalog: str = typer.Option(None, help=CATALOG_HELP)) -> None:
    """Use an existing vault from this server (an encrypted one needs `dbsafe key import`)."""
    from dbsafe.services import handle

    render.emit(handle.Vault.connect(vault_path(), repository, catalog).describe(), render.fields)


@app.command("info")
def info() -> None:
    """Show where the vault is and how it is set up."""
    from dbsafe.services import handle

    vault = handle.Vault.open(vault_path())
    render.emit(vault.describe(), render.fields)


@app.command("region")
def region(name: str = typer.Argument(..., help="A supported region, e.g. 'West Europe'.")) -> None:
    """Give a vault created without a region its region (once: it never changes after)."""
    from dbsafe.services import handle

    render.emit(handle.Vault.open(vault_path()).set_region(name), render.fields)


roots_app = typer.Typer(help="Folders restores may write into (new folders below them only). "
                             "Only here, on the host: the API and the portal show them.",
                        no_args_is_help=True)
app.add_typer(roots_app, name="restore-roots")


def _roots(roots: list[str]) -> None:
    for root in roots:
        render.out.print(root)


@roots_app.command("list")
def roots_list() -> None:
    """Show the restore roots (default: /var/lib/dbsafe/restores)."""
    from dbsafe.services import handle, restore

    render.emit([str(r) for r in restore.restore_roots(handle.Vault.open(vault_path()))],
                _roots)


@roots_app.command("add")
def roots_add(folder: Path = typer.Argument(..., callback=checked_path,
                                            help="An absolute folder; created (0755) when "
                                                 "missing.")) -> None:
    """Allow restores (and their tablespaces) into new folders below FOLDER."""
    from dbsafe.services import handle, restore

    render.emit(restore.add_root(handle.Vault.open(vault_path()), folder), _roots)


@roots_app.command("remove")
def roots_remove(folder: Path = typer.Argument(..., help="A restore root.")) -> None:
    """Stop allowing restores below FOLDER (nothing on disk changes)."""
    from dbsafe.services import handle, restore

    render.emit(restore.remove_root(handle.Vault.open(vault_path()), folder), _roots)


# soft delete and immutability are settings of the vault (their commands: softdelete.py)
app.command("soft-delete")(softdelete.soft_delete)
app.command("immutability")(softdelete.immutable)
