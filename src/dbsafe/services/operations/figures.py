"""What ``/metrics`` reports of the vault (docs/fleet.md, *Metrics*): jobs by type and
state, per protected database its RPO now, per server its log chain and archiving lag.

Read at scrape time from the catalog, at a bounded cost: one query for each of the job
counts, one for the items, one for the servers; then per server its lineage points and its
archived WAL rows, read once and shared by all its databases (never a query per
database). Nothing opens a connection to a cluster; the repository is read only for the
timeline history files (small, one per promotion) and for the one reconciliation of points
a vault handle makes at its first listing (the WAL is not reconciled here: the other
readers do it). The RPO is the health check's own reading
(restorable.newest_instants, what ``backup_overdue`` holds to the policy), not a second
way of computing it.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.lifecycle.points import lineage_points
from dbsafe.services.logchain.chain import archived_wal, log_chain
from dbsafe.services.operations.monitor import ACTIVE_ITEMS
from dbsafe.services.operations.restorable import newest_instants

log = logging.getLogger("dbsafe.api")
JOB_WINDOW = timedelta(hours=24)


def _by_type_state(rows: list[dict]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["type"], r["state"])
        counts[key] = counts.get(key, 0) + r["n"]
    return counts


def _seconds(instant: str | None, now: datetime) -> float:
    """The age of ``instant`` in seconds; +Inf without one (nothing restorable: every
    change is at risk, and an alert rule ``> N`` fires)."""
    if instant is None:
        return math.inf
    return max(0.0, (now - datetime.fromisoformat(instant)).total_seconds())


def _server_figures(vault: Vault, server: dict, databases: list[str],
                    now: datetime) -> tuple[dict, list[dict]]:
    """One server's row and its databases' rows. A replica set's chain is the set's
    (its entry), not each node's, as the health checks read it."""
    lineage = lineage_points(vault, server)
    with_chain = (server["recovery_model"] or "SIMPLE") == "FULL" \
        and not server["replica_set"]
    wal_read = archived_wal(vault, server, reconcile=False) if with_chain else None
    row = {"server": server["name"], "newest_wal": None, "gaps": None,
           "archive_lag_bytes": server.get("archive_lag_bytes")}
    if wal_read is not None:
        chain = log_chain(vault, server, lineage, wal_read)
        row["newest_wal"] = max((r.end_time for r in chain.runs if r.end_time),
                                key=datetime.fromisoformat, default=None)
        row["gaps"] = len(chain.gaps)
    newest = newest_instants(vault, server, databases, lineage=lineage,
                             wal_read=wal_read) if databases else {}
    return row, [{"server": server["name"], "database": db, "newest_restorable": instant,
                  "rpo_seconds": _seconds(instant, now)} for db, instant in newest.items()]


def vault_figures(vault: Vault, now: datetime | None = None) -> dict:
    """``jobs_24h`` and ``jobs_active`` ({(type, state): count}: started in the last 24 h;
    queued, running or cancelling now), ``databases`` (server, database, newest restorable
    instant, RPO in seconds), ``servers`` (newest archived commit, gaps in the log chain,
    archiving lag as last measured; None where there is none) and ``errors`` (servers
    whose figures could not be read: left out, logged)."""
    now = now or datetime.now(UTC)
    since = (now - JOB_WINDOW).isoformat(timespec="milliseconds")
    held: dict[str, list[str]] = {}
    for item in vault.catalog.list_items():
        if item["state"] in ACTIVE_ITEMS:
            held.setdefault(item["server"], []).append(item["name"])
    servers, databases, errors = [], [], []
    for server in vault.catalog.list_servers():
        try:
            row, rows = _server_figures(vault, server, held.get(server["name"], []), now)
        except Exception:  # noqa: BLE001 - one server's figures must not end the scrape
            log.exception("could not read the figures of %s for /metrics", server["name"])
            errors.append(server["name"])
            continue
        servers.append(row)
        databases += rows
    return {"jobs_24h": _by_type_state(vault.catalog.count_jobs_grouped_since(since)),
            "jobs_active": _by_type_state(vault.catalog.count_live_jobs()),
            "databases": databases, "servers": servers, "errors": errors}
