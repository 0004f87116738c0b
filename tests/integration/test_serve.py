"""`dbsafe serve` end to end, on the real clock: two servers with policies, a few minutes
of scheduled fulls, differentials and 1-minute log backups, auto-protection of a database
created while serve runs, and retention pruning exactly the expired points."""

from __future__ import annotations

import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from conftest import free_port, new_cluster

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _backdate(vault, point_id: str, days: float) -> None:
    """Make a point look older in the catalog (retention reads the catalog's times)."""
    when = datetime.now(UTC) - timedelta(days=days)
    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        db.execute("UPDATE recovery_points SET start_time = ?, end_time = ? WHERE point_id = ?",
                   (when.isoformat(timespec="milliseconds"),
                    (when + timedelta(seconds=5)).isoformat(timespec="milliseconds"), point_id))


def test_serve_runs_policies_on_schedule(pg_template, area, wal_vault):
    vault = wal_vault
    a = new_cluster(pg_template, area, "a")
    b = new_cluster(pg_template, area, "b")
    a.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    b.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    vault.add_server("a", a)
    vault.add_server("b", b)

    vault.ok("policy", "create", "nightly", "--full", "daily", "--full-time", "03:00",
             "--timezone", "UTC", "--log-every", "none", "--keep-daily", "7")
    vault.ok("policy", "create", "busy", "--full", "weekly", "--full-days", "sun",
             "--full-time", "03:00", "--timezone", "Europe/Berlin", "--diff-days", "mon",
             "--log-every", "1", "--keep-weekly", "4", "--keep-diff", "7", "--keep-log", "7")
    assert vault.ok("protect", "a", "--all", "--policy", "nightly")["recovery_model"] == "SIMPLE"
    out = vault.ok("protect", "b", "--auto", "--policy", "busy", "--restart")
    assert out["recovery_model"] == "FULL" and out["auto_protect"]

    # a: two older fulls, one beyond the 7 daily points, one within
    old = vault.backup("a", "--type", "full")["point_id"]
    mid = vault.backup("a", "--type", "full")["point_id"]
    _backdate(vault, old, 10)
    _backdate(vault, mid, 3)
    # b: a full, so that the scheduled differential has its base
    base = vault.backup("b", "--type", "full")["point_id"]

    # the slot: the first minute boundary at least 25 s from now (the rest of the set-up,
    # two edits, serve's start and a new database discovered, takes ~6 s); both policies
    # are moved onto it (a policy edit applies at once)
    slot = (datetime.now(UTC) + timedelta(seconds=85)).replace(second=0, microsecond=0)
    berlin = slot.astimezone(ZoneInfo("Europe/Berlin"))
    today = WEEKDAYS[berlin.weekday()]
    other = WEEKDAYS[(berlin.weekday() + 3) % 7]
    vault.ok("policy", "edit", "nightly", "--full-time", slot.strftime("%H:%M"))
    vault.ok("policy", "edit", "busy", "--full-days", other, "--diff-days", today,
             "--full-time", berlin.strftime("%H:%M"))

    serve = vault.popen("serve", "--tick", "1", "--discover-every", "0.002",
                        "--port", str(free_port()))
    try:
        time.sleep(3)
        b.execute("CREATE DATABASE late")
        b.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g", "late")
        deadline = slot + timedelta(seconds=65)
        while datetime.now(UTC) < deadline:
            assert serve.poll() is None, serve.communicate()
            time.sleep(2)
        # wait for runs still going (a full started at the slot)
        for _ in range(120):
            if not [j for j in vault.jobs() if j["state"] == "running"]:
                break
            time.sleep(1)
    finally:
        serve.send_signal(signal.SIGTERM)
        stdout, stderr = serve.communicate(timeout=120)
    assert serve.returncode == 0, stderr

    jobs = [j for j in vault.jobs() if j["trigger"] == "scheduled"]
    assert all(j["state"] in ("completed", "completed_with_warnings") for j in jobs), jobs
    fulls_a = [j for j in jobs if j["server"] == "a" and j["backup_type"] == "full"]
    assert len(fulls_a) == 1 and fulls_a[0]["start_time"] >= slot.isoformat()[:19]
    assert not [j for j in jobs if j["server"] == "a" and j["backup_type"] != "full"]
    diffs_b = [j for j in jobs if j["server"] == "b" and j["backup_type"] == "diff"]
    assert len(diffs_b) == 1 and diffs_b[0]["start_time"] >= slot.isoformat()[:19]
    assert "late" in diffs_b[0]["items"]  # auto-protected at discovery, then backed up
    logs_b = [j for j in jobs if j["server"] == "b" and j["backup_type"] == "log"]
    minutes = [j["start_time"][:16] for j in logs_b]
    assert len(logs_b) >= 2 and len(set(minutes)) == len(minutes), minutes  # one per slot
    assert not [j for j in jobs if j["server"] == "b" and j["backup_type"] == "full"]

    items = {i["name"]: i for i in vault.ok("items", "b")}
    assert items["late"]["policy"] == "busy" and items["late"]["state"] == "protected"

    # retention: exactly the full beyond the 7 daily points went
    points_a = {p["point_id"] for p in vault.points("a")}
    assert old not in points_a and mid in points_a and len(points_a) == 2
    assert not (vault.path / "manifests" / old).exists()
    assert base in {p["point_id"] for p in vault.points("b")}
    # what stays is whole: every remaining point of both servers verifies
    for name in ("a", "b"):
        report = vault.ok("verify", name)
        assert report["ok"], report
