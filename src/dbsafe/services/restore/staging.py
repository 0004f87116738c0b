"""Where a single-database restore stages its copy: a new folder next to the target
cluster's data directory (in the folder that holds it, never inside it).

The staged cluster, its WAL and the dump then land on the file system the target's data
lives on, where the space was planned (docs/log-chain.md), not in a shared temporary
folder. The folder the data directory sits in usually belongs to the cluster's owner (the
``postgres`` OS user), who may rename things in it: so the staging folder is made by name
relative to that folder's descriptor, held open, and written only through its own
descriptor (``restore_targets.Held``, core/fdtree.py) — root never walks its path again.
It is root's, mode 0711: the owner passes through it to the data directory and the dump
folder made for it, and lists nothing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import make_dir, open_dir
from dbsafe.services.restore.targets import Held, name_problem

PREFIX = "dbsafe-staging-"
MODE = 0o711


def parent_of(target: dict) -> Path:
    """The folder a restore into ``target`` stages in: the one holding its data directory
    (links resolved: the data's own file system); ``restore.target_unsafe`` when its path
    could not be handed to pg_ctl and restore_command (name rules of restore targets)."""
    parent = Path(os.path.realpath(target["pgdata"])).parent
    problem = name_problem(str(parent / PREFIX))
    if problem:
        raise DbsafeError("restore.target_unsafe", path=parent,
                          reason=f"the staging folder next to {target['name']}'s data "
                                 f"directory cannot be used: {problem}")
    return parent


@dataclass
class Staging:
    """A staging folder made by ``create``: its path (for programs and messages), and the
    descriptors it is reached by."""
    path: Path
    held: Held
    parent_fd: int

    def folder_for(self, name: str, owner: str) -> Path:
        """A new folder ``name`` inside, 0700, given to OS user ``owner`` (a program run as
        that user writes there)."""
        user = pwd.getpwnam(owner)
        fd = make_dir(name, self.held.fd, 0o700)
        try:
            os.fchown(fd, user.pw_uid, user.pw_gid)
        finally:
            os.close(fd)
        return self.path / name

    def tablespace_map(self, manifest: dict) -> dict[str, str]:
        """Each tablespace of the point into a folder of its own inside (the staged copy
        is read, not kept: the database lands in the target's own tablespaces)."""
        return {ts["oid"]: str(self.path / f"tablespace-{ts['oid']}")
                for ts in manifest["tablespaces"]}

    def remove(self) -> None:
        """Remove the folder and all in it (its cluster stopped first), by name in the
        folder it was made in: never a path walked again."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.path.name, dir_fd=self.parent_fd)
        os.close(self.held.fd)
        os.close(self.parent_fd)


def create(target: dict, job_id: str) -> Staging:
    """Make the staging folder of job ``job_id`` next to ``target``'s data directory."""
    parent = parent_of(target)
    name = f"{PREFIX}{job_id}"
    try:
        parent_fd = open_dir(parent)
    except OSError as exc:
        raise DbsafeError("restore.target_unsafe", path=parent,
                          reason=f"the folder of {target['name']}'s data directory cannot "
                                 f"be opened ({exc.strerror})") from None
    try:
        fd = make_dir(name, parent_fd, MODE)
    except OSError as exc:
        os.close(parent_fd)
        raise DbsafeError("restore.target_unsafe", path=parent / name,
                          reason=f"the staging folder cannot be made ({exc.strerror})"
                          ) from None
    return Staging(parent / name, Held(parent / name, fd), parent_fd)
