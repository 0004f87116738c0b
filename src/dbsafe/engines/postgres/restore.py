"""Lay a backup out as a PostgreSQL data directory and start it.

The WAL saved with a backup goes into pg_wal next to backup_label, as pg_basebackup does
with ``-X stream``: PostgreSQL then replays it to the backup's end on its first start and
needs no restore_command.

Everything here writes through a ``Tree`` (core/fdtree.py): the data directory and each
tablespace are folders the restore created and holds open, so no link planted in them is
followed. Modes are PostgreSQL's own: at most 0640 for files and 0750 for folders (group
read with ``initdb -g``), never setuid. Settings a server needs for one run only (its
port, its socket folder, replay's buffers) go into ``postgresql.auto.conf`` for that
start and are taken out again once it runs: ``pg_ctl -o`` would hand them to a shell.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
from collections.abc import Iterator
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import Tree, open_dir, read_regular, read_tail, replace_file, write_new
from dbsafe.core.path_rules import unsafe_part
from dbsafe.engines.postgres.cluster import run_as_owner

AUTO_CONF = "postgresql.auto.conf"
START_LOG = "dbsafe-restore-start.log"  # the server's log of a start dbsafe made
FILE_MODES = 0o640  # owner read-write, group read (a cluster made with initdb -g)
DIR_MODES = 0o750


def file_mode(mode: int | None) -> int:
    """A restored file's mode: the backed-up one within PostgreSQL's, owner rw always."""
    return (mode or 0o600) & FILE_MODES | 0o600


def dir_mode(mode: int | None) -> int:
    return (mode or 0o700) & DIR_MODES | 0o700


def placed(rel: str, pgdata: Tree, tablespaces: dict[str, Tree]) -> tuple[Tree, str]:
    """Where the file or folder ``rel`` of a backup lands: a tablespace's ``pg_tblspc/<oid>/
    ...`` in that tablespace's tree, the rest in the data directory's."""
    if rel.startswith("pg_tblspc/") and rel.count("/") >= 2:
        _, oid, rest = rel.split("/", 2)
        return tablespaces[oid], rest
    return pgdata, rel


def make_layout(pgdata: Tree, dirs: list[dict], tablespaces: dict[str, Tree]) -> None:
    """The data directory's folders and its tablespace links (the only links a restore
    makes: each to the path of a tablespace tree it made)."""
    pgdata.mkdir("", 0o700)
    for oid, tree in tablespaces.items():
        pgdata.mkdir("pg_tblspc", 0o700)
        pgdata.symlink(str(tree.path), f"pg_tblspc/{oid}")
    for d in dirs:
        if d.get("type") == "tablespace":
            continue
        tree, rel = placed(d["path"], pgdata, tablespaces)
        tree.mkdir(rel, dir_mode(d.get("mode")))


def owner_ids(owner: str) -> tuple[int, int]:
    entry = pwd.getpwnam(owner)
    return entry.pw_uid, entry.pw_gid


def write_backup_label(pgdata: Tree, label: str, owner: tuple[int, int] | None) -> None:
    """backup_label, made durable: with pg_control, the last file a restore writes."""
    write_new(pgdata.fd, "backup_label", label.encode(), 0o600, owner, sync=True)
    os.fsync(pgdata.fd)


def conf_value(value: str) -> str:
    """A string as PostgreSQL's configuration files quote it (a quote doubled, a backslash
    escaped: the parser reads backslash escapes inside quotes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def conf_lines(comment: str, settings: dict[str, str]) -> str:
    return f"\n# {comment}\n" + "".join(
        f"{k} = {v if v.isdigit() else conf_value(v)}\n" for k, v in settings.items())


def append_settings(pgdata: Tree, comment: str, settings: dict[str, str]) -> None:
    """Add settings to postgresql.auto.conf (read last, so they win) of a data directory
    the restore still holds (before it is handed to the cluster's owner)."""
    fd = os.open(AUTO_CONF, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW |
                 os.O_CLOEXEC, 0o600, dir_fd=pgdata.fd)
    try:
        os.write(fd, conf_lines(comment, settings).encode())
    finally:
        os.close(fd)


def set_port(pgdata: Tree, port: int) -> None:
    """Record the new port in postgresql.auto.conf so a later restart keeps it."""
    append_settings(pgdata, "set by dbsafe restore", {"port": str(port)})


def disable_archiving(pgdata: Tree) -> None:
    """A restored copy must never archive into its source's log chain (the vault would
    refuse its different WAL anyway): archiving is off until a DBA turns it on."""
    append_settings(pgdata, "set by dbsafe restore: a restored copy does not archive into "
                            "the source's chain", {"archive_mode": "off"})


def check_owner(owner: str) -> None:
    """Refuse an owner that does not exist before anything is written."""
    try:
        pwd.getpwnam(owner)
    except KeyError:
        raise DbsafeError("restore.owner_unknown", owner=owner) from None


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


@contextlib.contextmanager
def run_settings(pgdata: Path, settings: dict[str, str], owner: str) -> Iterator[None]:
    """``settings`` in postgresql.auto.conf while the block runs (a server start), the
    file as it was afterwards. The data directory belongs to the cluster's owner by now,
    so the file is read without following a link and replaced, never written through."""
    fd = open_dir(pgdata)
    try:
        before = read_regular(fd, AUTO_CONF) or b""
        ids = owner_ids(owner) if os.geteuid() == 0 else None
        replace_file(fd, AUTO_CONF, before + conf_lines(
            "for this start only, removed by dbsafe once the server runs", settings).encode(),
            0o600, ids)
        try:
            yield
        finally:
            replace_file(fd, AUTO_CONF, before, 0o600, ids)
    finally:
        os.close(fd)


def start(pgdata: Path, bin_dir: str, port: int, owner: str, timeout: int = 600,
          settings: dict[str, str] | None = None) -> Path:
    """Start the restored cluster and wait until it accepts connections; returns its log.
    ``settings`` are server settings for this run only; the socket is in ``pgdata`` (always
    writable by the owner; the port alone may clash elsewhere)."""
    part = unsafe_part(str(pgdata))
    if part is not None:  # pg_ctl runs the server through sh -c with this path in it
        raise DbsafeError("restore.target_unsafe", path=pgdata,
                          reason=f"its part {part!r} would reach pg_ctl's shell")
    log = pgdata / START_LOG
    argv = [str(Path(bin_dir) / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w",
            "-t", str(timeout), "start"]
    try:
        with run_settings(pgdata, {"port": str(port), "unix_socket_directories": str(pgdata),
                                   **(settings or {})}, owner):
            proc = run_as_owner(owner, argv)
    except OSError as exc:  # postgresql.auto.conf is not a plain file of the owner's
        raise DbsafeError("restore.start_failed", pgdata=pgdata, log=log,
                          reason=f"its settings cannot be set safely: {exc}") from None
    if proc.returncode != 0:
        raise DbsafeError("restore.start_failed", pgdata=pgdata, log=log,
                          reason=last_fatal(log))
    return log


def last_fatal(log: Path) -> str:
    """The server log's last FATAL or PANIC line: the reason a start or recovery failed
    (the log may be removed with a failed restore, so the message carries it). The log is
    the cluster owner's file: it is read without following a link."""
    try:
        text = read_tail(log, 64 << 10).decode(errors="replace")
    except FileNotFoundError:
        return "the server stopped (no log)"
    except OSError as exc:
        return f"the server stopped (its log cannot be read: {exc})"
    lines = text.splitlines()
    for line in reversed(lines):
        if "FATAL" in line or "PANIC" in line:
            return line.strip()
    return lines[-1].strip() if lines else "the server stopped"


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in postmaster.pid (None without one): a file of the cluster's owner, read
    without following a link."""
    try:
        fd = open_dir(pgdata)
    except OSError:
        return None
    try:
        return int((read_regular(fd, "postmaster.pid", 4096) or b"").split()[0])
    except (OSError, IndexError, ValueError):
        return None
    finally:
        os.close(fd)


def stop(pgdata: Path, bin_dir: str, owner: str) -> None:
    """Stop a restored cluster cleanly (fast mode), so it starts later without recovery."""
    argv = [str(Path(bin_dir) / "pg_ctl"), "-D", str(pgdata), "-w", "-t", "300", "-m", "fast",
            "stop"]
    proc = run_as_owner(owner, argv)
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        raise DbsafeError("restore.start_failed", pgdata=pgdata, log=pgdata,
                          reason=reason[-1] if reason else f"pg_ctl stop exit {proc.returncode}")


def drop_databases(pgdata: Path, port: int, dbname: str, oids: list[int]) -> list[str]:
    """Drop the databases with these OIDs from a restored server that dbsafe runs (a restore
    left their files zeros: nobody can connect to them), asking in ``dbname``; returns the
    names dropped. No ``WITH (FORCE)`` (PostgreSQL 13+) is needed: no session can be in
    such a database, and DROP DATABASE ends autovacuum's workers itself."""
    import psycopg
    from psycopg import sql

    from dbsafe.engines.postgres.client import connect

    with connect(port, str(pgdata), dbname) as conn:
        try:
            names = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE oid::bigint = ANY(%s) ORDER BY 1",
                (oids,)).fetchall()]
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise DbsafeError("restore.start_failed", pgdata=pgdata, log=pgdata,
                              reason=f"it started, but dropping a database the point does "
                                     f"not hold failed: {str(exc).strip()}") from None
    return names
