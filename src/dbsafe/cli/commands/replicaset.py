"""dbsafe replicaset add | set | show | list | remove, and replicaset node add | remove"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_name, open_vault

app = typer.Typer(help="Replica sets: a primary and its standbys, protected once.",
                  no_args_is_help=True)
node_app = typer.Typer(help="Add or remove the nodes of a replica set.", no_args_is_help=True)
app.add_typer(node_app, name="node")

PREFERENCE_HELP = ("Which node takes log and copy-only backups: primary, secondary-only, "
                   "secondary (falls back to the primary) or none (like secondary). Full "
                   "and differential backups always run on the primary.")


def _show(data: dict) -> None:
    render.out.print(f"replica set {data['name']}: backup preference {data['preference']}, "
                     f"vault region {data['vault_region']}")
    if data["nodes"]:
        render.table(data["nodes"], ["server", "role", "region", "healthy", "reason"])
    if data.get("plan"):
        render.table([{"backup type": t, **p} for t, p in data["plan"].items()],
                     ["backup type", "server", "reason"], title="who takes each backup now")


@app.command("add")
def add(name: str = typer.Argument(..., callback=checked_name,
                                   help="A name for the set (not a server's name)."),
        preference: str = typer.Option("primary", help=PREFERENCE_HELP)) -> None:
    """Create a replica set; add its nodes with `dbsafe replicaset node add`."""
    from dbsafe.services import protection

    render.emit(protection.add_set(open_vault(), name, preference), _show)


@app.command("set")
def set_(name: str, preference: str = typer.Option(..., help=PREFERENCE_HELP)) -> None:
    """Change a replica set's backup preference (it applies from the next backup)."""
    from dbsafe.services import protection

    render.emit(protection.set_preference(open_vault(), name, preference), _show)


@app.command("show")
def show(name: str) -> None:
    """The nodes as they are now (role, region, health) and which takes each backup type."""
    from dbsafe.services import protection

    render.emit(protection.show(open_vault(), name), _show)


@app.command("list")
def list_() -> None:
    """List replica sets."""
    from dbsafe.services import protection

    render.emit(protection.list_sets(open_vault()),
                lambda rows: render.table(rows, ["name", "preference", "nodes"]))


@app.command("remove")
def remove(name: str) -> None:
    """Forget a replica set (refused while it protects databases; its nodes stay)."""
    from dbsafe.services import protection

    render.emit(protection.remove_set(open_vault(), name),
                lambda d: render.out.print(f"removed replica set {name}"))


@node_app.command("add")
def node_add(name: str = typer.Argument(..., help="The replica set."),
             server: str = typer.Argument(..., help="A registered server (`dbsafe server add`)."),
             region: str = typer.Option(None, help="The node's region (default: the "
                                                   "server's, else the vault's).")) -> None:
    """Make a registered server a node of the set (the same cluster: a primary or one of
    its streaming standbys)."""
    from dbsafe.services import protection

    render.emit(protection.add_node(open_vault(), name, server, region), _show)


@node_app.command("remove")
def node_remove(name: str, server: str) -> None:
    """Take a node out of the set (it stays a registered server)."""
    from dbsafe.services import protection

    render.emit(protection.remove_node(open_vault(), name, server), _show)
