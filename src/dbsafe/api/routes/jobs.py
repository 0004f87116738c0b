"""Jobs: list, show, cancel, and follow one live (server-sent events)."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

from anyio import to_thread
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from dbsafe.api.deps import need, vault
from dbsafe.services import jobs as job_service
from dbsafe.services.vault import Vault

router = APIRouter(tags=["jobs"])
State = Literal[job_service.STATES]  # type: ignore[valid-type]
EVENT_INTERVAL = 0.5


@router.get("/jobs", dependencies=[Depends(need("read"))])
def list_jobs(state: State | None = None, server: str | None = None,
              type: str | None = Query(None, max_length=40),
              limit: int = Query(100, ge=1, le=1000), v: Vault = Depends(vault)) -> list[dict]:
    """Jobs, newest first (backups, restores, verifies, drills), filtered."""
    return job_service.list_jobs(v.catalog, limit, state=state, server=server, type=type)


@router.get("/jobs/{job_id}", dependencies=[Depends(need("read"))])
def show_job(job_id: str, v: Vault = Depends(vault)) -> dict:
    return job_service.get_job(v.catalog, job_id)


@router.post("/jobs/{job_id}/cancel", dependencies=[Depends(need("operate"))])
def cancel_job(job_id: str, v: Vault = Depends(vault)) -> dict:
    """Ask a running job to stop: it ends ``cancelled`` and removes what it made."""
    return job_service.cancel_job(v.catalog, job_id)


def progress_event(job: dict) -> str:
    """One server-sent event: ``event: progress|end``, ``data:`` the job's JSON."""
    kind = "end" if job["state"] in job_service.FINAL else "progress"
    return f"event: {kind}\ndata: {json.dumps(job, default=str)}\n\n"


@router.get("/jobs/{job_id}/events", dependencies=[Depends(need("read"))],
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "progress events until the job ends"}})
async def job_events(job_id: str, v: Vault = Depends(vault)) -> StreamingResponse:
    """The job's progress as server-sent events, twice a second while it changes, and a
    last ``end`` event with its final state."""
    first = await to_thread.run_sync(job_service.get_job, v.catalog, job_id)

    async def stream():
        job, last = first, None
        while True:
            key = (job["state"], job["bytes_done"], job["bytes_total"])
            if key != last:
                yield progress_event(job)
                last = key
            if job["state"] in job_service.FINAL:
                return
            await asyncio.sleep(EVENT_INTERVAL)
            job = await to_thread.run_sync(job_service.get_job, v.catalog, job_id)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
