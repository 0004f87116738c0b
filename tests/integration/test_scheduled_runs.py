"""What a scheduled run does, on real clusters: the self-healing chain (a differential
turned into a full, with the reason), types an item cannot take (skipped with a warning),
a scheduled drill; policy changes applied to servers (and "inconsistent policy" with its
fix); stopping protection; another backup solution detected at protect and at backup."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from conftest import new_cluster

from dbsafe.scheduler.clock import FakeClock
from dbsafe.scheduler.due import Work
from dbsafe.scheduler.execute import Executor

WEEKLY = ("--full", "weekly", "--full-days", "sun", "--full-time", "01:00",
          "--diff-days", "mon,tue,wed,thu,fri,sat", "--log-every", "60",
          "--keep-weekly", "4", "--keep-diff", "7", "--keep-log", "7")


@pytest.fixture
def run(wal_vault, monkeypatch):
    """run(server, kind, now=None): one scheduled run, in this process, as serve does it."""
    monkeypatch.setenv("DBSAFE_RUN_DIR", wal_vault.env["DBSAFE_RUN_DIR"])

    def _run(server: str, kind: str, now: datetime | None = None) -> dict | None:
        now = now or datetime.now(UTC)
        with sqlite3.connect(wal_vault.path / "catalog.sqlite") as db:
            (instance_id,) = db.execute(
                "SELECT i.id FROM instances i JOIN servers s ON s.id = i.server_id "
                "WHERE s.name = ?", (server,)).fetchone()
            (policy,) = db.execute("SELECT policy FROM protected_databases WHERE "
                                   "instance_id = ? LIMIT 1", (instance_id,)).fetchone()
        before = {j["id"] for j in wal_vault.jobs()}
        Executor(wal_vault.path, FakeClock(now))(
            Work(server, instance_id, policy, kind, now.replace(second=0, microsecond=0)))
        new = [j for j in wal_vault.jobs() if j["id"] not in before and
               j["type"] in ("backup", "drill") and j["trigger"] in ("scheduled", "on-demand")]
        return new[0] if new else None

    return _run


def test_self_healing_skips_and_a_scheduled_drill(pg_template, area, wal_vault, run):
    vault = wal_vault
    pg = new_cluster(pg_template, area, "h")
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g")
    vault.add_server("h", pg)
    vault.ok("policy", "create", "wk", *WEEKLY)
    vault.ok("protect", "h", "--all", "--policy", "wk", "--restart")

    job = run("h", "diff")
    assert job["backup_type"] == "full" and job["trigger"] == "scheduled"
    assert "no full backup" in job["reason"]
    job = run("h", "diff")
    assert job["backup_type"] == "diff" and job["reason"] is None
    assert run("h", "log")["backup_type"] == "log"
    job = run("h", "diff", datetime.now(UTC) + timedelta(days=16))
    assert job["backup_type"] == "full" and "16 days old, more than 15" in job["reason"]
    # a segment after that full goes missing: the chain is broken, the next log is a full
    for _ in range(3):
        pg.execute("INSERT INTO t VALUES (0)")
        pg.execute("SELECT pg_switch_wal()")
    assert run("h", "log")["backup_type"] == "log"
    segments = sorted((vault.path / "wal").rglob("00000001000000000000*"))
    segments[-2].unlink()
    job = run("h", "log")
    assert job["backup_type"] == "full" and "log chain is broken" in job["reason"]
    assert segments[-2].name in job["reason"]

    # the policy drops log backups: the server goes SIMPLE, and the chain restarts
    out = vault.ok("policy", "edit", "wk", "--log-every", "none")
    assert [r["recovery_model"] for r in out["reconfigured"]] == ["SIMPLE"]
    job = run("h", "diff")
    assert job["backup_type"] == "full" and "recovery model changed" in job["reason"]
    assert run("h", "diff")["backup_type"] == "diff"  # the reason is cleared by the full
    assert run("h", "log") is None  # a log backup of a SIMPLE instance: skipped, no job
    items = vault.ok("items", "h")
    assert items and all("log backup skipped" in i["warning"] for i in items), items

    drill = run("h", "drill")
    assert drill["type"] == "drill" and drill["state"] in ("completed",
                                                           "completed_with_warnings")
    assert vault.ok("drills", "--server", "h")[0]["state"] == drill["state"]
    # its scratch restore is a step of the drill's job, not a restore of h (whose failure
    # would raise restore_failed beside drill_failed)
    assert not [j for j in vault.jobs() if j["type"] == "restore"]


def test_policy_change_failure_is_inconsistent_until_fixed_then_unprotect(
        pg_template, area, wal_vault):
    vault = wal_vault
    pg = new_cluster(pg_template, area, "p")
    pg.execute("CREATE DATABASE app")
    vault.add_server("p", pg)
    vault.ok("policy", "create", "nightly", "--full", "daily", "--full-time", "01:00",
             "--log-every", "none", "--keep-daily", "7")
    assert vault.ok("protect", "p", "--all", "--policy", "nightly")["recovery_model"] == "SIMPLE"
    vault.fail("protect.policy_mismatch", "protect", "p", "--db", "app", "--policy", "default")

    pg.stop()
    out = vault.ok("policy", "edit", "nightly", "--log-every", "60", "--keep-log", "7")
    (entry,) = out["reconfigured"]
    assert entry["state"] == "inconsistent-policy"
    assert entry["fix"] == "dbsafe protect p --all --policy nightly --restart"
    assert {i["state"] for i in vault.ok("items", "p")} == {"inconsistent-policy"}
    pg.start()
    fixed = vault.ok(*entry["fix"].split()[1:])  # the one-step fix, as printed
    assert fixed["recovery_model"] == "FULL" and fixed["archiving_active"]
    assert {i["state"] for i in vault.ok("items", "p")} == {"protected"}

    first = vault.backup("p", "--type", "full")["point_id"]
    out = vault.ok("unprotect", "p", "--db", "app", "--retain-data")
    assert out["data"] == "retained" and out["still_protected"] == ["postgres"]
    states = {i["name"]: i["state"] for i in vault.ok("items", "p")}
    assert states == {"app": "stopped", "postgres": "protected"}
    vault.fail("unprotect.choose_data", "unprotect", "p")
    out = vault.ok("unprotect", "p", "--delete-data")
    assert out["points_deleted"] == [first] and out["archiving_turned_off"]
    assert vault.points("p") == [] and vault.ok("items", "p") == []


def test_another_backup_solution_is_named(pg_template, area, wal_vault):
    vault = wal_vault
    pg = new_cluster(pg_template, area, "c")
    vault.add_server("c", pg)
    other = "/usr/bin/python3 -I -S /var/tmp/elsewhere/agent/0123456789ab/dbsafe-wal push %p"
    pg.execute(f"ALTER SYSTEM SET archive_command = '{other}'")
    pg.execute("ALTER SYSTEM SET archive_mode = on")  # without it the command shows disabled
    pg.stop()
    pg.start()
    out = vault.fail("protect.other_vault", "protect", "c", "--all")
    assert "0123456789ab" in out["error"]["message"]

    pg.execute("ALTER SYSTEM SET archive_command = "
               "'pgbackrest --stanza=main archive-push %p'")
    pg.execute("SELECT pg_reload_conf()")
    vault.fail("protect.archive_owned", "protect", "c", "--all")
    vault.ok("protect", "c", "--all", "--recovery-model", "simple")
    label = pg.pgdata / "backup_label"
    label.write_text("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n")
    try:
        out = vault.backup("c", "--type", "full")
    finally:
        label.unlink()
    codes = {w["code"] for w in out["warnings"]}
    assert codes == {"coexistence.archive_command", "coexistence.backup_label"}
    (job,) = [j for j in vault.jobs() if j["id"] == out["job_id"]]
    assert job["state"] == "completed_with_warnings"


def test_scheduled_fulls_are_synthetic_while_the_policy_allows(pg_template, area, wal_vault,
                                                                run):
    """A scheduled full after a read one is built from it and the WAL (the manifest says
    so); with the policy's synthetic_full off, it reads every file and says why."""
    vault = wal_vault
    pg = new_cluster(pg_template, area, "y")
    pg.execute("CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g")
    vault.add_server("y", pg)
    vault.ok("policy", "create", "wk", *WEEKLY)
    vault.ok("protect", "y", "--all", "--policy", "wk", "--restart")
    repo = vault.repository()

    def build() -> dict:
        return repo.load_manifest_whole(vault.points("y")[-1]["point_id"])["build"]

    assert run("y", "full")["backup_type"] == "full"
    first = build()
    assert first["kind"] == "read" and "no full holds" in first["reason"]
    pg.execute("UPDATE t SET v = 'changed' WHERE g % 50 = 0")
    assert run("y", "full")["backup_type"] == "full"
    made = build()
    assert made["kind"] == "synthetic" and made["layers"] == 1, made
    assert made["source"] == made["read_full"] == vault.points("y")[-2]["point_id"]
    vault.ok("policy", "edit", "wk", "--synthetic-full", "off")
    run("y", "full")
    assert build() == {"kind": "read", "reason": "policy wk has synthetic_full off"}
