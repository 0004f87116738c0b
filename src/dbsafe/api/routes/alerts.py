"""Alerts (list, resolve, run the checks) and the channels they are sent to (``dbsafe
alerts``). Channels name URLs and mail servers: only a Backup Contributor sees or changes
them."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, model_validator

from dbsafe.api.deps import need, vault
from dbsafe.core import bounds
from dbsafe.core.fields import Folder
from dbsafe.services import activity, operations
from dbsafe.services.handle import Vault
from dbsafe.web.fields import Offset, Port, RowId

router = APIRouter(tags=["alerts"])


class EmailOptions(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    host: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x20/]+$",
                      description="SMTP server")
    port: Port | None = Field(None, description="default 25, 465 with tls")
    sender: str | None = Field(None, min_length=3, max_length=320,
                               description="From address (default dbsafe@<this host>)")
    user: str | None = Field(None, min_length=1, max_length=255)
    password_env: str | None = Field(None, min_length=13, max_length=100,
                                     pattern=r"^DBSAFE_SMTP_[A-Za-z0-9_]+$",
                                     description="environment variable of the dbsafe "
                                                 "process holding the SMTP password, "
                                                 "DBSAFE_SMTP_* (a password is never "
                                                 "stored; needs starttls or tls)")
    starttls: bool = False
    tls: bool = Field(False, description="implicit TLS (port 465)")
    ca_file: Folder | None = Field(None, description="PEM certificates to trust for the "
                                                     "SMTP server instead of the system's")


class ChannelRequest(BaseModel):
    """A webhook (``target``: an http(s) URL) or an e-mail address with its SMTP options."""
    model_config = {"extra": "forbid", "strict": True}
    kind: Literal["webhook", "email"]
    target: str = Field(min_length=3, max_length=2048, pattern=r"^[^\x00-\x20]+$")
    email: EmailOptions | None = None
    on_success: bool = Field(False, description="also send success notices")

    @model_validator(mode="after")
    def _options_match(self) -> ChannelRequest:
        if (self.kind == "email") != (self.email is not None):
            raise ValueError("email options go with kind email, and it needs them")
        return self


class CheckRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    lag_threshold_mib: int | None = Field(None, ge=bounds.LAG_MIB[0], le=bounds.LAG_MIB[1])
    min_free_pct: float | None = Field(None, ge=bounds.FREE_PCT[0], le=bounds.FREE_PCT[1])
    min_free_mib: int | None = Field(None, ge=bounds.FREE_MIB[0], le=bounds.FREE_MIB[1])


@router.get("/alerts", dependencies=[Depends(need("read"))])
def list_alerts(state: Literal["active", "resolved", "all"] = "active",
                limit: int = Query(100, ge=1, le=1000), offset: Offset = 0,
                v: Vault = Depends(vault)) -> list[dict]:
    """Alerts, most recently seen first, a page at a time."""
    return activity.list_alerts(v.catalog, None if state == "all" else state, limit, offset)


@router.post("/alerts/{alert_id}/resolve", dependencies=[Depends(need("operate"))])
def resolve_alert(alert_id: RowId, v: Vault = Depends(vault)) -> dict:
    """Mark an alert resolved and tell the channels (a check may raise it again)."""
    return activity.resolve_alert(v.catalog, alert_id)


@router.post("/alerts/check", dependencies=[Depends(need("operate"))])
def check(body: CheckRequest, v: Vault = Depends(vault)) -> list[dict]:
    """Run the health checks now, raising or resolving their alerts."""
    given: dict[str, Any] = {
        "lag_threshold_bytes": body.lag_threshold_mib and body.lag_threshold_mib << 20,
        "space_min_free_pct": body.min_free_pct,
        "space_min_free_bytes": (body.min_free_mib << 20
                                 if body.min_free_mib is not None else None)}
    return operations.check_health(v, **{k: x for k, x in given.items() if x is not None})


@router.get("/alert-channels", dependencies=[Depends(need("admin"))])
def list_channels(v: Vault = Depends(vault)) -> list[dict]:
    return activity.list_channels(v.catalog)


@router.post("/alert-channels", status_code=201, dependencies=[Depends(need("admin"))])
def add_channel(body: ChannelRequest, v: Vault = Depends(vault)) -> dict:
    """Add a channel; every new and resolved alert is sent to it."""
    options = body.email.model_dump() if body.email else None
    return activity.add_channel(v.catalog, body.kind, body.target, options, body.on_success)


@router.delete("/alert-channels/{channel_id}", dependencies=[Depends(need("admin"))])
def remove_channel(channel_id: RowId, v: Vault = Depends(vault)) -> dict:
    return activity.remove_channel(v.catalog, channel_id)


@router.post("/alert-channels/{channel_id}/test", dependencies=[Depends(need("admin"))])
def test_channel(channel_id: RowId, v: Vault = Depends(vault)) -> dict:
    """Send a test alert to one channel (``alerts.delivery_failed`` if it does not arrive)."""
    return activity.test_channel(v.catalog, channel_id)
