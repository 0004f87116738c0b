"""A step of `dbsafe serve` that fails is a job and an alert, never only a log line: real
`serve --once` runs on a real cluster — retention that cannot delete an expired point
(its manifest is unreadable), and a scheduled full of a server that is down (it fails
before its backup job could start)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from conftest import new_cluster


def _catalog(vault, sql: str, *params) -> None:
    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        db.execute(sql, params)


def _backdate(vault, point_id: str, days: float) -> None:
    when = datetime.now(UTC) - timedelta(days=days)
    _catalog(vault, "UPDATE recovery_points SET start_time = ?, end_time = ? "
             "WHERE point_id = ?", when.isoformat(timespec="milliseconds"),
             (when + timedelta(seconds=5)).isoformat(timespec="milliseconds"), point_id)


def _serve_once(vault) -> list[dict]:
    res = vault.run("serve", "--once", "--json")
    assert res.returncode == 0, res.describe()
    return res.json()


def test_failed_retention_and_a_backup_that_could_not_start(pg_template, area, vault):
    pg = new_cluster(pg_template, area, "st")
    vault.add_server("st", pg)
    start = datetime.now(UTC)
    first, second = (start - timedelta(minutes=3)), (start - timedelta(minutes=1))
    vault.ok("policy", "create", "nightly", "--full", "daily", "--full-time",
             first.strftime("%H:%M"), "--timezone", "UTC", "--log-every", "none",
             "--keep-daily", "7")
    vault.ok("protect", "st", "--all", "--policy", "nightly")
    # protected yesterday: today's slot (3 minutes ago) is due
    _catalog(vault, "UPDATE protected_databases SET since = ?",
             (start - timedelta(days=1)).isoformat())
    old = vault.backup("st", "--type", "full")["point_id"]
    vault.backup("st", "--type", "full")
    _backdate(vault, old, 10)  # beyond the 7 daily points: retention expires it...
    manifest = vault.path / "manifests" / old
    sealed = manifest.read_bytes()
    manifest.write_bytes(b"not a manifest")  # ...and cannot

    runs = _serve_once(vault)
    assert [(r["server"], r["kind"]) for r in runs] == [("st", "full")]
    jobs = vault.jobs()
    (backup,) = [j for j in jobs if j["type"] == "backup" and j["trigger"] == "scheduled"]
    assert backup["state"] == "completed"  # the backup is fine; its retention is not
    (retention,) = [j for j in jobs if j["type"] == "retention"]
    assert retention["state"] == "failed" and retention["server"] == "st"
    assert retention["trigger"] == "scheduled"
    assert retention["error_code"] == "vault.object_corrupt"
    assert old in retention["error_message"]
    alerts = {(a["kind"], a["server"], a["item"]): a for a in vault.ok("alerts")}
    step = alerts[("step_failed", "st", "retention")]
    assert step["severity"] == "warning" and step["job_id"] == retention["id"]
    assert "retention of st failed: [vault.object_corrupt]" in step["message"]
    assert "vault keeps growing" in step["message"]
    assert old in {p["point_id"] for p in vault.points("st")}  # nothing was deleted
    manifest.write_bytes(sealed)

    # a later slot; the server is down: the scheduled full fails before its job starts
    vault.ok("policy", "edit", "nightly", "--full-time", second.strftime("%H:%M"))
    pg.stop()
    runs = _serve_once(vault)
    assert [(r["server"], r["kind"]) for r in runs] == [("st", "full")]
    failed = [j for j in vault.jobs() if j["type"] == "backup" and j["state"] == "failed"]
    assert len(failed) == 1, failed
    assert failed[0]["trigger"] == "scheduled" and failed[0]["backup_type"] == "full"
    assert failed[0]["error_code"] == "server.not_running"
    alerts = {(a["kind"], a["server"], a["item"]): a for a in vault.ok("alerts")}
    backup_failed = alerts[("backup_failed", "st", "full")]
    assert backup_failed["job_id"] == failed[0]["id"]
    assert "server.not_running" in backup_failed["message"]
