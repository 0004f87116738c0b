"""Reports: over the last 7, 30, 90 or 365 days, the bytes each server's points hold and
how they grew, each database's size and the bytes its backups stored, the jobs' outcomes
and success rates, and the restore drills with their RTO and RPO; each table downloadable
as CSV (the API's /reports gives the same rows)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from dbsafe.core.units import size_text
from dbsafe.portal import charts
from dbsafe.portal.web import caller, page, vault
from dbsafe.services import operations
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()
Days = Annotated[int, Query(ge=1, le=operations.MAX_DAYS)]  # the form offers 7, 30, 90, 365
Server = Annotated[str | None, Query(max_length=100)]  # "" from the form: every server
Table = Literal["storage", "databases", "jobs", "drills"]
FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run a cell starting so
CHOICES = (7, 30, 90, 365)  # the form's ranges: their reports are kept REPORT_TTL seconds
REPORT_TTL = 60.0  # as the dashboard's charts (~1 s to compute at 2,000 databases, 90 days)


def _report(request: Request, v: Vault, days: int, server: str | None) -> dict:
    """The report and its jobs per day: computed once a minute for every viewer (the
    dashboard's cache, dropped by a change made through this process) for the form's
    ranges; any other range each time (a key per day count would grow without bound)."""
    def compute() -> dict:
        return {"report": operations.report(v, days, server=server),
                "jobs": operations.jobs_per_day(v, days)}

    if days not in CHOICES:
        return compute()
    return request.app.state.dashboard.get(("report", days, server), compute, REPORT_TTL)


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, days: Days = 30, server: Server = None,
                 me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    made = _report(request, v, days, server or None)
    found, jobs = made["report"], made["jobs"]
    held = found["held"]
    drawn = {"stored": charts.lines("report-stored", f"Stored bytes, last {days} days",
                                    held["days"], {server or "all servers": held["total"]},
                                    size_text),
             "jobs": charts.stacked_bars("report-jobs", f"Jobs per day, last {days} days",
                                         jobs["days"], jobs["states"], lambda n: f"{n:.0f}",
                                         charts.STATE_COLOURS)}
    return page(request, "reports.html", report=found, charts=drawn,
                choices=CHOICES, servers=[s["name"] for s in v.catalog.list_servers()])


@router.get("/reports/{table}.csv")
def report_csv(request: Request, table: Table, days: Days = 30, server: Server = None,
               me: Principal = Depends(caller), v: Vault = Depends(vault)) -> Response:
    me.require("read")
    rows = _report(request, v, days, server or None)["report"][table]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=operations.COLUMNS[table], lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: _cell(val) for k, val in row.items()} for row in rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="dbsafe-{table}-{days}d.csv"'})


def _cell(value: object) -> object:
    """A value as a spreadsheet may open it: text that would start a formula is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA):
        return "'" + value
    return "" if value is None else value
