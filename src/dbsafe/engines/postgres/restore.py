"""Lay a backup out as a PostgreSQL data directory and start it.

The WAL saved with a backup goes into pg_wal next to backup_label, as pg_basebackup does
with ``-X stream``: PostgreSQL then replays it to the backup's end on its first start and
needs no restore_command.
"""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.cluster import run_as_owner


def require_empty(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DbsafeError("restore.target_not_empty", path=path)


def tablespace_targets(tablespaces: list[dict], mapping: dict[str, str]) -> dict[str, Path]:
    """Where each tablespace goes: the mapping, else its original place if that is empty."""
    targets = {}
    for ts in tablespaces:
        target = Path(mapping.get(ts["oid"], ts["location"])).absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DbsafeError("restore.tablespace_target", oid=ts["oid"], path=target)
        targets[ts["oid"]] = target
    return targets


def local_path(pgdata: Path, rel: str, tablespace_dirs: dict[str, Path]) -> Path:
    """Where the file ``rel`` of a backup lands, following tablespace remapping."""
    if rel.startswith("pg_tblspc/"):
        _, oid, rest = rel.split("/", 2)
        return tablespace_dirs[oid] / rest
    return pgdata / rel


def make_layout(pgdata: Path, dirs: list[dict], tablespace_dirs: dict[str, Path]) -> None:
    """Create the data directory, its folders and the tablespace links."""
    pgdata.mkdir(parents=True, exist_ok=True)
    os.chmod(pgdata, 0o700)
    for oid, target in tablespace_dirs.items():
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, 0o700)
        (pgdata / "pg_tblspc").mkdir(mode=0o700, exist_ok=True)
        link = pgdata / "pg_tblspc" / oid
        if not link.is_symlink():
            link.symlink_to(target)
    for d in dirs:
        if d.get("type") == "tablespace":
            continue
        folder = local_path(pgdata, d["path"], tablespace_dirs)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, d.get("mode", 0o700))


def sparse_file(path: Path, size: int, mode: int) -> None:
    """An all-zero file that takes no space: a database left out of a selective restore."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode or 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def write_backup_label(pgdata: Path, label: str) -> None:
    (pgdata / "backup_label").write_text(label)


def set_port(pgdata: Path, port: int) -> None:
    """Record the new port in postgresql.auto.conf so a later restart keeps it."""
    with open(pgdata / "postgresql.auto.conf", "a") as f:
        f.write(f"\n# set by dbsafe restore\nport = {port}\n")


def disable_archiving(pgdata: Path) -> None:
    """A restored copy must never archive into its source's log chain (the vault would
    refuse its different WAL anyway): archiving is off until a DBA turns it on."""
    with open(pgdata / "postgresql.auto.conf", "a") as f:
        f.write("\n# set by dbsafe restore: a restored copy does not archive into the "
                "source's chain\narchive_mode = 'off'\n")


def check_owner(owner: str) -> None:
    """Refuse an owner that does not exist before anything is written."""
    try:
        pwd.getpwnam(owner)
    except KeyError:
        raise DbsafeError("restore.owner_unknown", owner=owner) from None


def chown_tree(paths: list[Path], owner: str) -> None:
    """Give every restored file to the OS user that runs PostgreSQL (only root can)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(owner)
    for root in paths:
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid,
                         follow_symlinks=False)


def free_port() -> int:
    """A TCP port nobody listens on now, for a server dbsafe starts only for a while."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start(pgdata: Path, bin_dir: str, port: int, owner: str, timeout: int = 600,
          options: str = "") -> Path:
    """Start the restored cluster and wait until it accepts connections; returns its log.
    ``options`` are extra server options for this run only."""
    log = pgdata / "dbsafe-restore-start.log"
    socket_dir = pgdata  # always writable by the owner; the port alone may clash elsewhere
    argv = [str(Path(bin_dir) / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w",
            "-t", str(timeout), "-o", f"-p {port} -k {socket_dir} {options}".rstrip(), "start"]
    proc = run_as_owner(owner, argv)
    if proc.returncode != 0:
        raise DbsafeError("restore.start_failed", pgdata=pgdata, log=log,
                          reason=last_fatal(log))
    return log


def last_fatal(log: Path) -> str:
    """The server log's last FATAL or PANIC line: the reason a start or recovery failed
    (the log may be removed with a failed restore, so the message carries it)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "the server stopped (no log)"
    for line in reversed(lines):
        if "FATAL" in line or "PANIC" in line:
            return line.strip()
    return lines[-1].strip() if lines else "the server stopped"


def stop(pgdata: Path, bin_dir: str, owner: str) -> None:
    """Stop a restored cluster cleanly (fast mode), so it starts later without recovery."""
    argv = [str(Path(bin_dir) / "pg_ctl"), "-D", str(pgdata), "-w", "-t", "300", "-m", "fast",
            "stop"]
    proc = run_as_owner(owner, argv)
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        raise DbsafeError("restore.start_failed", pgdata=pgdata, log=pgdata,
                          reason=reason[-1] if reason else f"pg_ctl stop exit {proc.returncode}")
