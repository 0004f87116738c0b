"""Facts about a cluster read from its data directory, with no connection: version, whether
a postmaster runs and where it listens, where its programs are; and running those programs
as the cluster's owner.

The data directory is the ``postgres`` user's: its small files are read as regular files
only (core/regular_files.py), and a program runs only from a folder root alone can change
(``trusted_bin_dir``)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dbsafe.core.child_env import SAFE_PATH, client_env, server_env
from dbsafe.core.errors import DbsafeError
from dbsafe.core.regular_files import NotRegularFile, read_small
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
        text = read_small(str(pgdata / "PG_VERSION")).strip()
    except FileNotFoundError:
        raise DbsafeError("server.pgdata_missing", pgdata=pgdata,
                          reason="it has no PG_VERSION file") from None
    except NotRegularFile as exc:
        raise DbsafeError("server.pgdata_missing", pgdata=pgdata,
                          reason=f"PG_VERSION: {exc.reason}") from None
    if not (pgdata / "global").is_dir():
        raise DbsafeError("server.pgdata_missing", pgdata=pgdata, reason="it has no global/")
    try:
        major = int(text.split(".")[0])
    except ValueError:
        raise DbsafeError("server.pgdata_missing", pgdata=pgdata,
                          reason=f"PG_VERSION holds {text[:40]!r}") from None
    if major not in SUPPORTED_MAJORS:
        raise DbsafeError("server.version_unsupported", version=text,
                          supported=", ".join(map(str, SUPPORTED_MAJORS)))
    return major


def running_postmaster(pgdata: Path) -> Postmaster:
    """The live postmaster of ``pgdata`` (from postmaster.pid), or server.not_running."""
    pid_file = Path(pgdata) / "postmaster.pid"
    try:
        lines = read_small(str(pid_file)).splitlines()
    except FileNotFoundError:
        raise DbsafeError("server.not_running", pgdata=pgdata,
                          reason="no postmaster.pid") from None
    except NotRegularFile as exc:
        raise DbsafeError("server.not_running", pgdata=pgdata,
                          reason=f"postmaster.pid: {exc.reason}") from None
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
    """Where pg_ctl of this major version lives: given, Debian's layout, or the safe PATH;
    resolved, and only when it is a folder root holds (``trusted_bin_dir``)."""
    candidates = [given] if given else [f"/usr/lib/postgresql/{major}/bin",
                                        f"/usr/pgsql-{major}/bin"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").exists():
            return trusted_bin_dir(candidate)
    on_path = shutil.which("pg_ctl", path=SAFE_PATH)
    if not given and on_path:
        return trusted_bin_dir(str(Path(on_path).resolve().parent))
    raise DbsafeError("server.pgdata_missing", pgdata=given or f"PostgreSQL {major}",
                      reason="pg_ctl not found; pass --bin-dir")


def _check_root_held(path: str, folder: bool, bin_dir: str) -> None:
    """``path`` is a folder (or a regular file, a program) that only root may change:
    owned by root, not writable by a group or by others; else ``server.bin_dir_unsafe``."""
    what = "the folder" if folder else "the program"
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise DbsafeError("server.bin_dir_unsafe", bin_dir=bin_dir, path=path,
                          reason=exc.strerror or str(exc)) from None
    problem = None
    if not (stat.S_ISDIR if folder else stat.S_ISREG)(st.st_mode):
        problem = "not a folder" if folder else "not a regular file"
    elif st.st_uid != 0:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = f"uid {st.st_uid}"
        problem = f"owned by {owner}, not root"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"writable by its group or by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem:
        raise DbsafeError("server.bin_dir_unsafe", bin_dir=bin_dir, path=path,
                          reason=f"{what} is {problem}")


def trusted_bin_dir(bin_dir: str) -> str:
    """``bin_dir`` resolved, after checking that every folder of that path is root's alone.

    dbsafe runs the programs of this folder (as root, or as a cluster's owner), so whoever
    can change a component of its path could make it run a program of theirs. Raises
    ``server.bin_dir_unsafe`` naming the component and what is wrong with it."""
    if not bin_dir or not os.path.isabs(bin_dir):
        raise DbsafeError("server.bin_dir_unsafe", bin_dir=bin_dir or "(none)",
                          path=bin_dir or "(none)", reason="it is not an absolute path")
    resolved = os.path.realpath(bin_dir)
    path = "/"
    for part in ["", *Path(resolved).parts[1:]]:
        path = os.path.join(path, part)
        _check_root_held(path, True, bin_dir)
    return resolved


def trusted_program(program: str) -> str:
    """The resolved path of a PostgreSQL program, after checking it and its folder as
    ``trusted_bin_dir`` does: a regular file root owns that nobody else can write. pg_ctl
    also runs ``postgres`` from its own folder, which is checked with it."""
    if not os.path.isabs(program):
        found = shutil.which(program, path=SAFE_PATH)
        if found is None:
            raise DbsafeError("server.bin_dir_unsafe", bin_dir="(none)", path=program,
                              reason="no such program on the system PATH")
        program = found
    resolved = os.path.realpath(program)
    folder = trusted_bin_dir(os.path.dirname(resolved))
    names = [os.path.basename(resolved)]
    if names[0] == "pg_ctl":
        names.append("postgres")
    for name in names:
        _check_root_held(os.path.join(folder, name), False, folder)
    return resolved


def owner_of(pgdata: Path) -> str:
    """The OS user owning a data directory: PostgreSQL runs as that user, and so do the
    programs dbsafe runs for it (``postgres`` when the uid has no name)."""
    try:
        return pwd.getpwuid(os.stat(pgdata).st_uid).pw_name
    except KeyError:
        return "postgres"


def as_owner(owner: str, argv: list[str]) -> list[str]:
    """``argv`` run as the OS user owning the cluster (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0 and owner != "root":
        runuser = shutil.which("runuser", path=SAFE_PATH) or "/usr/sbin/runuser"
        return [runuser, "-u", owner, "--", *argv]
    return argv


def run_as_owner(owner: str, argv: list[str], *, client: bool = False,
                 **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the cluster's owner with an allow-listed environment
    (core/child_env.py): a server it starts never sees dbsafe's secrets. ``client``: a
    client program (pg_dump, pg_restore), which also gets libpq's connection variables.

    The program (``argv[0]``) is checked at every run (``trusted_program``): the catalog
    row it came from may have changed since the server was registered."""
    argv = [trusted_program(argv[0]), *argv[1:]]
    try:
        home = pwd.getpwnam(owner).pw_dir
    except KeyError:
        home = None
    env = client_env(home) if client else server_env(home)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(as_owner(owner, argv), env=env, **kwargs)
