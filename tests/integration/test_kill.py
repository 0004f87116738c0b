"""A backup or a restore killed with SIGKILL in the middle of copying leaves no trace that
matters."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from conftest import Pg, chown_postgres, free_port, make_vault, new_cluster


def _running_backup(vault) -> dict | None:
    """The running backup job, as ``dbsafe jobs --json`` shows it."""
    running = [j for j in vault.jobs() if j["type"] == "backup" and j["state"] == "running"]
    assert len(running) <= 1, running
    return running[0] if running else None


def _tmp_files(vault_path) -> list[str]:
    tmp = vault_path / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The process, killed if still running and its pipes closed however the block ends."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _wait_until(proc: subprocess.Popen, ready, what: str, pause: float):
    """What ``ready()`` returns once it is true, while ``proc`` (doing ``what``) still runs."""
    deadline = time.monotonic() + 120
    while not (found := ready()):
        assert proc.poll() is None, f"{what} ended before it was killed: {proc.communicate()}"
        assert time.monotonic() < deadline, f"the {what} never started writing"
        time.sleep(pause)
    return found


def test_backup_killed_mid_copy(pg_template, area, cli_env):
    pg = new_cluster(pg_template, area, "victim")
    pg.pgbench("-i", "-s", "3", "-q")
    pg.execute("CHECKPOINT")
    vault = make_vault(cli_env, area / "vault")
    vault.add_server("k", pg)
    assert pg.scalar("SELECT count(*) FROM pg_replication_slots") == 0

    # zstd level 19 on one thread copies well under 1 MB/s here: the copy is surely still
    # running when we kill it, whatever the machine.
    def copying() -> dict | None:
        job = _running_backup(vault)
        return job if job and (job["bytes_done"] > 0 or _tmp_files(vault.path)) else None

    with _reaped(vault.popen("backup", "k", "--workers", "1", "--compress-level", "19",
                             "--json")) as proc:
        job = _wait_until(proc, copying, "backup", 0.1)
        assert job["pid"] == proc.pid
        # A second backup of the same server is refused while this one runs.
        busy = vault.run("backup", "k", "--json")
        assert busy.returncode != 0, busy.describe()
        assert busy.json()["error"]["code"] == "backup.already_running", busy.describe()
        assert job["id"] in busy.json()["error"]["message"]
        slots_during = pg.scalar("SELECT count(*) FROM pg_replication_slots")
        assert proc.poll() is None, "backup ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert slots_during == 1, "the backup should hold a temporary slot while it copies"

    # No recovery point, no manifest.
    assert vault.points("k") == []
    assert vault.repository().point_ids() == []

    # The job shows as failed: abandoned.
    jobs = {j["id"]: j for j in vault.jobs()}
    killed = jobs[job["id"]]
    assert killed["state"] == "failed", killed
    assert killed["error_code"] == "job.abandoned", killed
    assert killed["end_time"]

    # PostgreSQL ended the backup session and dropped its temporary slot.
    deadline = time.monotonic() + 30
    while (pg.scalar("SELECT count(*) FROM pg_replication_slots") != 0
           or pg.scalar("SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = 'dbsafe'") != 0) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pg.scalar("SELECT count(*) FROM pg_replication_slots") == 0
    assert pg.scalar("SELECT count(*) FROM pg_stat_activity "
                     "WHERE application_name = 'dbsafe'") == 0

    # The next backup works, and the vault verifies.
    result = vault.backup("k")
    assert result["type"] == "full"
    assert [p["point_id"] for p in vault.points("k")] == [result["point_id"]]
    verify = vault.ok("verify", "k")
    assert verify["ok"] is True
    assert [p["point_id"] for p in verify["points"]] == [result["point_id"]]
    # What the killed process left in tmp/ (its pid is in the names) is gone.
    assert not [n for n in _tmp_files(vault.path) if f"-{proc.pid}-" in n]
    jobs = {j["id"]: j for j in vault.jobs()}
    assert jobs[result["job_id"]]["state"] == "completed"
    assert pg.scalar("SELECT count(*) FROM pg_replication_slots") == 0


def test_restore_killed_midway_leaves_no_startable_data_directory(src_vault, area):
    """pg_control (and backup_label) come last, once everything else is durable: a restore
    killed before leaves a folder PostgreSQL refuses to start, even after a DBA hands it to
    postgres, instead of one it starts with pages still zero."""
    point = src_vault.backup("src")["point_id"]
    manifest = src_vault.repository().load_manifest_whole(point)
    largest = max(manifest["files"], key=lambda f: f["size"])["path"]
    target = area / "killed"
    with _reaped(src_vault.popen("restore", "src", "--point", point, "--to-pgdata", target,
                                 "--workers", "1", "--json")) as proc:
        # the largest file is written first: kill once its first blocks are on disk
        _wait_until(proc, lambda: (target / largest).exists() and
                    (target / largest).stat().st_blocks, "restore", 0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert target.is_dir() and (target / "base").is_dir()
    assert not (target / "global" / "pg_control").exists()
    assert not (target / "backup_label").exists()
    # what a DBA might do with a folder that looks like a data directory
    chown_postgres(target, recursive=True)
    os.chmod(target, 0o700)
    pg = Pg(pgdata=target, port=free_port(), sockdir=area, log=area / "killed.log")
    with pytest.raises(RuntimeError, match="could not start server"):
        pg.start()
    assert not (target / "postmaster.pid").exists()
    # and a new restore does not write into what the killed one left
    src_vault.fail("restore.target_exists", "restore", "src", "--point", point,
                   "--to-pgdata", target)
