"""Jobs: a page of them at a time, newest first (by state, server, type and how far
back), and one job's page: what it did in words and figures, its progress bar following
the API's server-sent events (/api/v1/jobs/{id}/events; the session cookie authenticates
the EventSource), and a cancel button while it runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dbsafe.core.units import duration_text, size_text
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import activity
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal
from dbsafe.web.fields import Offset

router = APIRouter()
LIMIT = 50
State = Literal[activity.STATES]  # type: ignore[valid-type]
# the time ranges a list of jobs can be cut to: how far back from now
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
          "30d": timedelta(days=30)}
Range = Literal["", "1h", "24h", "7d", "30d"]


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, state: State | Literal[""] = "",
              server: str = Query("", max_length=100), type: str = Query("", max_length=40),
              range: Range = "", offset: Offset = 0,
              me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    since = datetime.now(UTC) - RANGES[range] if range else None
    chosen: dict[str, Any] = {"state": state or None, "server": server or None,
                              "type": type or None, "since": since}
    rows = activity.list_jobs(v.catalog, LIMIT, offset=offset, **chosen)
    found = {"total": activity.count_jobs(v.catalog, **chosen), "offset": offset,
             "limit": LIMIT}
    return page(request, "jobs.html", jobs=rows, states=activity.STATES, types=activity.TYPES,
                servers=[s["name"] for s in v.catalog.list_servers()], found=found,
                ranges=list(RANGES), query={"state": state, "server": server, "type": type,
                                            "range": range})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, me: Principal = Depends(caller),
             v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    job = activity.get_job(v.catalog, job_id)
    result = job.get("result")
    return page(request, "job.html", job=job, active=job["state"] in activity.ACTIVE,
                facts=facts(result) if isinstance(result, dict) else [],
                note=result.get("note") if isinstance(result, dict) else None,
                result=json.dumps(result, indent=2, sort_keys=True, default=str)
                if result is not None else None)


# What a job's result says, in words, for the fields people look for first (every field is
# still in the full result below them): (key, label, how it reads).
FACTS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("point_id", "recovery point", str),
    ("type", "backup type", str),
    ("base", "differential of", str),
    ("bytes_read", "read", size_text),
    ("bytes_stored", "stored", size_text),
    ("files", "files", str),
    ("wal_segments", "WAL segments", str),
    ("seconds", "took", duration_text),
    ("corrupt_pages", "corrupt pages", str),
    ("target", "restored to", str),
    ("database", "database", str),
]
PAGES_CHOSEN = {"wal": "by the WAL since the base", "server-summaries":
                "by the server's WAL summaries", "lsn-scan": "by scanning page LSNs"}


def facts(result: dict) -> list[tuple[str, str]]:
    """The fields of ``FACTS`` a result has, and how a differential chose its pages."""
    shown = [(label, how(result[key])) for key, label, how in FACTS
             if result.get(key) is not None and not isinstance(result[key], dict | list)]
    source = result.get("delta_source")
    if isinstance(source, dict) and source.get("source") in PAGES_CHOSEN:
        why = f" ({source['reason']})" if source.get("reason") else ""
        shown.append(("pages chosen", PAGES_CHOSEN[source["source"]] + why))
    build = result.get("build")
    if isinstance(build, dict) and build.get("kind"):
        shown.append(("full", "built from the previous full and the WAL's changes"
                      if build["kind"] == "synthetic" else "read from the server"))
    return shown


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, csrf_token: str = Form(""), me: Principal = Depends(caller),
           v: Vault = Depends(vault)) -> RedirectResponse:
    me.require("operate")
    check_csrf(me, csrf_token)
    activity.cancel_job(v.catalog, job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
