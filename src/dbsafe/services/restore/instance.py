"""Restore a recovery point into a new data directory, or as plain files.

The manifest was checked when it was loaded (services/lifecycle/manifest_checks.py) and the target
is a new folder below a restore root (services/restore/targets.py), written through
descriptors (core/fdtree.py) while only root can enter it, then handed to the cluster's
owner. Blocks are fetched, decompressed and checked against their ids in parallel threads
and written with ``pwrite`` into files pre-sized with ``ftruncate``, those of large files
around the page cache (core/direct_writes.py); all-zero blocks are not written (the files
stay sparse there). Nothing is trusted but hashes: one bad block
fails the restore, and what the restore made is removed, so a target is never left
looking like a usable data directory when it is not. ``global/pg_control`` and
``backup_label`` are written last, once everything else is durable: a restore killed
before leaves a folder PostgreSQL refuses to start.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shlex
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dbsafe.core.concurrency import run_parallel
from dbsafe.core.direct_writes import DIRECT_FROM, DirectWrites
from dbsafe.core.durability import sync_trees
from dbsafe.core.errors import NO_SPACE, DbsafeError
from dbsafe.core.fdtree import Tree, make_dir, write_new
from dbsafe.core.spool import Spool
from dbsafe.engines.postgres import cluster
from dbsafe.engines.postgres import recovery as recovery_engine
from dbsafe.engines.postgres import restore as layout
from dbsafe.engines.postgres.layout_rules import CONTROL_FILE
from dbsafe.services.activity.jobs import Job, ProgressFn
from dbsafe.services.backup import selection
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.lifecycle import manifest_checks
from dbsafe.services.lifecycle.points import load_point
from dbsafe.services.restore import checks as restore_checks
from dbsafe.services.restore import combine
from dbsafe.services.restore import targets as restore_targets
from dbsafe.services.restore.pitr import RecoveryPlan, WalStager
from dbsafe.vault.repository import BlockError, Repository

TASK_BLOCKS = 32
PAGE_BLOCKS_KEPT = 8  # decompressed blocks of changed pages kept for the writers (8 MiB)
FLUSH_EARLY_BYTES = 64 << 20
AS_FILES_README = """\
This folder holds dbsafe recovery point {point_id} of server {server}
(PostgreSQL {pg_version}, backup from {start_time} to {end_time}, LSN {start_lsn} to {stop_lsn}).

  pgdata/   the data directory, with backup_label
  wal/      the WAL written during the backup, needed to make it consistent

To start it by hand:
  1. cp wal/* pgdata/pg_wal/
  2. chown -R postgres:postgres pgdata && chmod 700 pgdata
  3. pg_ctl -D pgdata -o "-p <free port>" start      (as the postgres user)
PostgreSQL replays the WAL up to {stop_lsn} and opens the database.
{tablespaces}"""


def _restore_files(repo: Repository, files: Iterable[tuple[dict, Tree, str]], workers: int,
                   on_bytes) -> None:
    """Write each file's blocks to its destination (a tree and a name in it), in parallel,
    as the files come: nothing is kept of a file once it is written.

    The entries come from ``combine.file_writes``: a differential's files are their base's
    blocks (cut at the differential's size) with its changed pages written over them (a
    synthetic full's layered files alike): a page on one of the blocks is patched into
    it before the block is written, so a file is written once and its early flush still
    comes with its last block; pages past the blocks are written apart (never on a block's
    bytes). Each file is made new (``O_EXCL | O_NOFOLLOW``) in its folder before its
    blocks are written, and gets its mtime once they all are.

    A large file is fsynced by one background thread as soon as its last block is written,
    so the disk flushes while the rest is still decompressed (an A/B on the benchmark
    data: 6.95 s against 7.53 s with one sync at the end). The caller's final
    ``sync_trees`` makes the small files and the folders durable.

    Two threads never write one file at once when another file has work left: Linux
    writes a file through its page cache under the file's lock, so a second writer of the
    same file waits (spinning in the kernel while the first copies) instead of copying
    into another file beside it. The tasks are handed out from the next ``LOOKAHEAD``
    files, a task of a file no thread is writing first (``_Tasks``); the last file's tasks,
    when nothing else is left, go to every thread, each writing under the file's lock
    while the others decompress.
    """
    bs = repo.block_size
    zero_id = repo.keyed.digest(bytes(bs))  # an all-zero block: left as a hole
    lock = threading.Lock()
    flushes: list[Future] = []
    # blocks of changed pages, each decompressed once for the file blocks it patches
    recent = combine.RecentBlocks(repo.read_block, keep=PAGE_BLOCKS_KEPT)
    direct = DirectWrites()  # large files around the page cache, where the filesystem allows

    def _open(tree: Tree, rel: str, size: int) -> tuple[int, bool]:
        if size < DIRECT_FROM:
            return tree.open_write(rel), False
        return direct.open(functools.partial(tree.open_write, rel))

    def read(block_id: bytes, entry: dict, fetch=repo.read_block) -> bytes:
        try:
            return fetch(block_id)
        except BlockError as exc:
            raise exc.as_error(entry["path"]) from None

    def done(file: _Writing) -> None:
        with lock:
            file.tasks_left -= 1
            if file.tasks_left:
                return
        finished(file)

    def finished(file: _Writing) -> None:
        if file.entry["size"] >= FLUSH_EARLY_BYTES:
            with lock:
                flushes.append(flusher.submit(file.tree.fsync, file.rel))
        file.tree.set_mtime(file.rel, file.entry["mtime"])

    def run(file: _Writing, first: int, ids: list[str], overlay: combine.Overlay) -> None:
        entry, tree, rel = file.entry, file.tree, file.rel
        fd, around = _open(tree, rel, entry["size"])
        used = entry.get("blocks_size", entry["size"])
        try:
            for i, id_hex in enumerate(ids):
                block_id = bytes.fromhex(id_hex)
                offset = (first + i) * bs
                length = min(bs, used - offset)
                patches = overlay.get(first + i)
                if block_id == zero_id and not patches:
                    on_bytes(length)
                    continue
                data = bytes(length) if block_id == zero_id else read(block_id, entry)
                if patches:  # changed pages on it: written with it, not after it
                    block = combine.patched_block(
                        data, length, min(bs, entry["size"] - offset), patches,
                        lambda page_id: read(bytes.fromhex(page_id), entry, recent.get))
                    with file.lock:
                        direct.pwrite(fd, block, offset, around)
                    on_bytes(length + sum(p[3] for p in patches))
                    continue
                # a base block may run past a differential's (smaller) size, or a
                # synthetic full's read block past the size its file was cut to
                with file.lock:
                    direct.pwrite(fd, memoryview(data)[:length], offset, around)
                on_bytes(length)
        finally:
            os.close(fd)
        done(file)

    def run_pages(file: _Writing, blocks: list) -> None:
        fd, around = _open(file.tree, file.rel, file.entry["size"])
        try:
            for id_hex, writes in blocks:
                data = memoryview(read(bytes.fromhex(id_hex), file.entry))
                with file.lock:
                    for file_offset, at, length in writes:
                        direct.pwrite(fd, data[at:at + length], file_offset, around)
                for _, _, length in writes:
                    on_bytes(length)
        finally:
            os.close(fd)
        done(file)

    def tasks() -> Iterator[tuple[_Writing, list[tuple[Callable, tuple]]]]:
        for entry, tree, rel in files:
            tree.create(rel, layout.file_mode(entry.get("mode")), entry["size"])
            blocks = entry["blocks"]
            overlay, pages = combine.pages_by_block(entry, bs) if "pages" in entry else ({}, [])
            file = _Writing(entry, tree, rel, -(-len(blocks) // TASK_BLOCKS)
                            - (-len(pages) // TASK_BLOCKS))
            if not file.tasks_left:
                finished(file)
                continue
            yield file, [
                *((run, (file, first, blocks[first:first + TASK_BLOCKS], overlay))
                  for first in range(0, len(blocks), TASK_BLOCKS)),
                *((run_pages, (file, pages[first:first + TASK_BLOCKS]))
                  for first in range(0, len(pages), TASK_BLOCKS))]

    with ThreadPoolExecutor(1, thread_name_prefix="dbsafe-flush") as flusher:
        run_parallel(workers, "dbsafe-restore", _Tasks(tasks()))
    for fut in flushes:
        fut.result()


@dataclass(eq=False)
class _Writing:
    """A file being written: its entry, where, its tasks not yet done, and the lock its
    writes take (one writer at a time: see ``_restore_files``)."""
    entry: dict
    tree: Tree
    rel: str
    tasks_left: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    writers: int = 0  # tasks handed out and not yet done (``_Tasks``)


LOOKAHEAD = 8  # files whose tasks may be handed out ahead of the first one's


class _Tasks:
    """The calls of ``run_parallel``, one file's tasks after the other, except that a
    thread asking for one gets a task of the first of the next ``LOOKAHEAD`` files that no
    thread is writing (only the first when all are): two threads write two files side by
    side. Advanced under ``run_parallel``'s lock."""

    def __init__(self, files: Iterator[tuple[_Writing, list[tuple[Callable, tuple]]]]):
        self._files = files
        self._window: deque[tuple[_Writing, deque[tuple[Callable, tuple]]]] = deque()
        self._lock = threading.Lock()  # the writers counts: taken here and by the tasks

    def __iter__(self) -> Iterator[tuple[Callable, tuple]]:
        return self

    def __next__(self) -> tuple[Callable, tuple]:
        while len(self._window) < LOOKAHEAD:
            nxt = next(self._files, None)
            if nxt is None:
                break
            self._window.append((nxt[0], deque(nxt[1])))
        if not self._window:
            raise StopIteration
        with self._lock:
            chosen = next((w for w in self._window if not w[0].writers), self._window[0])
            chosen[0].writers += 1
        file, left = chosen
        fn, args = left.popleft()
        if not left:
            self._window.remove(chosen)
        return self._task, (file, fn, args)

    def _task(self, file: _Writing, fn: Callable, args: tuple) -> None:
        try:
            fn(*args)
        finally:
            with self._lock:
                file.writers -= 1


_WRITE, _ZEROS = "W", "Z"


class _Spooled:
    """A restore's files as its reading of the point's entries made them: those to write
    (combined with their base's, checked: ``writes``) and those to create as zeros, spooled
    to the local disk (core/spool.py) and read back as the files are written. Nothing is
    held per file, and the vault's objects are read once."""

    def __init__(self) -> None:
        self._spool = Spool("dbsafe-restore-")
        self.count = 0
        self.bytes = 0

    def add(self, kind: str, entry: dict) -> None:
        self._spool.add([kind, entry])

    def writes(self, entries: Iterable[dict]) -> Iterator[dict]:
        """``entries`` to write, spooled and counted as they pass."""
        for entry in entries:
            self.count += 1
            self.bytes += entry["size"] + sum(w[2] for _, writes in entry.get("pages", ())
                                              for w in writes)
            self.add(_WRITE, entry)
            yield entry

    def read(self) -> Iterator[tuple[str, dict]]:
        """(kind, entry) pairs, in the order they were spooled."""
        return self._spool.read()

    def close(self) -> None:
        self._spool.close()


def _file_bytes(repo: Repository, entry: dict) -> bytes:
    """One small file's content (pg_control: written on its own, last)."""
    out = bytearray(entry["size"])
    bs = repo.block_size
    used = entry.get("blocks_size", entry["size"])
    for i, id_hex in enumerate(entry["blocks"]):
        data = repo.read_block(bytes.fromhex(id_hex))[:max(0, used - i * bs)]
        out[i * bs:i * bs + len(data)] = data
    for id_hex, writes in entry.get("pages", ()):
        data = repo.read_block(bytes.fromhex(id_hex))
        for file_offset, at, length in writes:
            out[file_offset:file_offset + length] = data[at:at + length]
    return bytes(out)


def _write_control(repo: Repository, pgdata: Tree, entry: dict | None, label: str,
                   owner: tuple[int, int] | None) -> None:
    """What makes the folder a data directory PostgreSQL starts, written after everything
    else is durable: a restore killed before leaves a folder PostgreSQL refuses (no
    global/pg_control), never one it starts with pages still zero."""
    if entry is not None:
        try:
            data = _file_bytes(repo, entry)
        except BlockError as exc:
            raise exc.as_error(entry["path"]) from None
        folder, _, name = CONTROL_FILE.rpartition("/")
        write_new(pgdata.folder(folder), name, data, layout.file_mode(entry.get("mode")),
                  owner, sync=True)
        os.fsync(pgdata.folder(folder))
    layout.write_backup_label(pgdata, label, owner)


def run_restore(vault: Vault, name: str, point_id: str, to_pgdata: Path | None = None,
                as_files: Path | None = None, port: int | None = None, start: bool = False,
                tablespace_map: dict[str, str] | None = None, owner: str | None = None,
                workers: int | None = None, on_progress: ProgressFn | None = None,
                recovery: RecoveryPlan | None = None,
                databases: list[str] | None = None, job: Job | None = None,
                under: Path | restore_targets.Held | None = None,
                drop_left_out: bool = True) -> dict:
    """Restore ``point_id``; with ``recovery``, then recover it to the plan's target (the
    server is started for that, and stopped again afterwards unless ``start``). With
    ``databases``, only those databases' files are written (services/backup/selection.py).

    The databases the point does not hold (or, with ``databases``, the others) are
    ``databases_left_out``: their files are zeros and connecting to them fails; when the
    restore brings the server up (recovery that is not paused, ``start``) it drops them
    (``databases_dropped``), unless ``drop_left_out`` is false (a staging copy that only
    dumps one database).

    The target and each tablespace's place are new folders below the vault's restore roots
    (services/restore/targets.py), or below ``under``: a folder the caller made for the
    restore (a drill's; a staging folder, held open). What the restore made is removed
    when it fails.
    """
    server, manifest = load_point(vault, name, point_id)
    plan = selection.restore_plan(manifest, databases)
    left_out = plan.left_out
    ask_in = selection.control_database(manifest, left_out)
    oids = {d["name"]: d["oid"] for d in manifest.get("databases", [])}
    to_drop = [oids[n] for n in left_out] if drop_left_out else []
    dropped: list[str] = []

    def writes(entries: Iterable[dict]) -> Iterator[dict]:
        """The files to write, one at a time (combine.py), of the point's ``entries``."""
        return combine.file_writes(manifest, combine.load_base(vault.repo, manifest), entries)

    # The one reading of the entries: each checked (a forged one refuses the point before
    # anything is written), combined with its base's, counted, and spooled to local disk;
    # the writers take them from there, so what is written is what was checked.
    spooled = _Spooled()

    def kept() -> Iterator[dict]:
        for entry in manifest_checks.files(manifest):
            if plan.keeps(entry):
                yield entry
            else:
                spooled.add(_ZEROS, entry)

    listed = spooled.writes(writes(kept()))
    destination = to_pgdata or as_files
    assert destination is not None  # the caller gives one (cli, api, staging, drills)
    target = Path(os.path.abspath(destination))
    placement = restore_targets.place(vault, target, under)
    ts_places = {} if as_files else {
        ts["oid"]: restore_targets.place_tablespace(
            vault, ts["oid"], Path((tablespace_map or {}).get(ts["oid"], ts["location"])), under)
        for ts in manifest["tablespaces"]}
    restore_targets.apart([target, *(p.path for p in ts_places.values())])
    # room for all of it, said before anything is written (restore.no_space)
    restore_checks.require_places(restore_checks.instance_needs(
        manifest, listed, target, {oid: p.path for oid, p in ts_places.items()}, recovery,
        server.get("wal_segment_size"), bool(as_files)))
    pgdata_path = target / "pgdata" if as_files else target
    stage = recovery_engine.stage_dir(pgdata_path)
    if recovery is not None and not as_files and os.path.lexists(stage):
        raise DbsafeError("restore.target_exists", path=stage)
    if recovery is not None and not as_files and port is None:
        port = layout.free_port()
    if start and port is None:
        raise DbsafeError("restore.port_in_use", port="(none given)")
    if start and port is not None and not layout.port_free(port):
        raise DbsafeError("restore.port_in_use", port=port)
    owner = owner or manifest["instance"].get("owner") or "postgres"
    layout.check_owner(owner)
    # what would fail later, said before the target exists: a vault without its index
    # files reads no block, and a server is started only from a folder root alone holds
    vault.repo.check_index()
    if (start or recovery is not None) and not as_files:
        cluster.trusted_program(str(Path(server["bin_dir"]) / "pg_ctl"))
    ids = layout.owner_ids(owner) if os.geteuid() == 0 else None
    own_job = job is None  # else a step of a larger restore's job (db_restore.py)
    with Job(vault.catalog, "restore", name, on_progress) if own_job else \
            contextlib.nullcontext(job) as job:
        assert job is not None  # its own, or the larger restore's
        t0 = time.perf_counter()
        total = spooled.bytes + sum(w["size"] for w in manifest["wal"])
        job.expect(total)
        made: list[restore_targets.Made] = []
        trees: list[Tree] = []
        try:
            made.append(restore_targets.create(placement, 0o755 if as_files else 0o700))
            made += [restore_targets.create(p, 0o700) for p in ts_places.values()]
            top = made[0].tree
            if as_files:
                if manifest["tablespaces"]:
                    top.mkdir("tablespaces", 0o755)
                ts_trees = {ts["oid"]: top.subtree(f"tablespaces/{ts['oid']}")
                            for ts in manifest["tablespaces"]}
                pgdata, wal = top.subtree("pgdata"), top.subtree("wal")
                trees += [pgdata, wal, *ts_trees.values()]
            else:
                ts_trees = dict(zip(ts_places, (m.tree for m in made[1:]), strict=True))
                pgdata, wal = top, top.subtree("pg_wal")
                trees.append(wal)
            layout.make_layout(pgdata, manifest["dirs"], ts_trees)
            def sparse(entry: dict) -> None:
                tree, rel = layout.placed(entry["path"], pgdata, ts_trees)
                tree.create(rel, layout.file_mode(entry.get("mode")), entry["size"])

            for entry in plan.skipped:
                sparse(entry)
            control: list[dict] = []  # written last, on its own (_write_control)

            def placed() -> Iterator[tuple[dict, Tree, str]]:  # as they were spooled
                for kind, entry in spooled.read():
                    if kind == _ZEROS:
                        sparse(entry)
                    elif entry["path"] == CONTROL_FILE:
                        control.append(entry)
                    else:
                        yield entry, *layout.placed(entry["path"], pgdata, ts_trees)

            wal_files = ((w, wal, w["path"]) for w in manifest["wal"])
            _restore_files(vault.repo, itertools.chain(placed(), wal_files),
                           workers or vault.read_workers(), job.advance)
            spooled.close()
            control_entry = control[0] if control else None
            if as_files:
                write_new(top.fd, "RESTORE.txt", _as_files_readme(
                    manifest, point_id, name, recovery, wal.path, left_out).encode(), 0o644)
                if recovery is not None:
                    _stage_files(vault, server, recovery, wal.fd)
            else:
                layout.disable_archiving(pgdata)
                if port is not None:
                    layout.set_port(pgdata, port)
                if recovery is not None:
                    recovery_engine.write_settings(pgdata, recovery.target, stage)
            if ids is not None:
                for tree in [pgdata, *ts_trees.values()] + ([wal] if as_files else []):
                    tree.chown(*ids)
            sync_trees([m.tree.fd for m in made])
            _write_control(vault.repo, pgdata, control_entry, manifest["backup_label"], ids)
            if control_entry is not None:
                job.advance(control_entry["size"])
            restored_seconds = time.perf_counter() - t0
            log = None
            recovered = None
            if recovery is not None and not as_files:
                assert port is not None  # a free one was chosen above
                log, recovered, dropped = _recover(
                    vault, server, recovery, pgdata_path, made[0].parent_fd, port, owner,
                    workers or vault.read_workers(), ask_in, to_drop,
                    keep_running=start or recovery.target.pause)
            elif start:
                assert port is not None  # refused above without one
                try:
                    log = layout.start(pgdata_path, server["bin_dir"], port, owner)
                    if to_drop:
                        dropped = layout.drop_databases(pgdata_path, port, ask_in, to_drop)
                except BaseException:
                    _stop_if_running(pgdata_path, server["bin_dir"], owner)
                    raise
        except BaseException as exc:
            spooled.close()
            for m in made:
                m.remove()
            if isinstance(exc, OSError) and exc.errno in NO_SPACE:  # filled meanwhile
                raise DbsafeError("restore.no_space", where=target, need=total,
                                  free=restore_checks.free_bytes(target)) from exc
            if isinstance(exc, OSError):  # something planted on the way
                raise DbsafeError("restore.write_failed", path=target,
                                  reason=f"{exc.strerror or exc}"
                                         + (f" ({exc.filename})" if exc.filename else "")) \
                    from exc
            raise
        finally:
            for tree in trees:
                tree.close()
            for m in made:
                m.close()
        result = {
            "point_id": point_id, "server": name, "target": str(target),
            "pgdata": str(pgdata_path), "mode": "files" if as_files else "pgdata",
            "bytes_written": total, "files": spooled.count,
            "databases_left_out": left_out, "databases_dropped": dropped,
            "wal_segments": len(manifest["wal"]),
            "tablespaces": {oid: str(t.path) for oid, t in ts_trees.items()},
            "seconds": round(time.perf_counter() - t0, 3),
            "restore_seconds": round(restored_seconds, 3),
            "started": bool(start or (recovery and recovery.target.pause and not as_files)),
            "port": port, "log": str(log) if log else None,
            "socket_dir": str(pgdata_path) if start or (recovery and recovery.target.pause)
            else None,
            "recovery": recovered,
        }
        if own_job:
            job.finish(result)
        return result


def _stop_if_running(pgdata: Path, bin_dir: str, owner: str) -> None:
    if layout.postmaster_pid(pgdata) is not None:
        with contextlib.suppress(DbsafeError):
            layout.stop(pgdata, bin_dir, owner)


def _as_files_readme(manifest: dict, point_id: str, name: str, plan: RecoveryPlan | None,
                     wal_dir: Path, left_out: list[str]) -> str:
    ts_note = "".join(
        f"Tablespace {ts['oid']} (was {ts['location']}) is in tablespaces/"
        f"{ts['oid']}; pgdata/pg_tblspc/{ts['oid']} links to it.\n"
        for ts in manifest["tablespaces"])
    if left_out:
        ts_note += (f"The point does not hold the databases {', '.join(left_out)}: their "
                    "files are zeros and connecting to them fails; drop them once the "
                    "server runs.\n")
    return AS_FILES_README.format(
        point_id=point_id, server=name, tablespaces=ts_note,
        pg_version=manifest["instance"]["pg_version"],
        **{k: manifest[k] for k in ("start_time", "end_time", "start_lsn", "stop_lsn")}) + \
        _recovery_note(plan, wal_dir)


def _recover(vault: Vault, server: dict, plan: RecoveryPlan, pgdata: Path, parent_fd: int,
             port: int, owner: str, workers: int, dbname: str, drop: list[int],
             keep_running: bool) -> tuple[Path, dict, list[str]]:
    """Start the restored server in recovery, feed it the plan's WAL, wait for the target;
    once it is promoted, drop the databases with the OIDs ``drop`` (returns their names).

    The WAL is staged in a folder beside the data directory, made here in ``parent_fd``
    (the target's parent) and given to the cluster's owner, whose restore_command takes
    the files; dbsafe writes into it only new files, through its descriptor."""
    t0 = time.perf_counter()
    uid, gid = layout.owner_ids(owner)
    stage = recovery_engine.stage_dir(pgdata)
    try:
        stage_fd = make_dir(stage.name, parent_fd, 0o700)
    except FileExistsError:
        raise DbsafeError("restore.target_exists", path=stage) from None
    stager = WalStager(vault, server["system_identifier"], plan.wal_files, stage_fd,
                       uid, gid, workers)
    try:
        os.fchown(stage_fd, uid, gid)
        stager.prepare()
        stager.start()
        log = pgdata / layout.START_LOG
        try:
            layout.start(pgdata, server["bin_dir"], port, owner,
                         settings={} if keep_running else recovery_engine.replay_settings())
        except DbsafeError:
            if stager.error is not None:  # recovery aborted because a file could not be staged
                raise stager.error from None
            raise
        pid = layout.postmaster_pid(pgdata)
        assert pid is not None  # started just now: its pid file is there
        recovery_engine.wait_for_target(pgdata, port, plan.target, pid, log,
                                        lambda: stager.error, dbname)
        dropped = []
        if not plan.target.pause:
            recovery_engine.clear_settings(pgdata, port, dbname)
            if drop:
                dropped = layout.drop_databases(pgdata, port, dbname, drop)
        if not keep_running:
            layout.stop(pgdata, server["bin_dir"], owner)
    except BaseException:
        stager.stop()
        _stop_if_running(pgdata, server["bin_dir"], owner)
        raise
    finally:
        stager.stop()
        os.close(stage_fd)
        shutil.rmtree(stage.name, dir_fd=parent_fd, ignore_errors=True)
    return log, {"target": plan.target.describe(), "timeline": plan.target.timeline,
                 "paused": plan.target.pause, "base_point": plan.base_point,
                 "wal_files": len(plan.wal_files), "wal_staged": stager.staged,
                 "seconds": round(time.perf_counter() - t0, 3)}, dropped


def _stage_files(vault: Vault, server: dict, plan: RecoveryPlan, wal_fd: int) -> None:
    """--as-files with a target: the WAL recovery needs, next to the base's own."""
    stager = WalStager(vault, server["system_identifier"], plan.wal_files, wal_fd, 0, 0, 1)
    for name in plan.wal_files:
        stager.write_plain(name)


def _recovery_note(plan: RecoveryPlan | None, wal_dir: Path) -> str:
    if plan is None:
        return ""
    lines = [f"{k} = {layout.conf_value(v)}" for k, v in plan.target.settings().items()]
    command = layout.conf_value(f"cp {shlex.quote(str(wal_dir))}/%f %p")
    return ("\nTo recover to {} instead of stopping at the backup's end, before step 3:\n"
            "  touch pgdata/recovery.signal, and add to pgdata/postgresql.auto.conf:\n"
            "    restore_command = {}\n    {}\n").format(
                plan.target.describe(), command, "\n    ".join(lines))
