"""Point-in-time recovery of a restored data directory: settings, WAL hand-off, waiting.

PostgreSQL asks ``restore_command`` for one WAL file at a time, in order, and a missing
file means "end of the archive". dbsafe stages the files it knows recovery needs into a
folder beside the data directory (same file system: the command only renames), in parallel
and ahead of the startup process. For each file still to come there is a ``<name>.wait``
marker; the command waits while the marker exists and then takes the file. A name without
file or marker is not part of the plan and is answered "not found" at once. The command is
inline shell, not a script: once the stage folder is gone it still answers "not found"
(a missing script would exit 127, which PostgreSQL treats as fatal). PostgreSQL runs it
with ``sh -c``: the stage path is quoted for the shell (shlex) and its ``%`` doubled for
PostgreSQL's own escapes, although restore targets are held to plain names anyway
(services/restore/targets.py).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.concurrency import pid_alive
from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import Tree, write_new
from dbsafe.engines.postgres.client import connect, one_row
from dbsafe.engines.postgres.restore import append_settings, last_fatal

if TYPE_CHECKING:
    import psycopg

REPLAY_BUFFERS_MAX_MB = 4096
RECOVERY_KEYS = ("restore_command", "recovery_target_time", "recovery_target_lsn",
                 "recovery_target_name", "recovery_target_inclusive",
                 "recovery_target_action", "recovery_target_timeline")


@dataclass
class RecoveryTarget:
    kind: str            # time | lsn | name | end (all staged WAL)
    value: str | None    # the target as PostgreSQL reads it
    timeline: int
    pause: bool          # stay paused in recovery at the target (--no-recovery)

    def settings(self) -> dict[str, str]:
        out = {"recovery_target_timeline": str(self.timeline),
               "recovery_target_action": "pause" if self.pause else "promote"}
        if self.kind != "end":
            out[f"recovery_target_{self.kind}"] = self.value or ""
        if self.kind in ("time", "lsn"):
            out["recovery_target_inclusive"] = "on"
        return out

    def describe(self) -> str:
        return "the end of the staged WAL" if self.kind == "end" else f"{self.kind} {self.value}"


# Whether recovery runs, and paused (PostgreSQL 14 tells "pause requested" from "paused";
# before it, pg_is_wal_replay_paused() is true once recovery stops at a pausing target)
PAUSE_STATE_SQL = ("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                   "THEN pg_get_wal_replay_pause_state() END")
PAUSE_STATE_SQL_13 = ("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                      "THEN CASE WHEN pg_is_wal_replay_paused() THEN 'paused' "
                      "ELSE 'not paused' END END")

STAGE_FAILED = "dbsafe-stage.failed"  # made in the stage folder when staging failed


def restore_command(stage: Path) -> str:
    """The shell command PostgreSQL runs for each WAL file (``%f`` its name, ``%p`` where
    to put it); the stage path is a quoted word of the script, the script one quoted
    argument of ``sh -c``, and ``%`` is doubled so PostgreSQL passes it through."""
    s = shlex.quote(str(stage))
    # History files are asked for more than once (at start and at each timeline switch):
    # they are copied; segments are asked for once and are moved. When dbsafe cannot stage
    # a file (``STAGE_FAILED``), the command exits 126: above 125, PostgreSQL takes it as
    # a failure of the command itself and aborts recovery, rather than reading "not found"
    # as the end of the archive and promoting short of the target.
    fail = f"[ -f {s}/{STAGE_FAILED} ] && exit 126"
    script = (f'while [ -f {s}/"$1.wait" ]; do {fail}; sleep 0.02; done; {fail}; '
              f'test -f {s}/"$1" || exit 1; case "$1" in *.history) cp {s}/"$1" "$2";; '
              f'*) mv {s}/"$1" "$2";; esac')
    return f"sh -c {shlex.quote(script)} dbsafe-restore".replace("%", "%%") + " %f %p"


def stage_dir(pgdata: Path) -> Path:
    """Where the WAL for recovery is staged: beside the data directory (same file system,
    so the restore command only renames), not in it: PostgreSQL fsyncs its whole data
    directory when it starts after a crash or a restore, and would flush (and race with)
    the staged files (measured: ~1.5 s lost per restore with the folder inside)."""
    return pgdata.parent / f".{pgdata.name}.dbsafe-wal-stage"


def replay_settings() -> dict[str, str]:
    """Server settings for a recovery run that dbsafe stops afterwards: shared buffers of an
    eighth of the memory (at most 4 GB) so that replay does not evict and write pages it
    will touch again; the restored server's own settings apply from its next start."""
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    return {"shared_buffers": f"{max(128, min(REPLAY_BUFFERS_MAX_MB, total_mb // 8))}MB"}


def write_settings(pgdata: Tree, target: RecoveryTarget, stage: Path) -> None:
    """recovery.signal plus the recovery settings (postgresql.auto.conf: it is read last),
    written while the restore still holds the data directory."""
    append_settings(pgdata, "point-in-time recovery, set by dbsafe restore (removed after "
                            "it)", {"restore_command": restore_command(stage),
                                    **target.settings()})
    write_new(pgdata.fd, "recovery.signal", b"")


def wait_for_target(pgdata: Path, port: int, target: RecoveryTarget, postmaster_pid: int,
                    log: Path, failed: Callable[[], BaseException | None], dbname: str,
                    timeout: float = 24 * 3600, connect_timeout: float = 300,
                    socket_dir: Path | None = None) -> None:
    """Wait until recovery promoted (or paused at the target); raise if the server died.

    ``failed`` returns an error (the WAL stager's) that ends the wait early. ``dbname`` is
    a database the restore wrote (a selective restore leaves others unusable).
    ``socket_dir``: where the server's socket is, when not in ``pgdata``.
    """
    import psycopg

    deadline = time.monotonic() + timeout
    connected_once = False
    first_failure: float | None = None
    while time.monotonic() < deadline:
        problem = failed()
        if problem is not None:
            raise problem
        if not pid_alive(postmaster_pid):
            raise DbsafeError("restore.recovery_failed", pgdata=pgdata, log=log,
                              target=target.describe(), reason=last_fatal(log))
        try:
            with connect(port, str(socket_dir or pgdata), dbname) as conn:
                in_recovery, state = one_row(conn.execute(
                    PAUSE_STATE_SQL if conn.info.server_version >= 140000
                    else PAUSE_STATE_SQL_13))
            connected_once, first_failure = True, None
        except (psycopg.Error, DbsafeError) as exc:
            first_failure = first_failure or time.monotonic()
            if not connected_once and time.monotonic() - first_failure > connect_timeout:
                raise DbsafeError("restore.recovery_failed", pgdata=pgdata, log=log,
                                  target=target.describe(),
                                  reason=f"cannot connect to the restored server: {exc}") \
                    from None
            time.sleep(0.1)
            continue
        if not in_recovery and not target.pause:
            return
        if in_recovery and target.pause and state == "paused":
            return
        if not in_recovery and target.pause:
            raise DbsafeError("restore.recovery_failed", pgdata=pgdata, log=log,
                              target=target.describe(),
                              reason="the server left recovery instead of pausing")
        time.sleep(0.1)
    raise DbsafeError("restore.recovery_failed", pgdata=pgdata, log=log,
                      target=target.describe(), reason=f"not done after {timeout} s")


def promote(conn: psycopg.Connection) -> None:
    """Promote a server in recovery (a restored copy paused at its target) and wait, up to
    300 s, until it takes writes (its answer, false when it did not in time, is not read).
    ``pg_promote(wait, wait_seconds)``: PostgreSQL 12 on."""
    conn.execute("SELECT pg_promote(true, 300)")


def clear_settings(pgdata: Path, port: int, dbname: str) -> None:
    """After promotion: drop the recovery settings so a later restart is a plain start."""
    with connect(port, str(pgdata), dbname) as conn:
        for key in RECOVERY_KEYS:
            conn.execute(f"ALTER SYSTEM RESET {key}")
        conn.execute("SELECT pg_reload_conf()")
