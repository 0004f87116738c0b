"""Which alerts the health of a protected database follows (services/operations/overview.py): those
about its backups, found by how each kind names what it concerns; never a restore, a drill,
the vault's space or a step of serve. From the catalog alone, as the overview reads it."""

from __future__ import annotations

import json

from dbsafe.services.activity import alerts
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.operations import overview


def test_health_follows_the_alerts_about_its_backups_only(tmp_path):
    vault = Vault.init(tmp_path / "vault")
    catalog = vault.catalog
    for name, sysid in (("db1", "1"), ("db2", "2")):
        instance = catalog.add_server(name, "localhost", None, {
            "pgdata": f"/nowhere/{name}", "port": 1, "pg_version": 15,
            "bin_dir": "/usr/lib/postgresql/15/bin", "system_identifier": sysid})
        catalog.protect_items(instance, [("app", 16384), ("postgres", 5)], None)
        catalog.add_point(instance, {  # the row a full backup leaves (overview reads rows)
            "point_id": f"20261201T010000Z-{sysid * 8}", "type": "full", "copy_only": 0,
            "start_time": "2026-12-01T01:00:00+00:00", "end_time": "2026-12-01T01:05:00+00:00",
            "start_lsn": "0/2000028", "stop_lsn": "0/2000100", "timeline": 1,
            "bytes_read": 1, "bytes_stored": 1, "corrupt_pages": 0,
            "databases": json.dumps(["app", "postgres"]), "base_point": None,
            "retention": None})

    def health() -> dict[tuple[str, str], str]:
        return {(i["server"], i["database"]): i["health"] for i in overview.items(vault)}

    everyone_healthy = dict.fromkeys(health(), "healthy")
    assert health() == everyone_healthy

    def job(type: str, **fields) -> None:
        alerts.job_finished(catalog, {"id": f"{type}-x", "type": type, "server": "db1",
                                      "state": "failed", "error_code": "x.y",
                                      "error_message": "failed", **fields})

    job("restore")  # a copy of db1 elsewhere did not start
    job("drill")    # a scratch cluster of db1 did not pass
    assert health() == everyone_healthy
    alerts.raise_alert(catalog, alerts.VAULT_SPACE_LOW, "warning", "low")
    alerts.raise_alert(catalog, alerts.STEP_FAILED, "warning", "retention of db1 failed",
                       server="db1", item="retention")
    assert len(alerts.list_alerts(catalog)) == 4 and health() == everyone_healthy

    job("backup", backup_type="full", items=["app"])  # a backup of app only
    job("verify", items=["app"])  # a damaged point that holds app only
    assert health() == {**everyone_healthy, ("db1", "app"): "critical"}
    alerts.raise_alert(catalog, alerts.BACKUP_OVERDUE, "critical", "late", server="db2",
                       item="postgres")
    assert health() == {**everyone_healthy, ("db1", "app"): "critical",
                        ("db2", "postgres"): "critical"}
    alerts.raise_alert(catalog, alerts.AGENT_UNREACHABLE, "critical", "down",
                       details={"servers": ["db2"]})  # the agent archives db2's WAL
    assert health() == {**everyone_healthy, ("db1", "app"): "critical",
                        ("db2", "app"): "critical", ("db2", "postgres"): "critical"}
    alerts.raise_alert(catalog, alerts.CHAIN_BROKEN, "critical", "gap", server="db1")
    assert set(health().values()) == {"critical"}


def _point(catalog, instance: int, point_id: str, type: str, end: str) -> None:
    catalog.add_point(instance, {
        "point_id": point_id, "type": type, "copy_only": 0, "start_time": end,
        "end_time": end, "start_lsn": "0/2000028", "stop_lsn": "0/2000100", "timeline": 1,
        "bytes_read": 1, "bytes_stored": 1, "corrupt_pages": 0,
        "databases": json.dumps(["app"]), "base_point": None, "retention": None})


def test_the_dashboard_ranks_databases_by_health_then_by_how_much_a_restore_would_lose(
        tmp_path):
    """The dashboard's "am I protected?" table: the last instant each database can be
    restored to (its newest backup's end, or its newest log backup's), how long ago that
    is, the next backup its policy schedules, and a broken chain; critical first, then the
    oldest restorable instant, never backed up before those."""
    from datetime import UTC, datetime

    from dbsafe.policy.model import Policy
    from dbsafe.services import inventory

    vault = Vault.init(tmp_path / "vault")
    catalog = vault.catalog
    inventory.create_policy(vault, Policy(name="nightly", full_time="02:00", log_every=15))
    ids = {}
    for name in ("a", "b", "c", "d"):
        ids[name] = catalog.add_server(name, "localhost", None, {
            "pgdata": f"/nowhere/{name}", "port": 1, "pg_version": 15,
            "bin_dir": "/usr/lib/postgresql/15/bin", "system_identifier": name})
        catalog.protect_items(ids[name], [("app", 16384)], "nightly" if name == "b" else None)
    _point(catalog, ids["a"], "20261201T010000Z-aaaaaaaa", "full", "2026-12-01T01:00:00+00:00")
    _point(catalog, ids["b"], "20261130T010000Z-bbbbbbbb", "full", "2026-11-30T01:00:00+00:00")
    _point(catalog, ids["b"], "20261201T113000Z-bbbbbbbc", "log", "2026-12-01T11:30:00+00:00")
    _point(catalog, ids["c"], "20261201T020000Z-cccccccc", "full", "2026-12-01T02:00:00+00:00")
    alerts.raise_alert(catalog, alerts.CHAIN_BROKEN, "critical", "gap", server="c")
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    rows = overview.worst_first(overview.items(vault, now), now)
    assert [(r["server"], r["health"]) for r in rows] == [
        ("d", "critical"), ("c", "critical"), ("a", "healthy"), ("b", "healthy")]
    by = {r["server"]: r for r in rows}
    assert by["d"]["restorable_until"] is None and by["d"]["rpo_seconds"] is None
    assert by["c"]["chain_broken"] and not by["a"]["chain_broken"]
    assert by["a"]["rpo_seconds"] == 11 * 3600
    assert by["b"]["restorable_until"] == "2026-12-01T11:30:00+00:00"  # its log backup
    assert by["b"]["rpo_seconds"] == 30 * 60
    assert (by["b"]["next_backup_type"], by["b"]["next_backup"]) == \
        ("log", "2026-12-01T12:15:00+00:00")
    assert by["a"]["next_backup"] is None  # no policy: nothing scheduled
    board = overview.dashboard(vault, overview.items(vault, now), now)
    assert [r["server"] for r in board["worst"]] == ["d", "c", "a", "b"]
