"""Jobs across processes: kinds that exclude each other, cancelling a running job from
another process, and filters. A log backup waiting for its segment (the agent is stopped)
is a running job that stays running until told otherwise."""

from __future__ import annotations

import json
import time

from conftest import new_cluster


def _wait_for_running(vault, backup_type: str) -> dict:
    for _ in range(300):
        running = vault.ok("jobs", "--state", "running", "--backup-type", backup_type)
        if running:
            return running[0]
        time.sleep(0.1)
    raise AssertionError(f"no running {backup_type} job appeared")


def test_cancel_and_exclusion_of_backups(pg_template, area, wal_vault):
    vault = wal_vault
    pg = new_cluster(pg_template, area, "busy")
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g")
    vault.add_server("busy", pg)
    vault.ok("protect", "busy", "--all", "--restart")
    vault.backup("busy", "--type", "full")
    points_before = {p["point_id"] for p in vault.points("busy")}
    vault.ok("agent", "stop")  # the next segment cannot reach the vault: the log job waits

    log = vault.popen("backup", "busy", "--type", "log", "--json")
    try:
        job = _wait_for_running(vault, "log")
        assert job["trigger"] == "on-demand" and job["type"] == "backup"
        refused = vault.fail("backup.already_running", "backup", "busy", "--type", "log")
        assert job["id"] in refused["error"]["message"]
        # a full may run beside a log backup (as the seed's do)
        full = vault.backup("busy", "--type", "full")
        assert full["type"] == "full"
        cancelled = vault.ok("job", "cancel", job["id"])
        assert cancelled["state"] in ("cancelling", "cancelled")
        out, err = log.communicate(timeout=60)
    finally:
        if log.poll() is None:
            log.kill()
            log.communicate()
    assert log.returncode != 0
    assert json.loads(out)["error"]["code"] == "job.cancelled", err
    shown = vault.ok("job", "show", job["id"])
    assert shown["state"] == "cancelled" and shown["error_code"] == "job.cancelled"
    assert [j["id"] for j in vault.ok("jobs", "--state", "cancelled")] == [job["id"]]
    assert vault.fail("job.not_running", "job", "cancel", job["id"])
    # nothing of the cancelled log backup is visible; the full beside it is
    assert {p["point_id"] for p in vault.points("busy")} == points_before | {full["point_id"]}
    assert {j["backup_type"] for j in vault.ok("jobs", "--server", "busy")} == {"full", "log"}
    assert vault.ok("jobs", "--item", "postgres", "--backup-type", "full")
    vault.fail("job.bad_state", "jobs", "--state", "sleeping")
    vault.ok("agent", "start")
