"""Facts about a cluster read from its data directory, with no connection: version, whether
a postmaster runs and where it listens, where its programs are."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dbsafe.core.child_env import client_env, server_env
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import SUPPORTED_MAJORS


@dataclass(frozen=True)
class Postmaster:
    pid: int
    port: int
    socket_dir: str | None


def major_version(pgdata: Path) -> int:
    """The major version from PG_VERSION; refuses a folder that is not a data directory."""
    pgdata = Path(pgdata)
    if not pgdata.is_dir():
        raise DbsafeError("server.pgdata_missing", pgdata=pgdata, reason="no such folder")
    try:
        text = (pgdata / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        raise DbsafeError("server.pgdata_missing", pgdata=pgdata,
                          reason="it has no PG_VERSION file") from None
    if not (pgdata / "global").is_dir():
        raise DbsafeError("server.pgdata_missing", pgdata=pgdata, reason="it has no global/")
    major = int(text.split(".")[0])
    if major not in SUPPORTED_MAJORS:
        raise DbsafeError("server.version_unsupported", version=text,
                          supported=", ".join(map(str, SUPPORTED_MAJORS)))
    return major


def running_postmaster(pgdata: Path) -> Postmaster:
    """The live postmaster of ``pgdata`` (from postmaster.pid), or server.not_running."""
    pid_file = Path(pgdata) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except FileNotFoundError:
        raise DbsafeError("server.not_running", pgdata=pgdata,
                          reason="no postmaster.pid") from None
    try:
        pid = int(lines[0])
        port = int(lines[3])
    except (IndexError, ValueError):
        raise DbsafeError("server.not_running", pgdata=pgdata,
                          reason="postmaster.pid is incomplete (starting up?)") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise DbsafeError("server.not_running", pgdata=pgdata,
                          reason=f"postmaster.pid names pid {pid}, which is gone") from None
    except PermissionError:
        pass
    socket_dir = lines[4].strip() if len(lines) > 4 and lines[4].strip() else None
    return Postmaster(pid=pid, port=port, socket_dir=socket_dir)


def find_bin_dir(major: int, given: str | None = None) -> str:
    """Where pg_ctl of this major version lives: given, Debian's layout, or PATH."""
    candidates = [given] if given else [f"/usr/lib/postgresql/{major}/bin",
                                        f"/usr/pgsql-{major}/bin"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").exists():
            return str(candidate)
    on_path = shutil.which("pg_ctl")
    if not given and on_path:
        return str(Path(on_path).resolve().parent)
    raise DbsafeError("server.pgdata_missing", pgdata=given or f"PostgreSQL {major}",
                      reason="pg_ctl not found; pass --bin-dir")


def as_owner(owner: str, argv: list[str]) -> list[str]:
    """``argv`` run as the OS user owning the cluster (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0 and owner != "root":
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", owner, "--", *argv]
    return argv


def run_as_owner(owner: str, argv: list[str], *, client: bool = False,
                 **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the cluster's owner with an allow-listed environment
    (core/child_env.py): a server it starts never sees dbsafe's secrets. ``client``: a
    client program (pg_dump, pg_restore), which also gets libpq's connection variables."""
    try:
        home = pwd.getpwnam(owner).pw_dir
    except KeyError:
        home = None
    env = client_env(home) if client else server_env(home)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(as_owner(owner, argv), env=env, **kwargs)
