"""Backup policies (``dbsafe policy``): reading them needs "read", changing them "policy"
(Backup Contributor). Settings not given take the default policy's values on create and
stay as they are on edit; the seed's ranges are checked by the service (``policy.invalid``
with one sentence per broken rule)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, vault
from dbsafe.core.fields import Name
from dbsafe.policy.model import (
    COMPRESSION_LEVELS,
    LOG_MINUTES,
    RANGES,
    READ_FULL_WEEKS,
    WEEKDAYS,
    Policy,
)
from dbsafe.services import inventory, protection
from dbsafe.services.handle import Vault

router = APIRouter(tags=["policies"])
Weekday = Literal[WEEKDAYS]  # type: ignore[valid-type]
Days = Annotated[list[Weekday], Field(max_length=7)]
Time = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                            description="HH:MM local time")]
LogMinutes = Literal[LOG_MINUTES]  # type: ignore[valid-type]


def keep(setting: str) -> Any:
    """A retention tier's field with the seed's range (policy/model.py RANGES)."""
    low, high, unit = RANGES[setting]
    return Field(None, ge=low, le=high, description=f"{low}-{high} {unit}; null: none")


class PolicySettings(BaseModel):
    """Every setting of a policy; null unsets an optional one (a retention tier, logs)."""
    model_config = {"extra": "forbid", "strict": True}
    full: Literal["daily", "weekly"] | None = None
    full_days: Days | None = Field(None, description="weekly full: its weekdays")
    full_time: Time | None = None
    timezone: str | None = Field(None, min_length=1, max_length=64, description="IANA name")
    diff_days: Days | None = Field(None, description="weekly full only")
    log_every: LogMinutes | None = Field(None, description="minutes between log backups; "
                                                           "null: none (SIMPLE model)")
    keep_daily: int | None = keep("keep_daily")
    keep_weekly: int | None = keep("keep_weekly")
    keep_monthly: int | None = keep("keep_monthly")
    keep_yearly: int | None = keep("keep_yearly")
    keep_diff: int | None = keep("keep_diff")
    keep_log: int | None = keep("keep_log")
    compression: bool | None = None
    compression_level: int | None = Field(None, ge=COMPRESSION_LEVELS[0],
                                          le=COMPRESSION_LEVELS[1])
    drill_days: Days | None = None
    drill_time: Time | None = None
    synthetic_full: bool | None = Field(None, description="scheduled fulls built from the "
                                        "last full plus the WAL")
    read_full_weeks: int | None = Field(None, ge=READ_FULL_WEEKS[0], le=READ_FULL_WEEKS[1],
                                        description="a scheduled full reads every file at "
                                                    "least this often")

    def changes(self) -> dict:
        """The settings the caller gave (null included: it unsets)."""
        given = self.model_dump(exclude_unset=True)
        for key in ("full", "full_days", "full_time", "timezone", "diff_days", "compression",
                    "compression_level", "drill_days", "drill_time", "synthetic_full",
                    "read_full_weeks"):
            if key in given and given[key] is None:
                given.pop(key)  # required settings: null means "as it is"
        return given


class PolicyRequest(PolicySettings):
    name: Name


@router.get("/policies", dependencies=[Depends(need("read"))])
def list_policies(v: Vault = Depends(vault)) -> list[dict]:
    """Every policy with its recovery model and the items that use it."""
    return inventory.list_policies(v)


@router.get("/policies/{name}", dependencies=[Depends(need("read"))])
def show_policy(name: str, v: Vault = Depends(vault)) -> dict:
    """A policy, the next run of each kind, and what uses it."""
    return inventory.show_policy(v, name)


@router.post("/policies", status_code=201, dependencies=[Depends(need("policy"))])
def create_policy(body: PolicyRequest, v: Vault = Depends(vault)) -> dict:
    """Create a policy; a weekly full has no daily tier, no log backups no log tier."""
    changes = body.changes()
    changes.pop("name")
    base = Policy(body.name)
    return inventory.create_policy(v, base.with_changes(**base.implied(changes)))


@router.patch("/policies/{name}", dependencies=[Depends(need("policy"))])
def edit_policy(name: str, body: PolicySettings, v: Vault = Depends(vault)) -> dict:
    """Change the given settings; applied at once to the items using the policy (recovery
    model, retention of existing points)."""
    current = inventory.get_policy(v, name)
    return protection.change_policy(v, name, **current.implied(body.changes()))


@router.delete("/policies/{name}", dependencies=[Depends(need("policy"))])
def delete_policy(name: str, v: Vault = Depends(vault)) -> dict:
    """Delete a policy nothing uses (never the default)."""
    inventory.delete_policy(v, name)
    return {"deleted": name}
