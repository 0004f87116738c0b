"""dbsafe drill run NAME [--point ID] [--amcheck], and dbsafe drills [--server NAME]"""

from __future__ import annotations

from pathlib import Path

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_path, open_vault
from dbsafe.core import bounds

app = typer.Typer(help="Restore drills: restore the newest backup into a scratch cluster "
                       "and check it.", no_args_is_help=True)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


def _about(check: dict) -> str:
    """One line on a check: why it failed, or what it covered."""
    if check["ok"] is False:
        return check.get("reason", "")
    return {"restore": lambda c: c["target"],
            "row_counts": lambda c: c.get("skipped") or f"{c['tables_compared']} tables",
            "amcheck": lambda c: f"{c['indexes_checked']} btree indexes",
            }.get(check["name"], lambda c: "")(check)


@app.command("run")
def run(name: str = typer.Argument(..., help="The server to drill."),
        point: str = typer.Option(None, "--point",
                                  help="Restore this point (default: the newest restorable "
                                       "state)."),
        amcheck: bool = typer.Option(False, "--amcheck",
                                     help="Also check every btree index with amcheck."),
        scratch_root: Path = typer.Option(
            None, "--scratch-root", callback=checked_path,
            help="Folder for the scratch cluster (default /var/tmp/dbsafe-drills).")) -> None:
    """Restore into a scratch cluster, check it, record RTO and RPO, remove it."""
    from dbsafe.services import fleet

    # on the server's agent, if it has one (--scratch-root is then a folder of its host)
    result = fleet.run_drill(open_vault(), name, point, amcheck=amcheck,
                             scratch_root=scratch_root)

    def human(d: dict) -> None:
        render.out.print(f"drill {d['id']} of {d['server']}: {d['state']} "
                         f"(RTO {_seconds(d['rto_seconds'])}, RPO {_seconds(d['rpo_seconds'])})")
        for check in d["checks"]:
            mark = {True: "ok", False: "FAILED", None: "skipped"}[check["ok"]]
            about = _about(check)
            render.out.print(f"  {check['name']}: {mark}" + (f" ({about})" if about else ""))
        for c in next((c["changed"] for c in d["checks"] if c["name"] == "row_counts"
                       and c.get("changed")), []):
            render.out.print(f"  warning: {c['database']}.{c['table']} {c['at_backup']} at "
                             f"backup, {c['restored']} restored ({c['why']})")

    render.emit(result, human)


def drills(server: str = typer.Option(None, "--server", help="Only this server's drills."),
           limit: int = typer.Option(50, min=bounds.LIST_LIMIT[0], max=bounds.LIST_LIMIT[1],
                                     help="How many, newest first.")) -> None:
    """List restore drills with their state, RTO, RPO and failing check."""
    from dbsafe.services import restore

    rows = restore.list_drills(open_vault(), server, limit)

    def human(r: list) -> None:
        shown = [{**d, "rto": _seconds(d["rto_seconds"]), "rpo": _seconds(d["rpo_seconds"]),
                  "failed": d["failed_check"] or ""} for d in r]
        render.table(shown, ["id", "server", "point_id", "state", "rto", "rpo", "started",
                             "failed"])

    render.emit(rows, human)
