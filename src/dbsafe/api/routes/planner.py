"""The resource planner (``dbsafe plan``): how long a server's backups take with a policy,
and how many databases it can protect. Pure arithmetic on the inputs: "read" is enough."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, vault
from dbsafe.api.routes.fields import Name
from dbsafe.policy import planner
from dbsafe.services.policies import get_policy
from dbsafe.services.vault import Vault

router = APIRouter(tags=["planner"])


class PlanRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    cores: int = Field(ge=1, le=4096, description="vCPUs of the database server")
    bandwidth_mbps: float = Field(ge=0.01, le=1e7, description="network to the vault, Mbit/s")
    db_count: int = Field(ge=1, le=100_000, description="databases to protect")
    db_size_gb: float = Field(ge=0.001, le=1e6, description="size of each, GB")
    change_rate_pct: float = Field(ge=0, le=100, description="% of blocks changed a day")
    policy: Name = "default"
    window_hours: float = Field(8.0, ge=0.01, le=24, description="the daily backup window")
    instances: int = Field(1, ge=1, le=100_000,
                           description="PostgreSQL instances the databases are in")
    wal_gb_per_day: float | None = Field(None, ge=0, le=1e6,
                                         description="WAL per database a day (default: the "
                                                     "changed data)")
    disk_mb_s: float | None = Field(None, ge=0.01, le=1e7,
                                    description="read rate of the data disks, MB/s")


@router.post("/planner", dependencies=[Depends(need("read"))])
def plan(body: PlanRequest, v: Vault = Depends(vault)) -> dict:
    """The backup window needed on the busiest day, peak concurrency, vault growth and the
    most databases this server can protect (rates measured by the benchmark)."""
    inputs = body.model_dump()
    inputs["policy"] = get_policy(v, body.policy)
    return planner.plan(planner.PlanInput(**inputs))
