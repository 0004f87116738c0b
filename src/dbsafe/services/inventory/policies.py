"""Backup policies stored in the vault's catalog: create, show, list, edit, delete.

Every write validates first (dbsafe.policy.model), so an invalid policy is never stored.
The default policy (daily full at 01:00 UTC, hourly logs, dailies 30 days, logs 14 days)
is created the first time any policy is read or written, so it always exists; it can be
edited but not deleted. A policy that a protected database or an instance's
auto-protection uses cannot be deleted.

Editing saves the policy only: reconfiguring the items that use it (and marking the ones
that fail "inconsistent policy") is the caller's next step, with ``items_using``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from dbsafe.catalog.base import Catalog
from dbsafe.core import defaults
from dbsafe.core.errors import DbsafeError
from dbsafe.policy import schedule
from dbsafe.policy.model import DEFAULT_POLICY, RANGES, Policy, normalised, validate
from dbsafe.policy.retention import shortened
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.vault.softdelete import immutable


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _ensure_default(catalog: Catalog) -> None:
    catalog.insert_policy(DEFAULT_POLICY.name, json.dumps(DEFAULT_POLICY.to_dict()), _now())


def _users(catalog: Catalog) -> dict[str, list[str]]:
    """policy name -> its users: "server/database" and "server (auto-protection)"."""
    users: dict[str, list[str]] = {}
    for row in catalog.policy_users():
        who = (f"{row['server']}/{row['database']}" if row["kind"] == "database"
               else f"{row['server']} (auto-protection)")
        users.setdefault(row["policy"], []).append(who)
    return users


def items_using(vault: Vault, name: str) -> list[str]:
    """The protected databases ("server/database") and auto-protected instances
    ("server (auto-protection)") that use policy ``name``."""
    return _users(vault.catalog).get(name, [])


def describe(policy: Policy, now: datetime | None = None) -> dict:
    """A policy's settings, its recovery model and the next run of each kind (UTC, ISO)."""
    now = now or datetime.now(UTC)
    runs = {kind: schedule.next_slot(policy, kind, now) for kind in schedule.KINDS}
    return {**policy.to_dict(), "recovery_model": policy.recovery_model,
            "next_runs": {k: t.isoformat() if t else None for k, t in runs.items()}}


def create_policy(vault: Vault, policy: Policy) -> dict:
    """Validate and store a new policy; ``policy.exists`` when the name is taken."""
    _ensure_default(vault.catalog)
    policy = normalised(policy)
    validate(policy)
    if not vault.catalog.insert_policy(policy.name, json.dumps(policy.to_dict()), _now()):
        raise DbsafeError("policy.exists", name=policy.name)
    return describe(policy)


def get_policy(vault: Vault, name: str) -> Policy:
    _ensure_default(vault.catalog)
    row = vault.catalog.get_policy(name)
    if row is None:
        valid = ", ".join(r["name"] for r in vault.catalog.list_policies())
        raise DbsafeError("policy.unknown", name=name, valid=valid)
    return Policy.from_dict(json.loads(row["body"]))


def show_policy(vault: Vault, name: str, now: datetime | None = None) -> dict:
    """A policy described (settings, next runs) with the items that use it."""
    return {**describe(get_policy(vault, name), now), "items_using": items_using(vault, name)}


def list_policies(vault: Vault) -> list[dict]:
    """Every policy's settings, recovery model, dates and ``items_using``."""
    _ensure_default(vault.catalog)
    users = _users(vault.catalog)
    rows = []
    for row in vault.catalog.list_policies():
        policy = Policy.from_dict(json.loads(row["body"]))
        rows.append({**policy.to_dict(), "recovery_model": policy.recovery_model,
                     "created": row["created"], "updated": row["updated"],
                     "items_using": users.get(row["name"], [])})
    return rows


def edit_policy(vault: Vault, name: str, **changes: object) -> Policy:
    """Apply ``changes`` (Policy settings) to policy ``name``, validate, save, return it.
    An immutable vault refuses a change that shortens any retention setting."""
    current = get_policy(vault, name)
    if "name" in changes and changes["name"] != name:
        raise DbsafeError("policy.invalid", policy=name,
                          rule="a policy cannot be renamed: create a new one and move the "
                               "items to it")
    policy = current.with_changes(**changes)           # unknown settings refused
    policy = normalised(policy)
    validate(policy)
    refuse_shorter_retention(vault, current, policy, f"editing policy {name!r}")
    vault.catalog.update_policy(name, json.dumps(policy.to_dict()), _now())
    return policy


def compression_for(vault: Vault, server: dict) -> tuple[int, str]:
    """(zstd level, where it comes from) for a new block of ``server``'s backups or WAL:
    the level of the policy that governs its points (0 when that policy's compression is
    off), else ``defaults.COMPRESS_LEVEL``. A node of a replica set follows its set's
    policy: the set's entry holds the protected items."""
    policy = policy_of(vault, server)
    if policy is None:
        return defaults.COMPRESS_LEVEL, "the default (no policy)"
    return policy.zstd_level, f"policy {policy.name}"


def policy_of(vault: Vault, server: dict) -> Policy | None:
    """The policy that governs ``server``'s points (a replica set's node: its set's)."""
    instance_id = server["instance_id"]
    if server.get("replica_set"):
        entry = vault.catalog.get_server(server["replica_set"])
        instance_id = entry["instance_id"] if entry is not None else instance_id
    return governing_policy(vault, instance_id)


def delete_policy(vault: Vault, name: str) -> None:
    """Delete an unused policy (never the default)."""
    get_policy(vault, name)                               # policy.unknown first
    if name == DEFAULT_POLICY.name:
        raise DbsafeError("policy.default_required")
    users = items_using(vault, name)
    if users:
        shown = ", ".join(users[:20]) + (f" and {len(users) - 20} more" if len(users) > 20
                                         else "")
        raise DbsafeError("policy.in_use", name=name, count=len(users), items=shown)
    vault.catalog.delete_policy(name)


def whole_number(setting: str, text: str, policy: str) -> int | None:
    """A number setting as a person types it (a CLI option, a form field): empty or
    ``none`` is None (the rule off), else a whole number; ``policy.invalid`` otherwise."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise DbsafeError("policy.invalid", policy=policy,
                          rule=f"{setting} must be a whole number or none, not {text!r}"
                          ) from None


def governing_policy(vault: Vault, instance_id: int) -> Policy | None:
    """The policy that governs an instance's new points (their retention, and their
    compression: services/inventory/policies.compression_for): that of its protected items, else
    that of its stopped ones (they keep the retention their policy gave their points); None
    when there is none, or more than one."""

    items = vault.catalog.list_items(instance_id)
    for chosen in ([i for i in items if i["state"] != "stopped"], items):
        names = {i["policy"] for i in chosen if i["policy"]}
        if names:
            return get_policy(vault, names.pop()) if len(names) == 1 else None
    return None


# what an immutable vault refuses of a policy change (docs/deleting.md) --------------
def _changes(old: Policy, new: Policy) -> str:
    def shown(setting: str, value: int | None) -> str:
        return "none" if value is None else f"{value} {RANGES[setting][2]}"
    return ", ".join(f"{k} {shown(k, a)} -> {shown(k, b)}" for k, a, b in shortened(old, new))


def refuse_shorter_retention(vault: Vault, old: Policy, new: Policy, what: str) -> None:
    """Raise ``immutability.retention_shortened`` when the vault is immutable and ``new``
    keeps points shorter than ``old`` by any retention setting (``what`` says which change:
    a policy edit, or items moved to another policy)."""
    cut = shortened(old, new)
    if cut and immutable(vault.repo.storage):
        setting, before, after = cut[0]
        raise DbsafeError("immutability.retention_shortened", what=what,
                          changes=_changes(old, new), setting=setting, old=before, new=after)
