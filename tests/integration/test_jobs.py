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


def test_jobs_are_paged_and_cut_by_instants_given_with_their_zone(tmp_path, cli_env):
    """`dbsafe jobs --since/--until/--offset`: the same rule for a typed instant as a
    restore target's (no zone: refused, never guessed), the list cut and paged."""
    from conftest import make_vault

    from dbsafe.services import activity
    from dbsafe.services.handle.vault_handle import Vault as ServiceVault

    vault = make_vault(cli_env, tmp_path / "vault")
    service = ServiceVault.open(vault.path)
    try:
        for hour in range(5):
            activity.record_job(service.catalog, "verify", "s", result={"hour": hour},
                                started=f"2026-12-05T{10 + hour:02d}:00:00.000+00:00")
    finally:
        service.catalog.close()
    since = vault.ok("jobs", "--server", "s", "--since", "2026-12-05T12:00:00+01:00")
    assert [j["result"]["hour"] for j in since] == [4, 3, 2, 1]    # 11:00 UTC on
    cut = vault.ok("jobs", "--server", "s", "--since", "2026-12-05T11:00:00Z",
                   "--until", "2026-12-05T13:00:00Z")
    assert [j["result"]["hour"] for j in cut] == [2, 1]
    paged = vault.ok("jobs", "--server", "s", "--limit", "2", "--offset", "2")
    assert [j["result"]["hour"] for j in paged] == [2, 1]
    naive = vault.run("jobs", "--since", "2026-12-05T11:00:00", "--json")
    assert naive.returncode == 2 and "time.zone_missing" in naive.stdout
    garbled = vault.run("jobs", "--since", "yesterday", "--json")
    assert garbled.returncode == 2 and "time.bad_instant" in garbled.stdout
