"""What the portal's dashboard and item lists show: every protected database with its last
backups (of the points that hold it) and its health, and the vault's counts at a glance.

Read from the catalog only (never the repository): the catalog is kept in step with the
vault by every backup, and these pages are asked for often — with 2,000 items a listing
must cost a few index probes per server, not a walk of the vault.

Health of an item says how its backups stand, worst first (docs/portal.md):

- ``critical``: its state is ``source-gone`` or ``inconsistent-policy``, it has no full
  backup yet, or a critical alert about its backups is active (``BACKUP_STATE``: a failed
  backup or a failed verify of a point holding it, its backups overdue, a broken log chain,
  its server or the agent archiving its WAL unreachable, a vanished point);
- ``warning``: such an alert of severity warning is active (archive lag), or the item
  carries a warning (a large database, a read-only one);
- ``stopped``: protection stopped, its data retained;
- ``healthy``: none of these.

Other alerts — a failed restore or drill (a copy elsewhere, a scratch cluster), the vault's
space, a step of ``serve`` such as retention — are shown on the dashboard and in the alerts,
not in the health of databases whose backups they say nothing about.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dbsafe.policy import schedule
from dbsafe.policy.model import Policy
from dbsafe.services.activity import alerts as kinds
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.lifecycle import coverage

log = logging.getLogger("dbsafe.api")
HEALTH = ("critical", "warning", "stopped", "healthy")
BACKUP_TYPES = ("full", "copy-only", "diff", "log")
NEWEST_PAGE = 50
WORST_SHOWN = 20  # the dashboard's "am I protected?" table: the databases worst off


def _newest(vault: Vault, instance_id: int,
            names: set[str]) -> dict[str, dict[str, dict | None]]:
    """database -> backup type -> the newest live point of that type that holds it
    (services/lifecycle/coverage.py: a backup taken with --db is not the last backup of the others).
    The newest point of a type is read alone (it holds them all when it is a backup of the
    instance), then pages of older ones until every database has its own."""
    found: dict[str, dict[str, dict | None]] = {n: dict.fromkeys(BACKUP_TYPES) for n in names}
    for t in BACKUP_TYPES:
        left, offset, limit = set(names), 0, 1
        while left:
            page = vault.catalog.newest_points(instance_id, t, offset, limit)
            for point in page:
                have = coverage.held(point)
                for name in left if have is None else left & have:
                    found[name][t] = point
                left = set() if have is None else left - have
            if len(page) < limit:
                break
            offset, limit = offset + limit, NEWEST_PAGE
    return found


# The alerts about an item's backups (the others say nothing of them), by how they name
# the items they concern: every item of the alert's server; the databases named in the
# details (the failed job's "items", the vanished point's "databases"; none named: every
# item of the server); the alert's own item; the servers a vault-wide alert lists.
OF_THE_SERVER = {kinds.CHAIN_BROKEN, kinds.ARCHIVE_LAG, kinds.SERVER_UNREACHABLE}
OF_NAMED_DATABASES = {kinds.BACKUP_FAILED: "items", kinds.VERIFY_FAILED: "items",
                      kinds.MANIFEST_MISSING: "databases"}
OF_THE_ITEM = {kinds.BACKUP_OVERDUE}
OF_LISTED_SERVERS = {kinds.AGENT_UNREACHABLE: "servers"}
BACKUP_STATE = OF_THE_SERVER | set(OF_NAMED_DATABASES) | OF_THE_ITEM | set(OF_LISTED_SERVERS)


def _backup_alerts(vault: Vault) -> dict[str | None, list[dict]]:
    """Active alerts about backups, by server (details parsed)."""
    found: dict[str | None, list[dict]] = {}
    for a in vault.catalog.list_alerts("active"):
        if a["kind"] in BACKUP_STATE:
            details = json.loads(a["details"]) if a.get("details") else {}
            found.setdefault(a["server"], []).append({**a, "details": details})
    return found


def _concerning(item: dict, by_server: dict[str | None, list[dict]]) -> list[dict]:
    """The alerts about this item's backups."""
    mine = [a for a in by_server.get(None, ()) if a["kind"] in OF_LISTED_SERVERS
            and item["server"] in (a["details"].get(OF_LISTED_SERVERS[a["kind"]]) or ())]
    for a in by_server.get(item["server"], ()):
        if a["kind"] in OF_NAMED_DATABASES:
            named = a["details"].get(OF_NAMED_DATABASES[a["kind"]])
            if named is None or item["name"] in named:
                mine.append(a)
        elif a["kind"] in OF_THE_ITEM:
            if a["item"] == item["name"]:
                mine.append(a)
        elif a["kind"] in OF_THE_SERVER:
            mine.append(a)
    return mine


def _health(item: dict, newest: dict[str, dict | None], alerts: list[dict]) -> tuple[str, list]:
    reasons: list[str] = []
    severities = {a["severity"] for a in alerts}
    if item["state"] in ("source-gone", "inconsistent-policy"):
        reasons.append(item["state_reason"] or item["state"])
    if newest["full"] is None and item["state"] != "stopped":
        reasons.append("no full backup yet")
    reasons += [a["message"] for a in alerts if a["severity"] == "critical"]
    if reasons:
        return "critical", reasons
    reasons = [a["message"] for a in alerts if a["severity"] == "warning"]
    if item.get("warning"):
        reasons.append(item["warning"])
    if reasons or "warning" in severities:
        return "warning", reasons
    if item["state"] == "stopped":
        return "stopped", ["protection stopped, data retained"]
    return "healthy", []


def _time(point: dict | None) -> str | None:
    return point["end_time"] if point else None


def _next_backups(vault: Vault, now: datetime) -> dict[str, tuple[str, str]]:
    """policy name -> (kind, instant) of its next scheduled backup of any kind."""
    found: dict[str, tuple[str, str]] = {}
    for row in vault.catalog.list_policies():
        policy = Policy.from_dict(json.loads(row["body"]))
        runs = [(t, kind) for kind in ("full", "diff", "log")
                if (t := schedule.next_slot(policy, kind, now)) is not None]
        if runs:
            when, kind = min(runs)
            found[row["name"]] = (kind, when.isoformat())
    return found


def items(vault: Vault, now: datetime | None = None) -> list[dict]:
    """Every protected item (all states) with its last backups and health, by server and
    name; the last instant it can be restored to (its newest backup's end, or its newest
    log backup's), the next backup its policy schedules, and whether its log chain is
    broken."""
    now = now or datetime.now(UTC)
    rows = vault.catalog.list_items()
    names: dict[int, set[str]] = {}
    for item in rows:
        names.setdefault(item["instance_id"], set()).add(item["name"])
    newest = {iid: _newest(vault, iid, dbs) for iid, dbs in names.items()}
    alerts = _backup_alerts(vault)
    scheduled = _next_backups(vault, now)
    result = []
    for item in rows:
        per_type = newest[item["instance_id"]][item["name"]]
        concerning = _concerning(item, alerts)
        health, reasons = _health(item, per_type, concerning)
        last = max((p for t, p in per_type.items() if t != "log" and p),
                   key=lambda p: p["end_time"], default=None)
        restorable = max((p["end_time"] for p in (last, per_type["log"]) if p), default=None)
        following = scheduled.get(item["policy"]) if item["state"] == "protected" else None
        result.append({
            "server": item["server"], "database": item["name"], "state": item["state"],
            "policy": item["policy"], "health": health, "reasons": reasons,
            "last_backup": _time(last), "last_backup_type": last["type"] if last else None,
            "last_full": _time(per_type["full"]), "last_diff": _time(per_type["diff"]),
            "last_log": _time(per_type["log"]), "restorable_until": restorable,
            "next_backup": following[1] if following else None,
            "next_backup_type": following[0] if following else None,
            "chain_broken": any(a["kind"] == kinds.CHAIN_BROKEN for a in concerning)})
    return result


def worst_first(rows: list[dict], now: datetime | None = None) -> list[dict]:
    """Items by health (critical first), then by how long ago their last restorable
    instant was (never first), with ``rpo_seconds``: that age now."""
    now = now or datetime.now(UTC)

    def rpo(row: dict) -> int | None:
        until = row["restorable_until"]
        return None if until is None else \
            max(0, int((now - datetime.fromisoformat(until)).total_seconds()))

    ranked = [{**r, "rpo_seconds": rpo(r)} for r in rows if r["state"] != "stopped"]
    return sorted(ranked, key=lambda r: (HEALTH.index(r["health"]), r["rpo_seconds"] is not None,
                                         -(r["rpo_seconds"] or 0), r["server"], r["database"]))


@dataclass(frozen=True)
class Snapshot:
    """The items and the dashboard as of ``taken`` (time.monotonic())."""

    items: list[dict]
    board: dict
    taken: float


class OverviewCache:
    """The items and the dashboard for pages asked many times a second (a portal left open
    by many people, scripts polling the item list): each request reads a snapshot, which a
    background thread renews once it is ``ttl`` seconds old, on its own catalog connection
    (so a long listing never holds up the requests being answered). After a change made
    through this process (the API's gate calls ``invalidate``) the next request computes a
    new snapshot first, so what a user just did shows at once; changes made elsewhere (the
    scheduler's runs, the CLI, another host) show within ``ttl`` seconds."""

    def __init__(self, open_vault: Callable[[], Vault], ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._open_vault = open_vault
        self._vault: Vault | None = None
        self._snapshot: Snapshot | None = None
        self._dirty = False
        self._renewing = False
        self._lock = threading.Lock()      # guards _renewing
        self._compute = threading.Lock()   # one computation at a time

    def get(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None or self._dirty:
            with self._compute:
                if self._snapshot is None or self._dirty:
                    self._dirty = False
                    self._snapshot = self._take()
                return self._snapshot
        if time.monotonic() - snapshot.taken > self.ttl:
            with self._lock:
                start, self._renewing = not self._renewing, True
            if start:
                threading.Thread(target=self._renew, name="overview", daemon=True).start()
        return snapshot

    def ready(self) -> Snapshot | None:
        """The snapshot when ``get`` would not compute one first (an ``async`` endpoint then
        answers without a thread), renewing it in the background when due."""
        snapshot = self._snapshot
        if snapshot is None or self._dirty:
            return None
        return self.get()

    def invalidate(self) -> None:
        self._dirty = True

    def _take(self) -> Snapshot:
        if self._vault is None:
            self._vault = self._open_vault()
        rows = items(self._vault)
        return Snapshot(rows, dashboard(self._vault, rows), time.monotonic())

    def _renew(self) -> None:
        try:
            with self._compute:
                self._snapshot = self._take()
        except Exception:  # noqa: BLE001 - the old snapshot stays; the next request retries
            log.exception("could not renew the overview")
        finally:
            self._renewing = False


def page(rows: list[dict], *, search: str | None = None, health: str | None = None,
         server: str | None = None, offset: int = 0, limit: int = 100) -> dict:
    """A page of ``items()``, filtered: ``{"total", "offset", "limit", "items"}``."""
    if search:
        needle = search.lower()
        rows = [r for r in rows if needle in r["database"].lower()
                or needle in r["server"].lower()]
    if health:
        rows = [r for r in rows if r["health"] == health]
    if server:
        rows = [r for r in rows if r["server"] == server]
    return {"total": len(rows), "offset": offset, "limit": limit,
            "items": rows[offset:offset + limit]}


def dashboard(vault: Vault, rows: list[dict] | None = None,
              now: datetime | None = None) -> dict:
    """Counts by health, jobs of the last 24 hours by state, the newest failed jobs, active
    alerts by severity, and what the vault holds."""
    rows = items(vault) if rows is None else rows
    now = now or datetime.now(UTC)
    by_health = dict.fromkeys(HEALTH, 0)
    for r in rows:
        by_health[r["health"]] += 1
    since = (now - timedelta(hours=24)).isoformat(timespec="milliseconds")
    alerts = vault.catalog.list_alerts("active")
    by_severity: dict[str, int] = {}
    for a in alerts:
        by_severity[a["severity"]] = by_severity.get(a["severity"], 0) + 1
    failed = vault.catalog.list_jobs(10, state="failed")
    return {
        "items": len(rows), "servers": len(vault.catalog.list_servers()),
        "health": by_health, "worst": worst_first(rows, now)[:WORST_SHOWN],
        "jobs_24h": vault.catalog.count_jobs_since(since),
        "failed_jobs": [{k: j[k] for k in ("id", "type", "server", "start_time",
                                           "error_code", "error_message")} for j in failed],
        "alerts": {"active": len(alerts), "by_severity": by_severity},
        "vault": {"stored_bytes": vault.catalog.stored_bytes(),
                  "storage": vault.repo.storage.describe(),
                  "encrypted": bool(vault.repo.encrypted)},
    }

