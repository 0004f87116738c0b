"""Scratch clusters: a restored copy started only to be checked, then destroyed.

It holds production data on the production server, so it listens on its Unix socket only
(in its own data directory) and runs with small memory settings; it is stopped with an
immediate shutdown (nothing in it is worth a checkpoint) and its folder removed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from dbsafe.core.concurrency import pid_alive
from dbsafe.engines.postgres import restore as layout
from dbsafe.engines.postgres.cluster import run_as_owner

# No TCP listener, no autovacuum (it would change pages a drill inspects), log to the
# pg_ctl log file in the data directory, at most 128 MB of shared buffers.
SETTINGS = {"listen_addresses": "", "autovacuum": "off", "logging_collector": "off",
            "ssl": "off", "shared_buffers": "128MB", "huge_pages": "off"}
STOP_SECONDS = 60


def start(pgdata: Path, bin_dir: str, port: int, owner: str) -> Path:
    """Start it and wait until it accepts connections (on ``pgdata``'s socket); its log."""
    return layout.start(pgdata, bin_dir, port, owner, settings=SETTINGS)


def _owned_by(pid: int, owner: str) -> bool:
    """Whether ``pid`` runs as ``owner`` (never root): postmaster.pid is the owner's to
    write, so a pid in it is signalled only when it is one of the owner's processes."""
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
        return uid != 0 and uid == pwd.getpwnam(owner).pw_uid
    except (OSError, KeyError):
        return False


def _alive(pid: int | None) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it does not)."""
    if not pid_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _stop(pgdata: Path, bin_dir: str, owner: str) -> None:
    pid = layout.postmaster_pid(pgdata)
    if pid is None or not _alive(pid):
        return
    argv = [str(Path(bin_dir) / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "-t",
            str(STOP_SECONDS), "stop"]
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        if run_as_owner(owner, argv, timeout=STOP_SECONDS + 10).returncode == 0:
            return  # the postmaster removed its pid file: it has ended
    for sig in (signal.SIGQUIT, signal.SIGKILL):  # pg_ctl failed: the signals it would send
        if not _owned_by(pid, owner):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_SECONDS / 2
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            return


def destroy(folder: Path, bin_dir: str, owner: str) -> None:
    """Stop every postmaster whose data directory is in ``folder`` and remove the folder
    (tablespace links are not followed: a drill maps its tablespaces into the folder)."""
    folder = Path(folder)
    if not folder.exists():
        return
    for dirpath, dirnames, filenames in os.walk(folder):
        if "postmaster.pid" in filenames:
            _stop(Path(dirpath), bin_dir, owner)
            dirnames[:] = []
    shutil.rmtree(folder, ignore_errors=True)

