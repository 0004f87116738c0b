"""Log backups and point-in-time restore on every kind of vault: WAL archived by the agent
into a local folder, an S3-compatible server or Azurite, plain or encrypted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from backends import new_vault
from conftest import free_port, new_cluster, restored


# local plain is test_log_chain.py; S3 plain and encrypted differ only in their bytes
@pytest.mark.parametrize("kind", ["local-encrypted", "s3-encrypted", "azure"])
def test_log_chain_and_point_in_time(kind: str, request: pytest.FixtureRequest, area: Path,
                                     cli_env: dict[str, str], pg_template: Path):
    """WAL archived by the agent into the vault, a log backup, a restore to an instant."""
    vault = new_vault(kind, request, area, cli_env)
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
