"""The resource planner (``dbsafe plan``): how long a server's backups take with a policy,
and how many databases it can protect. Pure arithmetic on the inputs: "read" is enough."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, vault
from dbsafe.core.bounds import PLAN
from dbsafe.policy import planner
from dbsafe.services.handle import Vault
from dbsafe.services.inventory import get_policy
from dbsafe.web.fields import Name

router = APIRouter(tags=["planner"])


def _bounded(key: str, description: str, default: object = ...):
    """A planner input, bounded as the CLI bounds it (core/bounds.py)."""
    low, high = PLAN[key]
    return Field(default, ge=low, le=high, description=description)


class PlanRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    cores: int = _bounded("cores", "vCPUs of the database server")
    bandwidth_mbps: float = _bounded("bandwidth_mbps", "network to the vault, Mbit/s")
    db_count: int = _bounded("db_count", "databases to protect")
    db_size_gb: float = _bounded("db_size_gb", "size of each, GB")
    change_rate_pct: float = _bounded("change_rate_pct", "% of blocks changed a day")
    policy: Name = "default"
    window_hours: float = _bounded("window_hours", "the daily backup window", 8.0)
    instances: int = _bounded("instances", "PostgreSQL instances the databases are in", 1)
    wal_gb_per_day: float | None = _bounded(
        "wal_gb_per_day", "WAL per database a day (default: the changed data)", None)
    disk_mb_s: float | None = _bounded("disk_mb_s", "read rate of the data disks, MB/s", None)


@router.post("/planner", dependencies=[Depends(need("read"))])
def plan(body: PlanRequest, v: Vault = Depends(vault)) -> dict:
    """The backup window needed on the busiest day, peak concurrency, vault growth and the
    most databases this server can protect (rates measured by the benchmark)."""
    inputs = body.model_dump()
    inputs["policy"] = get_policy(v, body.policy)
    return planner.plan(planner.PlanInput(**inputs))
