"""Immutable vaults: while immutability is on (or locked), no point is deleted before its
retention ends, no policy change shortens retention, no server holding retained points is
removed, and soft delete cannot be shortened or turned off (docs/deleting.md).

A point's retention is fixed when its backup commits: the retention settings of the policy
in force then (``backup_retention``), frozen into its manifest and catalog row
(``retention``). How long an immutable vault keeps it is computed from that, never from
today's editable policy: the age-based tiers that keep it (``policy.retention``:
``decide``, ``retained_until``), or, for a point no policy governed, ``NO_POLICY_DAYS``
after it ended. Points made before retention was frozen (no ``retention``) keep the older
rule: the current policy of their instance. As in the seed, "on" can be turned off again
and "locked" cannot.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from dbsafe.core.errors import DbsafeError
from dbsafe.policy.model import Policy
from dbsafe.policy.retention import (
    PointInfo,
    decide,
    freeze,
    longest_until,
    retained_until,
    thaw,
)
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.policies import governing_policy
from dbsafe.vault.softdelete import (
    DEFAULT_DAYS,
    IMMUTABILITY_STATES,
    immutability_setting,
    immutable,
    save_immutability_setting,
)

NO_POLICY_DAYS = DEFAULT_DAYS  # retention of a point no policy governs, in an immutable vault


def is_immutable(vault: Vault) -> bool:
    return immutable(vault.repo.storage)


def set_immutability(vault: Vault, state: str, now: datetime | None = None) -> dict:
    """Turn immutability ``on``, ``off`` or ``locked`` (irreversible)."""
    if state not in IMMUTABILITY_STATES:
        raise DbsafeError("immutability.state_unknown", state=state,
                          valid=", ".join(IMMUTABILITY_STATES))
    current = immutability_setting(vault.repo.storage)["state"]
    if current == "locked" and state != "locked":
        raise DbsafeError("immutability.locked", state=state)
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    if state != current:
        save_immutability_setting(vault.repo.storage, state, when)
    return {"immutability": state, "previous": current}


# the retention a point is given --------------------------------------------------------------
def backup_retention(vault: Vault, instance_id: int) -> dict:
    """The retention a point of the instance gets now, to be written into its manifest
    (``retention``) and catalog row when its backup commits."""
    return freeze(governing_policy(vault, instance_id), NO_POLICY_DAYS)


def retention_column(retention: dict) -> str:
    """The catalog's form of a point's retention (one text per distinct retention)."""
    return json.dumps(retention, sort_keys=True)


# how long a point is kept -------------------------------------------------------------------
def _rule(vault: Vault, instance_id: int | None, frozen: str | dict | None) -> Policy | int:
    """The rule for a point's retention: its frozen retention; for a point without one (or
    with one that does not read), its instance's current policy, else NO_POLICY_DAYS."""
    if frozen is not None:
        try:
            return thaw(json.loads(frozen) if isinstance(frozen, str) else frozen)
        except ValueError:
            pass
    policy = governing_policy(vault, instance_id) if instance_id is not None else None
    return NO_POLICY_DAYS if policy is None else policy


def _retention_ends(vault: Vault, instance_id: int, now: datetime) -> dict[str, datetime | None]:
    """{point id: when its retention ends} for every point of the instance, soft-deleted
    ones included (they are backups of the vault all the same; counting them only ever
    ends a point's tiers earlier, never later, than retention itself would). Tiers are
    decided over all the points, once per distinct retention among them."""
    rows = vault.catalog.list_points(instance_id)
    infos = {r["point_id"]: PointInfo.of(r) for r in rows}
    groups: dict[str | None, list[str]] = {}
    for r in rows:
        groups.setdefault(r.get("retention"), []).append(r["point_id"])
    ends: dict[str, datetime | None] = {}
    for frozen, ids in groups.items():
        rule = _rule(vault, instance_id, frozen)
        if isinstance(rule, int):
            ends.update({pid: infos[pid].end_time + timedelta(days=rule) for pid in ids})
            continue
        decision = decide(list(infos.values()), rule, now)
        ends.update({pid: retained_until(infos[pid], decision.keep.get(pid, []), rule)
                     for pid in ids})
    return ends


def _uncatalogued_end(vault: Vault, point: dict) -> datetime:
    """A point the catalog has no row for (its server was removed, or the row is not
    written yet): the longest its frozen retention could keep it, since the points that
    decide its tiers are not known; without one, NO_POLICY_DAYS."""
    manifest: dict[str, Any]
    try:
        manifest = vault.repo.load_manifest(point["point_id"])
    except KeyError:
        manifest = {}
    info = PointInfo.of({"copy_only": False, **point})
    rule = _rule(vault, None, manifest.get("retention"))
    if isinstance(rule, int):
        return info.end_time + timedelta(days=rule)
    return longest_until(info, rule) or info.end_time


def _held(ends: dict[str, datetime | None], now: datetime) -> dict[str, str]:
    return {pid: until.isoformat(timespec="seconds")
            for pid, until in ends.items() if until is not None and until > now}


def instance_holds(vault: Vault, instance_id: int, now: datetime) -> dict[str, str]:
    """{point id: ISO time its retention ends} for every point of the instance an
    immutable vault may not delete at ``now``; empty when the vault is not immutable."""
    if not is_immutable(vault):
        return {}
    return _held(_retention_ends(vault, instance_id, now), now)


def retention_holds(vault: Vault, points: list[dict], now: datetime) -> dict[str, str]:
    """{point id: ISO time its retention ends} for those of ``points`` (dicts with
    ``point_id``, ``type``, ``copy_only`` and ``end_time``) an immutable vault may not
    delete at ``now``; empty when the vault is not immutable."""
    if not is_immutable(vault):
        return {}
    by_instance: dict[int, dict[str, datetime | None]] = {}
    ends: dict[str, datetime | None] = {}
    for p in points:
        row = vault.catalog.get_point(p["point_id"])
        if row is None:
            ends[p["point_id"]] = _uncatalogued_end(vault, p)
            continue
        if row["instance_id"] not in by_instance:
            by_instance[row["instance_id"]] = _retention_ends(vault, row["instance_id"], now)
        ends[p["point_id"]] = by_instance[row["instance_id"]].get(p["point_id"])
    return _held(ends, now)


def refuse_if_held(vault: Vault, points: list[dict], now: datetime) -> None:
    """Raise ``immutability.retained`` when an immutable vault keeps any of ``points``."""
    held = retention_holds(vault, points, now)
    if held:
        point_id, until = next(iter(held.items()))
        raise DbsafeError("immutability.retained", point_id=point_id, until=until,
                          count=len(held))


# what an immutable vault refuses besides deletions (a shorter policy: inventory/policies.py)
def refuse_server_removal(vault: Vault, server: dict, now: datetime | None = None) -> None:
    """Raise ``immutability.server_retained`` when the vault is immutable and the server
    holds points whose retention has not ended: removing it would drop their catalog rows
    and, with them, what keeps them retained."""
    held = instance_holds(vault, server["instance_id"], now or datetime.now(UTC))
    if held:
        raise DbsafeError("immutability.server_retained", name=server["name"],
                          count=len(held), until=max(held.values(), key=datetime.fromisoformat))
