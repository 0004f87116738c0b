"""Log backups on demand: end the current WAL segment and wait until the vault holds it.

The continuous part is the agent (services/logchain/archive.py). A log backup job makes a point in
time safe now: it commits an empty transaction (``txid_current()`` writes a commit record,
so a recovery to any instant before it has a record to stop at), switches to a new segment,
waits until the agent archived the finished one, and records a log point.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from dbsafe.core import defaults
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import archiving, discover, status, wal
from dbsafe.services.activity.jobs import Job, ProgressFn
from dbsafe.services.backup import selection
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory import coexistence
from dbsafe.services.inventory.immutability import backup_retention, retention_column
from dbsafe.services.inventory.servers import get_server, open_instance
from dbsafe.services.lifecycle.points import lineage_points, list_points
from dbsafe.services.logchain.archive import reconcile_wal
from dbsafe.services.logchain.chain import log_chain
from dbsafe.services.protection import replica_sets as replicasets
from dbsafe.vault.records import Instance, Manifest

WAIT_SECONDS = defaults.LOG_WAIT_SECONDS


def require_full_model(server: dict) -> None:
    if (server["recovery_model"] or "SIMPLE") != "FULL":
        raise DbsafeError("backup.log_simple", name=server["name"])


def run_log_backup(vault: Vault, name: str, wait_seconds: float = WAIT_SECONDS,
                   on_progress: ProgressFn | None = None,
                   databases: list[str] | None = None, trigger: str = "on-demand",
                   reason: str | None = None, node_name: str | None = None) -> dict:
    """The WAL is the instance's: ``databases`` only checks that each may take log backups
    (a read-only database may not, as in the support matrix)."""
    server = get_server(vault, name)
    replicasets.refuse_node_alone(server, "backup")
    require_full_model(server)
    node = server  # the node whose archiver delivers the WAL
    if server["kind"] == "replica-set":
        node = replicasets.node_for_job(vault, server, "log", trigger, reason, node_name)
        server = get_server(vault, name)  # now the primary's endpoint: it switches WAL
    if databases:
        with open_instance(server) as conn:
            dbs = discover.databases(conn, Path(server["pgdata"]))
        selection.choose(dbs, databases, [], "log", name)
    if vault.is_here(node):
        others, standby = _check_node(vault, node, name)
    else:  # a node of another host: its agent set it up, and reports what it is
        report = vault.catalog.get_node_report(node["node"]) or {}
        others, standby = [], report.get("role") == "standby"
    with Job(vault.catalog, "backup", name, on_progress, backup_type="log", trigger=trigger,
             items=vault.catalog.list_protected(server["instance_id"]), reason=reason,
             node=node.get("node")) as job, \
            open_instance(server) as conn:
        for found in others:
            job.warn({"code": f"coexistence.{found['kind']}", "message":
                      f"another backup solution: {found['detail']}; {found['action']}"})
        started = datetime.now(UTC)
        archiving.write_commit_record(conn)
        stop_lsn, segment = archiving.switch_wal(conn)
        if standby:  # a record in the next segment makes the standby close this one
            archiving.write_commit_record(conn)
        sysid = server["system_identifier"]
        deadline = time.monotonic() + wait_seconds
        while segment not in vault.catalog.wal_file_names(sysid):
            reconcile_wal(vault, sysid)
            if segment in vault.catalog.wal_file_names(sysid):
                break
            if time.monotonic() > deadline:
                with open_instance(node) as node_conn:
                    failed, failed_at = archiving.last_archive_failure(node_conn)
                raise DbsafeError("backup.log_timeout", lsn=stop_lsn, segment=segment,
                                  seconds=wait_seconds,
                                  failure=f"{failed} at {failed_at}" if failed else "none")
            job.check_cancelled()
            time.sleep(0.1)
        result = _record_point(vault, server, started, stop_lsn, segment)
        result["job_id"] = job.id
        if server["kind"] == "replica-set":
            # the node whose archiver delivered the segment (the record says who read it)
            record = vault.repo.load_wal_record(sysid, segment)
            took = record.get("server") if record is not None else None
            result.update(node=took, node_reason=node["node_reason"])
            vault.catalog.update_job(job.id, node=took)
        job.finish(result, "completed_with_warnings" if result["warnings"] else "completed")
        return result


def _check_node(vault: Vault, node: dict, name: str) -> tuple[list[dict], bool]:
    """The archiving node's settings are ours and active (a standby's: archive_mode=always);
    (other backup tools found on it, whether it is a standby)."""
    with open_instance(node) as conn:
        settings = archiving.read_settings(conn)
        others = coexistence.other_solutions(conn, Path(node["pgdata"]),
                                             coexistence.our_command(vault))
        standby = status.is_in_recovery(conn)
        if standby and settings.active_ours and settings.mode != "always":
            raise DbsafeError("replicaset.archiving_inactive", server=node["node"], name=name,
                              reason="archive_mode is on, not always: a standby archives "
                                     "nothing")
        if not settings.active_ours:
            pending = archiving.archive_mode_pending_restart(conn)
            hint = ("restart PostgreSQL to start it (`dbsafe protect {0} --all --restart`)"
                    if pending else "turn it on with `dbsafe protect {0} --all`").format(name)
            raise DbsafeError("backup.archiving_inactive", name=node.get("node") or name,
                              hint=hint,
                              reason=f"archive_mode={settings.mode}, archive_command by "
                                     f"{settings.owner or 'nobody'}")
    return others, standby


def _record_point(vault: Vault, server: dict, started: datetime, stop_lsn: str,
                  segment: str) -> dict:
    points = list_points(vault, server["name"], deleted=None)  # ranges stay contiguous
    rows = vault.catalog.list_wal_files(server["system_identifier"])
    seg_size = server["wal_segment_size"] or 16 << 20
    parsed = wal.parse_segment_name(segment, seg_size)
    assert parsed is not None  # the segment pg_switch_wal named
    timeline, segno = parsed
    last_row = next(r for r in rows if r["name"] == segment)
    previous = [p for p in points if p["type"] == "log" and p["timeline"] == timeline]
    if previous:
        start_lsn = wal.parse_lsn(previous[-1]["stop_lsn"])
    else:
        first = min((r["segno"] for r in rows if r["timeline"] == timeline), default=segno)
        start_lsn = first * seg_size
    covered = [r["name"] for r in rows if r["timeline"] == timeline and r["segno"] is not None
               and start_lsn // seg_size <= r["segno"] <= segno]
    ended = datetime.now(UTC)
    point_id = f"{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    end_time = last_row["last_xact_time"] or ended.isoformat(timespec="milliseconds")
    manifest = Manifest.new(
        format=1, point_id=point_id, type="log", copy_only=False,
        instance=Instance.new(server=server["name"],
                              system_identifier=server["system_identifier"],
                              pg_version=server["pg_version"], pgdata=server["pgdata"]),
        start_time=started.isoformat(timespec="milliseconds"), end_time=end_time,
        start_lsn=wal.format_lsn(start_lsn), stop_lsn=stop_lsn, timeline=timeline,
        segments=covered, files=[], wal=[], dirs=[], tablespaces=[],
        stats={"bytes_read": sum(r["size"] for r in rows if r["name"] in covered),
               "bytes_stored": 0, "files": 0, "corrupt_pages": 0},
        corrupt_pages=[], retention=backup_retention(vault, server["instance_id"]),
    )
    size = vault.repo.save_manifest(manifest)
    vault.catalog.add_point(server["instance_id"], {
        "point_id": point_id, "type": "log", "copy_only": 0,
        "start_time": manifest["start_time"], "end_time": end_time,
        "start_lsn": manifest["start_lsn"], "stop_lsn": stop_lsn, "timeline": timeline,
        "bytes_read": manifest["stats"]["bytes_read"], "bytes_stored": size,
        "corrupt_pages": 0, "retention": retention_column(manifest["retention"])})
    chain = log_chain(vault, server, lineage_points(vault, server))
    warnings = []
    if chain.gaps:
        gaps = "; ".join(f"{g['missing_segments']} segment(s) from {g['first_missing']} "
                         f"({g['start_time']} to {g['end_time']})" for g in chain.gaps)
        warnings.append(DbsafeError("chain.broken", name=server["name"], gaps=gaps).as_dict())
    return {"point_id": point_id, "type": "log", "server": server["name"],
            "start_lsn": manifest["start_lsn"], "stop_lsn": stop_lsn, "timeline": timeline,
            "segments": len(covered), "last_segment": segment, "end_time": end_time,
            "restorable_until": chain.ranges()[-1]["end_time"] if chain.ranges() else None,
            "warnings": warnings}
