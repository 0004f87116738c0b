"""dbsafe jobs"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.services.jobs import list_jobs


def jobs(limit: int = typer.Option(50, help="How many, newest first."),
         json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List backup, restore and verify jobs with their state and progress."""
    render.state.json = json
    rows = list_jobs(open_vault().catalog, limit)

    def human(r: list) -> None:
        shown = [{**j, "progress": f"{render.human_bytes(j['bytes_done'])} / "
                                   f"{render.human_bytes(j['bytes_total'])}",
                  "error": j["error_code"] or ""} for j in r]
        render.table(shown, ["id", "type", "server", "state", "progress", "start_time",
                             "end_time", "error"])

    render.emit(rows, human)
