"""Faults while WAL is archived: the archive command or the agent killed in the middle of a
push, and the vault's disk full. PostgreSQL must keep retrying, nothing may be lost or
stored corrupt, and the chain must be whole once the fault is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import Pg, allow_restores, make_vault, new_cluster, restored

from dbsafe.vault.repository import Repository


def _agent_pid(vault_path: Path, area: Path) -> int:
    (pid_file,) = (area / "run").rglob("agent.pid")
    return int(pid_file.read_text())


def _client_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "dbsafe-wal push"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _wait(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _failed_count(pg: Pg) -> int:
    return pg.scalar("SELECT failed_count FROM pg_stat_archiver")


def _caught_up(pg: Pg) -> bool:
    """No WAL file waits for archiving (PostgreSQL marks those .ready)."""
    return pg.scalar("SELECT count(*) FROM pg_ls_archive_statusdir() "
                     "WHERE name LIKE '%%.ready'") == 0


def _check_vault_wal(vault_path: Path) -> int:
    """Every archived WAL record reads back intact (ids are hashes); returns how many."""
    repo = Repository.open(vault_path)
    count = 0
    for system in (vault_path / "wal").iterdir():
        for name in repo.wal_names(system.name):
            record = repo.load_wal_record(system.name, name)
            data = b"".join(repo.read_block(bytes.fromhex(b)) for b in record["blocks"])
            assert len(data) == record["size"]
            count += 1
    return count


def _setup(pg_template, area, vault) -> Pg:
    pg = new_cluster(pg_template, area, "src")
    vault.add_server("src", pg)
    vault.ok("protect", "src", "--all", "--restart")
    pg.execute("CREATE TABLE ledger (id int PRIMARY KEY, v text)")
    vault.backup("src")
    return pg


def _restore_latest_and_count(vault, area: Path, name: str) -> int:
    log = vault.backup("src", "--type", "log")
    assert not log["warnings"], log
    out = vault.ok("restore", "src", "--point", log["point_id"], "--to-pgdata", area / name)
    got = restored(area / name, out["port"])
    got.start()
    try:
        return got.scalar("SELECT count(*) FROM ledger")
    finally:
        got.stop()


def test_killed_mid_push(pg_template, area, wal_vault):
    vault = wal_vault
    pg = _setup(pg_template, area, vault)
    agent = _agent_pid(vault.path, area)
    # 1. the archive command killed while the agent holds its request
    os.kill(agent, signal.SIGSTOP)
    try:
        pg.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
        pg.execute("SELECT pg_switch_wal()")
        _wait(lambda: _client_pids(), 30, "the archive command to run")
        killed = _client_pids()
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        # a command killed by a signal restarts PostgreSQL's archiver, which tries again
        _wait(lambda: set(_client_pids()) - set(killed), 90, "PostgreSQL to retry")
    finally:
        os.kill(agent, signal.SIGCONT)
    # 2. the agent itself killed in the middle of pushing
    os.kill(agent, signal.SIGSTOP)
    pg.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1001, 2000) g")
    pg.execute("SELECT pg_switch_wal()")
    time.sleep(1)
    os.kill(agent, signal.SIGKILL)
    failed_before = _failed_count(pg)
    _wait(lambda: _failed_count(pg) > failed_before, 60, "a failure while the agent is gone")
    vault.ok("agent", "start")
    _wait(lambda: _caught_up(pg), 120, "archiving to catch up")
    assert vault.chain("src")["gaps"] == []
    assert _restore_latest_and_count(vault, area, "after-kill") == 2000
    assert _check_vault_wal(vault.path) >= 3


def test_vault_disk_full(pg_template, area, small_fs, cli_env):
    small_disk = small_fs("smalldisk", "48m")
    vault = make_vault({**cli_env, "DBSAFE_RUN_DIR": str(area / "run")}, small_disk / "vault")
    allow_restores(vault.path, area)  # the restore goes beside the small disk, not on it
    pg = _setup(pg_template, area, vault)
    # WAL that does not compress away: random text, more than the disk can take
    rows = 0
    while _failed_count(pg) == 0 and rows < 2_000_000:
        pg.execute("INSERT INTO ledger SELECT g, string_agg(md5(random()::text), '') "
                   "FROM generate_series(%s::int, %s::int) g, generate_series(1, 8) r GROUP BY g",
                   params=(rows + 1, rows + 20_000))
        rows += 20_000
        pg.execute("SELECT pg_switch_wal()")
        time.sleep(0.5)
    assert _failed_count(pg) >= 1, "the vault's disk never filled"
    status = vault.ok("agent", "status")
    assert status["running"] and "vault.full" in (status["last_error"] or "")
    (full,) = [a for a in vault.ok("alerts") if a["kind"] == "vault_full"]
    assert full["severity"] == "critical" and "WAL file" in full["message"]
    # the fault goes away: PostgreSQL's retries succeed and the chain is whole
    subprocess.run(["mount", "-o", "remount,size=1g", str(small_disk)], check=True)
    _wait(lambda: _caught_up(pg), 180, "archiving to catch up")
    assert vault.chain("src")["gaps"] == []
    assert _restore_latest_and_count(vault, area, "after-full") == rows
    assert _check_vault_wal(vault.path) >= 3
    tmp = list((small_disk / "vault" / "tmp").iterdir())
    assert len(tmp) <= 2, tmp  # at most what a writer still holds; no pile of debris
    # archiving again resolved the alert
    assert not [a for a in vault.ok("alerts") if a["kind"] == "vault_full"]
