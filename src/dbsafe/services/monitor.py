"""Health checks the scheduler runs every minute or so; each raises its alert while its
condition holds and resolves it when the condition clears (services/alerts.py keeps a
repeat from being sent again).

Checks: the vault's free space; the agent (when a server uses the FULL model, the agent
archives its WAL); per server, that PostgreSQL answers; and for FULL servers the archiving
lag (WAL written but not in the vault yet) and the log chain (a gap with no base backup
after it leaves the chain broken until the next full).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dbsafe.agent.daemon import agent_paths, ping, running_pid
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import wal
from dbsafe.services import alerts
from dbsafe.services.chain import BASE_TYPES, log_chain
from dbsafe.services.jobs import utcnow
from dbsafe.services.points import lineage_points
from dbsafe.services.servers import open_instance
from dbsafe.services.vault import Vault

GiB = 1 << 30
MiB = 1 << 20
LAG_THRESHOLD_BYTES = 1 * GiB
SPACE_MIN_FREE_PCT = 10.0
SPACE_MIN_FREE_BYTES = 1 * GiB


@dataclass
class Finding:
    """The outcome of one check; ``ok`` False means its alert is raised."""

    check: str
    server: str | None
    ok: bool
    message: str
    details: dict = field(default_factory=dict)
    alert_id: int | None = None

    def as_dict(self) -> dict:
        return {"check": self.check, "server": self.server, "ok": self.ok,
                "message": self.message, "details": self.details, "alert_id": self.alert_id}


def check_health(vault: Vault, now: str | None = None, *,
                 lag_threshold_bytes: int = LAG_THRESHOLD_BYTES,
                 space_min_free_pct: float = SPACE_MIN_FREE_PCT,
                 space_min_free_bytes: int = SPACE_MIN_FREE_BYTES) -> list[dict]:
    """Run every check once, raise or resolve their alerts, return one finding per check."""
    now = now or utcnow()
    _look_at_replica_sets(vault)
    servers = vault.catalog.list_servers()
    # a replica set's chain and archiving are checked once, on the set (its primary)
    full = [s["name"] for s in servers
            if (s["recovery_model"] or "SIMPLE") == "FULL" and not s["replica_set"]]
    checks = [lambda: [vault_space(vault, space_min_free_pct, space_min_free_bytes)],
              lambda: [agent(vault, full)]]
    checks += [lambda s=s: server_checks(vault, s, s["name"] in full, lag_threshold_bytes)
               for s in servers]
    findings: list[Finding] = []
    for check in checks:
        try:
            findings += check()
        except Exception:  # one broken check must not stop the others; its alert stays
            alerts.log.exception("a health check failed")
    for f in findings:
        _settle(vault, f, now)
    return [f.as_dict() for f in findings]


def _look_at_replica_sets(vault: Vault) -> None:
    """Roles first: a set's entry then points at its primary of now (after a failover)."""
    from dbsafe.services import replicasets

    for rs in vault.catalog.list_replica_sets():
        try:
            if vault.catalog.list_nodes(rs["name"]):
                replicasets.look(vault, rs["name"])
        except Exception:
            alerts.log.exception("looking at the nodes of replica set %s failed", rs["name"])


def _settle(vault: Vault, finding: Finding, now: str) -> None:
    if finding.ok:
        alerts.resolve_alerts(vault.catalog, finding.check, server=finding.server, now=now)
    else:
        alert = alerts.raise_alert(vault.catalog, finding.check, alerts.KINDS[finding.check],
                                   finding.message, server=finding.server,
                                   details=finding.details, now=now)
        finding.alert_id = alert["id"]


def _size(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


def vault_space(vault: Vault, min_free_pct: float, min_free_bytes: int) -> Finding:
    """Free space where the repository is: a local folder's file system (an object store
    has no such limit to watch)."""
    root = getattr(vault.repo.storage, "root", None)
    if root is None:
        return Finding(alerts.VAULT_SPACE_LOW, None, True,
                       f"the repository is in {vault.repo.storage.describe()['backend']}: "
                       "no file system to fill", {"path": vault.repo.location})
    st = os.statvfs(root)
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    pct = 100.0 * free / total if total else 0.0
    details = {"path": str(root), "free_bytes": free, "total_bytes": total,
               "free_pct": round(pct, 2), "min_free_pct": min_free_pct,
               "min_free_bytes": min_free_bytes}
    if free < min_free_bytes or pct < min_free_pct:
        return Finding(alerts.VAULT_SPACE_LOW, None, False,
                       f"the vault's file system ({root}) has {_size(free)} free "
                       f"({pct:.1f} %), below the minimum of {_size(min_free_bytes)} and "
                       f"{min_free_pct:g} %: backups and WAL archiving will fail when it is "
                       "full; free space, prune old points or move the vault", details)
    return Finding(alerts.VAULT_SPACE_LOW, None, True,
                   f"{_size(free)} free ({pct:.1f} %)", details)


def agent(vault: Vault, full_servers: list[str]) -> Finding:
    paths = agent_paths(vault.repo.config["vault_id"])
    if not full_servers:
        return Finding(alerts.AGENT_UNREACHABLE, None, True,
                       "no server uses the FULL recovery model: no agent needed")
    status = ping(paths)
    details = {"socket": str(paths.socket), "pid": running_pid(paths),
               "servers": full_servers}
    if status is None:
        return Finding(alerts.AGENT_UNREACHABLE, None, False,
                       f"the dbsafe agent does not answer on {paths.socket}: the WAL of "
                       f"{', '.join(full_servers)} is not archived (PostgreSQL keeps it in "
                       "pg_wal and retries); start it with `dbsafe agent start` and see "
                       f"{paths.log}", details)
    details.update(archived=status.get("archived"), failures=status.get("failures"),
                   last_error=status.get("last_error"))
    return Finding(alerts.AGENT_UNREACHABLE, None, True,
                   f"agent pid {status.get('pid')} answers", details)


def server_checks(vault: Vault, server: dict, full: bool,
                  lag_threshold: int) -> list[Finding]:
    """Reachability of one server; for FULL servers its log chain and archiving lag."""
    name = server["name"]
    why = (f"a node of replica set {server['replica_set']}: checked on the set"
           if server.get("replica_set") else "SIMPLE recovery model")
    findings = [chain_check(vault, server)] if full else [
        Finding(alerts.CHAIN_BROKEN, name, True, f"{why}: no log chain of its own"),
        Finding(alerts.ARCHIVE_LAG, name, True, f"{why}: no archiving of its own")]
    try:
        conn = open_instance(server)
    except DbsafeError as exc:
        findings.append(Finding(alerts.SERVER_UNREACHABLE, name, False,
                                f"{name} is unreachable: {exc.message}",
                                {"code": exc.code, "pgdata": server["pgdata"],
                                 "port": server["port"]}))
        return findings
    with conn:
        findings.append(Finding(alerts.SERVER_UNREACHABLE, name, True, "answers"))
        if full:
            findings.append(lag_check(vault, server, conn, lag_threshold))
    return findings


def chain_check(vault: Vault, server: dict) -> Finding:
    """A gap is healed once a base backup starts after it (restores work again from
    there); an unhealed gap keeps the chain broken."""
    name = server["name"]
    points = lineage_points(vault, server)
    chain = log_chain(vault, server, points)
    bases = [(p["timeline"], wal.parse_lsn(p["start_lsn"])) for p in points
             if p["type"] in BASE_TYPES and p["start_lsn"]]
    open_gaps = [g for g in chain.gaps
                 if not any(b >= (g["timeline"], wal.parse_lsn(g["end_lsn"])) for b in bases)]
    if not open_gaps:
        return Finding(alerts.CHAIN_BROKEN, name, True,
                       f"{len(chain.gaps)} gap(s), all followed by a base backup")
    ranges = "; ".join(f"{g['missing_segments']} segment(s) from {g['first_missing']} "
                       f"(timeline {g['timeline']}, {g['start_time']} to {g['end_time']})"
                       for g in open_gaps)
    return Finding(alerts.CHAIN_BROKEN, name, False,
                   f"the log chain of {name} is broken: WAL is missing from the vault: "
                   f"{ranges}; point-in-time restore into these ranges is impossible, and "
                   f"until a full backup is taken after them (`dbsafe backup {name} --type "
                   "full`) no later instant is restorable either",
                   {"gaps": open_gaps, "restorable": chain.ranges()})


def lag_check(vault: Vault, server: dict, conn, threshold: int) -> Finding:
    """Bytes of WAL the server wrote that are not in the vault: its current insert LSN less
    the end of the newest archived segment of its timeline (without one, the segments
    waiting in pg_wal/archive_status plus the current one's written part)."""
    import psycopg

    name = server["name"]
    if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
        return Finding(alerts.ARCHIVE_LAG, name, True, "a standby: no WAL of its own")
    lsn_text, walfile = conn.execute(
        "SELECT l::text, pg_walfile_name(l) FROM pg_current_wal_lsn() AS l").fetchone()
    archiver = conn.execute(
        "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal, "
        "last_failed_time::text FROM pg_stat_archiver").fetchone()
    try:
        ready = conn.execute("SELECT count(*) FROM pg_ls_archive_statusdir() "
                             "WHERE name LIKE '%.ready'").fetchone()[0]
    except psycopg.Error:  # needs superuser or pg_monitor
        ready = None
    seg_size = server["wal_segment_size"] or 16 * MiB
    timeline = int(walfile[:8], 16)
    current = wal.parse_lsn(lsn_text)
    archived = [(r["segno"] + 1) * r["segment_size"]
                for r in vault.catalog.list_wal_files(server["system_identifier"])
                if r["timeline"] == timeline and r["segno"] is not None]
    archived_end = max(archived, default=None)
    if archived_end is not None:
        lag = max(0, current - archived_end)
    elif ready is not None:
        lag = ready * seg_size + current % seg_size
    else:
        return Finding(alerts.ARCHIVE_LAG, name, True, "cannot measure: nothing archived yet "
                       "and pg_wal/archive_status is not readable")
    details = {"lag_bytes": lag, "threshold_bytes": threshold, "current_lsn": lsn_text,
               "archived_until": wal.format_lsn(archived_end) if archived_end else None,
               "ready_files": ready, "archived_count": archiver[0],
               "last_archived_wal": archiver[1], "failed_count": archiver[2],
               "last_failed_wal": archiver[3], "last_failed_time": archiver[4]}
    if lag <= threshold:
        return Finding(alerts.ARCHIVE_LAG, name, True, f"{_size(lag)} behind", details)
    failure = (f"last archiver failure: {archiver[3]} at {archiver[4]}" if archiver[3]
               else "no archiver failure recorded")
    waiting = f"{ready} WAL file(s) wait in pg_wal; " if ready is not None else ""
    return Finding(alerts.ARCHIVE_LAG, name, False,
                   f"WAL archiving of {name} is {_size(lag)} behind (threshold "
                   f"{_size(threshold)}): {waiting}{failure}; point-in-time restore cannot "
                   f"reach past {details['archived_until'] or 'the last archived segment'} "
                   "and pg_wal grows; check `dbsafe agent status` and the PostgreSQL log",
                   details)
