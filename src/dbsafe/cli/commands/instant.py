"""dbsafe mount SERVER DIR | umount DIR | instant SERVER --time T | instant list | stop"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from dbsafe.cli import render
from dbsafe.cli.context import checked_path, open_vault
from dbsafe.core import units

TIME_HELP = ("An instant of the log chain, ISO 8601 with its zone (2026-11-25T14:03:27+01:00, "
             "or ...Z for UTC); one without a zone is refused.")


def _ttl(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return units.parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


class _Instant(TyperGroup):
    """``dbsafe instant SERVER ...`` is ``dbsafe instant start SERVER ...``: a first word
    that is not one of the group's commands names a server."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["start", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_Instant, no_args_is_help=True, help=(
    "PostgreSQL started straight on a recovery point, at any instant of its log chain, "
    "in seconds: `dbsafe instant SERVER --time T`; list and stop them."))


@app.command("start")
def start(name: str = typer.Argument(..., help="A registered server."),
          time: str = typer.Option(None, "--time", help=TIME_HELP),
          point: str = typer.Option(None, "--point",
                                    help="A point as it is (its end), instead of --time."),
          port: int = typer.Option(None, "--port", min=1024, max=65535,
                                   help="Port of the instance (default: a free one)."),
          ttl: str = typer.Option("4h", "--ttl",
                                  help="Stop it after this long: 30m, 4h, 2d."),
          promote: bool = typer.Option(False, "--promote", help=(
              "Promote it at the target (writable) instead of pausing there in hot "
              "standby (read only).")),
          recover_to: Path = typer.Option(None, "--recover-to", callback=checked_path, help=(
              "Instant recovery: while the (promoted) instance serves, restore it into "
              "this new data directory below a restore root, then switch: stop the "
              "instance, write the pages it changed, start PostgreSQL there on the same "
              "port. The command runs until the switch is done."))) -> None:
    """Start PostgreSQL on a view of the vault at an instant; its writes stay local."""
    from dbsafe.services import access

    def serving(r: dict) -> None:
        render.err.print(f"instance {r['id']} serves: psql \"{r['connection']}\"; "
                         f"copying it to {recover_to} ...")

    with render.progress(f"instant {name}") as bar:
        result = access.start_instant(open_vault(), name, time, point, port,
                                      _ttl(ttl) or 0, promote, bar, recover_to, serving)
    if recover_to is not None:
        render.emit(result, lambda r: render.out.print(
            f"{name} at {r['target']} now runs from {r['recovered_to']} on port {r['port']}:"
            f" served by the instance {r['seconds_to_ready']} s after the command, down "
            f"{r['downtime_seconds']} s for the switch ({r['switch']['pages_written']} "
            f"changed pages and {r['switch']['files_written']} files written)"))
        return

    def human(r: dict) -> None:
        render.out.print(f"instant {r['id']} of {name} at {r['target']}: ready in "
                         f"{r['seconds_to_ready']} s, "
                         f"{'promoted (writable)' if r['promoted'] else 'paused, read only'}")
        render.out.print(f"  connect: psql \"{r['connection']}\"")
        render.out.print(f"  stops in {units.duration_text(r['expires_in_seconds'] or 0)}, "
                         f"or with `dbsafe instant stop {r['id']}`")

    render.emit(result, human)


@app.command("list")
def list_() -> None:
    """The mounts and instant instances running here."""
    from dbsafe.services import access

    rows = access.list_runs(open_vault())

    def human(r: list[dict]) -> None:
        if not r:
            render.out.print("no mount or instant instance runs here")
        for run in r:
            where = run.get("connection") or run.get("mountpoint")
            left = run.get("expires_in_seconds")
            render.out.print(f"{run['id']}  {run['server']}  {run['target']}  {run['state']}"
                             f"  {where}"
                             + (f"  stops in {units.duration_text(left)}" if left else ""))

    render.emit(rows, human)


@app.command("stop")
def stop(which: str = typer.Argument(..., help="The id `instant list` shows, or a mount "
                                                "point.")) -> None:
    """Stop an instant instance (or a mount) and remove everything it wrote."""
    from dbsafe.services import access

    result = access.stop_run(open_vault(), which)
    render.emit(result, lambda r: render.out.print(f"{r['id']} stopped"))


def mount(name: str = typer.Argument(..., help="A registered server."),
          folder: Path = typer.Argument(..., callback=checked_path,
                                        help="An empty folder to mount on."),
          point: str = typer.Option(None, "--point", help="The point to mount."),
          time: str = typer.Option(None, "--time", help=TIME_HELP + " The point a restore "
                                   "to it starts from is mounted."),
          ttl: str = typer.Option(None, "--ttl",
                                  help="Unmount after this long (default: when asked).")
          ) -> None:
    """Mount a recovery point's files, read only, served from the vault on demand."""
    from dbsafe.services import access

    with render.progress(f"mount {name}") as bar:
        result = access.mount_point(open_vault(), name, folder, point, time, _ttl(ttl), bar)
    render.emit(result, lambda r: render.out.print(
        f"{r['target']} of {name} mounted at {r['mountpoint']} (read only); unmount with "
        f"`dbsafe umount {r['mountpoint']}`"))


def umount(folder: Path = typer.Argument(..., help="A folder `dbsafe mount` mounted.")
           ) -> None:
    """Unmount a recovery point mounted with `dbsafe mount`."""
    from dbsafe.services import access

    result = access.stop_run(open_vault(), str(folder))
    render.emit(result, lambda r: render.out.print(f"{folder} unmounted"))
