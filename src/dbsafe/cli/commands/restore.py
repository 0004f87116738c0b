"""dbsafe restore NAME (--point ID | --time T | --lsn L | --restore-point NAME)
(--to-pgdata DIR [--port N --start] | --as-files DIR) [--host H] [--no-recovery] [--check]"""

from __future__ import annotations

from pathlib import Path

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_path, open_vault
from dbsafe.core import bounds


def _absolute(path: Path) -> str:
    """A folder given relative to the current one, as the request takes it (absolute; not
    resolved: links along it are the restore's to check)."""
    return str(path if path.is_absolute() else Path.cwd() / path)


def _tablespace_map(values: list[str]) -> dict[str, str]:
    mapping = {}
    for v in values or []:
        oid, sep, path = v.partition("=")
        if not sep or not oid.isdigit() or not path:
            raise typer.BadParameter(f"{v!r} is not OID=DIR", param_hint="--tablespace-map")
        if problem := bounds.path_problem(path):
            raise typer.BadParameter(f"{v!r}: {problem}", param_hint="--tablespace-map")
        mapping[oid] = path
    return mapping


def restore(name: str = typer.Argument(..., help="The server the point belongs to."),
            point: str = typer.Option(None, "--point", help="Recovery point id."),
            time: str = typer.Option(None, "--time",
                                     help="Point in time, ISO 8601 with its zone "
                                          "(2026-11-25T14:03:27+01:00, or ...Z for UTC); "
                                          "one without a zone is refused."),
            lsn: str = typer.Option(None, "--lsn", help="Recover up to this WAL position."),
            restore_point: str = typer.Option(None, "--restore-point",
                                              help="A named restore point "
                                                   "(pg_create_restore_point)."),
            no_recovery: bool = typer.Option(
                False, "--no-recovery",
                help="Leave the server paused in recovery at the target, to inspect it "
                     "before promoting (SELECT pg_wal_replay_resume())."),
            db: str = typer.Option(None, "--db", help="Restore only this database."),
            target_server: str = typer.Option(
                None, "--target-server",
                help="A registered running server to restore --db into (with --as)."),
            as_name: str = typer.Option(None, "--as", help="Name of the database in the "
                                                            "target server (with --table: "
                                                            "of the table)."),
            table: list[str] = typer.Option(None, "--table", help=(
                "Restore only this table (SCHEMA.TABLE; once per table) of --db into the "
                "same database of --target-server, with its indexes, constraints and the "
                "sequences it owns, taken from an instant instance (docs/instant-access.md); "
                "--as gives one table a new name.")),
            overwrite: bool = typer.Option(False, "--overwrite",
                                           help="Replace a database of that name in the "
                                                "target server."),
            to_pgdata: Path = typer.Option(None, callback=checked_path,
                                           help="An empty folder for the data directory."),
            as_files: Path = typer.Option(None, callback=checked_path,
                                          help="An empty folder for the files and WAL."),
            port: int = typer.Option(None, min=bounds.RESTORE_PORT[0], max=bounds.RESTORE_PORT[1],
                                     help="Port for the restored server (its owner starts "
                                          "it: 1024 or above)."),
            start: bool = typer.Option(False, "--start", help="Start it after restoring."),
            host: str = typer.Option(None, "--host",
                                     help="Restore --to-pgdata or --as-files on this host: an "
                                          "agent's id or host name (`dbsafe agent list`); "
                                          "default: this host."),
            tablespace_map: list[str] = typer.Option(None, help="OID=DIR, once per tablespace."),
            owner: str = typer.Option(None,
                                      help="OS user to own the files (default: as backed up)."),
            workers: int = typer.Option(None, min=bounds.WORKERS[0], max=bounds.WORKERS[1],
                                        help="Writer threads (default: the core count)."),
            check: bool = typer.Option(
                False, "--check",
                help="Only check, on the host the restore would run on (the portal's and "
                     "the API's checks): the source, the target's version, space, the new "
                     "name, an empty folder below a restore root, a free port. Starts and "
                     "writes nothing; exits 1 when a check fails.")) -> None:
    """Restore a recovery point into a new data directory (optionally start it), or as files."""
    from dbsafe.services import fleet
    from dbsafe.services import restore as restores

    targets = [t for t in (point, time, lsn, restore_point) if t is not None]
    if len(targets) != 1:
        raise typer.BadParameter("give exactly one of --point, --time, --lsn, --restore-point")
    if table:
        _restore_tables(name, db, table, target_server, time, point, as_name,
                        lsn or restore_point)
        return
    if sum(x is not None for x in (to_pgdata, as_files, target_server)) != 1:
        raise typer.BadParameter("give exactly one of --to-pgdata, --as-files or "
                                 "--target-server")
    if target_server is not None and (db is None or as_name is None):
        raise typer.BadParameter("--target-server needs --db DB and --as NEWNAME")
    if start and (as_files is not None or port is None):
        raise typer.BadParameter("--start needs --to-pgdata and --port")
    if target_server is not None:
        target: dict = {"kind": "server", "server": target_server, "database": db,
                        "new_name": as_name, "overwrite": overwrite}
    elif as_files is not None:
        target = {"kind": "files", "path": _absolute(as_files), "database": db, "host": host}
    else:
        target = {"kind": "pgdata", "path": _absolute(to_pgdata), "port": port, "start": start,
                  "database": db, "host": host}
    try:
        request = restores.RestoreRequest.model_validate(
            {"point_id": point, "time": time, "lsn": lsn, "restore_point": restore_point,
             "pause": no_recovery, "target": target})
    except ValueError as exc:  # pydantic's ValidationError is one
        raise typer.BadParameter(str(exc)) from None
    if check:
        checked = fleet.check_restore(open_vault(), name, request)
        render.emit(checked, _human_checks)
        if not checked["ok"]:
            raise typer.Exit(1)
        return
    with render.progress(f"restore {db or name}") as bar:
        result = fleet.restore(open_vault(), name, request,
                               tablespace_map=_tablespace_map(tablespace_map), owner=owner,
                               workers=workers, on_progress=bar)
    if target_server is not None:
        render.emit(result, _human_database)
        return

    def human(r: dict) -> None:
        render.out.print(f"restored {r['point_id']} into {r['target']} "
                         f"({render.human_bytes(r['bytes_written'])} in {r['seconds']} s)")
        if r["recovery"]:
            rec = r["recovery"]
            state = "paused in recovery at" if rec["paused"] else "recovered to"
            render.out.print(f"{state} {rec['target']} (base {rec['base_point']}, "
                             f"{rec['wal_files']} WAL files, {rec['seconds']} s)")
        if r["databases_dropped"]:
            render.out.print(f"not in point {r['point_id']}, so dropped from the restored "
                             "server: " + ", ".join(r["databases_dropped"]))
        kept = [d for d in r["databases_left_out"] if d not in r["databases_dropped"]]
        if kept:
            render.out.print(f"not in point {r['point_id']} (their files are zeros, "
                             "connecting to them fails; drop them once the server runs): "
                             + ", ".join(kept))
        if r["started"]:
            render.out.print(f"PostgreSQL is running on port {r['port']}, socket in "
                             f"{r['socket_dir']} (log: {r['log']})")
        elif r["mode"] == "files":
            render.out.print(f"see {r['target']}/RESTORE.txt to start it by hand")

    render.emit(result, human)


def _human_checks(r: dict) -> None:
    render.out.print(f"checked on {r['host'] or 'this host'}, where the restore would run:")
    for c in r["checks"]:
        verdict = "ok" if c["ok"] else "FAILED"
        render.out.print(f"  {c['check']}: {verdict} {c['message']}"
                         + (f" ({c['code']})" if c["code"] else ""), markup=False)


def _human_database(r: dict) -> None:
    render.out.print(
        f"database {r['database']} of {r['server']} (point {r['point_id']}"
        + (f", recovered to {r['recovery']['target']}" if r["recovery"] else "")
        + f") is now {r['new_name']!r} in {r['target_server']} ({r['seconds']} s)\n"
        + f"  {r['note']}")
    for item in r["not_kept"]:
        render.err.print(f"[yellow]not kept[/yellow]: {item['what']}: {item['object']} "
                         f"(role {item['role']})")


def _restore_tables(name: str, db: str | None, tables: list[str], target_server: str | None,
                    time: str | None, point: str | None, as_name: str | None,
                    other: str | None) -> None:
    from dbsafe.services import access

    if db is None or target_server is None:
        raise typer.BadParameter("--table needs --db DB and --target-server SERVER")
    if other is not None:
        raise typer.BadParameter("--table restores at --time or at the end of --point")
    with render.progress(f"restore {', '.join(tables)}") as bar:
        result = access.restore_tables(open_vault(), name, db, tables, target_server, time,
                                       point, as_name, bar)

    def human(r: dict) -> None:
        for t in r["tables"]:
            render.out.print(f"{t['table']} as it was at {r['target']} restored into "
                             f"{r['target_server']}/{r['database']} as {t['restored_as']}")
        render.out.print(f"{render.human_bytes(r['fetched_bytes'] or 0)} read from the vault, "
                         f"{r['seconds']} s")
        if r["note"]:
            render.out.print(f"note: {r['note']}")

    render.emit(result, human)
