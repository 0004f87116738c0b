"""Health checks the scheduler runs every minute or so; each raises its alert while its
condition holds and resolves it when the condition clears (services/activity/alerts.py keeps a
repeat from being sent again).

Checks: the vault's free space; the agent (when a server uses the FULL model, the agent
archives its WAL); per server, that PostgreSQL answers; for FULL servers the archiving
lag (WAL written but not in the vault yet) and the log chain (a gap with no base backup
after it leaves the chain broken until the next full); and per protected database, that
its newest restorable instant is as recent as its policy asks (``backup_overdue``).

A check that cannot run (it raises) does not stop the others: it is a finding
``check_not_run`` (no alert of its own; ``dbsafe serve`` raises ``step_failed`` for it, see
scheduler/steps.py), and the alerts it would settle stay as they are.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dbsafe.catalog.base import parse_time
from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow
from dbsafe.core.units import GiB, MiB, size_text
from dbsafe.engines.postgres import archiving, wal
from dbsafe.engines.postgres.agent_process import agent_paths, ping, running_pid
from dbsafe.engines.postgres.status import current_wal, is_in_recovery
from dbsafe.policy.overdue import GRACE, restorable_deadline, slot_kinds
from dbsafe.services.activity import alerts
from dbsafe.services.activity.jobs import failure
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.policies import get_policy
from dbsafe.services.inventory.servers import open_instance
from dbsafe.services.lifecycle.points import lineage_points
from dbsafe.services.logchain.chain import BASE_TYPES, log_chain
from dbsafe.services.operations.restorable import newest_instants
from dbsafe.services.protection import replica_sets as replicasets

log = logging.getLogger("dbsafe.monitor")

LAG_THRESHOLD_BYTES = 1 * GiB
SPACE_MIN_FREE_PCT = 10.0
SPACE_MIN_FREE_BYTES = 1 * GiB
CHECK_NOT_RUN = "check_not_run"   # a finding, not an alert kind: a check that raised
ACTIVE_ITEMS = ("protected", "inconsistent-policy")


@dataclass
class Finding:
    """The outcome of one check; ``ok`` False means its alert is raised."""

    check: str
    server: str | None
    ok: bool
    message: str
    details: dict = field(default_factory=dict)
    alert_id: int | None = None
    item: str | None = None

    def as_dict(self) -> dict:
        return {"check": self.check, "server": self.server, "item": self.item,
                "ok": self.ok, "message": self.message, "details": self.details,
                "alert_id": self.alert_id}


def check_health(vault: Vault, now: datetime | str | None = None, *,
                 lag_threshold_bytes: int = LAG_THRESHOLD_BYTES,
                 space_min_free_pct: float = SPACE_MIN_FREE_PCT,
                 space_min_free_bytes: int = SPACE_MIN_FREE_BYTES) -> list[dict]:
    """Run every check once, raise or resolve their alerts, return one finding per check
    (and per protected database for ``backup_overdue``). ``now``: the time the checks
    judge at (default: the clock)."""
    moment = _moment(now)
    findings = _look_at_replica_sets(vault)
    servers = vault.catalog.list_servers()
    # a server of another host is reached by its agent only (docs/fleet.md): its cluster's
    # state comes from what that agent reports; its chain and its backups' age are judged
    # here like any other's
    here = [s for s in servers if not s.get("agent_id")]
    # a replica set's chain and archiving are checked once, on the set (its primary)
    full = {s["name"] for s in servers
            if (s["recovery_model"] or "SIMPLE") == "FULL" and not s["replica_set"]}
    checks: list[tuple[str, str | None, Callable[[], list[Finding]]]] = [
        ("vault space", None,
         lambda: [vault_space(vault, space_min_free_pct, space_min_free_bytes)]),
        ("agent", None, lambda: [agent(vault, [s["name"] for s in here if s["name"] in full])])]
    checks += [("server", s["name"],
                functools.partial(server_checks if not s.get("agent_id") else reported_checks,
                                  vault, s, s["name"] in full, lag_threshold_bytes))
               for s in servers]
    active = alerts.active_keys(vault.catalog)
    checks += [("backup age", s["name"], functools.partial(overdue_checks, vault, s, moment,
                                                           active))
               for s in servers]
    for label, server, check in checks:
        try:
            findings += check()
        except Exception as exc:  # one broken check must not stop the others
            findings.append(_not_run(f"the {label} check", server, exc))
    stamp = moment.isoformat(timespec="milliseconds")
    for f in findings:
        _settle(vault, f, stamp, active)
    return [f.as_dict() for f in findings]


def checks_not_run(findings: list[dict]) -> list[str]:
    """What ``check_health`` could not check (``dbsafe serve`` alerts them)."""
    return [f["message"] for f in findings if f["check"] == CHECK_NOT_RUN]


def _moment(now: datetime | str | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(now) if isinstance(now, str) else now
    return moment.astimezone(UTC)


def _not_run(what: str, server: str | None, exc: Exception) -> Finding:
    """A check that raised: its traceback to the log when it is a bug, one line here; the
    alerts it settles stay as they are until it runs again."""
    if not isinstance(exc, DbsafeError):
        log.exception("%s of %s could not run", what, server or "the vault")
    ended = failure(exc)
    where = f" of {server}" if server else ""
    return Finding(CHECK_NOT_RUN, server, False,
                   f"{what}{where} could not run: [{ended['error_code']}] "
                   f"{ended['error_message']}", {"error_code": ended["error_code"]})


def _look_at_replica_sets(vault: Vault) -> list[Finding]:
    """Roles first: a set's entry then points at its primary of now (after a failover)."""

    found = []
    for rs in vault.catalog.list_replica_sets():
        try:
            if vault.catalog.list_nodes(rs["name"]):
                replicasets.look(vault, rs["name"])
        except Exception as exc:
            found.append(_not_run("the role check", rs["name"], exc))
    return found


def _settle(vault: Vault, finding: Finding, now: str,
            active: set[tuple[str, str | None, str | None]]) -> None:
    if finding.check not in alerts.KINDS:
        return
    key = (finding.check, finding.server, finding.item)
    if finding.ok:
        if key in active:
            alerts.resolve_alerts(vault.catalog, finding.check, server=finding.server,
                                  item=finding.item, now=now)
    else:
        alert = alerts.raise_alert(vault.catalog, finding.check, alerts.KINDS[finding.check],
                                   finding.message, server=finding.server, item=finding.item,
                                   details=finding.details, now=now)
        finding.alert_id = alert["id"]


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
                       f"the vault's file system ({root}) has {size_text(free)} free "
                       f"({pct:.1f} %), below the minimum of {size_text(min_free_bytes)} and "
                       f"{min_free_pct:g} %: backups and WAL archiving will fail when it is "
                       "full; free space, prune old points or move the vault", details)
    return Finding(alerts.VAULT_SPACE_LOW, None, True,
                   f"{size_text(free)} free ({pct:.1f} %)", details)


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


def _chain_findings(vault: Vault, server: dict, full: bool) -> list[Finding]:
    name = server["name"]
    why = (f"a node of replica set {server['replica_set']}: checked on the set"
           if server.get("replica_set") else "SIMPLE recovery model")
    return [chain_check(vault, server)] if full else [
        Finding(alerts.CHAIN_BROKEN, name, True, f"{why}: no log chain of its own"),
        Finding(alerts.ARCHIVE_LAG, name, True, f"{why}: no archiving of its own")]


def reported_checks(vault: Vault, server: dict, full: bool,
                    lag_threshold: int) -> list[Finding]:
    """The checks of a server of another host, from what its agent last reported
    (agent/worker.py ``report_nodes``: role, timeline and WAL position, or why the cluster
    did not answer). A report older than ``SERVER_REPORT_FRESH`` (a replica set's node:
    ``REPORT_FRESH``) settles nothing: the agent is
    silent, which ``agent_unreachable`` says (services/fleet/watch.py)."""
    name = server["name"]
    findings = _chain_findings(vault, server, full)
    reported = name if server["kind"] == "server" else next(  # a set: its primary's
        (n["server"] for n in vault.catalog.list_nodes(name) if n["role"] == "primary"), None)
    within = replicasets.REPORT_FRESH if server["kind"] != "server" or \
        server.get("replica_set") else replicasets.SERVER_REPORT_FRESH
    report = replicasets.fresh_report(vault, reported, within) if reported else None
    if report is None:
        return findings
    if report["role"] == "unknown":
        findings.append(Finding(alerts.SERVER_UNREACHABLE, name, False,
                                f"{name} is unreachable from its host: {report['reason']}",
                                {"pgdata": server["pgdata"], "port": server["port"],
                                 "reported": report["reported"]}))
        return findings
    findings.append(Finding(alerts.SERVER_UNREACHABLE, name, True,
                            f"answers (reported by its agent at {report['reported']})"))
    if full:
        if report["role"] != "primary":
            findings.append(Finding(alerts.ARCHIVE_LAG, name, True,
                                    "a standby: no WAL of its own"))
        else:
            findings.append(_record_lag(vault, server, _lag_finding(
                vault, server, report["timeline"], report["replay_lsn"], lag_threshold, None,
                {"reported": report["reported"]})))
    return findings


def server_checks(vault: Vault, server: dict, full: bool,
                  lag_threshold: int) -> list[Finding]:
    """Reachability of one server; for FULL servers its log chain and archiving lag."""
    name = server["name"]
    findings = _chain_findings(vault, server, full)
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
            findings.append(_record_lag(vault, server,
                                        lag_check(vault, server, conn, lag_threshold)))
    return findings


def _record_lag(vault: Vault, server: dict, lag: Finding) -> Finding:
    if "lag_bytes" in lag.details:  # measured: kept for /metrics (docs/fleet.md)
        vault.catalog.update_instance(server["instance_id"],
                                      archive_lag_bytes=lag.details["lag_bytes"],
                                      archive_lag_checked=utcnow())
    return lag


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
    if is_in_recovery(conn):
        return Finding(alerts.ARCHIVE_LAG, name, True, "a standby: no WAL of its own")
    lsn_text, walfile = current_wal(conn)
    archiver = archiving.archiver_stats(conn)
    try:
        ready = archiving.ready_segments(conn)
    except psycopg.Error:  # needs superuser or pg_monitor
        ready = None
    return _lag_finding(vault, server, int(walfile[:8], 16), wal.parse_lsn(lsn_text),
                        threshold, ready,
                        {"archived_count": archiver[0], "last_archived_wal": archiver[1],
                         "failed_count": archiver[2], "last_failed_wal": archiver[3],
                         "last_failed_time": archiver[4]})


def _lag_finding(vault: Vault, server: dict, timeline: int, current: int, threshold: int,
                 ready: int | None, facts: dict) -> Finding:
    """The lag of a primary at ``current`` on ``timeline`` behind the end of the newest
    archived segment of that timeline (``ready``: files waiting in pg_wal, when known)."""
    name = server["name"]
    seg_size = server["wal_segment_size"] or 16 * MiB
    archived = [(r["segno"] + 1) * r["segment_size"]
                for r in vault.catalog.list_wal_files(server["system_identifier"])
                if r["timeline"] == timeline and r["segno"] is not None]
    archived_end = max(archived, default=None)
    if archived_end is not None:
        lag = max(0, current - archived_end)
    elif ready is not None:
        lag = ready * seg_size + current % seg_size
    else:
        return Finding(alerts.ARCHIVE_LAG, name, True, "cannot measure: nothing archived yet"
                       + (" and pg_wal/archive_status is not readable"
                          if "failed_count" in facts else ""))
    details = {"lag_bytes": lag, "threshold_bytes": threshold,
               "current_lsn": wal.format_lsn(current),
               "archived_until": wal.format_lsn(archived_end) if archived_end else None,
               "ready_files": ready, **facts}
    if lag <= threshold:
        return Finding(alerts.ARCHIVE_LAG, name, True, f"{size_text(lag)} behind", details)
    failure = (f"last archiver failure: {facts['last_failed_wal']} at "
               f"{facts['last_failed_time']}" if facts.get("last_failed_wal")
               else "no archiver failure recorded" if "failed_count" in facts
               else "the archiver's failures are in the PostgreSQL log of its host")
    waiting = f"{ready} WAL file(s) wait in pg_wal; " if ready is not None else ""
    return Finding(alerts.ARCHIVE_LAG, name, False,
                   f"WAL archiving of {name} is {size_text(lag)} behind (threshold "
                   f"{size_text(threshold)}): {waiting}{failure}; point-in-time restore cannot "
                   f"reach past {details['archived_until'] or 'the last archived segment'} "
                   "and pg_wal grows; check `dbsafe agent status` and the PostgreSQL log",
                   details)


def overdue_checks(vault: Vault, server: dict, now: datetime,
                   active: Set[tuple[str, str | None, str | None]] = frozenset()
                   ) -> list[Finding]:
    """``backup_overdue`` per database of the server: its newest restorable instant
    (services/operations/restorable.py) against its policy's deadline (policy/overdue.py). A
    database
    with no point yet is measured from when it was protected; one without a policy (on
    demand only), stopped or gone from its server is never overdue, and one whose policy
    cannot be read is left to the scheduler's alert about it (``step_failed``). An alert
    (in ``active``) of a database that is no longer an item resolves."""

    items = vault.catalog.list_items(server["instance_id"])
    policies = {}
    for name in {i["policy"] for i in items if i["policy"] and i["state"] in ACTIVE_ITEMS}:
        try:
            policies[name] = get_policy(vault, name)
        except DbsafeError:
            continue
    deadlines = {name: restorable_deadline(p, now) for name, p in policies.items()}
    held = [i["name"] for i in items if i["policy"] in policies and i["state"] in ACTIVE_ITEMS]
    newest = newest_instants(vault, server, held) if held else {}
    found = []
    for item in items:
        policy = policies[item["policy"]] if item["name"] in newest else None
        deadline = deadlines[policy.name] if policy else None
        instant = newest.get(item["name"])
        since = parse_time(instant or item["since"])
        details = {"database": item["name"], "newest_restorable": instant,
                   "deadline": deadline.isoformat() if deadline else None,
                   "policy": item["policy"]}
        if deadline is None or since >= deadline:
            found.append(Finding(alerts.BACKUP_OVERDUE, server["name"], True,
                                 "within its policy" if deadline else "not held to a schedule",
                                 details, item=item["name"]))
            continue
        assert policy is not None  # a deadline is a policy's
        rule = (f"a log backup every {policy.log_every} minutes" if policy.log_every
                else "its full and differential schedule")
        what = (f"its newest restorable instant is {instant}" if instant else
                f"no point holds it since it was protected ({item['since']})")
        found.append(Finding(
            alerts.BACKUP_OVERDUE, server["name"], False,
            f"backups of {item['name']} on {server['name']} are overdue: {what}, "
            f"{_age(now - since)} ago; policy {policy.name} ({rule}) asks for an instant "
            f"after {deadline.isoformat(timespec='seconds')} (the slot before the latest "
            f"{'/'.join(slot_kinds(policy))} slot, less {int(GRACE.total_seconds() // 60)} "
            f"minutes); see `dbsafe jobs --server {server['name']}` and `dbsafe alerts` for "
            "why backups do not run or fail", {**details, "age_seconds": round(
                (now - since).total_seconds())}, item=item["name"]))
    gone = {i for kind, at, i in active if kind == alerts.BACKUP_OVERDUE
            and at == server["name"]} - {i["name"] for i in items}
    found += [Finding(alerts.BACKUP_OVERDUE, server["name"], True, "no longer protected",
                      {"database": name}, item=name)
              for name in sorted(gone)]  # type: ignore[type-var]  # overdue alerts name a database
    return found


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"]
    return " ".join(parts[:2])
