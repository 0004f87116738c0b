"""dbsafe report [--days N] [--server NAME]: the reports page's four tables
(services/operations/reports.py)."""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core import bounds


def _size(n: int | None) -> str:
    return "" if n is None else ("-" + render.human_bytes(-n) if n < 0
                                 else render.human_bytes(n))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} s"


def report(days: int = typer.Option(30, "--days", min=bounds.REPORT_DAYS[0],
                                     max=bounds.REPORT_DAYS[1],
                                     help="The last N UTC days, today included."),
           server: str = typer.Option(None, "--server", help="Only this server's rows.")
           ) -> None:
    """Usage and outcomes over the last N days: bytes held per server, size and stored
    bytes per database, jobs' success rates, restore drills with their RTO and RPO."""
    from dbsafe.services import operations

    found = operations.report(open_vault(), days, server=server)

    def human(r: dict) -> None:
        render.out.print(f"from {r['from']} to {r['to']} (UTC days, today included)")
        render.table([{**s, **{k: _size(s[k]) for k in ("held_at_start", "held_at_end",
                                                        "growth", "stored_by_backups")}}
                      for s in r["storage"]],
                     ["server", "held_at_start", "held_at_end", "growth", "stored_by_backups"],
                     title="Storage per server")
        render.table([{**d, "database": d["database"] or "(the instance)",
                       **{k: _size(d[k]) for k in ("size_at_start", "size_at_end", "growth",
                                                   "stored_by_backups", "held_at_end")}}
                      for d in r["databases"]],
                     ["server", "database", "size_at_start", "size_at_end", "growth",
                      "stored_by_backups", "held_at_end"], title="Usage per database")
        render.table([{**j, "server": j["server"] or "(the vault)",
                       "success": "" if j["success_rate"] is None
                       else f"{100 * j['success_rate']:.1f} %"} for j in r["jobs"]],
                     ["server", "type", "jobs", "completed", "with_warnings", "failed",
                      "cancelled", "success"], title="Jobs")
        render.table([{**d, "rto": _seconds(d["rto_seconds"]),
                       "rpo": _seconds(d["rpo_seconds"])} for d in r["drills"]],
                     ["server", "point_id", "started", "state", "rto", "rpo", "error_code"],
                     title="Restore drills")

    render.emit(found, human)
