"""Discovery: the PostgreSQL instances of this host, and the databases of a registered
server reconciled with its protected items.

A protected item is a database known by name *and* oid (the oid survives a rename, a new
database of the same name gets a new one). At every discovery (on demand, and from the
scheduler every 8 h by default):

- a database created since is protected with the instance's auto-protection policy, if it
  has one, within the limits (services/inventory/limits.py); beyond them it is reported, not
  protected;
- a protected database dropped on the server becomes "source-gone" (with the reason and
  the time); backups leave it out and never retry it; its points stay;
- a renamed database (same oid, new name): the old item becomes "source-gone" with reason
  "renamed to X" and keeps its points; the new name is a new item (auto-protected, or
  reported as new and unprotected);
- a database recreated under a gone item's name (new oid) replaces that row when
  auto-protection takes it; otherwise the gone row stays and the database is reported new.

docs/discovery-and-limits.md is the user's version of this.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import discover, instances
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory import limits
from dbsafe.services.inventory.servers import get_server, open_instance
from dbsafe.services.protection import replica_sets as replicasets

ACTIVE = ("protected", "inconsistent-policy")
"""Item states a backup covers (and the limits count)."""

MAX_NAMES_IN_WARNING = 20


def local_instances(vault: Vault | None) -> list[dict]:
    """Instances on this host (engines/postgres/instances.py), with the registered data
    directories of ``vault`` among them; each row's ``server`` is its registered name."""
    registered = {}
    if vault is not None:
        for s in vault.catalog.list_servers():
            if s["kind"] == "server":  # a replica set's entry mirrors its primary's
                registered[str(Path(s["pgdata"]).resolve())] = s["name"]
    rows = instances.find_instances([Path(p) for p in registered])
    for row in rows:
        row["server"] = registered.get(row["pgdata"])
    return rows


def protectability(db: dict) -> tuple[bool, str | None]:
    """Whether a discovered database can be a protected item, and why not.

    Left out: template databases (copy sources for CREATE DATABASE; template0 is never
    even listed), databases that do not accept connections (nothing can check or restore
    them into a live server), and invalid ones (a DROP DATABASE interrupted half-way:
    PostgreSQL itself refuses to connect to them).
    """
    if db.get("invalid"):
        return False, ("invalid: a DROP DATABASE was interrupted half-way; finish it "
                       f"(DROP DATABASE {db['name']})")
    if db.get("is_template"):
        return False, ("template database: a copy source for CREATE DATABASE, not "
                       "application data (ALTER DATABASE ... IS_TEMPLATE false to protect it)")
    if not db.get("allow_connections", True):
        return False, ("does not allow connections (ALTER DATABASE ... ALLOW_CONNECTIONS "
                       "true to protect it)")
    return True, None


def protectable_names(dbs: list[dict]) -> list[str]:
    """The names ``protect --all`` / ``--auto`` should take."""
    return [d["name"] for d in dbs if protectability(d)[0]]


def refresh(vault: Vault, name: str, now: datetime | None = None) -> dict:
    """Read the databases of server ``name`` again and reconcile its protected items.

    Returns {"server", "recovery_model", "data_checksums", "discovered", "databases",
    "new", "gone", "renamed", "auto_protected", "warnings"} (see ``reconcile``).
    """
    server = get_server(vault, name)
    if server["kind"] == "replica-set":  # read the databases on its primary of now

        replicasets.look(vault, name)
        server = get_server(vault, name)
    with open_instance(server) as conn:
        facts = discover.instance_facts(conn)
        dbs = discover.databases(conn, Path(server["pgdata"]))
    fields = {"data_checksums": int(facts["data_checksums"]),
              "wal_segment_size": facts["wal_segment_size"]}
    if not vault.catalog.list_protected(server["instance_id"]):
        # once protected, the model is the policy's (dbsafe sets archiving to match it)
        fields["recovery_model"] = facts["recovery_model"]
    vault.catalog.update_instance(server["instance_id"], **fields)
    result = reconcile(vault, server, dbs, now)
    for db in result["databases"]:
        db["recovery_model"] = facts["recovery_model"]
    return {"server": name, "recovery_model": facts["recovery_model"],
            "data_checksums": facts["data_checksums"], **result}


def reconcile(vault: Vault, server: dict, dbs: list[dict],
              now: datetime | None = None) -> dict:
    """Reconcile the items of ``server`` with ``dbs`` (engines/postgres/discover.databases,
    just read), record ``dbs`` as the instance's databases, and describe them."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    found = record(vault, server, dbs, stamp)
    items = {i["name"]: i for i in vault.catalog.list_items(server["instance_id"])}
    return {"discovered": stamp,
            "databases": [_describe(d, items.get(d["name"])) for d in dbs], **found}


def record(vault: Vault, server: dict, dbs: list[dict], stamp: str | None = None) -> dict:
    """``reconcile`` without the description: what a backup that has just read the
    databases calls (it needs the items right, not described; on an agent every catalog
    read is a call to the control plane). Returns the databases new, gone and renamed,
    those auto-protected, and the warnings."""
    stamp = stamp or datetime.now(UTC).isoformat(timespec="seconds")
    iid = server["instance_id"]
    catalog = vault.catalog
    previous = {d["oid"]: d for d in catalog.list_databases(iid)}
    by_name = {d["name"]: d for d in dbs}
    by_oid = {d["oid"]: d for d in dbs}
    renamed = {d["name"]: previous[d["oid"]]["name"] for d in dbs
               if d["oid"] in previous and previous[d["oid"]]["name"] != d["name"]}
    gone = []
    items = catalog.list_items(iid)
    written = False  # whether ``items`` is still what the catalog holds
    for item in items:
        if item["state"] not in ACTIVE:
            continue
        db = by_name.get(item["name"])
        if db is not None and item["oid"] in (None, db["oid"]):
            if item["oid"] is None:  # protected before oids were kept: adopt it
                catalog.set_item(iid, item["name"], oid=db["oid"])
                written = True
            continue
        moved = by_oid.get(item["oid"])
        if moved is not None:
            renamed[moved["name"]] = item["name"]
            reason = f"renamed to {moved['name']} (noticed {stamp})"
        else:
            reason = f"dropped on the server (noticed {stamp})"
        catalog.set_item(iid, item["name"], state="source-gone", state_reason=reason)
        written = True
        gone.append(item["name"])
    new = sorted({d["name"] for d in dbs if d["oid"] not in previous} | set(renamed))
    catalog.replace_databases(iid, dbs)
    catalog.update_instance(iid, discovered=stamp)
    auto_protected, warnings = _auto_protect(vault, server, dbs, None if written else items)
    warnings += _large_items(vault, server, by_name,
                             None if written or auto_protected else items)
    return {"new": new, "gone": sorted(gone),
            "renamed": [{"from": old, "to": to} for to, old in sorted(renamed.items())],
            "auto_protected": auto_protected, "warnings": warnings}


def _auto_protect(vault: Vault, server: dict, dbs: list[dict],
                  items_read: list[dict] | None = None) -> tuple[list[str], list[str]]:
    """Protect every protectable database without an item (or whose item is gone) with the
    instance's auto-protection policy, as far as the limits allow (``limits.room``: the
    part of ``limits.check_protect`` that auto-protection, bound by no per-request limit,
    needs; the size warnings come from ``_large_items``). ``items_read``: the instance's
    items, when the caller has them as the catalog holds them now (else they are read)."""
    iid = server["instance_id"]
    policy = server["auto_protect_policy"] if "auto_protect_policy" in server else \
        (vault.catalog.get_instance(iid) or {}).get("auto_protect_policy")
    if not policy:
        return [], []
    items = {i["name"]: i for i in (items_read if items_read is not None
                                    else vault.catalog.list_items(iid))}
    wanted = [d["name"] for d in dbs if protectability(d)[0]
              and (d["name"] not in items or items[d["name"]]["state"] == "source-gone")]
    room = limits.room(vault, server)
    take, left = wanted[:room], wanted[room:]
    warnings = []
    if left:
        warnings.append(DbsafeError(
            "limit.auto_protect_skipped", count=len(left), name=server["name"],
            names=_some(left),
            reason=f"the limits are {limits.max_items_per_server()} protected databases per "
                   f"server and {limits.max_items_per_vault()} per vault").message)
    if take:
        by_name = {d["name"]: d for d in dbs}
        # a gone item's row is replaced: a new item, with its own since/warning
        vault.catalog.remove_items(iid, [n for n in take if n in items])
        vault.catalog.protect_items(iid, [(n, by_name[n]["oid"]) for n in take], policy)
    return take, warnings


def _large_items(vault: Vault, server: dict, by_name: dict[str, dict],
                 items_read: list[dict] | None = None) -> list[str]:
    """Put the large-database warning on active items above the size limit that have no
    warning yet (just auto-protected, or grown since); return the warnings set.
    ``items_read`` as for ``_auto_protect``."""
    found = []
    for item in (items_read if items_read is not None
                 else vault.catalog.list_items(server["instance_id"])):
        db = by_name.get(item["name"])
        if (item["state"] in ACTIVE and item["warning"] is None and db is not None
                and db["size_bytes"] > limits.MAX_DATABASE_BYTES):
            message = limits.large_database_warning(db["name"], db["size_bytes"])
            vault.catalog.set_item(server["instance_id"], item["name"], warning=message)
            found.append(message)
    return found


def _describe(db: dict, item: dict | None) -> dict:
    ok, reason = protectability(db)
    if item is not None and item["oid"] not in (None, db["oid"]):
        item = None  # the row is a gone database of the same name
    state = item["state"] if item else None
    return {**db, "protectable": ok, "reason": reason, "protected": state in ACTIVE,
            "policy": item["policy"] if item else None, "state": state,
            "warning": item["warning"] if item else None}


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_IN_WARNING])
    more = len(names) - MAX_NAMES_IN_WARNING
    return f"{shown} and {more} more" if more > 0 else shown


# for the portal: a server's databases read live, without reconciling ----------------------
def live_databases(vault: Vault, name: str) -> list[dict]:
    """The databases of server ``name`` as they are now, each with ``protectable`` and the
    ``reason`` when not, and its item's ``state`` and ``policy``; nothing is written (the
    portal's server page reads this on every view; ``refresh`` reconciles)."""
    server = get_server(vault, name)
    with open_instance(server) as conn:
        dbs = discover.databases(conn, Path(server["pgdata"]))
    items = {i["name"]: i for i in vault.catalog.list_items(server["instance_id"])}
    return [_describe(d, items.get(d["name"])) for d in dbs]
