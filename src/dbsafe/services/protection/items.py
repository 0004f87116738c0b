"""Protection: which databases of an instance are backed up, under which policy and model.

As in the support matrix, the protected item is a database; the WAL (log) chain belongs to
the instance. All protected databases of an instance share one policy, because PostgreSQL's
base backups and WAL are per instance: a policy with log backups means the FULL recovery
model (WAL archived into the vault: log backups, point-in-time restore), one without means
SIMPLE (fulls and differentials only). Bulk-logged has no PostgreSQL counterpart (see
engines/postgres/discover.py).

Auto-protection protects every database of an instance, including ones created later (they
are picked up by discovery). Stopping protection keeps the points ("retain data") or deletes
those only the stopped databases use ("delete data"); protecting again resumes.
"""

from __future__ import annotations

from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import archiving, discover, status
from dbsafe.policy.model import Policy
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory import limits
from dbsafe.services.inventory.policies import (
    edit_policy,
    get_policy,
    refuse_shorter_retention,
    show_policy,
)
from dbsafe.services.inventory.servers import get_server, open_instance
from dbsafe.services.lifecycle.expiry import apply_retention
from dbsafe.services.lifecycle.prune import delete_points
from dbsafe.services.protection import replica_sets as replicasets
from dbsafe.services.protection.archive_setup import archive_command, configure_archiving
from dbsafe.services.protection.discovery import protectability, protectable_names

MODELS = ("FULL", "SIMPLE")
ACTIVE_STATES = ("protected", "inconsistent-policy")


def resolve(vault: Vault, policy: str | None, recovery_model: str | None) -> tuple[str | None, str]:
    """(policy name, recovery model) for a protect request.

    No policy: the shipped "default" policy (daily full, hourly logs) for the FULL model,
    none (on-demand backups only) for SIMPLE.
    """

    model = recovery_model.upper() if recovery_model else None
    if model is not None and model not in MODELS:
        raise ValueError(f"recovery model {recovery_model!r} is not one of {MODELS}")
    if policy is None and model == "SIMPLE":
        return None, "SIMPLE"
    chosen = get_policy(vault, policy or "default")
    implied = chosen.recovery_model
    if model is not None and model != implied:
        raise DbsafeError("protect.model_conflicts_policy", policy=chosen.name, implied=implied,
                          logs=f"every {chosen.log_every} min" if chosen.log_every else "none",
                          model=model)
    return chosen.name, implied


def protect(vault: Vault, name: str, databases: list[str] | None, recovery_model: str | None,
            command: str | None, change_config: bool = True, restart: bool = False,
            policy: str | None = None, auto: bool = False) -> dict:
    """Protect ``databases`` (None: all) of ``name`` with ``policy``.

    ``command`` is the agent's archive_command (FULL only). With ``change_config`` false, or
    when the connected role may not ALTER SYSTEM, the result carries the lines to add.
    ``auto`` also protects every database created later (at the next discovery).
    """

    policy, model = resolve(vault, policy, recovery_model)
    server = get_server(vault, name)
    replicasets.refuse_node_alone(server, "protect")
    if server["kind"] == "replica-set":
        replicasets.look(vault, name)  # its entry now points at the primary
        server = get_server(vault, name)
    with open_instance(server) as conn:
        if status.is_in_recovery(conn):
            # a standby protected on its own is the seed's "two nodes backed up
            # individually": its primary must be protected with it, as one replica set
            raise DbsafeError("protect.standby_alone", name=name)
        dbs = discover.databases(conn, Path(server["pgdata"]))
    names = [d["name"] for d in dbs]
    chosen = (protectable_names(dbs) if databases is None
              else list(dict.fromkeys(databases)))
    by_name = {d["name"]: d for d in dbs}
    for db in chosen:
        if db not in names:
            raise DbsafeError("protect.unknown_database", name=name, database=db,
                              valid=", ".join(names))
        ok, reason = protectability(by_name[db])
        if not ok:
            raise DbsafeError("protect.not_protectable", name=name, database=db,
                              reason=reason)
    items = vault.catalog.list_items(server["instance_id"])
    others = {i["policy"] for i in items
              if i["state"] in ACTIVE_STATES and i["name"] not in chosen}
    if others - {policy}:
        raise DbsafeError("protect.policy_mismatch", name=name, current=sorted(
            p or "none" for p in others - {policy})[0], wanted=policy or "none")
    _refuse_shorter_policy(vault, name, [i for i in items if i["name"] in chosen], policy)
    known = {i["name"] for i in items if i["state"] in ACTIVE_STATES}
    warnings = limits.check_protect(vault, server, [n for n in chosen if n not in known], auto)
    result = apply_model(vault, server, model, command, change_config, restart)
    oids = {d["name"]: d["oid"] for d in dbs}
    vault.catalog.protect_items(server["instance_id"], [(n, oids[n]) for n in chosen], policy)
    if auto:
        vault.catalog.update_instance(server["instance_id"], auto_protect_policy=policy or "")
    result.update({"databases": chosen, "policy": policy, "auto_protect": auto,
                   "warnings": warnings})
    return result


def _refuse_shorter_policy(vault: Vault, name: str, items: list[dict],
                           policy: str | None) -> None:
    """An immutable vault refuses to move items (any state) to a policy that keeps points
    shorter than theirs (``immutability.retention_shortened``)."""

    # no policy (SIMPLE, on-demand backups): no retention tier at all
    new = get_policy(vault, policy) if policy else Policy("none", keep_daily=None,
                                                           keep_log=None)
    for old in sorted({i["policy"] for i in items if i["policy"] and i["policy"] != policy}):
        refuse_shorter_retention(vault, get_policy(vault, old), new,
                                 f"moving {name}'s databases from policy {old!r} to "
                                 f"{policy or 'none'!r}")


def apply_model(vault: Vault, server: dict, model: str, command: str | None,
                change_config: bool = True, restart: bool = False) -> dict:
    """Make the server's archiving match ``model`` (a replica set: every node's, with
    archive_mode=always so that a standby archives too); remember a model change (the next
    differential or log backup becomes a full: the chain restarts)."""
    if server.get("kind") == "replica-set":
        # the nodes of this host; those of other hosts are set up by their agents
        # (services/fleet/dispatch.py queues that for them)
        nodes = [get_server(vault, n["server"]) for n in vault.catalog.list_nodes(server["name"])]
        done = [configure_archiving(vault, node, model, command, change_config, restart,
                                    "always") for node in nodes if vault.is_here(node)]
        result = {"server": server["name"], "recovery_model": model,
                  "archiving_active": all(d["archiving_active"] for d in done),
                  "archive_command": command,
                  "restart_needed": any(d["restart_needed"] for d in done),
                  "restarted": any(d["restarted"] for d in done),
                  "config_lines": next((d["config_lines"] for d in done if d["config_lines"]),
                                       []),
                  "nodes": done}
    else:
        result = configure_archiving(vault, server, model, command, change_config, restart)
    fields: dict = {"recovery_model": model}
    if server["recovery_model"] and server["recovery_model"] != model:
        fields["needs_full"] = (f"the recovery model changed from {server['recovery_model']} "
                                f"to {model}")
    vault.catalog.update_instance(server["instance_id"], **fields)
    return result


def unprotect(vault: Vault, name: str, databases: list[str] | None, retain: bool) -> dict:
    """Stop protecting ``databases`` (None: all) of ``name``.

    Retain: the items stay, state "stopped", with every point kept and never pruned.
    Delete: the items go, with the points no still-protected database shares (a point is
    an instance backup: it is deleted only when all the databases it holds are unprotected),
    soft-deleted when the vault's soft delete is on (``purge_after`` says until when).
    When nothing of the instance stays protected, dbsafe's WAL archiving is turned off.
    """
    server = get_server(vault, name)
    items = {i["name"]: i for i in vault.catalog.list_items(server["instance_id"])}
    chosen = list(items) if databases is None else databases
    for db in chosen:
        if db not in items:
            raise DbsafeError("protect.not_protected", name=name, database=db)
    deleted: dict = {"deleted": [], "soft": False, "purge_after": None}
    if retain:
        for db in chosen:
            vault.catalog.set_item(server["instance_id"], db, state="stopped",
                                   state_reason="protection stopped, data retained")
    else:
        # Points first (refused, with nothing changed, in an immutable vault before their
        # retention ends: the items still tell which policy retains them), items after.
        deleted = _delete_unshared_points(vault, server, set(items) - set(chosen))
        vault.catalog.remove_items(server["instance_id"], chosen)
    remaining = vault.catalog.list_protected(server["instance_id"])
    archiving_off = restart_needed = False
    if not remaining:
        vault.catalog.update_instance(server["instance_id"], auto_protect_policy=None)
        if server["recovery_model"] == "FULL":
            members = ([get_server(vault, n["server"])
                        for n in vault.catalog.list_nodes(name)]
                       if server["kind"] == "replica-set" else [server])
            for member in members:
                with open_instance(member) as conn:
                    if archiving.read_settings(conn).owner == "dbsafe":
                        # archive_mode stays on until a restart: PostgreSQL keeps its WAL
                        restart_needed |= archiving.disable(conn)
                        archiving_off = True
    return {"server": name, "databases": chosen, "data": "retained" if retain else "deleted",
            "points_deleted": [p["point_id"] for p in deleted["deleted"]],
            "soft_deleted": deleted["soft"], "purge_after": deleted["purge_after"],
            "still_protected": remaining,
            "archiving_turned_off": archiving_off, "restart_needed": restart_needed}


def _delete_unshared_points(vault: Vault, server: dict, kept: set[str]) -> dict:
    """Delete the live points of the instance none of whose databases is in ``kept`` (the
    items that stay, any state); log points (they hold no database) go with the last item.
    Soft-deleted as the vault's setting says; returns ``prune.delete_points``' result."""
    import json


    doomed = []
    for point in vault.catalog.list_points(server["instance_id"]):
        held = json.loads(point["databases"]) if point.get("databases") else None
        if point["deleted_at"] is None and (
                not kept or (held is not None and not set(held) & kept)):
            doomed.append(point["point_id"])
    return delete_points(vault, doomed, reason="protection stopped with delete data")


def reconfigure(vault: Vault, policy: str) -> list[dict]:
    """Apply a changed policy to every instance using it (its recovery model); an instance
    whose reconfiguration fails gets its items marked "inconsistent-policy" with the fix."""

    model = get_policy(vault, policy).recovery_model
    done = []
    by_server: dict[str, list[dict]] = {}
    for item in vault.catalog.list_items():
        if item["policy"] == policy and item["state"] in ACTIVE_STATES:
            by_server.setdefault(item["server"], []).append(item)
    for name, items in by_server.items():
        try:
            server = get_server(vault, name)
            command = archive_command(vault) if model == "FULL" else None
            result = apply_model(vault, server, model, command)
            state, reason = "protected", None
            if result["restart_needed"] or result["config_lines"]:
                state = "inconsistent-policy"
                reason = ("archiving needs a restart" if result["restart_needed"] else
                          "dbsafe may not change the server's settings")
        except DbsafeError as exc:
            state, reason, result = "inconsistent-policy", exc.message, {"error": exc.as_dict()}
        fix = f"dbsafe protect {name} --all --policy {policy} --restart"
        for item in items:
            vault.catalog.set_item(item["instance_id"], item["name"], state=state,
                                   state_reason=f"{reason}; fix: `{fix}`" if reason else None)
        done.append({"server": name, "state": state, "reason": reason,
                     "fix": fix if reason else None, **result})
    return done



def change_policy(vault: Vault, name: str, **changes: object) -> dict:
    """Edit a policy and apply it at once: every instance using it is reconfigured (its
    recovery model), and its retention runs on the existing points."""
    from datetime import UTC, datetime


    edit_policy(vault, name, **changes)
    servers = reconfigure(vault, name)
    pruned = []
    for entry in servers:
        if entry["state"] == "protected":
            pruned.append(apply_retention(vault, entry["server"], datetime.now(UTC)))
    return {**show_policy(vault, name), "reconfigured": servers, "retention": pruned}


# for the portal: auto-protection off --------------------------------------------------
def auto_protect_off(vault: Vault, name: str) -> dict:
    """Stop protecting databases created later on ``name``; what is protected stays so."""
    server = get_server(vault, name)
    vault.catalog.update_instance(server["instance_id"], auto_protect_policy=None)
    return {"server": name, "auto_protect": False}
