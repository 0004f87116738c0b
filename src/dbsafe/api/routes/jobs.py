"""Jobs: list, show, cancel, and follow one live (server-sent events)."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import Literal

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from dbsafe.api.deps import need, vault
from dbsafe.api.errors import ErrorBody
from dbsafe.api.gate import principal_of
from dbsafe.core.errors import DbsafeError
from dbsafe.services import activity
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal
from dbsafe.services.restore import parse_bound
from dbsafe.web.fields import Limit, Offset

router = APIRouter(tags=["jobs"])
State = Literal[activity.STATES]  # type: ignore[valid-type]
EVENT_INTERVAL = 0.5
RECHECK_SECONDS = 5.0  # how often a stream checks that its caller may still read


@router.get("/jobs", dependencies=[Depends(need("read"))])
def list_jobs(response: Response, state: State | None = None,
              server: str | None = Query(None, max_length=100),
              type: str | None = Query(None, max_length=40),
              since: str | None = Query(
                  None, max_length=64, json_schema_extra={"format": "date-time"},
                  description="jobs started at or after this instant: ISO 8601 with its "
                              "zone (one without is refused, ``time.zone_missing``, as a "
                              "restore target is)"),
              until: str | None = Query(
                  None, max_length=64, json_schema_extra={"format": "date-time"},
                  description="jobs started before this instant (the same form)"),
              limit: Limit = 100, offset: Offset = 0, v: Vault = Depends(vault)
              ) -> list[dict]:
    """Jobs, newest first (backups, restores, verifies, drills), filtered, a page of them:
    the ``X-Total-Count`` header says how many match."""
    start = parse_bound(since) if since is not None else None
    end = parse_bound(until) if until is not None else None
    response.headers["X-Total-Count"] = str(activity.count_jobs(
        v.catalog, state=state, server=server, type=type, since=start, until=end))
    return activity.list_jobs(v.catalog, limit, state=state, server=server, type=type,
                              offset=offset, since=start, until=end)


@router.get("/jobs/{job_id}", dependencies=[Depends(need("read"))])
def show_job(job_id: str, v: Vault = Depends(vault)) -> dict:
    return activity.get_job(v.catalog, job_id)


@router.post("/jobs/{job_id}/cancel", dependencies=[Depends(need("operate"))])
def cancel_job(job_id: str, v: Vault = Depends(vault)) -> dict:
    """Ask a running job to stop: it ends ``cancelled`` and removes what it made."""
    return activity.cancel_job(v.catalog, job_id)


def progress_event(job: dict) -> str:
    """One server-sent event: ``event: progress|end``, ``data:`` the job's JSON."""
    kind = "end" if job["state"] in activity.FINAL else "progress"
    return f"event: {kind}\ndata: {json.dumps(job, default=str)}\n\n"


def error_event(error: DbsafeError) -> str:
    """The last event of a stream whose caller is no longer allowed."""
    return f"event: error\ndata: {json.dumps({'error': error.as_dict()})}\n\n"


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "progress events until the job ends"},
                       429: {"model": ErrorBody,
                             "description": "too many streams open (``Retry-After``)"}})
async def job_events(job_id: str, request: Request, caller: Principal = Depends(need("read")),
                     v: Vault = Depends(vault)) -> StreamingResponse:
    """The job's progress as server-sent events, twice a second while it changes, and a
    last ``end`` event with its final state. The caller is checked again every
    ``RECHECK_SECONDS``: a revoked token or ended session gets an ``error`` event and the
    stream ends. At most 8 streams per caller and 64 in all (429 beyond)."""
    first = await to_thread.run_sync(activity.get_job, v.catalog, job_id)
    slot = request.app.state.streams.take(caller.name)
    headers, cookies = dict(request.headers), dict(request.cookies)

    async def still_allowed() -> DbsafeError | None:
        try:
            if await to_thread.run_sync(principal_of, v.catalog, headers, cookies) is None:
                return DbsafeError("auth.required")
        except DbsafeError as exc:
            return exc
        return None

    async def stream():
        try:
            job, last, checked = first, None, time.monotonic()
            while True:
                key = (job["state"], job["bytes_done"], job["bytes_total"])
                if key != last:
                    yield progress_event(job)
                    last = key
                if job["state"] in activity.FINAL:
                    return
                await asyncio.sleep(EVENT_INTERVAL)
                if time.monotonic() - checked >= RECHECK_SECONDS:
                    checked = time.monotonic()
                    refused = await still_allowed()
                    if refused is not None:
                        yield error_event(refused)
                        return
                    yield ": still following\n\n"  # a comment: finds a client gone away
                job = await to_thread.run_sync(activity.get_job, v.catalog, job_id)
        finally:
            slot.release()

    events = stream()
    weakref.finalize(events, slot.release)  # a stream never started frees its slot too
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
