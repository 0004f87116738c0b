"""The dashboard: am I protected (the databases worst off, with their RPO now), items by
health, charts of jobs per day by outcome and of stored bytes over time, failed jobs,
active alerts, what the vault holds, and the fleet — hosts, agents by state, servers, jobs
queued, running and failed, in all and per host (services/fleet/views.fleet_totals: a few
queries, whatever the fleet's size)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from dbsafe.core.units import size_text
from dbsafe.portal import charts
from dbsafe.portal.web import caller, page, span, vault
from dbsafe.services import fleet, operations
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()
JOB_DAYS, STORED_DAYS = 14, 30
FLEET_TTL, CHARTS_TTL = 2.0, 60.0  # seconds: as the overview snapshot; the charts are by day
LINES = 8  # servers drawn one by one in the stored-bytes chart; the others are in the total


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, me: Principal = Depends(caller),
              v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    cache = request.app.state.dashboard
    return page(request, "dashboard.html", board=request.app.state.overview.get().board,
                fleet=cache.get(("fleet",), lambda: fleet.fleet_totals(v), FLEET_TTL),
                charts=cache.get(("charts",), lambda: _charts(v), CHARTS_TTL))


def _charts(v: Vault) -> dict:
    jobs = operations.jobs_per_day(v, JOB_DAYS)
    stored = operations.stored_over_time(v, STORED_DAYS)
    rpo = operations.rpo_over_time(v, STORED_DAYS)
    biggest = sorted(stored["servers"], key=lambda s: -stored["servers"][s][-1])[:LINES]
    series = {"all servers": stored["total"], **{s: stored["servers"][s] for s in biggest}}
    return {
        "jobs": charts.stacked_bars("chart-jobs", f"Jobs per day by outcome, last {JOB_DAYS} "
                                    "days", jobs["days"], jobs["states"],
                                    lambda n: f"{n:.0f}", charts.STATE_COLOURS),
        "stored": charts.lines("chart-stored", f"Stored bytes, last {STORED_DAYS} days",
                               stored["days"], series, size_text),
        "rpo": charts.lines("chart-rpo", f"RPO at each day's end, last {STORED_DAYS} days",
                            rpo["days"], {"worst server": rpo["worst"],
                                          "median server": rpo["median"]},
                            lambda s: span(int(s)))}
