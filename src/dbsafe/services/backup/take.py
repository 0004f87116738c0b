"""Full, copy-only full and differential backups of a registered instance into the vault.

Order of events (docs/repository-format.md, *Write order*): start the backup → copy the data
files (a differential: the changed pages, services/backup/differential.py) → stop it → copy the WAL
from start to stop → seal the last packs and their index files → write the manifest (the
commit point) → record the point in the catalog.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from dbsafe.core import defaults
from dbsafe.core.concurrency import default_workers
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.base import SourceFile
from dbsafe.engines.postgres import cluster, discover
from dbsafe.engines.postgres.backup import BackupSession
from dbsafe.engines.postgres.layout_rules import CONTROL_FILE
from dbsafe.services.activity.jobs import Job, ProgressFn
from dbsafe.services.backup import counts, differential, selection, synthetic, tracked
from dbsafe.services.backup.copy import MAX_CORRUPT_LISTED, CopiedFile, Copier, file_entry
from dbsafe.services.backup.usage import Usage
from dbsafe.services.handle import space
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory import coexistence
from dbsafe.services.inventory.immutability import backup_retention, retention_column
from dbsafe.services.inventory.policies import compression_for, policy_of
from dbsafe.services.inventory.servers import get_server, live_endpoint, open_instance
from dbsafe.services.lifecycle import coverage
from dbsafe.services.protection import discovery
from dbsafe.services.protection import replica_sets as replicasets
from dbsafe.vault.entries import EntrySpool
from dbsafe.vault.records import Database, FileEntry, Instance, Manifest

BACKUP_TYPES = defaults.BACKUP_TYPES


def _tracked_source(vault: Vault, server: dict, session: BackupSession, source: dict,
                    major: int, start_lsn: str
                    ) -> tuple[dict | None, str | None, tracked.Tracking | None]:
    """(source, None, its change map) when a synthetic full can be built from ``source``
    now the backup has started; else (None, why it reads, None)."""
    try:
        differential.check_base(source, server["name"], major, start_lsn,
                                data_checksums=session.data_checksums)
    except DbsafeError as exc:
        return None, exc.details.get("reason") or exc.message, None
    tracking = tracked.change_map(vault, server, source, session.start_lsn, session.timeline,
                                  session.segment_size, session.summary_rows)
    if tracking.map is None:
        return None, f"no change map covers the range: {tracking.reason}", None
    return source, None, tracking


def _copy_all(repo, copier: Copier, files: Iterable[SourceFile], spool: EntrySpool,
              usage: Usage) -> tuple[list[dict], int, int]:
    """(corrupt pages, up to ``MAX_CORRUPT_LISTED``; their count; bytes read) of a full:
    every file read whole, its entry spooled as it is copied, in path order. pg_control is
    read last, listed in its place: a backup from a standby ends where the copied
    pg_control's minimum recovery point says, so it must be later than every other file.
    Each file is counted in ``usage``."""
    corrupt: list[dict] = []
    counted = {"corrupt": 0, "read": 0}
    deferred: list[tuple[SourceFile, int]] = []

    def entry(copied: CopiedFile) -> FileEntry:
        counted["read"] += copied.size
        counted["corrupt"] += len(copied.corrupt_pages)
        usage.add(copied.source.path, copied.size, copied.stored)
        corrupt.extend({"path": copied.source.path, "block": p}
                       for p in copied.corrupt_pages[:MAX_CORRUPT_LISTED - len(corrupt)])
        return file_entry(repo, copied)

    def emit(copied: CopiedFile) -> None:
        if copied.deferred:
            deferred.append((copied.source, spool.reserve(copied.source.path)))
        elif not copied.vanished:
            spool.add(entry(copied))

    copier.copy_in_order(files, emit, later=lambda f: f.path == CONTROL_FILE)
    for source, slot in deferred:
        (copied,) = copier.copy([source])
        if not copied.vanished:  # else its place stays empty: left out, as any vanished
            spool.fill(slot, entry(copied))
    return corrupt, counted["corrupt"], counted["read"]


def _expecting(files: Iterable[SourceFile], job: Job, estimate: int
               ) -> Iterator[SourceFile]:
    """``files``, telling ``job`` the work to expect: ``estimate`` at first (the files are
    walked as they are copied), raised as soon as the files seen add up to more."""
    job.expect(estimate)
    seen = 0
    for f in files:
        seen += f.size
        if seen > estimate:
            job.expect(seen - estimate)
            estimate = seen
        yield f


def new_point_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def run_backup(vault: Vault, name: str, type: str = "full", level: int | None = None,
               workers: int | None = None, on_progress: ProgressFn | None = None,
               databases: list[str] | None = None, trigger: str = "on-demand",
               reason: str | None = None, node: str | None = None,
               synthetic: bool | None = None) -> dict:
    """Back up the instance files plus ``databases`` (default: the protected ones, or all
    when none is chosen); the other databases are recorded as left out. New blocks are
    compressed at ``level`` when given (0: stored raw), else as the instance's policy says
    (services/inventory/policies.compression_for). A differential's base is the latest full that
    holds every database it holds (a scheduled one becomes a full when there is none, and
    says why in its warnings). A full is built synthetically (services/backup/synthetic.py)
    when ``synthetic`` asks for it, or, when it is None, when it is scheduled and the
    policy says so; either way only if the rules allow, else it reads and says why.
    ``node``: a replica set's node the control plane chose (the agent of that node's host
    runs the backup: docs/fleet.md)."""
    if type not in BACKUP_TYPES:
        raise ValueError(f"backup type {type!r} is not one of {BACKUP_TYPES}")
    server = get_server(vault, name)
    replicasets.refuse_node_alone(server, "backup")
    if server["kind"] == "replica-set":  # the node the preference names takes it
        server = replicasets.node_for_job(vault, server, type, trigger, reason, node)
    # Checks that need no job: bad input fails before anything is recorded.
    with open_instance(server) as conn:
        dbs = discover.databases(conn, Path(server["pgdata"]))
        others = coexistence.other_solutions(conn, Path(server["pgdata"]),
                                             coexistence.our_command(vault))
    # a protected database dropped since the last discovery becomes "source gone" now,
    # instead of failing every backup until the next discovery
    discovery.record(vault, server, dbs)
    protected = vault.catalog.list_protected(server["instance_id"])
    listed, skip = selection.choose(dbs, databases, protected, type, name)
    held = [d["name"] for d in listed if d["included"]]
    level, level_from = ((level, "asked for this backup") if level is not None
                         else compression_for(vault, server))
    became_full = None
    base = None
    if type == "diff":
        try:
            base = differential.find_base(vault, server, held)
        except DbsafeError as exc:
            # A database the scheduler's check did not know yet (discovery just protected
            # it): the scheduled run becomes a full, as self-healing does (healing.py).
            if exc.code != "backup.no_full" or trigger != "scheduled":
                raise
            type = "full"
            became_full = DbsafeError("backup.diff_became_full", name=name,
                                      databases=exc.details["databases"])
    if base is not None:
        differential.check_base(base, name, cluster.major_version(Path(server["pgdata"])))
    source, build_reason = _synthetic_source(vault, server, type, trigger, synthetic, held)
    # what a backup without --db holds: only a full of all of it restarts the chain
    instance, _ = selection.choose(dbs, None, protected, "full", name)
    whole = {d["name"] for d in instance if d["included"]} <= set(held)
    with Job(vault.catalog, "backup", name, on_progress, backup_type=type, trigger=trigger,
             items=held,
             reason=reason or (became_full.message if became_full is not None else None),
             node=server.get("node")) as job, \
            vault.repo.writing("backup"):  # the writer lock spans blocks and manifest (vault/gc.py)
        if became_full is not None:
            job.warn(became_full.as_dict())
        for found in others:
            job.warn({"code": f"coexistence.{found['kind']}", "message":
                      f"another backup solution: {found['detail']}; {found['action']}"})
        estimate = sum(d["size_bytes"] for d in dbs if d["name"] in held)
        result = _backup(vault, server, type, level, workers or default_workers(), job,
                         (listed, skip), base, source, build_reason, estimate)
        result.update(job_id=job.id, compression_from=level_from)
        if server.get("node"):
            result.update(node=server["node"], node_reason=server["node_reason"])
        if type == "full" and server["needs_full"] and whole:
            vault.catalog.update_instance(server["instance_id"], needs_full=None)
        job.finish(result, "completed_with_warnings" if result["corrupt_pages"] else "completed")
        return result


def _synthetic_source(vault: Vault, server: dict, type: str, trigger: str,
                      asked: bool | None, held: list[str]) -> tuple[dict | None, str | None]:
    """The full a full may be built from, or None and why not (None: not asked)."""
    if type != "full" or asked is False or (asked is None and trigger != "scheduled"):
        return None, None
    policy = policy_of(vault, server)
    if asked is None and policy is None:
        return None, None
    try:
        source: dict | None = differential.find_base(vault, server, held)
    except DbsafeError as exc:
        if exc.code != "backup.no_full":
            return None, exc.message
        source = None
    why = synthetic.read_reason(source, policy, datetime.now(UTC), server)
    return (None, why) if why else (source, None)


def _backup(vault: Vault, server: dict, type: str, level: int, workers: int, job: Job,
            chosen: tuple[list[Database], set[int]], base: dict | None = None,
            source: dict | None = None, build_reason: str | None = None,
            estimate: int = 0) -> dict:
    """``base``: a differential's; ``source``: the full a synthetic full is built from
    (read instead, with ``build_reason``, when no change map covers the range);
    ``estimate``: the bytes a full reads, as the server sizes its databases (progress)."""
    repo = vault.repo
    pgdata = Path(server["pgdata"])
    major = cluster.major_version(pgdata)
    port, host = live_endpoint(pgdata, server["port"], server["host"])
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    point_id = new_point_id(started)
    session = BackupSession(pgdata, port, host, major, bool(server["data_checksums"]))
    sink = repo.block_sink(level)
    copier = Copier(sink, session.read_block, repo.block_size, workers, job.advance)
    spool = EntrySpool()  # the entries, as files are copied (vault/entries.py)
    about_base: dict = {}  # a differential's base, dropped files and counts
    usage = Usage()  # a full's; a differential's comes with its copy
    unchanged = None  # a tracked differential's tables whose base counts still hold
    newest = None  # the newest point with counts since a differential's or synthetic's base
    try:
        start_lsn = session.start(f"dbsafe {point_id}")
        if base is not None:
            differential.check_base(base, server["name"], major, start_lsn,
                                    data_checksums=session.data_checksums)
        tracking = None
        if source is not None:
            source, build_reason, tracking = _tracked_source(vault, server, session, source,
                                                             major, start_lsn)
        against = base if base is not None else source
        walk = session.files()
        taken, skipped = selection.split_files(walk, chosen[1])
        if against is None:
            corrupt, corrupt_count, files_read = _copy_all(
                repo, copier, _expecting(taken, job, estimate), spool, usage)
        else:
            if tracking is None:
                tracking = tracked.change_map(vault, server, against, session.start_lsn,
                                              session.timeline, session.segment_size,
                                              session.summary_rows)
            if tracking.map is None:
                job.warn(DbsafeError("backup.diff_untracked", name=server["name"],
                                     reason=tracking.reason).as_dict())
            layered = functools.partial(synthetic.entry, repo,
                                        block_size=against["block_size"])
            diff = differential.copy_files(repo, copier, session.read_changed, taken,
                                           against, job.expect, spool, tracking.map,
                                           **({"entry_of": layered} if source else {}))
            points = vault.catalog.list_points(server["instance_id"])
            newest = counts.newest_since(points, against)
            if tracking.map is not None:  # the base's counts of the tables left alone
                base_point = next((p for p in points if p["point_id"] == against["point_id"]),
                                  {})
                unchanged = counts.UnchangedTables(
                    base_point.get("table_counts"), tracking.map,
                    tracked.Extension(vault, server, session.start_lsn, session.timeline,
                                      session.segment_size).up_to)
            corrupt, corrupt_count, files_read = diff.corrupt, diff.corrupt_count, \
                diff.bytes_read
            usage = diff.usage
            about_base = {"delta_source": tracking.describe(), "stats": diff.stats}
            if source is not None:
                about_base["build"] = synthetic.build_of(source)
            else:
                about_base.update(base=against["point_id"],
                                  base_start_lsn=against["start_lsn"], dropped=diff.dropped)
        counts_mark = counts.mark(port, host)  # restore drills: row counts
        stop = session.stop()
        # counted on a thread while the stop's WAL is copied and the last pack sealed
        counting = ThreadPoolExecutor(1, thread_name_prefix="dbsafe-counts")
        counted = counting.submit(  # an earlier point's counts, where nothing committed
            counts.take, port, host, chosen[0], counts_mark, unchanged,  # since
            newest["table_counts"] if newest and newest["timeline"] == stop.timeline
            else None)
        counting.shutdown(wait=False)
        if against is not None:
            differential.check_base(against, server["name"], major, timeline=stop.timeline,
                                    history=differential.server_history(server,
                                                                        stop.timeline))
        job.expect(sum(f.size for f in stop.wal_segments))
        wal = copier.copy(stop.wal_segments)
        session.close()
        sink.close()
        table_counts = counted.result()
        parts, parts_bytes = spool.write_parts(repo, point_id)
    except BaseException as exc:
        session.close()
        sink.abort()
        spool.close()
        if isinstance(exc, DbsafeError) and exc.code == "vault.full":
            raise space.said_by(exc, f"the {type} backup of {server['name']}",
                                space.projected(*job.progress(), sink.stats.bytes_stored)) \
                from exc
        raise
    ended = datetime.now(UTC)
    bytes_read = files_read + sum(w.size for w in wal)
    if type != "diff" and "build" not in about_base:
        about_base["build"] = {"kind": "read", "reason": build_reason}
    files_count = spool.count()
    spool.close()
    retention = backup_retention(vault, server["instance_id"])  # the policy in force now
    manifest = Manifest.new(
        format=1,
        point_id=point_id,
        type=type,
        copy_only=type == "copy-only",
        **{k: v for k, v in about_base.items() if k != "stats"},
        instance=Instance.new(server=server["name"],
                              system_identifier=server["system_identifier"],
                              pg_version=major, pgdata=str(pgdata),
                              owner=cluster.owner_of(pgdata), node=server.get("node"),
                              data_checksums=session.data_checksums),
        start_time=started.isoformat(timespec="milliseconds"),
        end_time=ended.isoformat(timespec="milliseconds"),
        start_lsn=start_lsn,
        stop_lsn=stop.stop_lsn,
        timeline=stop.timeline,
        backup_label=stop.backup_label,
        tablespace_map=stop.tablespace_map,
        tablespaces=walk.tablespaces,
        compression={"codec": "zstd" if level else "none", "level": level},
        block_size=repo.block_size,
        dirs=walk.dirs,
        entries=parts,
        databases=chosen[0],
        skipped=skipped,
        wal=[file_entry(repo, w) for w in wal],
        stats={"bytes_read": bytes_read, "bytes_read_data": files_read,
               "bytes_stored": sink.stats.bytes_stored + parts_bytes,
               "files": files_count, "corrupt_pages": corrupt_count,
               **about_base.get("stats", {}),
               "usage": usage.summary(chosen[0], sink.stats.bytes_stored + parts_bytes,
                                      bytes_read - files_read)},
        corrupt_pages=corrupt[:MAX_CORRUPT_LISTED],
        retention=retention,
    )
    bytes_stored = manifest["stats"]["bytes_stored"] + repo.save_manifest(manifest)
    seconds = time.perf_counter() - t0
    point = {"point_id": point_id, "type": type, "copy_only": int(type == "copy-only"),
             "start_time": manifest["start_time"], "end_time": manifest["end_time"],
             "start_lsn": start_lsn, "stop_lsn": stop.stop_lsn, "timeline": stop.timeline,
             "bytes_read": bytes_read, "bytes_stored": bytes_stored,
             "corrupt_pages": corrupt_count,
             **coverage.columns(chosen[0]),
             "base_point": about_base.get("base"), "retention": retention_column(retention),
             "build": (about_base.get("build") or {}).get("kind"),
             "item_usage": json.dumps(manifest["stats"]["usage"])}
    vault.catalog.add_point(server["instance_id"], point)
    vault.catalog.set_table_counts(point_id, table_counts)
    return {
        "point_id": point_id, "type": type, "copy_only": type == "copy-only",
        "server": server["name"], "bytes_read": bytes_read, "bytes_read_data": files_read,
        "bytes_stored": bytes_stored, "blocks_new": sink.stats.blocks_new,
        "blocks_reused": sink.stats.blocks_reused, "files": files_count,
        "wal_segments": len(wal), "seconds": round(seconds, 3),
        "mb_per_second": round(bytes_read / seconds / 1e6, 1) if seconds else None,
        "start_lsn": start_lsn, "stop_lsn": stop.stop_lsn, "timeline": stop.timeline,
        "start_time": manifest["start_time"], "end_time": manifest["end_time"],
        "corrupt_pages": corrupt_count, "corrupt_page_list": corrupt[:100],
        "compression_level": level, "workers": workers,
        **{k: v for k, v in about_base.items()
           if k in ("base", "base_start_lsn", "delta_source", "build")},
        **about_base.get("stats", {}),
    }
