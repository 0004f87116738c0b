"""Immutable vaults: while immutability is on (or locked), no point is deleted before its
retention ends, and soft delete cannot be shortened or turned off (docs/deleting.md).

"Retention ends" is what the policy of the point's instance says (``policy.retention``:
the age-based tiers that keep it, ``retained_until``); a point whose instance has no policy
(manual backups, or items removed) is kept ``NO_POLICY_DAYS`` after it ended. As in the
seed, "on" can be turned off again and "locked" cannot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbsafe.core.errors import DbsafeError
from dbsafe.services.vault import Vault
from dbsafe.vault.softdelete import (
    DEFAULT_DAYS,
    IMMUTABILITY_STATES,
    immutability_setting,
    save_immutability_setting,
)

NO_POLICY_DAYS = DEFAULT_DAYS  # retention of a point no policy governs, in an immutable vault


def is_immutable(vault: Vault) -> bool:
    return immutability_setting(vault.repo.storage)["state"] != "off"


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


def _policy_of(vault: Vault, instance_id: int):  # -> Policy | None
    """The policy that governs an instance's points: that of its protected items, else
    that of its stopped ones (they keep the retention their policy gave their points); None
    when there is none, or more than one."""
    from dbsafe.services.policies import get_policy

    items = vault.catalog.list_items(instance_id)
    for chosen in ([i for i in items if i["state"] != "stopped"], items):
        names = {i["policy"] for i in chosen if i["policy"]}
        if names:
            return get_policy(vault, names.pop()) if len(names) == 1 else None
    return None


def _retention_ends(vault: Vault, instance_id: int, now: datetime) -> dict[str, datetime | None]:
    """{point id: when its retention ends} for every point of the instance, soft-deleted
    ones included (they are backups of the vault all the same; counting them only ever
    ends a point's tiers earlier, never later, than retention itself would)."""
    from dbsafe.policy.retention import decide, retained_until
    from dbsafe.services.retention import point_info

    infos = [point_info(r) for r in vault.catalog.list_points(instance_id)]
    policy = _policy_of(vault, instance_id)
    if policy is None:
        return {p.point_id: p.end_time + timedelta(days=NO_POLICY_DAYS) for p in infos}
    decision = decide(infos, policy, now)
    return {p.point_id: retained_until(p, decision.keep.get(p.point_id, []), policy)
            for p in infos}


def retention_holds(vault: Vault, points: list[dict], now: datetime) -> dict[str, str]:
    """{point id: ISO time its retention ends} for those of ``points`` (dicts with
    ``point_id`` and ``end_time``) an immutable vault may not delete at ``now``; empty when
    the vault is not immutable."""
    if not is_immutable(vault):
        return {}
    ends: dict[int, dict] = {}
    held = {}
    for p in points:
        row = vault.catalog.get_point(p["point_id"])
        if row is None:  # not in the catalog yet: no policy known
            until = datetime.fromisoformat(p["end_time"]) + timedelta(days=NO_POLICY_DAYS)
        else:
            if row["instance_id"] not in ends:
                ends[row["instance_id"]] = _retention_ends(vault, row["instance_id"], now)
            until = ends[row["instance_id"]].get(p["point_id"])
        if until is not None and until > now:
            held[p["point_id"]] = until.isoformat(timespec="seconds")
    return held


def refuse_if_held(vault: Vault, points: list[dict], now: datetime) -> None:
    """Raise ``immutability.retained`` when an immutable vault keeps any of ``points``."""
    held = retention_holds(vault, points, now)
    if held:
        point_id, until = next(iter(held.items()))
        raise DbsafeError("immutability.retained", point_id=point_id, until=until,
                          count=len(held))
