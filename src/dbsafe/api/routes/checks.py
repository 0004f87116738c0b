"""Checks of what the vault holds: verify (re-read every block of a point and check its
hash) and restore drills (restore into a scratch cluster, check it, record RTO and RPO).
Both are long work: 202 with the job (api/launch.py). A server with an agent is checked on
its host, by its agent (services/fleet/checks.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from dbsafe.api.deps import launcher, need, vault
from dbsafe.api.launch import Launcher
from dbsafe.api.routes.backups import Started, started
from dbsafe.services.fleet import run_drill, run_verify
from dbsafe.services.handle import Vault
from dbsafe.services.restore import list_drills
from dbsafe.web.fields import Limit

router = APIRouter(tags=["checks"])


class VerifyRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    point_id: str | None = Field(None, min_length=1, max_length=100,
                                 description="one point (default: every point)")
    deep: bool = Field(False, description="also compare the points' relation pages with "
                                          "the live files' pages unchanged since each "
                                          "point started")


class DrillRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    point_id: str | None = Field(None, min_length=1, max_length=100,
                                 description="default: the newest restorable state")
    amcheck: bool = Field(False, description="also check every btree index with amcheck")


@router.post("/servers/{server}/verify", status_code=202,
             dependencies=[Depends(need("operate"))])
def verify(server: str, body: VerifyRequest, run: Launcher = Depends(launcher)) -> Started:
    """Start verifying a point, or every point of the server; the job fails with
    ``verify.failed`` and the damaged files when a block does not match its hash (with
    ``deep``: ``verify.live_differs`` when a page differs from the live one)."""
    return started(run.start("verify", lambda v: run_verify(v, server, body.point_id,
                                                            deep=body.deep)))


@router.post("/servers/{server}/drills", status_code=202,
             dependencies=[Depends(need("operate"))])
def drill(server: str, body: DrillRequest, run: Launcher = Depends(launcher)) -> Started:
    """Start a restore drill in a scratch cluster (removed afterwards)."""
    return started(run.start("drill", lambda v: run_drill(v, server, body.point_id,
                                                          amcheck=body.amcheck)))


@router.get("/drills", dependencies=[Depends(need("read"))])
def drills(server: str | None = Query(None, max_length=100),
           limit: Limit = 50, v: Vault = Depends(vault)) -> list[dict]:
    """Restore drills, newest first: state, RTO, RPO and the failing check."""
    return list_drills(v, server, limit)
