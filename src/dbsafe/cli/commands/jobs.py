"""dbsafe jobs [filters] · dbsafe job show ID · dbsafe job cancel ID"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_records
from dbsafe.core import bounds

app = typer.Typer(help="Show or cancel one job.", no_args_is_help=True)


def jobs(limit: int = typer.Option(50, min=bounds.LIST_LIMIT[0], max=bounds.LIST_LIMIT[1],
                                   help="How many, newest first."),
         state: str = typer.Option(None, "--state", help="running, completed, "
                                   "completed_with_warnings, failed, cancelling, cancelled."),
         server: str = typer.Option(None, "--server", help="Only this server's jobs."),
         type: str = typer.Option(None, "--type", help="backup, restore, verify, drill."),
         backup_type: str = typer.Option(None, "--backup-type",
                                         help="full, copy-only, diff or log."),
         item: str = typer.Option(None, "--item", help="Only jobs covering this database."),
         trigger: str = typer.Option(None, "--trigger", help="on-demand or scheduled."),
         since: str = typer.Option(None, "--since", help="Only jobs started at or after "
                                   "this instant: ISO 8601 with its zone, e.g. "
                                   "2026-12-05T08:00:00Z (one without a zone is refused)."),
         until: str = typer.Option(None, "--until", help="Only jobs started before this "
                                   "instant (same form as --since)."),
         offset: int = typer.Option(0, min=0, max=10**9,
                                    help="Skip this many of the newest first (paging).")
         ) -> None:
    """List jobs (scheduled log backups included) with their state and progress."""
    from dbsafe.services.activity import list_jobs

    bounds_given = {}
    if since or until:  # the restore group (and pydantic) only when a range is asked for
        from dbsafe.services.restore import parse_bound

        bounds_given = {k: parse_bound(v) for k, v in (("since", since), ("until", until))
                        if v}
    rows = list_jobs(open_records(), limit, state=state, server=server, type=type,
                     backup_type=backup_type, item=item, trigger=trigger, offset=offset,
                     **bounds_given)

    def human(r: list) -> None:
        shown = [{**j, "kind": " ".join(x for x in (j["type"], j.get("backup_type")) if x),
                  "progress": f"{render.human_bytes(j['bytes_done'])} / "
                              f"{render.human_bytes(j['bytes_total'])}",
                  "error": j["error_code"] or ""} for j in r]
        render.table(shown, ["id", "kind", "server", "trigger", "state", "progress",
                             "start_time", "end_time", "error"])

    render.emit(rows, human)


@app.command("show")
def show(job_id: str = typer.Argument(..., help="A job id from `dbsafe jobs`.")) -> None:
    """One job with its result, warnings and error."""
    from dbsafe.services.activity import get_job

    render.emit(get_job(open_records(), job_id), render.fields)


@app.command("cancel")
def cancel(job_id: str = typer.Argument(..., help="A running job's id.")) -> None:
    """Ask a running job to stop; it ends as cancelled within a second or so."""
    from dbsafe.services.activity import cancel_job

    row = cancel_job(open_records(), job_id)
    render.emit(row, lambda r: render.out.print(f"job {r['id']}: {r['state']}"))
