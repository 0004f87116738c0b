"""dbsafe points NAME"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault


def points(name: str = typer.Argument(..., help="A registered server."),
           db: str = typer.Option(None, "--db", help="Only points that can restore this "
                                                     "database."),
           deleted: bool = typer.Option(False, "--deleted", help="The soft-deleted points "
                                        "instead (undelete them with `dbsafe undelete`).")) -> None:
    """List the recovery points of a server and the time ranges its log chain covers."""
    from dbsafe.services import lifecycle

    data = lifecycle.points_and_chain(open_vault(), name, db, deleted)

    def human(d: dict) -> None:
        shown = [{**p, "read": render.human_bytes(p["bytes_read"]),
                  "stored": render.human_bytes(p["bytes_stored"]),
                  "type": f"{p['type']} (synthetic)" if p.get("build") == "synthetic"
                  else p["type"]} for p in d["points"]]
        if deleted:
            render.table(shown, ["point_id", "type", "end_time", "deleted_at", "purge_after",
                                 "stored"], title=f"soft-deleted points of {name}")
            return
        render.table(shown, ["point_id", "type", "start_time", "end_time", "start_lsn",
                             "stop_lsn", "read", "stored"], title=f"recovery points of {name}")
        for r in d["log_ranges"]:
            render.out.print(f"restore to any instant from {r['start_time']} to before "
                             f"{r['end_time']} (timeline {r['timeline']}, LSN {r['start_lsn']}"
                             f" to {r['end_lsn']})")
        for g in d["gaps"]:
            render.out.print(f"[red]log chain broken[/red]: {g['missing_segments']} segment(s) "
                             f"missing from {g['first_missing']} ({g['start_time']} to "
                             f"{g['end_time']})")
        if d["recovery_model"] != "FULL":
            render.out.print("recovery model SIMPLE: no log backups, no point-in-time restore")

    render.emit(data, human)
