"""dbsafe key show | export | import | rotate: the key of an encrypted vault."""

from __future__ import annotations

from pathlib import Path

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_path, open_vault

app = typer.Typer(help="The key of an encrypted vault: show, export, import, rotate.",
                  no_args_is_help=True)


@app.command("show")
def show() -> None:
    """Whether the vault is encrypted, its data keys, and whether this client has the key."""
    from dbsafe.services import handle

    render.emit(handle.describe(open_vault()), render.fields)


@app.command("export")
def export(dest: Path = typer.Argument(..., callback=checked_path,
                                       help="A new file to write the key to."),
           plain: bool = typer.Option(False, "--plain", help="Unwrapped (for a secret "
                                      "manager); default: wrapped by a passphrase.")) -> None:
    """Write the vault key to a file (mode 0600), to restore on another server."""
    from dbsafe.services import handle

    render.emit(handle.export_key(open_vault(), dest, plain), render.fields)


@app.command("import")
def import_(source: Path = typer.Argument(..., callback=checked_path,
                                         help="A file written by `dbsafe key export`.")) -> None:
    """Make an exported key this client's key, after checking that it opens the vault."""
    from dbsafe.services import handle

    render.emit(handle.import_key(open_vault(new_key=True), source), render.fields)


@app.command("rotate")
def rotate(master: bool = typer.Option(False, "--master", help="Replace the master key "
                                       "itself: every key file of the old one stops "
                                       "opening the vault; other clients must import the "
                                       "new one.")) -> None:
    """Re-wrap the key under a new passphrase (DBSAFE_NEW_PASSPHRASE or a prompt) and start
    a new data key for new backups; older backups stay readable. With --master, a new
    master key too."""
    from dbsafe.services import handle

    render.emit(handle.rotate(open_vault(), master=master), render.fields)
