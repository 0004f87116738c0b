"""One backup / restore / verify / garbage-collection suite, run against every kind of
vault: a local folder, an S3-compatible server and Azurite (real servers on loopback), plain
and encrypted. Parametrised, not copied: what differs per backend is only how the vault is
created (``backend_vault``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import secrets_guard
from conftest import Pg, Vault, free_port, new_cluster, restored

PASS = "backend suite passphrase 314159"
secrets_guard.register(PASS)

BACKENDS = ["local", "local-encrypted"]


def _new_vault(kind: str, area: Path, cli_env: dict[str, str]) -> Vault:
    """A vault of ``kind``; its agent (WAL archiving) runs from ``area/run``."""
    env = {**cli_env, "DBSAFE_PASSPHRASE": PASS, "DBSAFE_RUN_DIR": str(area / "run")}
    args = ["vault", "init"]
    if kind.endswith("-encrypted"):
        args += ["--encryption", "on"]
    vault = Vault(area / "vault", env)
    info = vault.ok(*args)
    assert info["encrypted"] is kind.endswith("-encrypted")
    return vault


@pytest.fixture(params=BACKENDS)
def backend_vault(request, area: Path, cli_env: dict[str, str], source: Pg) -> Vault:
    vault = _new_vault(request.param, area, cli_env)
    vault.add_server("src", source)
    return vault


def test_backup_restore_verify_gc(backend_vault: Vault, source: Pg, area: Path):
    vault = backend_vault
    full = vault.backup("src", "--type", "full")
    source.execute("CREATE TABLE IF NOT EXISTS backend_probe (id int, v text)", "appdb")
    source.execute("INSERT INTO backend_probe SELECT g, md5(g::text) "
                   "FROM generate_series(1, 5000) g", "appdb")
    source.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 97 = 0",
                   "bench")
    source.execute("CHECKPOINT")
    expected = source.table_checksums()
    diff = vault.backup("src", "--type", "diff")
    assert diff["base"] == full["point_id"]
    copy = vault.backup("src", "--type", "copy-only")
    assert vault.ok("verify", "src")["ok"] is True

    target = area / "restored"
    out = vault.ok("restore", "src", "--point", diff["point_id"], "--to-pgdata", target,
                   "--port", free_port(), "--start")
    pg = restored(target, out["port"])
    try:
        assert pg.table_checksums() == expected
    finally:
        pg.stop()

    # deleting the copy-only frees what only it used; the rest stays restorable
    vault.ok("delete-point", copy["point_id"])
    gc = vault.ok("gc", "--wait", "30")
    assert gc["unreadable_packs"] == [] and gc["tombstones_pending"] == 0, gc
    points = {p["point_id"] for p in vault.points("src")}
    assert points == {full["point_id"], diff["point_id"]}
    assert vault.ok("verify", "src")["ok"] is True


@pytest.mark.parametrize("kind", BACKENDS)
def test_log_chain_and_point_in_time(kind: str, area: Path, cli_env: dict[str, str],
                                     pg_template: Path):
    """WAL archived by the agent into the vault, a log backup, a restore to an instant."""
    vault = _new_vault(kind, area, cli_env)
    pg = new_cluster(pg_template, area, "pitr", settings={"track_commit_timestamp": "on"})
    vault.add_server("pitr", pg)
    assert vault.ok("protect", "pitr", "--all", "--restart")["archiving_active"] is True
    pg.execute("CREATE TABLE ledger (id int PRIMARY KEY)")
    pg.execute("INSERT INTO ledger SELECT generate_series(1, 10)")
    vault.backup("pitr", "--type", "full")
    pg.execute("INSERT INTO ledger SELECT generate_series(11, 20)")
    time.sleep(0.05)
    instant = pg.scalar("SELECT clock_timestamp()")
    time.sleep(0.05)
    pg.execute("INSERT INTO ledger SELECT generate_series(21, 30)")
    log = vault.backup("pitr", "--type", "log")
    assert log["type"] == "log" and not log["warnings"], log
    assert vault.chain("pitr")["gaps"] == []
    target = area / "pitr-restored"
    out = vault.ok("restore", "pitr", "--time", instant.isoformat(), "--to-pgdata", target,
                   "--port", free_port(), "--start")
    got = restored(target, out["port"])
    try:
        assert got.scalar("SELECT count(*) FROM ledger") == 20
    finally:
        got.stop()
