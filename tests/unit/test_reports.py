"""Backup reports (services/operations/reports.py) from the catalog alone: the bytes each
server's points hold day by day (a point counts from the day it ended until the day it was
deleted), jobs per day by outcome, what each protected item takes; and the SVG charts the
dashboard draws of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from dbsafe.portal import charts
from dbsafe.services import activity, operations
from dbsafe.services.handle.vault_handle import Vault

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _point(catalog, instance: int, point_id: str, end: str, stored: int,
           usage: dict | None = None, type: str = "full") -> None:
    catalog.add_point(instance, {
        "point_id": point_id, "type": type, "copy_only": 0, "start_time": end,
        "end_time": end, "start_lsn": "0/2000028", "stop_lsn": "0/2000100", "timeline": 1,
        "bytes_read": stored, "bytes_stored": stored, "corrupt_pages": 0,
        "databases": json.dumps(["app"]), "base_point": None, "retention": None,
        "item_usage": json.dumps(usage) if usage else None})


def _usage(instance: tuple[int, int], **databases: tuple[int, int]) -> dict:
    """A manifest's ``stats.usage`` from (bytes, stored) pairs."""
    return {"databases": {name: {"bytes": b, "stored": s} for name, (b, s) in databases.items()},
            "instance": {"bytes": instance[0], "stored": instance[1]}}


def _two_servers(tmp_path) -> tuple[Vault, dict[str, int]]:
    """A new vault whose catalog registers servers a and b (no cluster: reports read rows)."""
    vault = Vault.init(tmp_path / "vault")
    return vault, {name: vault.catalog.add_server(name, "localhost", None, {
        "pgdata": f"/nowhere/{name}", "port": 1, "pg_version": 15,
        "bin_dir": "/usr/lib/postgresql/15/bin", "system_identifier": name})
        for name in ("a", "b")}


def test_stored_bytes_per_server_and_day_and_jobs_per_day(tmp_path):
    vault, ids = _two_servers(tmp_path)
    catalog = vault.catalog
    _point(catalog, ids["a"], "20261120T010000Z-aaaaaaa1", "2026-11-20T01:00:00+00:00", 100)
    _point(catalog, ids["a"], "20261203T010000Z-aaaaaaa2", "2026-12-03T01:00:00+00:00", 30)
    _point(catalog, ids["b"], "20261204T010000Z-bbbbbbb1", "2026-12-04T01:00:00+00:00", 7)
    _point(catalog, ids["b"], "20261101T010000Z-bbbbbbb0", "2026-11-01T01:00:00+00:00", 50)
    catalog.set_point_deleted("20261101T010000Z-bbbbbbb0", "2026-12-04T10:00:00+00:00",
                              "2026-12-18T10:00:00+00:00")

    stored = operations.stored_over_time(vault, 5, NOW)
    assert stored["days"] == ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04",
                              "2026-12-05"]
    assert stored["servers"] == {"a": [100, 100, 130, 130, 130], "b": [50, 50, 50, 7, 7]}
    assert stored["total"] == [150, 150, 180, 137, 137]
    assert stored["added"] == {"a": [0, 0, 30, 0, 0], "b": [0, 0, 0, 7, 0]}

    for day, state in (("2026-12-04T03:00:00.000+00:00", "completed"),
                       ("2026-12-04T04:00:00.000+00:00", "failed"),
                       ("2026-12-05T03:00:00.000+00:00", "completed"),
                       ("2026-11-20T03:00:00.000+00:00", "completed")):  # before the range
        job = activity.record_job(catalog, "backup", "a", started=day, result={})
        if state == "failed":
            catalog.update_job(job, state="failed")
    jobs = operations.jobs_per_day(vault, 3, NOW)
    assert jobs == {"days": ["2026-12-03", "2026-12-04", "2026-12-05"],
                    "states": {"completed": [0, 1, 1], "failed": [0, 1, 0]}}

    bars = charts.stacked_bars("c", "Jobs", jobs["days"], jobs["states"], str,
                               charts.STATE_COLOURS)
    # drawn twice (for screens, and narrower for phones: the text stays legible there),
    # then the legend as a list
    wide, narrow, legend = _parts(bars)
    assert 'id="c"' in wide and 'viewBox="0 0 720 200"' in wide
    assert 'id="c-narrow"' in narrow and 'viewBox="0 0 360 200"' in narrow
    for drawing in (wide, narrow):
        assert drawing.count("<rect") == 3  # three bar segments
        assert "<title>2026-12-04 failed: 1</title>" in drawing and 'role="img"' in drawing
    assert legend.count("<li>") == 2 and "completed</li>" in legend  # two keys
    drawn = charts.lines("s", "Stored", stored["days"], stored["servers"], str)
    wide, narrow, legend = _parts(drawn)
    for drawing in (wide, narrow):
        assert drawing.count("<polyline") == 2 and "<title>2026-12-04 b: 7</title>" in drawing
    assert legend.count("<li>") == 2


def _parts(chart: str) -> tuple[str, str, str]:
    """A chart's wide drawing, its narrow one and its legend."""
    second = chart.index("<svg", 1)
    legend = chart.index('<ul class="chart-legend">')
    return chart[:second], chart[second:legend], chart[legend:]


def test_rpo_over_time_is_how_long_before_each_days_end_the_newest_point_ended(tmp_path):
    vault, ids = _two_servers(tmp_path)
    catalog = vault.catalog
    _point(catalog, ids["a"], "20261201T220000Z-aaaaaaa1", "2026-12-01T22:00:00+00:00", 1)
    _point(catalog, ids["a"], "20261204T230000Z-aaaaaaa2", "2026-12-04T23:00:00+00:00", 1)
    _point(catalog, ids["b"], "20261203T120000Z-bbbbbbb1", "2026-12-03T12:00:00+00:00", 1)
    _point(catalog, ids["b"], "20261204T120000Z-bbbbbbb2", "2026-12-04T12:00:00+00:00", 1)
    catalog.set_point_deleted("20261204T120000Z-bbbbbbb2", "2026-12-04T13:00:00+00:00",
                              "2026-12-18T13:00:00+00:00")  # deleted: restores nothing
    rpo = operations.rpo_over_time(vault, 4, NOW)              # 12-02 .. 12-05 12:00
    h = 3600
    assert rpo["days"] == ["2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05"]
    assert rpo["servers"]["a"] == [26 * h, 50 * h, 1 * h, 13 * h]
    assert rpo["servers"]["b"] == [None, 12 * h, 36 * h, 48 * h]
    assert rpo["worst"] == [26 * h, 50 * h, 36 * h, 48 * h]


def test_usage_per_database_sizes_growth_and_bytes_held(tmp_path):
    vault, ids = _two_servers(tmp_path)
    catalog = vault.catalog
    a = ids["a"]
    # before the range (12-03 .. 12-05): a full, live then, deleted within the range
    _point(catalog, a, "20261120T010000Z-aaaaaaa1", "2026-11-20T01:00:00+00:00", 1000,
           _usage((100, 90), app=(5000, 700), crm=(2000, 200)))
    catalog.set_point_deleted("20261120T010000Z-aaaaaaa1", "2026-12-04T10:00:00+00:00",
                              "2026-12-18T10:00:00+00:00")
    # before the range, deleted before it: not counted anywhere
    _point(catalog, a, "20261110T010000Z-aaaaaaa0", "2026-11-10T01:00:00+00:00", 999,
           _usage((1, 1), app=(9999, 998)))
    catalog.set_point_deleted("20261110T010000Z-aaaaaaa0", "2026-11-12T10:00:00+00:00",
                              "2026-11-26T10:00:00+00:00")
    # in the range: a differential; crm dropped since (not listed); a log backup
    _point(catalog, a, "20261204T010000Z-aaaaaaa2", "2026-12-04T01:00:00+00:00", 160,
           _usage((120, 55), app=(6500, 100)), type="diff")
    _point(catalog, a, "20261204T020000Z-aaaaaaa3", "2026-12-04T02:00:00+00:00", 40,
           type="log")
    # b: a point of before `stats.usage` (not itemised)
    _point(catalog, ids["b"], "20261204T010000Z-bbbbbbb1", "2026-12-04T01:00:00+00:00", 77)

    rows = operations.usage_per_item(vault, 3, NOW)
    assert rows == [
        {"server": "a", "database": "app", "size_at_start": 5000, "size_at_end": 6500,
         "growth": 1500, "stored_by_backups": 100, "held_at_end": 100},
        {"server": "a", "database": "crm", "size_at_start": 2000, "size_at_end": None,
         "growth": None, "stored_by_backups": 0, "held_at_end": 0},
        # the differential's 160 less its databases' 100, and the log backup's 40
        {"server": "a", "database": None, "size_at_start": 100, "size_at_end": 120,
         "growth": 20, "stored_by_backups": 60 + 40, "held_at_end": 60 + 40},
        {"server": "b", "database": None, "size_at_start": None, "size_at_end": None,
         "growth": None, "stored_by_backups": 77, "held_at_end": 77}]
    # the items of a server hold what the server's row says it holds
    found = operations.report(vault, 3, NOW)
    for table, columns in operations.COLUMNS.items():  # the CSV files' headers
        assert all(tuple(row) == columns for row in found[table]), table
    storage = {r["server"]: r for r in found["storage"]}
    only_a = operations.report(vault, 3, NOW, server="a")  # one server's rows, every table
    assert only_a["server"] == "a" and only_a["databases"] == rows[:3]
    assert [r["server"] for r in only_a["storage"]] == ["a"]
    for server in ("a", "b"):
        assert sum(r["held_at_end"] for r in rows if r["server"] == server) \
            == storage[server]["held_at_end"]
        assert sum(r["stored_by_backups"] for r in rows if r["server"] == server) \
            == storage[server]["stored_by_backups"]
