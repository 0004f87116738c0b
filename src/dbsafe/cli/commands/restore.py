"""dbsafe restore NAME --point ID (--to-pgdata DIR [--port N --start] | --as-files DIR)"""

from __future__ import annotations

from pathlib import Path

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.services.restore import run_restore


def _tablespace_map(values: list[str]) -> dict[str, str]:
    mapping = {}
    for v in values or []:
        oid, sep, path = v.partition("=")
        if not sep or not oid.isdigit() or not path:
            raise typer.BadParameter(f"{v!r} is not OID=DIR", param_hint="--tablespace-map")
        mapping[oid] = path
    return mapping


def restore(name: str = typer.Argument(..., help="The server the point belongs to."),
            point: str = typer.Option(..., "--point", help="Recovery point id."),
            to_pgdata: Path = typer.Option(None, help="An empty folder for the data directory."),
            as_files: Path = typer.Option(None, help="An empty folder for the files and WAL."),
            port: int = typer.Option(None, help="Port for the restored server."),
            start: bool = typer.Option(False, "--start", help="Start it after restoring."),
            tablespace_map: list[str] = typer.Option(None, help="OID=DIR, once per tablespace."),
            owner: str = typer.Option(None,
                                      help="OS user to own the files (default: as backed up)."),
            workers: int = typer.Option(None, help="Writer threads (default: the core count)."),
            json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Restore a recovery point into a new data directory (optionally start it), or as files."""
    render.state.json = json
    if (to_pgdata is None) == (as_files is None):
        raise typer.BadParameter("give exactly one of --to-pgdata or --as-files")
    if start and (as_files is not None or port is None):
        raise typer.BadParameter("--start needs --to-pgdata and --port")
    with render.progress(f"restore {point}") as bar:
        result = run_restore(open_vault(), name, point, to_pgdata, as_files, port, start,
                             _tablespace_map(tablespace_map), owner, workers, bar)

    def human(r: dict) -> None:
        render.out.print(f"restored {r['point_id']} into {r['target']} "
                         f"({render.human_bytes(r['bytes_written'])} in {r['seconds']} s)")
        if r["started"]:
            render.out.print(f"PostgreSQL is running on port {r['port']}, socket in "
                             f"{r['socket_dir']} (log: {r['log']})")
        elif r["mode"] == "files":
            render.out.print(f"see {r['target']}/RESTORE.txt to start it by hand")

    render.emit(result, human)
