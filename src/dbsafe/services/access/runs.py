"""The mounts and instant instances of this client, each a process of its own, and the
clean-up of those whose process died.

Each run is a small JSON file in the client's folder, ``<vault>/instant/<id>.json``,
written by the command that starts it and updated by its process (``starting`` → ``ready``
→ gone, or ``failed`` with the error). The file names what must be undone if the process
dies: its mount point, its PostgreSQL server's data directory and postmaster pid, its
folder of local pages. ``reap`` does that for every run whose process is gone, and every
command of instant access calls it first, so a killed ``dbsafe mount`` or a crashed
instant never leaves a stale mount ("Transport endpoint is not connected") in the way of
the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from dbsafe.core.child_env import tool_env
from dbsafe.core.concurrency import pid_alive, process_start
from dbsafe.core.private_files import write_private
from dbsafe.services.handle.vault_handle import Vault

FOLDER = "instant"
RUN_ID = re.compile(r"(mount|instant)-[0-9a-f]{8}")


def runs_folder(vault: Vault) -> Path:
    folder = vault.path / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def new_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(4)}"


def state_file(vault: Vault, run_id: str) -> Path:
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(run_id)
    return runs_folder(vault) / f"{run_id}.json"


def read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write(path: Path, state: dict) -> None:
    write_private(path, json.dumps(state, indent=1, sort_keys=True).encode())


def update(path: Path, **changes: object) -> dict:
    state = read(path) or {}
    state.update(changes)
    write(path, state)
    return state


def alive(state: dict) -> bool:
    """Whether the run's own process still runs (the same process: its start time is
    recorded, so a pid reused after a reboot does not count)."""
    pid = state.get("pid")
    if pid is None or not pid_alive(pid):
        return False
    started = state.get("pid_start")
    return started is None or process_start(int(pid)) == started


def all_runs(vault: Vault) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(runs_folder(vault).glob("*.json")):
        state = read(path)
        if state is not None and RUN_ID.fullmatch(path.stem):
            out.append((path, state))
    return out


def reap(vault: Vault) -> list[str]:
    """Undo what each run whose process died left (see the module's docstring); returns
    their ids."""
    reaped = []
    for path, state in all_runs(vault):
        if alive(state):
            continue
        clean_up(state)
        path.unlink(missing_ok=True)
        path.with_suffix(".log").unlink(missing_ok=True)
        reaped.append(path.stem)
    return reaped


def clean_up(state: dict) -> None:
    """Stop the run's server if it still runs, unmount its view, remove its folders."""
    postmaster = state.get("postmaster_pid")
    if postmaster and pid_alive(postmaster) and \
            process_start(int(postmaster)) == state.get("postmaster_start"):
        # its data directory is gone with the mount: no clean stop is possible
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(postmaster), signal.SIGKILL)
        for _ in range(100):
            if not pid_alive(postmaster):
                break
            time.sleep(0.05)
    mountpoint = state.get("mountpoint")
    if mountpoint:
        unmount(Path(mountpoint))
    for key in ("store", "run_dir"):
        if state.get(key):
            shutil.rmtree(state[key], ignore_errors=True)


def mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point now (a stale FUSE mount included)."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and _unescape(fields[4]) == target:
                return True
    return False


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def unmount(path: Path) -> None:
    """Detach the mount at ``path`` at once (lazily: whoever still has a file open there
    keeps it until closed); nothing when nothing is mounted there."""
    if not mounted(path):
        return
    subprocess.run(["fusermount3", "-u", "-z", str(path)], env=tool_env(),
                   capture_output=True, check=False)
    if mounted(path):
        subprocess.run(["umount", "-l", str(path)], env=tool_env(), capture_output=True,
                       check=False)


def mount_folder_problem(path: Path) -> str | None:
    """Why root may not mount a view on ``path`` (None when it may). Mounting follows the
    path, so no one but root may be able to change where it leads: each part must be a
    folder (not a link) root owns, not writable by others unless sticky (then no one
    else can rename root's folder in it), and the folder itself empty and root's alone.
    Without this, a user who can write along the path could swap in a link and have a
    backup's files (contents the database's users wrote) mounted over /etc."""
    path = Path(os.path.abspath(path))
    here = Path("/")
    for part in path.parts[1:]:
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return f"{here} does not exist"
        if stat.S_ISLNK(st.st_mode):
            return f"{here} is a link"
        if not stat.S_ISDIR(st.st_mode):
            return f"{here} is not a folder"
        if st.st_uid != 0:
            return f"{here} is not owned by root"
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable and (here == path or not st.st_mode & stat.S_ISVTX):
            return f"{here} is writable by others than root"
    if any(path.iterdir()):
        return f"{path} is not empty"
    return None
