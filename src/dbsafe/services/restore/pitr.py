"""Point-in-time restore: which base backup and which WAL reach a target, and feeding that
WAL to the recovering server.

The plan picks the latest base (full, copy-only or differential) that ends before the
target on the target's log-chain run and holds the databases restored
(services/lifecycle/coverage.py),
and the archived WAL files from that base's stop to the record where recovery stops,
following timeline switches. The stager then decompresses
those files in parallel, ahead of PostgreSQL's startup process and a bounded window ahead
(peers fetch one segment per restore_command call, serially: that is where their
point-in-time restores lose most time).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from dbsafe.core.concurrency import run_parallel
from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import O_NEW, write_new
from dbsafe.engines.postgres import wal
from dbsafe.engines.postgres.recovery import STAGE_FAILED, RecoveryTarget
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.lifecycle import coverage
from dbsafe.services.lifecycle.manifest_checks import check_wal_names
from dbsafe.services.lifecycle.points import lineage_points, load_point
from dbsafe.services.logchain.chain import (
    BASE_TYPES,
    Chain,
    Run,
    describe_ranges,
    log_chain,
    parent_run,
)
from dbsafe.services.restore.instants import parse_instant
from dbsafe.vault.repository import BlockError

STAGE_WINDOW = 32  # staged files not yet taken by PostgreSQL (32 x 16 MB on disk at most)


@dataclass
class RecoveryPlan:
    base_point: str
    target: RecoveryTarget
    wal_files: list[str]                      # in the order recovery asks for them
    target_time: str | None = None
    notes: dict = field(default_factory=dict)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def plan_recovery(vault: Vault, server: dict, time_: str | None = None,
                  lsn: str | None = None, name: str | None = None,
                  log_point: dict | None = None, pause: bool = False,
                  databases: list[str] | None = None) -> RecoveryPlan:
    """The base and WAL that reach the target. With ``databases`` (a restore of those
    alone) only the backups that hold them are bases, and the chain is theirs
    (``restore.database_not_in_chain`` when none precedes the target); without, the base
    is the latest of those that leave out the fewest of the instance's databases
    (services/lifecycle/coverage.py): an older full of every database before a newer full of a
    few."""
    t = parse_instant(time_) if time_ is not None else None  # input first: no zone, no plan
    if (server["recovery_model"] or "SIMPLE") != "FULL":
        raise DbsafeError("restore.simple_model", name=server["name"])
    points = lineage_points(vault, server)
    if databases:
        points = [p for p in points if coverage.holds(p, databases)]
    try:
        return _plan(vault, server, points, t, lsn, name, log_point, pause,
                     databases or coverage.instance_databases(vault, server))
    except DbsafeError as exc:
        if not databases or exc.code not in ("restore.outside_chain", "restore.no_base"):
            raise
        raise DbsafeError("restore.database_not_in_chain", name=server["name"],
                          database=", ".join(databases), target=exc.details["target"],
                          ranges=exc.details["ranges"]) from None


def _plan(vault: Vault, server: dict, points: list[dict], t: datetime | None, lsn: str | None,
          name: str | None, log_point: dict | None, pause: bool,
          wanted: list[str]) -> RecoveryPlan:
    chain = log_chain(vault, server, points)
    if t is not None:
        label = t.isoformat()
        # The newest timeline that reaches t, as recovery_target_timeline=latest would: a
        # parent timeline's WAL past a promotion (the old primary archived it before it
        # crashed) is a dead branch whose commits the surviving history lost.
        run = max((r for r in _restorable(chain)
                   if _time(r.start_time) <= t < _time(r.end_time)),  # type: ignore[arg-type]  # restorable: both ends
                  key=lambda r: r.timeline, default=None)
        if run is None:
            raise DbsafeError("restore.outside_chain", target=label, name=server["name"],
                              ranges=describe_ranges(chain))
        base = _base(points, chain, run, lambda p: _time(p["end_time"]) <= t, wanted)
        last = next((s for s in _run_path(chain, run)
                     if s["last_xact_time"] and _time(s["last_xact_time"]) > t), None)
        target = RecoveryTarget("time", t.isoformat(), run.timeline, pause)
    elif lsn is not None or name is not None or log_point is not None:
        if name is not None:
            found = _restore_point(chain, name)
            if found is None:
                raise DbsafeError("restore.outside_chain", target=f"restore point {name!r}",
                                  name=server["name"], ranges=describe_ranges(chain))
            at, label = wal.parse_lsn(found["lsn"]), f"restore point {name!r}"
        elif log_point is not None:
            at = wal.parse_lsn(log_point["stop_lsn"]) - 1
            label = f"log point {log_point['point_id']}"
        else:
            assert lsn is not None  # neither a name nor a log point: an LSN
            try:
                at, label = wal.parse_lsn(lsn), f"LSN {lsn}"
            except (ValueError, IndexError):
                raise DbsafeError("restore.bad_target", target=lsn,
                                  reason="not an LSN such as 0/3000060") from None
        # as for a time: the newest timeline holding the position (the surviving history
        # past a promotion), except that a log point stays on its own timeline
        holding = [r for r in _restorable(chain) if r.start_lsn <= at < r.end_lsn]
        if log_point is not None and log_point.get("timeline") is not None:
            holding = [r for r in holding if r.timeline == log_point["timeline"]] or holding
        run = max(holding, key=lambda r: r.timeline, default=None)
        if run is None:
            raise DbsafeError("restore.outside_chain", target=label, name=server["name"],
                              ranges=describe_ranges(chain))
        base = _base(points, chain, run, lambda p: wal.parse_lsn(p["stop_lsn"]) <= at,
                     wanted)
        seg = run.first["segment_size"]
        path = _run_path(chain, run)
        last = next((s for s in path if s["segno"] > at // seg), None) if lsn else \
            next((s for s in path if s["segno"] == at // seg), None)
        if name is not None:
            target = RecoveryTarget("name", name, run.timeline, pause)
        elif log_point is not None:
            target = RecoveryTarget("end", None, run.timeline, pause)
        else:
            target = RecoveryTarget("lsn", lsn, run.timeline, pause)
    else:
        raise ValueError("a target is needed")
    if base is None:
        raise DbsafeError("restore.no_base", name=server["name"], target=label,
                          ranges=describe_ranges(chain))
    files = _wal_files(chain, run, wal.parse_lsn(base["stop_lsn"]), last)
    return RecoveryPlan(base["point_id"], target, files,
                        target_time=target.value if target.kind == "time" else None,
                        notes={"timeline": run.timeline, "base_end_time": base["end_time"]})


def _restorable(chain: Chain) -> list[Run]:
    return [r for r in chain.runs if r.start_time and r.end_time and r.end_time > r.start_time]


def _ancestry(chain: Chain, run: Run) -> list[Run]:
    """The run and the runs of parent timelines it continues, oldest first."""
    runs = [run]
    while (parent := parent_run(runs[0], chain.runs, chain.histories)) is not None:
        runs.insert(0, parent)
    return runs


def _run_path(chain: Chain, run: Run) -> list[dict]:
    """The segments recovery reads on the way to the end of ``run``, in order."""
    runs = _ancestry(chain, run)
    out: list[dict] = []
    for i, r in enumerate(runs):
        next_first = runs[i + 1].first["segno"] if i + 1 < len(runs) else None
        out.extend(s for s in r.segments if next_first is None or s["segno"] < next_first)
    return out


def _base(points: list[dict], chain: Chain, run: Run, before,
          wanted: list[str]) -> dict | None:
    """The base backup before the target on ``run`` or its ancestors that leaves out the
    fewest of ``wanted``, the latest of those."""
    runs = _ancestry(chain, run)
    candidates = [p for p in points if p["type"] in BASE_TYPES and before(p) and any(
        r.timeline == p["timeline"] and r.holds(wal.parse_lsn(p["stop_lsn"])) for r in runs)]
    return max(candidates, key=lambda p: (-len(coverage.missing(p, wanted)), p["end_time"]),
               default=None)


def _restore_point(chain: Chain, name: str) -> dict | None:
    """The first restore point with that name: the one PostgreSQL's recovery stops at."""
    for run in chain.runs:
        for seg in run.segments:
            for rp in json.loads(seg["restore_points"] or "[]"):
                if rp["name"] == name:
                    return rp
    return None


def _wal_files(chain: Chain, run: Run, base_stop: int, last: dict | None) -> list[str]:
    """History files of the timelines on the path, then segments from the base's stop."""
    runs = _ancestry(chain, run)
    names = [f"{r.timeline:08X}.history" for r in runs if r.timeline in chain.histories]
    names = list(dict.fromkeys(names))
    seg_size = run.first["segment_size"]
    for s in _run_path(chain, run):
        if s["segno"] < base_stop // seg_size:
            continue
        names.append(s["name"])
        if last is not None and s["name"] == last["name"]:
            break
    return names


class WalStager:
    """Decompress the plan's WAL files into the stage folder, in parallel, a window ahead.

    The stage folder (``stage_fd``) belongs to the cluster's owner, whose restore_command
    moves the files out: dbsafe only makes new files in it (``O_EXCL | O_NOFOLLOW``,
    through the folder's descriptor) and renames them within it, so nothing the owner
    plants there is followed. Names come from the catalog, which the storage's WAL records
    fill: only PostgreSQL's WAL names are staged."""

    def __init__(self, vault: Vault, system_id: str, names: list[str], stage_fd: int,
                 uid: int, gid: int, workers: int) -> None:
        check_wal_names(names, "the recovery plan")
        self.vault, self.system_id, self.names = vault, system_id, names
        self.stage_fd, self.uid, self.gid = stage_fd, uid, gid
        self.workers = max(1, workers)
        self.error: BaseException | None = None
        self.staged = 0
        self._taken = 0  # how many of ``names``, from the first, PostgreSQL has taken
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def prepare(self) -> None:
        for name in self.names:
            write_new(self.stage_fd, f"{name}.wait", b"")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dbsafe-wal-stager", daemon=True)
        self._thread.start()

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.stage_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def taken(self) -> int:
        """How many WAL files PostgreSQL has taken so far (restore_command moves each out
        of the stage as recovery asks for it, in order): recovery has replayed up to the
        start of the last one. A stat or two a call, from where the last call stopped."""
        while self._taken < len(self.names):
            name = self.names[self._taken]
            if self._exists(name) or self._exists(f"{name}.wait"):
                break
            self._taken += 1
        return self._taken

    def _run(self) -> None:
        try:
            window: deque[str] = deque()
            lock = threading.Lock()

            def taken(name: str) -> bool:
                return not self._exists(name) and not self._exists(f"{name}.wait")

            def stage_one(name: str) -> None:
                while not self._stop.is_set():
                    with lock:
                        while window and taken(window[0]):
                            window.popleft()
                        if len(window) < STAGE_WINDOW:
                            window.append(name)
                            break
                    time.sleep(0.02)
                if not self._stop.is_set():
                    self._write(name)

            run_parallel(self.workers, "dbsafe-stage", [(stage_one, (n,)) for n in self.names])
        except BaseException as exc:  # reported to the waiting restore, which stops PostgreSQL
            self.error = exc
            # and told to PostgreSQL's restore_command, which aborts recovery at once
            # (a server still starting would otherwise wait on a file that never comes)
            with contextlib.suppress(OSError):
                write_new(self.stage_fd, STAGE_FAILED, b"")

    def write_plain(self, name: str) -> None:
        """Write one file to the folder, no markers (restore --as-files)."""
        self._write(name, markers=False)

    def _write(self, name: str, markers: bool = True) -> None:
        record = self.vault.repo.load_wal_record(self.system_id, name)
        if record is None:
            raise DbsafeError("vault.block_missing", block_id="(whole file)", path=f"wal/{name}",
                              reason="its record is gone")
        tmp = f"{name}.tmp"
        fd = os.open(tmp, O_NEW, 0o600, dir_fd=self.stage_fd)
        try:
            if markers:
                os.fchown(fd, self.uid, self.gid)
            for id_hex in record["blocks"]:
                try:
                    data = memoryview(self.vault.repo.read_block(bytes.fromhex(id_hex)))
                except BlockError as exc:
                    raise exc.as_error(f"wal/{name}") from None
                while data:
                    data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=self.stage_fd, dst_dir_fd=self.stage_fd)
        if markers:
            os.unlink(f"{name}.wait", dir_fd=self.stage_fd)
        self.staged += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


def base_and_plan(vault: Vault, name: str, point_id: str | None = None,
                  time_: str | None = None, lsn: str | None = None,
                  restore_point: str | None = None, pause: bool = False,
                  databases: list[str] | None = None) -> tuple[str, RecoveryPlan | None]:
    """What a restore starts from: a backup point as it is (``point_id`` of a full or a
    differential: no recovery plan), or the base and plan that reach a target — a time, an
    LSN, a named restore point, or the end of a log point (the CLI and the API share this).
    ``databases``: a restore of those alone, from a base that holds them."""

    log_point = None
    if point_id is not None:
        _server, manifest = load_point(vault, name, point_id)
        if manifest["type"] != "log":
            if pause:
                raise DbsafeError("restore.bad_target", target="pause",
                                  reason="pausing needs a target: a time, an LSN, a restore "
                                         "point or a log point")
            return point_id, None
        log_point = manifest
    plan = plan_recovery(vault, get_server(vault, name), time_, lsn, restore_point, log_point,
                         pause=pause, databases=databases)
    return plan.base_point, plan
