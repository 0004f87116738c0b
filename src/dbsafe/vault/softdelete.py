"""Soft-delete markers and the vault's deletion settings, as named objects in the repository
(docs/repository-format.md, *Soft delete and immutability*).

They live in the repository, not the catalog, so that every client of a shared vault sees
them and a rebuilt catalog recovers them. Each is a small JSON document written whole with
``Storage.put`` (atomic on every backend, no rename needed): a marker ``deleted/<point id>``
is written once and removed on undelete or purge; the settings objects are replaced whole.
"""

from __future__ import annotations

import json
from typing import Any

from dbsafe.core.errors import DbsafeError
from dbsafe.storage.base import Storage

MARKERS = "deleted"
SOFT_DELETE = "settings/soft-delete"
IMMUTABILITY = "settings/immutability"

DEFAULT_DAYS = 14                     # the seed's soft-delete retention
MIN_DAYS, MAX_DAYS = 14, 180          # the seed's configurable range
IMMUTABILITY_STATES = ("off", "on", "locked")


def _load(storage: Storage, name: str) -> dict[str, Any] | None:
    try:
        data = storage.get(name)
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise DbsafeError("vault.object_corrupt", path=name, reason="not a JSON object")
    return doc


def _save(storage: Storage, name: str, doc: dict[str, Any]) -> None:
    storage.put(name, json.dumps(doc, indent=2, sort_keys=True).encode())


# markers -------------------------------------------------------------------------------------
def write_marker(storage: Storage, marker: dict[str, Any]) -> None:
    """Mark ``marker["point_id"]`` soft-deleted (the commit point of a soft delete)."""
    _save(storage, f"{MARKERS}/{marker['point_id']}", marker)


def read_marker(storage: Storage, point_id: str) -> dict[str, Any] | None:
    """The marker of a soft-deleted point; None when the point is not soft-deleted."""
    return _load(storage, f"{MARKERS}/{point_id}")


def marker_ids(storage: Storage) -> set[str]:
    return set(storage.names(MARKERS))


def delete_marker(storage: Storage, point_id: str) -> None:
    """Idempotent: undelete, or the last step of a purge."""
    storage.delete(f"{MARKERS}/{point_id}")


# settings ------------------------------------------------------------------------------------
def soft_delete_setting(storage: Storage) -> dict[str, Any]:
    """``{"enabled": bool, "days": int}``; a vault that never set it has the default, on."""
    doc = _load(storage, SOFT_DELETE) or {}
    return {"enabled": bool(doc.get("enabled", True)), "days": int(doc.get("days", DEFAULT_DAYS))}


def save_soft_delete_setting(storage: Storage, enabled: bool, days: int, changed: str) -> None:
    _save(storage, SOFT_DELETE, {"enabled": enabled, "days": days, "changed": changed})


def immutable(storage: Storage) -> bool:
    """Whether the vault is immutable (``on`` or ``locked``)."""
    state: str = immutability_setting(storage)["state"]
    return state != "off"


def immutability_setting(storage: Storage) -> dict[str, Any]:
    """``{"state": "off" | "on" | "locked", "changed": ISO time or None}``."""
    doc = _load(storage, IMMUTABILITY) or {}
    state = doc.get("state", "off")
    if state not in IMMUTABILITY_STATES:
        raise DbsafeError("vault.object_corrupt", path=IMMUTABILITY,
                          reason=f"unknown state {state!r}")
    return {"state": state, "changed": doc.get("changed")}


def save_immutability_setting(storage: Storage, state: str, changed: str) -> None:
    _save(storage, IMMUTABILITY, {"state": state, "changed": changed})
