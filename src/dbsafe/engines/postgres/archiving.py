"""WAL archiving of a running server: who owns its settings, setting ours, what its
archiver reports, and ending the current segment so that the archiver hands it over.

Two backup tools archiving one server's WAL make both chains unreliable (the support
matrix warns about exactly this), so an archive_command that is not dbsafe's is named and
refused, never replaced.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.client import one_row
from dbsafe.engines.postgres.cluster import run_as_owner

if TYPE_CHECKING:
    import psycopg

OUR_MARKER = "dbsafe-wal"
KNOWN_TOOLS = [
    (re.compile(r"pgbackrest", re.I), "pgBackRest"),
    (re.compile(r"barman", re.I), "Barman"),
    (re.compile(r"wal-g", re.I), "WAL-G"),
    (re.compile(r"wal-e|envdir", re.I), "WAL-E"),
    (re.compile(r"pg_probackup", re.I), "pg_probackup"),
    (re.compile(r"(^|[\s;&|/])(cp|rsync|scp|gzip|install|test|mv|copy)\b"), "a copy script"),
]


@dataclass
class ArchiveSettings:
    mode: str            # off | on | always
    command: str
    library: str         # PostgreSQL 15+: archive_library

    @property
    def owner(self) -> str | None:
        """Who archives WAL now: 'dbsafe', another tool's name, or None (nobody)."""
        if self.library:
            return f"archive_library {self.library}"
        if not self.command or self.command == "(disabled)":
            return None
        if OUR_MARKER in self.command:
            return "dbsafe"
        for pattern, tool in KNOWN_TOOLS:
            if pattern.search(self.command):
                return tool
        return "another command"

    @property
    def active_ours(self) -> bool:
        return self.mode in ("on", "always") and self.owner == "dbsafe"


def read_settings(conn: psycopg.Connection) -> ArchiveSettings:
    """The settings in effect now (pg_settings.pending_restart is ignored here)."""
    mode, command = one_row(conn.execute(
        "SELECT current_setting('archive_mode'), current_setting('archive_command')"))
    library = one_row(conn.execute(
        "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'archive_library'), '')"
    ))[0]
    return ArchiveSettings(mode, command, library)


def archive_mode_pending_restart(conn: psycopg.Connection) -> bool:
    """Whether archive_mode was changed in the configuration but the server still runs with
    the old value (it takes effect at a restart only). ``pg_settings.pending_restart``:
    PostgreSQL 9.5 on."""
    return one_row(conn.execute("SELECT pending_restart FROM pg_settings "
                        "WHERE name = 'archive_mode'"))[0]


def archiver_stats(conn: psycopg.Connection) -> tuple:
    """The archiver's counters: (archived_count, last_archived_wal, failed_count,
    last_failed_wal, last_failed_time as text), since the statistics were last reset.
    ``pg_stat_archiver``: PostgreSQL 9.4 on."""
    return one_row(conn.execute(
        "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal, "
        "last_failed_time::text FROM pg_stat_archiver"))


def last_archive_failure(conn: psycopg.Connection) -> tuple:
    """(last_failed_wal, last_failed_time) of the archiver: the segment it last failed to
    archive and when (a timestamp), both None when none failed. ``pg_stat_archiver``:
    PostgreSQL 9.4 on."""
    return one_row(conn.execute(
        "SELECT last_failed_wal, last_failed_time FROM pg_stat_archiver"))


def ready_segments(conn: psycopg.Connection) -> int:
    """How many finished WAL files wait for the archiver (``.ready`` in
    pg_wal/archive_status). ``pg_ls_archive_statusdir()``: PostgreSQL 12 on; raises
    psycopg.Error for a role that is neither superuser nor pg_monitor."""
    return one_row(conn.execute("SELECT count(*) FROM pg_ls_archive_statusdir() "
                        "WHERE name LIKE '%.ready'"))[0]


def write_commit_record(conn: psycopg.Connection) -> None:
    """Commit a transaction that only took an id (autocommit): it writes a commit record,
    so a recovery to an instant before it has a record to stop at; on a primary with a
    standby, a record in the next segment also makes the standby close the one before.
    ``txid_current()``: every supported version (deprecated since PostgreSQL 13 for
    pg_current_xact_id, still there in 18)."""
    conn.execute("SELECT txid_current()")


def switch_wal(conn: psycopg.Connection) -> tuple[str, str]:
    """End the current WAL segment (a primary only): (the switch's LSN as text, the name of
    the segment it ended, the one the archiver gets next). ``pg_switch_wal``,
    ``pg_walfile_name``: PostgreSQL 10 on."""
    return one_row(conn.execute(
        "SELECT l::text, pg_walfile_name(l) FROM pg_switch_wal() AS l"))


def config_lines(command: str, mode: str = "on") -> list[str]:
    return [f"archive_mode = {mode}",
            f"archive_command = '{command.replace(chr(39), chr(39) * 2)}'"]


def mode_suffices(current: str, wanted: str) -> bool:
    """'always' (a replica set's nodes: a standby archives too) or at least 'on'."""
    return current == "always" if wanted == "always" else current in ("on", "always")


def enable(conn: psycopg.Connection, command: str, mode: str = "on") -> bool:
    """Set our archive_command with ALTER SYSTEM (and archive_mode to ``mode`` if it is
    short of it); returns whether a restart is needed."""
    settings = read_settings(conn)
    conn.execute(f"ALTER SYSTEM SET archive_command = {_literal(command)}")
    restart = not mode_suffices(settings.mode, mode)
    if restart:
        conn.execute(f"ALTER SYSTEM SET archive_mode = {_literal(mode)}")
    conn.execute("SELECT pg_reload_conf()")
    return restart


def disable(conn: psycopg.Connection) -> bool:
    """Remove our archiving (SIMPLE model); returns whether a restart is needed."""
    settings = read_settings(conn)
    conn.execute("ALTER SYSTEM RESET archive_command")
    restart = settings.mode != "off"
    if restart:
        # archive_mode=on with no command would keep every WAL segment forever
        conn.execute("ALTER SYSTEM SET archive_mode = 'off'")
    conn.execute("SELECT pg_reload_conf()")
    return restart


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def restart(pgdata: Path, bin_dir: str, owner: str) -> None:
    """Restart the server (fast mode; pg_ctl reuses the options it was started with).

    The server's output goes to ``log/dbsafe-restart.log`` in the data directory: without
    ``-l`` the new postmaster would keep our output pipe open forever.
    """
    log_dir = pgdata / "log"
    if not log_dir.exists():
        log_dir.mkdir(mode=0o700)
        st = pgdata.stat()
        # never follow a link: the owner could have put one in its place since
        os.chown(log_dir, st.st_uid, st.st_gid, follow_symlinks=False)
    argv = [str(Path(bin_dir) / "pg_ctl"), "-D", str(pgdata), "-w", "-t", "300", "-m", "fast",
            "-l", str(log_dir / "dbsafe-restart.log"), "restart"]
    proc = run_as_owner(owner, argv)
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        raise DbsafeError("server.restart_failed", pgdata=pgdata,
                          reason=reason[-1] if reason else f"pg_ctl exit {proc.returncode}")
