"""Instant access: mount a recovery point, or start PostgreSQL on one at any instant of its
log chain, without copying the instance first (docs/instant-access.md).

``mount_point`` and ``start_instant`` check what they can here (the point, the target,
the port, FUSE, the folder), write the run's state file (runs.py) and start its process
(daemon.py) in a session of its own, then wait for it to say ``ready`` or ``failed``; the
wait is the run's job. ``list_runs`` and ``stop_run`` work on the state files. Every one of
them first reaps the runs whose process died.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import make_dir
from dbsafe.engines.postgres import cluster
from dbsafe.engines.postgres import restore as layout
from dbsafe.services.access import runs
from dbsafe.services.access.plans import plan_to_state
from dbsafe.services.activity.jobs import Job, ProgressFn
from dbsafe.services.backup import selection
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.lifecycle.points import load_point
from dbsafe.services.restore import targets as restore_targets
from dbsafe.services.restore.instance import run_restore
from dbsafe.services.restore.pitr import base_and_plan

DEFAULT_TTL = 4 * 3600
WAIT_POLL = 0.1
STOP_WAIT = 120


def fuse_problem() -> str | None:
    """Why this machine cannot mount a view (None when it can)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (a container needs --device /dev/fuse)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    try:
        import pyfuse3  # noqa: F401  - only asked whether it loads
    except ImportError as exc:
        return f"pyfuse3 does not load ({exc})"
    return None


def _require_fuse() -> None:
    problem = fuse_problem()
    if problem:
        raise DbsafeError("instant.no_fuse", reason=problem)


@dataclass(frozen=True)
class Source:
    """What a run starts from: its base point, the recovery plan to the instant asked (as
    the run's state keeps it; None: the point as it is), and the base's manifest."""

    base: str
    plan: dict | None
    manifest: dict


def plan_source(vault: Vault, name: str, point_id: str | None, time_: str | None,
                pause: bool) -> Source:
    """The base and plan that reach ``time_`` (or ``point_id`` as it is); planned once by a
    caller that checks the point before starting on it (a table restore)."""
    if point_id is None and time_ is None:
        raise DbsafeError("instant.no_target")
    base, plan = base_and_plan(vault, name, point_id, time_, pause=pause and time_ is not None)
    _server, manifest = load_point(vault, name, base)
    return Source(base, plan_to_state(plan), manifest)


def mount_point(vault: Vault, name: str, folder: Path, point_id: str | None = None,
                time_: str | None = None, ttl: int | None = None,
                on_progress: ProgressFn | None = None) -> dict:
    """Serve the files of a point, read only, at ``folder`` (an empty folder). With
    ``time_``, the point a restore to that instant starts from (its files as they were
    backed up: the WAL up to the instant is not applied to a mount)."""
    runs.reap(vault)
    _require_fuse()
    source = plan_source(vault, name, point_id, time_, pause=True)
    base, manifest = source.base, source.manifest
    folder = Path(os.path.abspath(folder))
    if runs.mounted(folder):
        raise DbsafeError("instant.folder_unusable", path=folder,
                          reason="something is mounted there already (`dbsafe instant list`)")
    problem = runs.mount_folder_problem(folder)
    if problem:
        raise DbsafeError("instant.folder_unusable", path=folder, reason=problem)
    run_id = runs.new_id("mount")
    state = {"kind": "mount", "id": run_id, "server": name, "point_id": base,
             "vault": str(vault.path), "owner": _owner(manifest),
             "mountpoint": str(folder), "store": None, "run_dir": None,
             "expires_at": time.time() + ttl if ttl else None, "state": "starting",
             "target": f"point {base}" + (f" (the base of a restore to {time_})"
                                          if time_ else "")}
    return _launch(vault, name, "mount", state, on_progress)


def start_instant(vault: Vault, name: str, time_: str | None = None,
                  point_id: str | None = None, port: int | None = None,
                  ttl: int = DEFAULT_TTL, promote: bool = False,
                  on_progress: ProgressFn | None = None, recover_to: Path | None = None,
                  on_ready: Callable[[dict], None] | None = None,
                  source: Source | None = None) -> dict:
    """Start PostgreSQL on a view of the point that reaches ``time_`` (or of ``point_id``
    as it is), recovered to that instant: paused there in hot standby (read only), or
    promoted (``promote``: writable). Its writes go to a local store, never to the vault;
    it stops after ``ttl`` seconds, or at ``stop_run``.

    ``recover_to`` (instant recovery; promoted): while the instance serves, its point is
    restored into that new data directory; then the instance stops, the pages it changed
    are written over the copy (switch.py), and PostgreSQL starts there on the same port.
    ``on_ready`` is told the instance's figures as soon as it serves. ``source``: planned
    already by the caller (``plan_source`` with the same target and ``pause`` off)."""
    runs.reap(vault)
    _require_fuse()
    server = get_server(vault, name)
    if recover_to is not None:
        promote = True
        recover_to = restore_targets.place(vault, recover_to).path
    if source is None:
        source = plan_source(vault, name, point_id, time_, pause=not promote)
    elif not promote:
        raise ValueError("a source planned beforehand is planned to be promoted")
    base, plan, manifest = source.base, source.plan, source.manifest
    if recover_to is not None and manifest["tablespaces"]:
        raise DbsafeError("instant.recover_tablespaces", name=name, point_id=base)
    owner = _owner(manifest)
    layout.check_owner(owner)
    cluster.trusted_program(str(Path(server["bin_dir"]) / "pg_ctl"))
    if port is None:
        port = layout.free_port()
    elif not layout.port_free(port):
        raise DbsafeError("restore.port_in_use", port=port)
    run_id = runs.new_id("instant")
    root = restore_targets.restore_roots(vault)[0]
    made = restore_targets.create(restore_targets.place(vault, root / run_id), 0o755)
    uid, gid = layout.owner_ids(owner)
    try:
        for sub, mode, ids in (("pgdata", 0o700, (uid, gid)), ("socket", 0o700, (uid, gid)),
                               ("wal", 0o700, (uid, gid)), ("pages", 0o700, None)):
            fd = make_dir(sub, made.tree.fd, mode)
            if ids:
                os.fchown(fd, *ids)
            os.close(fd)
    except BaseException:
        made.remove()
        raise
    finally:
        made.close()
    run_dir = root / run_id
    target = "the end of point " + base if plan is None else \
        plan["target"]["kind"] + " " + str(plan["target"]["value"])
    state = {"kind": "instant", "id": run_id, "server": name, "point_id": base,
             "vault": str(vault.path), "owner": owner, "port": port, "plan": plan,
             "dbname": selection.control_database(manifest, []),
             "backup_label": manifest["backup_label"],
             "mountpoint": str(run_dir / "pgdata"), "store": str(run_dir / "pages"),
             "socket_dir": str(run_dir / "socket"), "wal_dir": str(run_dir / "wal"),
             "run_dir": str(run_dir),
             "expires_at": time.time() + ttl, "state": "starting", "target": target,
             "promoted": bool(promote or plan is None)}
    ready = _launch(vault, name, "instant", state, on_progress)
    if recover_to is None:
        return ready
    if on_ready is not None:
        on_ready(ready)
    return _recover_to(vault, name, state, ready, recover_to, server, on_progress)


def _recover_to(vault: Vault, name: str, state: dict, ready: dict, target: Path,
                server: dict, on_progress: ProgressFn | None) -> dict:
    """Restore the instance's point into ``target`` while it serves, switch, start there."""
    path = runs.state_file(vault, state["id"])
    try:
        restored = run_restore(vault, name, state["point_id"], to_pgdata=target,
                               owner=state["owner"], on_progress=on_progress)
        now = runs.read(path) or {}
        if not runs.alive(now):
            raise DbsafeError("instant.failed", reason="the instance stopped before the "
                                                       "switch", log=path.with_suffix(".log"))
        runs.update(path, switch_to=str(target))
        os.kill(int(now["pid"]), signal.SIGUSR1)
        while (now := runs.read(path) or {}).get("state") not in ("switched", "failed") \
                and runs.alive(now):
            time.sleep(WAIT_POLL)
        if now.get("state") != "switched":
            error = now.get("error") or {}
            raise DbsafeError("instant.failed", reason=error.get("message") or
                              "the instance ended during the switch",
                              log=path.with_suffix(".log"))
        figures = now["switch"]
        log = layout.start(target, server["bin_dir"], state["port"], state["owner"])
        downtime = time.time() - figures["stop_began"]
    except BaseException:
        if path.exists():
            stop_run(vault, state["id"])
        raise
    finally:
        ended = runs.read(path) or {}
        if ended.get("state") == "switched":
            deadline = time.monotonic() + STOP_WAIT  # its process unmounts, then ends
            while runs.alive(ended) and time.monotonic() < deadline:
                time.sleep(WAIT_POLL)
            path.unlink(missing_ok=True)
            path.with_suffix(".log").unlink(missing_ok=True)
    return {**ready, "state": "recovered", "recovered_to": str(target),
            "port": state["port"], "socket_dir": str(target), "log": str(log),
            "connection": f"host={target} port={state['port']} dbname={state['dbname']} "
                          f"user={state['owner']}",
            "restore_seconds": restored["seconds"], "downtime_seconds": round(downtime, 3),
            "switch": {k: v for k, v in figures.items() if k != "stop_began"}}


def _owner(manifest: dict) -> str:
    return manifest["instance"].get("owner") or "postgres"


def _launch(vault: Vault, name: str, kind: str, state: dict,
            on_progress: ProgressFn | None = None) -> dict:
    """Start the run's process and wait until it is ready; its job records the wait."""
    path = runs.state_file(vault, state["id"])
    state["created_at"] = time.time()
    runs.write(path, state)
    log = path.with_suffix(".log")
    t0 = time.monotonic()
    with Job(vault.catalog, kind, name, on_progress) as job, open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dbsafe.services.access.daemon", str(path)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            close_fds=True)
        try:
            now = _wait_ready(path, proc, log, job)
        except BaseException:
            _terminate(proc)
            raise
        result = _shown(now)
        result["seconds_to_ready"] = round(time.monotonic() - t0, 3)
        job.finish(result)
    return result


def _wait_ready(path: Path, proc: subprocess.Popen, log: Path, job: Job) -> dict:
    """Wait for the run to be ready; the WAL its recovery has taken is the job's progress."""
    expected = done = 0
    while True:
        state = runs.read(path) or {}
        if state.get("wal_bytes") and not expected:
            expected = state["wal_bytes"]
            job.expect(expected)
        if state.get("wal_replayed_bytes", 0) > done:
            job.advance(state["wal_replayed_bytes"] - done)
            done = state["wal_replayed_bytes"]
        if state.get("state") == "ready":
            if expected > done:
                job.advance(expected - done)
            return state
        if state.get("state") == "failed" or proc.poll() is not None:
            if proc.poll() is None:
                proc.wait(timeout=STOP_WAIT)
            state = runs.read(path) or state
            path.unlink(missing_ok=True)
            error = state.get("error") or {}
            if error.get("code") and error["code"] != "instant.failed":
                # a log in the mount is gone with it: its end is in the run's own log
                message = error.get("message", "").replace(
                    f"{state.get('mountpoint')}/{layout.START_LOG}", str(log))
                raise DbsafeError.reported(error["code"], message)
            raise DbsafeError("instant.failed", reason=error.get("message") or
                              _tail(log), log=log)
        time.sleep(WAIT_POLL)


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "its process ended"
    return lines[-1] if lines else "its process ended without a word"


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()


def _shown(state: dict) -> dict:
    """A run as the commands print it."""
    out = {k: state.get(k) for k in ("id", "kind", "server", "point_id", "target",
                                     "mountpoint", "state", "fetched_bytes", "local_bytes")}
    expires = state.get("expires_at")
    out["expires_in_seconds"] = max(0, round(expires - time.time())) if expires else None
    if state.get("kind") == "instant":
        out.update(port=state.get("port"), socket_dir=state.get("socket_dir"),
                   promoted=state.get("promoted"),
                   connection=f"host={state.get('socket_dir')} port={state.get('port')} "
                              f"dbname={state.get('dbname')} user={state.get('owner')}")
    return out


def list_runs(vault: Vault) -> list[dict]:
    runs.reap(vault)
    return [_shown(state) for _path, state in runs.all_runs(vault)]


def stop_run(vault: Vault, which: str) -> dict:
    """Stop a mount or instance, named by its id or its mount point, and wait until its
    process has cleaned up."""
    runs.reap(vault)
    found = [(p, s) for p, s in runs.all_runs(vault)
             if which == s.get("id") or os.path.abspath(which) == s.get("mountpoint")]
    if not found:
        raise DbsafeError("instant.unknown", run=which)
    path, state = found[0]
    pid = state.get("pid")
    if runs.alive(state) and pid:
        os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while runs.alive(state) and time.monotonic() < deadline:
            time.sleep(WAIT_POLL)
    if runs.alive(state) and pid:
        os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
    final = runs.read(path) or state  # its process's last figures
    runs.clean_up(state)  # nothing left to do when its process ended cleanly
    path.unlink(missing_ok=True)
    path.with_suffix(".log").unlink(missing_ok=True)
    return {"id": state["id"], "kind": state["kind"], "server": state["server"],
            "stopped": True, "fetched_bytes": final.get("fetched_bytes"),
            "local_bytes": final.get("local_bytes")}
