"""dbsafe verify NAME [--point ID]"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core import bounds


def verify(name: str = typer.Argument(..., help="A registered server."),
           point: str = typer.Option(None, "--point", help="One point (default: all)."),
           workers: int = typer.Option(None, min=bounds.WORKERS[0], max=bounds.WORKERS[1],
                                       help="Reader threads (default: the core count)."),
           deep: bool = typer.Option(False, "--deep", help=(
               "Also compare each point's relation pages with the live files' pages the "
               "server has not changed since the point started (the server must be up)."))
           ) -> None:
    """Re-read every block of a point (or of all points) and check its hash."""
    from dbsafe.services import fleet

    with render.progress(f"verify {name}") as bar:  # on the server's agent, if it has one
        result = fleet.run_verify(open_vault(), name, point, workers, bar, deep)

    def human(r: dict) -> None:
        render.out.print(f"{len(r['points'])} point(s) of {name} verified: every block "
                         f"intact ({r['seconds']} s)")
        for p in r["points"]:
            live = p.get("live")
            if live and live["compared"]:
                render.out.print(
                    f"  {p['point_id']}: {live['pages_compared']} unchanged page(s) of "
                    f"{live['files']} file(s) equal the live ones (compared by "
                    f"{'bytes' if live['compared'] == 'bytes' else 'LSN: no data checksums'}"
                    f"); {live['pages_changed_since']} changed since")

    render.emit(result, human)
