"""The process behind one mount or instant instance: ``python -m
dbsafe.services.access.daemon STATE_FILE``, started in a session of its own by
``dbsafe mount`` or ``dbsafe instant`` (instant.py), which wait until it says ``ready``.

The file system is served from this process's main thread (pyfuse3 runs on trio); the
work that uses it, and must therefore never run on that thread, runs in a worker thread:
for an instance, writing its recovery settings through the mount, staging its WAL,
starting PostgreSQL, waiting for the target, and at the end stopping it. The process ends
on SIGTERM (``dbsafe instant stop``, ``dbsafe umount``), at the run's time to live, when
its server dies, or when someone unmounts the folder; it then stops the server, unmounts
and removes its folders and its state file. A process killed outright leaves that to
``runs.reap``, which the next command runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pyfuse3
import trio

from dbsafe.core.concurrency import pid_alive, process_start
from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import Tree, make_dir, open_dir, read_tail
from dbsafe.engines.postgres import recovery as recovery_engine
from dbsafe.engines.postgres import restore as layout
from dbsafe.services.access import runs, switch
from dbsafe.services.access.fusefs import PointFS
from dbsafe.services.access.plans import plan_from_state
from dbsafe.services.access.view import PointView
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.lifecycle.points import load_point
from dbsafe.services.restore import combine
from dbsafe.services.restore.pitr import WalStager

POLL = 0.2
SWITCH = "switch"  # SIGUSR1: instant recovery's switch to the copy on disk (switch.py)


class Stop:
    """Why the run ends, set once from any thread."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


def serve(state_path: Path) -> int:
    state = runs.read(state_path)
    if state is None:
        return 2
    stop = Stop()
    runs.update(state_path, pid=os.getpid(), pid_start=process_start(os.getpid()))
    try:
        vault = Vault.open(Path(state["vault"]))
        _server, manifest = load_point(vault, state["server"], state["point_id"])
        view = PointView(vault.repo, manifest, combine.load_base(vault.repo, manifest))
        uid, gid = layout.owner_ids(state["owner"])
        store = Path(state["store"]) if state.get("store") else None
        wal_dir = Path(state["wal_dir"]) if state.get("wal_dir") else None
        if wal_dir is not None:
            _local_wal(view, wal_dir, uid, gid)
        fs = PointFS(view, uid, gid, store, wal_dir)
    except BaseException as exc:  # noqa: BLE001 - told to the command that waits
        _fail(state_path, exc)
        return 1
    options = {"fsname=dbsafe", "subtype=dbsafe", "allow_other", "default_permissions",
               "noatime"}
    if store is None:
        options.add("ro")
    try:
        if state["kind"] == "mount":  # checked again: the folder is the user's
            problem = runs.mount_folder_problem(Path(state["mountpoint"]))
            if problem:
                raise DbsafeError("instant.folder_unusable", path=state["mountpoint"],
                                  reason=problem)
        pyfuse3.init(fs, state["mountpoint"], options)
    except BaseException as exc:  # noqa: BLE001
        _fail(state_path, exc)
        return 1
    work = _instance if state["kind"] == "instant" else _mount_only
    outcome: dict = {}
    try:
        trio.run(_main, fs, state_path, state, stop, work, outcome)
    finally:
        with contextlib.suppress(Exception):
            pyfuse3.close(unmount=True)
        fs.close()
        runs.clean_up({k: state.get(k) for k in ("mountpoint", "store", "run_dir")})
        # the state stays for whoever stops the run (or the next reap) to read its last
        # figures and remove; a switch's figures are its command's
        final = {"fetched_bytes": fs.view.fetched_bytes, "local_bytes": fs.local_bytes,
                 "ended": stop.reason or "its work ended"}
        if "error" in outcome:
            runs.update(state_path, state="failed", error=outcome["error"], **final)
        elif (runs.read(state_path) or {}).get("state") == "switched":
            runs.update(state_path, **final)
        else:
            runs.update(state_path, state="stopped", **final)
    return 0 if "error" not in outcome else 1


def _local_wal(view: PointView, wal_dir: Path, uid: int, gid: int) -> None:
    """The point's pg_wal (the WAL its backup saved) copied into the run's local WAL
    folder, which the mount's pg_wal links to."""
    fd = open_dir(wal_dir)
    try:
        status = make_dir("archive_status", fd, 0o700)
        os.fchown(status, uid, gid)
        os.close(status)
        for path, file in view.files.items():
            name = path[len("pg_wal/"):]
            if not path.startswith("pg_wal/") or "/" in name:
                continue
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                          0o600, dir_fd=fd)
            try:
                for at in range(0, file.size, view.block_size):
                    os.write(out, view.read(file, at, view.block_size))
                os.fchown(out, uid, gid)
            finally:
                os.close(out)
    finally:
        os.close(fd)


async def _main(fs: PointFS, state_path: Path, state: dict, stop: Stop, work, outcome: dict
                ) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pyfuse3.main)
        nursery.start_soon(_signals, stop)
        nursery.start_soon(_counters, fs, state_path, stop)
        try:
            await trio.to_thread.run_sync(work, fs, state_path, state, stop)
        except BaseException as exc:  # noqa: BLE001 - the run's error, for the command
            outcome["error"] = _error(exc)
        nursery.cancel_scope.cancel()


async def _signals(stop: Stop) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                   signal.SIGUSR1) as signals:
        async for signum in signals:
            stop.set(SWITCH if signum == signal.SIGUSR1
                     else f"signal {signal.Signals(signum).name}")


async def _counters(fs: PointFS, state_path: Path, stop: Stop) -> None:
    """What the run fetched and wrote, written to its state every few seconds (and the
    end of the run when its mount point is unmounted from outside)."""
    while not stop.event.is_set():
        await trio.sleep(2)
        runs.update(state_path, fetched_bytes=fs.view.fetched_bytes,
                    local_bytes=fs.local_bytes)


def _mount_only(fs: PointFS, state_path: Path, state: dict, stop: Stop) -> None:
    runs.update(state_path, state="ready", ready_at=time.time())
    _wait(state, stop, lambda: None)


def _wait(state: dict, stop: Stop, check) -> None:
    expires = state.get("expires_at")
    while not stop.event.wait(POLL):
        if expires is not None and time.time() >= expires:
            stop.set("its time to live ran out")
        elif not runs.mounted(Path(state["mountpoint"])):
            stop.set("unmounted")
        else:
            problem = check()
            if problem:
                stop.set(problem)


def _instance(fs: PointFS, state_path: Path, state: dict, stop: Stop) -> None:
    """Start PostgreSQL on the mount, at the state's target, and keep it until told. When
    it fails, the server's log (in the mount, removed with it) is kept in the run's own
    log first."""
    try:
        _serve_instance(fs, state_path, state, stop)
    except BaseException:
        log = Path(state["mountpoint"]) / layout.START_LOG
        with contextlib.suppress(OSError):
            tail = read_tail(log, 64 << 10).decode(errors="replace")
            print(f"--- the server's log ({log}), its end:\n{tail}", file=sys.stderr,
                  flush=True)
        raise


def _serve_instance(fs: PointFS, state_path: Path, state: dict, stop: Stop) -> None:
    vault = Vault.open(Path(state["vault"]))
    server = get_server(vault, state["server"])
    pgdata = Path(state["mountpoint"])
    run_dir = Path(state["run_dir"])
    owner = state["owner"]
    uid, gid = layout.owner_ids(owner)
    plan = plan_from_state(state)
    socket_dir = Path(state["socket_dir"])
    tree = Tree(open_dir(pgdata), pgdata)
    try:
        layout.write_backup_label(tree, state["backup_label"], (uid, gid))
        layout.disable_archiving(tree)
        layout.set_port(tree, state["port"])
        stage = recovery_engine.stage_dir(pgdata)
        if plan is not None:
            recovery_engine.write_settings(tree, plan.target, stage)
    finally:
        tree.close()
    stager = None
    run_fd = open_dir(run_dir)
    try:
        if plan is not None:
            stage_fd = make_dir(stage.name, run_fd, 0o700)
            os.fchown(stage_fd, uid, gid)
            stager = WalStager(vault, server["system_identifier"], plan.wal_files, stage_fd,
                               uid, gid, vault.read_workers())
            stager.prepare()
            stager.start()
        runs.update(state_path, phase="starting PostgreSQL")
        # fsync off: the local store does not outlive the run, so a flush buys nothing,
        # and with it on the server first fsyncs every file of the instance through FUSE
        # (0.44 s of a 1 s start, measured on the benchmark's instance)
        log = layout.start(pgdata, server["bin_dir"], state["port"], owner,
                           settings={"unix_socket_directories": str(socket_dir),
                                     "fsync": "off"})
        pid = layout.postmaster_pid(pgdata)
        runs.update(state_path, postmaster_pid=pid,
                    postmaster_start=process_start(pid) if pid else None,
                    phase="recovering")
        if plan is not None:
            assert pid is not None and stager is not None  # started just now
            recovery_engine.wait_for_target(pgdata, state["port"], plan.target, pid, log,
                                            _progress(state_path, stager, server),
                                            state["dbname"], socket_dir=socket_dir)
        runs.update(state_path, state="ready", phase="ready", ready_at=time.time(),
                    fetched_bytes=fs.view.fetched_bytes, local_bytes=fs.local_bytes)
        _wait(state, stop, lambda: None if pid_alive(pid) else "its server stopped")
        if stop.reason == SWITCH:
            _switch(fs, state_path, pgdata, server["bin_dir"], owner, uid, gid)
    finally:
        if stager is not None:
            stager.stop()
        _stop_server(pgdata, server["bin_dir"], owner)
        shutil.rmtree(stage.name, dir_fd=run_fd, ignore_errors=True)
        os.close(run_fd)


def _progress(state_path: Path, stager: WalStager, server: dict
              ) -> Callable[[], BaseException | None]:
    """What the wait for the target asks ten times a second (the stager's error), and the
    WAL PostgreSQL has taken for replay so far (not merely staged: staging runs a window
    ahead) written to the state once a second: the command's job shows it as the
    instance's progress."""
    segment = server.get("wal_segment_size") or 16 << 20
    runs.update(state_path, wal_bytes=len(stager.names) * segment, wal_replayed_bytes=0)
    last = [time.monotonic()]

    def failed() -> BaseException | None:
        if time.monotonic() - last[0] >= 1:
            last[0] = time.monotonic()
            runs.update(state_path, wal_replayed_bytes=stager.taken() * segment)
        return stager.error

    return failed


def _switch(fs: PointFS, state_path: Path, pgdata: Path, bin_dir: str, owner: str,
            uid: int, gid: int) -> None:
    """Stop the server cleanly and make the copy on disk equal to what it left."""
    began = time.time()
    target = Path((runs.read(state_path) or {})["switch_to"])
    layout.stop(pgdata, bin_dir, owner)
    stopped = time.time()
    stats = switch.copy_out(fs, target, uid, gid)
    runs.update(state_path, state="switched", switch={
        **stats, "stop_began": began, "stop_seconds": round(stopped - began, 3),
        "copy_seconds": round(time.time() - stopped, 3)})


def _stop_server(pgdata: Path, bin_dir: str, owner: str) -> None:
    pid = layout.postmaster_pid(pgdata)
    if pid is None or not pid_alive(pid):
        return
    try:
        layout.stop(pgdata, bin_dir, owner)
    except DbsafeError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)


def _error(exc: BaseException) -> dict:
    if isinstance(exc, DbsafeError):
        return {"code": exc.code, "message": exc.message,
                "details": {k: str(v) for k, v in exc.details.items()}}
    return {"code": "instant.failed", "message": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc()[-4000:]}


def _fail(state_path: Path, exc: BaseException) -> None:
    runs.update(state_path, state="failed", error=_error(exc))


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
