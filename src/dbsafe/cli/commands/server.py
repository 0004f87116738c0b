"""dbsafe server add | list | remove, and dbsafe discover [NAME | --instances]"""

from __future__ import annotations

from pathlib import Path

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_name, checked_path, open_vault
from dbsafe.core import bounds
from dbsafe.core.errors import DbsafeError

app = typer.Typer(help="Register PostgreSQL servers in the vault.", no_args_is_help=True)


@app.command("add")
def add(name: str = typer.Argument(..., callback=checked_name,
                                   help="A name for this server's instance."),
        pgdata: Path = typer.Option(..., callback=checked_path, help="Its data directory."),
        port: int = typer.Option(..., min=bounds.PORT[0], max=bounds.PORT[1],
                                 help="The port it listens on."),
        host: str = typer.Option(None,
                                 help="Host or socket folder (default: from postmaster.pid)."),
        bin_dir: str = typer.Option(None, help="Folder of pg_ctl (default: found by version);"
                                    " every folder of its path must be root's alone."),
        region: str = typer.Option(None, help="The server's region."),
        agent: str = typer.Option(None, "--agent",
                                  help="The agent of the host it runs on (`dbsafe agent "
                                       "list`): that agent checks and serves it. Default: "
                                       "this host.")) -> None:
    """Register a running PostgreSQL instance (checks version, port and connection)."""
    from dbsafe.services import fleet, inventory

    if agent is not None:
        result = fleet.add_server(open_vault(), agent, name, str(pgdata), port, host, bin_dir,
                                  region)
    else:
        result = inventory.add_server(open_vault(), name, pgdata, port, host, bin_dir, region)

    def human(d: dict) -> None:
        render.out.print(f"registered {d['name']}: PostgreSQL {d['pg_version']} in "
                         f"{d['pgdata']} on port {d['port']}, recovery model "
                         f"{d['recovery_model']}")
        for w in d["warnings"]:
            render.out.print(f"[yellow]warning[/yellow]: {render.escape(w)}")

    render.emit(result, human)


@app.command("list")
def list_() -> None:
    """List registered servers, and replica sets (kind replica-set: protected and backed up
    as one; their nodes name them in replica_set), with the host each runs on: its agent's
    (runs_on, agent_id) or "this host" (docs/fleet.md)."""
    from dbsafe.services import fleet

    rows = fleet.servers_with_hosts(open_vault())
    render.emit(rows, lambda r: render.table(
        r, ["name", "kind", "replica_set", "pg_version", "pgdata", "port", "recovery_model",
            "region", "runs_on", "agent_id"]))


@app.command("remove")
def remove(name: str) -> None:
    """Forget a server (its recovery points stay in the vault)."""
    from dbsafe.services import inventory

    inventory.remove_server(open_vault(), name)
    render.emit({"removed": name}, lambda d: render.out.print(f"removed {name}"))


def discover(name: str = typer.Argument(None, help="A registered server."),
             instances: bool = typer.Option(False, "--instances",
                                            help="List the PostgreSQL instances of this host "
                                                 "instead.")) -> None:
    """Discover a server's databases again (auto-protecting new ones, marking dropped ones),
    or with --instances the PostgreSQL instances of this host."""
    if instances:
        _discover_instances()
    elif name is None:
        raise DbsafeError("discover.no_target")
    else:
        from dbsafe.services import fleet

        render.emit(fleet.discover(open_vault(), name), _human_databases)


@app.command("set")
def set_(name: str = typer.Argument(..., help="A registered server."),
         max_concurrent: int = typer.Option(None, "--max-concurrent", min=bounds.RUNS_AT_A_TIME[0],
                                            max=bounds.RUNS_AT_A_TIME[1],
                                            help="Scheduled runs at a time on this "
                                                 "server.")) -> None:
    """Change a server's settings."""
    from dbsafe.services import inventory

    render.emit(inventory.set_options(open_vault(), name, max_concurrent), render.fields)


def _discover_instances() -> None:
    from dbsafe.services import protection

    try:
        vault = open_vault()
    except DbsafeError as exc:
        if exc.code != "vault.not_initialised":
            raise
        vault = None  # no vault yet: list the host's instances all the same
    rows = protection.local_instances(vault)
    render.emit(rows, lambda r: render.table(
        r, ["pgdata", "port", "version", "running", "source", "cluster", "server",
            "bin_dir"], title="PostgreSQL instances on this host"))


def _human_databases(d: dict) -> None:
    rows = [{**db, "size": render.human_bytes(db["size_bytes"]),
             "protection": db["state"] or ("" if db["protectable"] else "not protectable")}
            for db in d["databases"]]
    render.table(rows, ["name", "oid", "kind", "size", "file_count", "read_only",
                        "recovery_model", "protection", "policy"], title=d["server"])
    for key in ("new", "gone", "auto_protected"):
        if d[key]:
            render.out.print(f"{key.replace('_', ' ')}: {', '.join(d[key])}")
    for r in d["renamed"]:
        render.out.print(f"renamed: {r['from']} -> {r['to']}")
    for db in d["databases"]:
        if not db["protectable"]:
            render.out.print(f"{db['name']}: not protectable: {db['reason']}")
    for w in d["warnings"]:
        render.out.print(f"[yellow]warning[/yellow]: {render.escape(w)}")
