"""dbsafe vault init | info | region"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import vault_path
from dbsafe.services.vault import Vault

app = typer.Typer(help="Create and inspect the vault.", no_args_is_help=True)


@app.command("init")
def init(region: str = typer.Option(None, help="Region of the vault (e.g. 'West Europe')."),
         json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create an empty vault (repository and catalog)."""
    render.state.json = json
    vault = Vault.init(vault_path(), region)
    render.emit(vault.describe(),
                lambda d: render.out.print(f"vault created at {d['path']} (id {d['vault_id']})"))


@app.command("info")
def info(json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show where the vault is and how it is set up."""
    render.state.json = json
    vault = Vault.open(vault_path())
    render.emit(vault.describe(), render.fields)


@app.command("region")
def region(name: str = typer.Argument(..., help="A supported region, e.g. 'West Europe'."),
           json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Give a vault created without a region its region (once: it never changes after)."""
    render.state.json = json
    render.emit(Vault.open(vault_path()).set_region(name), render.fields)
