"""What the health of a protected database says: only how its backups stand. A failed
restore of a copy elsewhere changes nothing; backups older than the policy allows raise
``backup_overdue`` (and turn it critical) until a backup catches up."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from conftest import free_port, new_cluster

from dbsafe.services.activity import alerts
from dbsafe.services.handle.vault_handle import Vault as ServiceVault
from dbsafe.services.operations import monitor, overview

ROOMY = {"space_min_free_pct": 0.0, "space_min_free_bytes": 0}


def _health(vault: ServiceVault) -> dict[str, tuple[str, list]]:
    return {i["database"]: (i["health"], i["reasons"]) for i in overview.items(vault)}


def test_health_follows_backups_only_and_overdue_backups(pg_template, area, vault):
    pg = new_cluster(pg_template, area, "hh")
    pg.execute("CREATE DATABASE app")
    # read at the next start only: a restored copy of this cluster will not start
    pg.execute("ALTER SYSTEM SET shared_preload_libraries = 'dbsafe_test_no_such_library'")
    vault.add_server("hh", pg)
    vault.ok("policy", "create", "daily", "--full", "daily", "--full-time", "01:00",
             "--timezone", "UTC", "--log-every", "none", "--keep-daily", "7")
    vault.ok("protect", "hh", "--all", "--policy", "daily")
    point = vault.backup("hh", "--type", "full")["point_id"]
    service = ServiceVault.open(vault.path)
    healthy = {"app": ("healthy", []), "postgres": ("healthy", [])}
    assert _health(service) == healthy

    # a throw-away copy that does not start: a failed restore, and its alert
    out = vault.fail("restore.start_failed", "restore", "hh", "--point", point,
                     "--to-pgdata", area / "copy", "--port", free_port(), "--start")
    assert "dbsafe_test_no_such_library" in out["error"]["message"]
    (failed,) = alerts.list_alerts(service.catalog)
    assert (failed["kind"], failed["server"], failed["severity"]) == \
        ("restore_failed", "hh", "critical")
    assert _health(service) == healthy  # the backups of hh are as good as before

    # the only point is three days old: more than a daily full allows
    then = (datetime.now(UTC) - timedelta(days=3)).isoformat(timespec="milliseconds")
    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        db.execute("UPDATE recovery_points SET start_time = ?, end_time = ?", (then, then))
    found = monitor.check_health(service, **ROOMY)
    overdue = {f["item"]: f for f in found if f["check"] == "backup_overdue"}
    assert set(overdue) == {"app", "postgres"} and not any(f["ok"] for f in overdue.values())
    assert overdue["app"]["details"]["newest_restorable"] == then
    assert "its full and differential schedule" in overdue["app"]["message"]
    assert "backups of app on hh are overdue" in overdue["app"]["message"]
    health = _health(service)
    assert health["app"][0] == "critical" and "overdue" in health["app"][1][0]
    active = {(a["kind"], a["item"]) for a in alerts.list_alerts(service.catalog)}
    assert active == {("restore_failed", None), ("backup_overdue", "app"),
                      ("backup_overdue", "postgres")}

    # app is no longer protected: its alert resolves; postgres is overdue until a backup
    vault.ok("unprotect", "hh", "--db", "app", "--delete-data")
    monitor.check_health(service, **ROOMY)
    active = {(a["kind"], a["item"]) for a in alerts.list_alerts(service.catalog)}
    assert active == {("restore_failed", None), ("backup_overdue", "postgres")}

    vault.backup("hh", "--type", "full")  # a backup catches up
    found = monitor.check_health(service, **ROOMY)
    assert all(f["ok"] for f in found if f["check"] == "backup_overdue")
    assert {a["kind"] for a in alerts.list_alerts(service.catalog)} == {"restore_failed"}
    assert _health(service) == {"postgres": ("healthy", [])}
