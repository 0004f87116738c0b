"""The vault itself: how it is set up (repository, catalog, encryption, region) and its
protection settings — soft delete and immutability — which only a Backup Contributor may
change (``dbsafe vault info | region | soft-delete | immutability``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, vault
from dbsafe.services import inventory, lifecycle
from dbsafe.services.handle import Vault
from dbsafe.services.restore import restore_roots

router = APIRouter(tags=["vault"])


class VaultChange(BaseModel):
    """Settings to change; those not given stay. Applied in this order: region, soft
    delete, immutability (so one request can lengthen soft delete and then lock)."""
    model_config = {"extra": "forbid", "strict": True}
    region: str | None = Field(None, min_length=1, max_length=64,
                               description="once, for a vault created without one")
    soft_delete: bool | None = Field(None, description="false: deleted points go at once")
    soft_delete_days: int | None = Field(None, ge=1, le=10_000,
                                         description="days a deleted point is kept "
                                                     "(14-180)")
    immutability: Literal["on", "off", "locked"] | None = Field(
        None, description="locked cannot be undone")


def _described(v: Vault) -> dict:
    """The vault, and the folders this host's restores may write into (shown, never
    changed here: `dbsafe vault restore-roots` on the host)."""
    return {**v.describe(), "restore_roots": [str(r) for r in restore_roots(v)]}


@router.get("/vault", dependencies=[Depends(need("read"))])
def vault_info(v: Vault = Depends(vault)) -> dict:
    """Where the vault is and how it is set up, with soft delete, immutability and the
    restore roots."""
    return _described(v)


@router.patch("/vault", dependencies=[Depends(need("admin"))])
def change_vault(body: VaultChange, v: Vault = Depends(vault)) -> dict:
    if body.region is not None:
        v.set_region(body.region)
    if body.soft_delete is not None or body.soft_delete_days is not None:
        enabled = body.soft_delete if body.soft_delete is not None else \
            lifecycle.settings(v)["soft_delete"]["enabled"]
        lifecycle.set_soft_delete(v, body.soft_delete_days, enabled=enabled)
    if body.immutability is not None:
        inventory.set_immutability(v, body.immutability)
    return _described(v)
