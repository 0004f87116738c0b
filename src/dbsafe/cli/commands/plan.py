"""dbsafe plan --cores N --bandwidth-mbps B --db-count K --db-size-gb S --change-rate-pct C
--policy P"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core.bounds import PLAN


def _option(default, key: str, help: str):
    """An option of the planner's, bounded as the API bounds it (core/bounds.py)."""
    low, high = PLAN[key]
    return typer.Option(default, "--" + key.replace("_", "-"), min=low, max=high, help=help)


def plan(cores: int = _option(..., "cores", "vCPUs of the database server."),
         bandwidth_mbps: float = _option(..., "bandwidth_mbps",
                                         "Network to the vault, megabits/s."),
         db_count: int = _option(..., "db_count", "Databases to protect."),
         db_size_gb: float = _option(..., "db_size_gb", "Size of each, GB."),
         change_rate_pct: float = _option(..., "change_rate_pct",
                                          "% of the data's blocks changed a day."),
         policy: str = typer.Option("default", "--policy", help="A policy in the vault."),
         window_hours: float = _option(8.0, "window_hours", "The daily backup window."),
         instances: int = _option(1, "instances", "PostgreSQL instances the databases are in."),
         wal_gb_per_day: float = _option(None, "wal_gb_per_day",
                                         "WAL per database a day (default: the changed "
                                         "data)."),
         disk_mb_s: float = _option(None, "disk_mb_s",
                                    "Read rate of the data disks, MB/s (default: never "
                                    "binds).")) -> None:
    """Estimate the backup window, peak concurrency, vault growth and the most databases
    this server can protect with a policy (rates measured by the benchmark)."""
    from dbsafe.policy import planner
    from dbsafe.services import inventory

    result = planner.plan(planner.PlanInput(
        cores=cores, bandwidth_mbps=bandwidth_mbps, db_count=db_count,
        db_size_gb=db_size_gb, change_rate_pct=change_rate_pct,
        policy=inventory.get_policy(open_vault(), policy), window_hours=window_hours,
        instances=instances, wal_gb_per_day=wal_gb_per_day, disk_mb_s=disk_mb_s))

    def human(r: dict) -> None:
        work = ", ".join(f"{k} {v:.2f} h" for k, v in r["work_hours"].items())
        fits = "fits" if r["fits_window"] else "[red]does not fit[/red]"
        render.out.print(f"busiest day ({r['busiest_day']}): {r['window_hours_needed']:.2f} h "
                         f"({work}), bound by {r['bound_by']}; {fits} the "
                         f"{window_hours:g} h window")
        render.out.print(f"first full (seeding the vault): {r['first_full_hours']:.2f} h")
        render.out.print(f"peak concurrency: {r['peak_concurrency']} backup(s) at once")
        months = r["vault_gb_by_month"]
        render.out.print(f"vault: {months[0]:.1f} GB after 1 month, {months[5]:.1f} GB after "
                         f"6, {months[11]:.1f} GB after 12; then "
                         f"+{r['growth_gb_per_month']:.1f} GB a month")
        render.out.print(f"recommended maximum: {r['max_databases']} databases of "
                         f"{db_size_gb:g} GB (limited by {r['max_databases_limited_by']})")

    render.emit(result, human)
