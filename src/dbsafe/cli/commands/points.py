"""dbsafe points NAME"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.services.points import list_points


def points(name: str = typer.Argument(..., help="A registered server."),
           json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the recovery points of a server."""
    render.state.json = json
    rows = list_points(open_vault(), name)

    def human(r: list) -> None:
        shown = [{**p, "read": render.human_bytes(p["bytes_read"]),
                  "stored": render.human_bytes(p["bytes_stored"])} for p in r]
        render.table(shown, ["point_id", "type", "start_time", "end_time", "start_lsn",
                             "stop_lsn", "read", "stored"], title=f"recovery points of {name}")

    render.emit(rows, human)
