"""dbsafe verify NAME [--point ID]"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core import bounds


def verify(name: str = typer.Argument(..., help="A registered server."),
           point: str = typer.Option(None, "--point", help="One point (default: all)."),
           workers: int = typer.Option(None, min=bounds.WORKERS[0], max=bounds.WORKERS[1],
                                       help="Reader threads (default: the core count).")) -> None:
    """Re-read every block of a point (or of all points) and check its hash."""
    from dbsafe.services import fleet

    with render.progress(f"verify {name}") as bar:  # on the server's agent, if it has one
        result = fleet.run_verify(open_vault(), name, point, workers, bar)
    render.emit(result, lambda r: render.out.print(
        f"{len(r['points'])} point(s) of {name} verified: every block intact "
        f"({r['seconds']} s)"))
