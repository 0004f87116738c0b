"""One backup / restore / verify / garbage-collection suite, run against every kind of
vault: a local folder, an S3-compatible server and Azurite (real servers on loopback), plain
and encrypted. Parametrised, not copied: what differs per backend is only how the vault is
created (``backend_vault``)."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from backends import KINDS, new_vault
from conftest import Pg, Vault


@pytest.fixture(params=[k for k in KINDS if k != "s3"])  # plain S3: the throttling test
def backend_vault(request, area: Path, cli_env: dict[str, str], source: Pg) -> Vault:
    vault = new_vault(request.param, request, area, cli_env)
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

    vault.restore_matches("src", diff["point_id"], expected, area / "restored")

    # deleting the copy-only frees what only it used; the rest stays restorable
    vault.ok("delete-point", copy["point_id"])
    gc = vault.ok("gc", "--wait", "30")
    assert gc["unreadable_packs"] == [] and gc["tombstones_pending"] == 0, gc
    points = {p["point_id"] for p in vault.points("src")}
    assert points == {full["point_id"], diff["point_id"]}
    assert vault.ok("verify", "src")["ok"] is True



def test_throttled_object_store_loses_nothing(request, area: Path, cli_env: dict[str, str],
                                              source: Pg, s3_server):
    """The S3 server answers 503 SlowDown for a while during a backup and again during a
    restore: both ride it out; what was restored is what was backed up."""
    from servers.faults import FaultProxy

    proxy = FaultProxy(s3_server.port, flavor="s3").start()
    try:
        location = s3_server.location(f"throttled-{secrets.token_hex(4)}", "vault",
                                      f"http://127.0.0.1:{proxy.port}")
        vault = new_vault("s3", request, area, cli_env, location=location)
        vault.add_server("src", source)
        expected = source.table_checksums()
        backup = vault.popen("backup", "src", "--type", "full", "--json")
        time.sleep(1.0)  # into the copy
        proxy.fail_for(4)
        out, err = backup.communicate(timeout=600)
        assert backup.returncode == 0, (out, err)
        point = json.loads(out)
        served = proxy.faults_served
        assert served > 0, "the proxy served no 503"
        # the restore's first requests are throttled (counted, not timed: a loaded machine
        # may take the 3 s the fault used to last just to start the command)
        proxy.fail_next(2)
        vault.restore_matches("src", point["point_id"], expected, area / "restored")
        assert proxy.faults_served > served
        assert vault.ok("verify", "src")["ok"] is True
    finally:
        proxy.stop()
