"""Instant recovery (docs/instant-access.md): an instance serves at an instant while its
point is restored to disk, then the switch writes what the instance changed over the copy
and PostgreSQL runs from there, on the same port."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Pg, allow_restores, new_cluster

from dbsafe.services.access import fuse_problem

pytestmark = pytest.mark.skipif(fuse_problem() is not None,
                                reason=f"instant access needs FUSE: {fuse_problem()}")


def test_recover_to_a_data_directory_while_the_instance_serves(pg_template, area, wal_vault):
    vault = wal_vault
    allow_restores(vault.path, area)
    src = new_cluster(pg_template, area, "src")
    src.execute("CREATE DATABASE app")
    src.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", "app")
    src.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g", "app")
    vault.add_server("src", src)
    vault.ok("protect", "src", "--all", "--restart")
    vault.backup("src")
    # what the instant holds exists only in WAL after the point: replayed by the instance
    # into its local pages, and carried to disk by the switch alone
    src.execute("UPDATE t SET v = 'changed' WHERE id % 3 = 0", "app")
    src.execute("CREATE TABLE made_after (x int)", "app")
    src.execute("INSERT INTO made_after SELECT generate_series(1, 500)", "app")
    time.sleep(0.2)
    instant = src.scalar("SELECT clock_timestamp()").isoformat()
    expected = src.table_checksums()
    time.sleep(0.2)
    src.execute("DELETE FROM t", "app")
    vault.backup("src", "--type", "log")

    target = area / "recovered"
    out = vault.ok("instant", "src", "--time", instant, "--recover-to", str(target))
    try:
        assert out["state"] == "recovered" and out["recovered_to"] == str(target)
        assert out["switch"]["pages_written"] > 0  # the instance's changes, carried over
        assert out["downtime_seconds"] >= 0
        recovered = Pg(pgdata=target, port=out["port"], sockdir=target)
        assert recovered.running
        assert recovered.scalar("SELECT pg_is_in_recovery()") is False
        assert recovered.table_checksums() == expected
        recovered.execute("INSERT INTO made_after VALUES (0)", "app")  # it takes writes
        # nothing of the instance is left: no run, no mount, no folder
        assert vault.ok("instant", "list") == []
        assert not list(area.glob("instant-*"))
        assert not (target / "backup_label").exists()
        assert (target / "pg_wal").is_dir() and not (target / "pg_wal").is_symlink()
        # and it starts again from its own files (a clean restart)
        recovered.stop()
        recovered.start()
        assert recovered.scalar("SELECT count(*) FROM made_after", "app") == 501
    finally:
        left = Pg(pgdata=target, port=out["port"], sockdir=target)
        if left.running:
            left.stop()


def test_an_instance_that_cannot_start_says_why_and_keeps_its_log(pg_template, area, vault):
    """The server's log lies in the mount, which goes with the failed run: its end is kept
    in the run's own log, which the error names."""
    allow_restores(vault.path, area)
    src = new_cluster(pg_template, area, "src")
    # a library this host lacks: the backup carries the setting, the source never restarts
    src.execute("ALTER SYSTEM SET shared_preload_libraries = 'dbsafe_no_such_library'")
    vault.add_server("src", src)
    point = vault.backup("src")["point_id"]
    error = vault.fail("restore.start_failed", "instant", "src", "--point", point)["error"]
    assert "dbsafe_no_such_library" in error["message"]
    log = Path(error["message"].rsplit("see ", 1)[1])
    assert log.parent == vault.path / "instant" and "dbsafe_no_such_library" in log.read_text()
    assert vault.ok("instant", "list") == [] and not list(area.glob("instant-*"))
