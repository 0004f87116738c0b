"""Differential backups (--type diff) on real clusters: every kind of change between the full
and the differential, restored as full + differential, started and compared table by table
with the source at the time of the differential."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    PG_BIN,
    Pg,
    as_postgres,
    chown_postgres,
    free_port,
    interrupt,
    make_vault,
    new_cluster,
    restored,
)

from dbsafe.services.backup.selection import database_oid

HOUR = 3600


@pytest.fixture(scope="module")
def dsrc(pg_template, module_area) -> tuple[Pg, Path]:
    """A cluster for differentials: pgbench (scale 2) in ``app`` with tables for every kind
    of change, a tablespace, a database to drop and a template database to copy. Returns
    (cluster, second tablespace location). Tests compare against their own backup-time
    state, so each may change it."""
    pg = new_cluster(pg_template, module_area, "dsrc")
    ts1, ts2 = module_area / "ts1", module_area / "ts2"
    for d in (ts1, ts2):
        d.mkdir()
        chown_postgres(d)
    pg.execute(f"CREATE TABLESPACE ts1 LOCATION '{ts1}'")
    pg.execute(f"CREATE TABLESPACE ts2 LOCATION '{ts2}'")
    pg.execute("CREATE DATABASE app")
    pg.pgbench("-i", "-s", "2", "-q", dbname="app")
    rows = "SELECT g, md5(g::text) FROM generate_series(1, {}) g"
    for table, n, where in (("upd", 20000, ""), ("trunc", 5000, ""), ("dropme", 5000, ""),
                            ("vf", 20000, ""), ("shrink", 30000, ""), ("grow", 1000, ""),
                            ("moveme", 10000, ""), ("in_ts", 10000, " TABLESPACE ts1")):
        pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text){where}", "app")
        pg.execute(f"INSERT INTO {table} " + rows.format(n), "app")
    pg.execute("CREATE DATABASE dropdb")
    pg.execute("CREATE TABLE t (id int)", "dropdb")
    pg.execute("INSERT INTO t SELECT generate_series(1, 1000)", "dropdb")
    pg.execute("CREATE DATABASE tmpl")
    pg.execute("CREATE TABLE copied (id int, v text)", "tmpl")
    pg.execute("INSERT INTO copied " + rows.format(3000), "tmpl")
    pg.execute("CREATE DATABASE tsdb TABLESPACE ts2")
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", "tsdb")
    pg.execute("INSERT INTO t " + rows.format(2000), "tsdb")
    pg.execute("VACUUM ANALYZE", "app")
    pg.execute("CHECKPOINT")
    return pg, ts2


@pytest.fixture
def dvault(dsrc, area, cli_env):
    vault = make_vault(cli_env, area / "vault")
    vault.add_server("d", dsrc[0])
    return vault


def _backdate(folder: Path) -> None:
    """Give every file under ``folder`` an mtime an hour old (PostgreSQL ignores mtimes)."""
    old = time.time() - HOUR
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            os.utime(os.path.join(dirpath, name), (old, old))


def _restore_started(vault, point_id: str, target: Path, **ts_map: Path) -> Pg:
    port = free_port()
    args = [f"--tablespace-map={oid}={path}" for oid, path in ts_map.items()]
    out = vault.ok("restore", "d", "--point", point_id, "--to-pgdata", target, "--port", port,
                   "--start", *args)
    assert out["started"] is True, out
    return restored(target, port)


def _same_tables(got: dict, want: dict) -> None:
    differing = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    assert got == want, f"tables that differ from the source at the differential: {differing}"


def test_every_kind_of_change_restores_full_plus_diff(dsrc, dvault, area):
    pg, _ts2 = dsrc
    oids = {r[0]: str(r[1]) for r in pg.execute("SELECT spcname, oid FROM pg_tablespace")}
    postgres_db = pg.scalar("SELECT oid FROM pg_database WHERE datname = 'postgres'")
    _backdate(pg.pgdata / "base" / str(postgres_db))  # these files are then not even read
    full = dvault.backup("d", "--type", "full")

    a = "app"
    pg.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 97 = 0", a)
    pg.execute("DELETE FROM upd WHERE id % 5 = 0", a)
    pg.execute("UPDATE upd SET v = 'changed' WHERE id % 7 = 0", a)
    pg.execute("TRUNCATE trunc", a)
    pg.execute("INSERT INTO trunc SELECT g, 'after truncate' FROM generate_series(1, 50) g", a)
    pg.execute("DROP TABLE dropme", a)
    pg.execute("CREATE TABLE newtab AS SELECT g AS id, md5(g::text) AS v "
               "FROM generate_series(1, 5000) g", a)
    pg.execute("DELETE FROM vf WHERE id % 2 = 0", a)
    pg.execute("VACUUM FULL vf", a)
    pg.execute("DELETE FROM shrink WHERE id > 500", a)
    pg.execute("VACUUM shrink", a)  # truncates the heap file
    pg.execute("INSERT INTO grow SELECT g, repeat('g', 200) FROM generate_series(1001, 30000) g",
               a)
    pg.execute("ALTER TABLE moveme SET TABLESPACE ts1", a)
    pg.execute("ALTER TABLE in_ts SET TABLESPACE pg_default", a)
    pg.execute("CREATE DATABASE newdb")
    pg.execute("CREATE TABLE n (id int, v text)", "newdb")
    pg.execute("INSERT INTO n SELECT g, md5(g::text) FROM generate_series(1, 2000) g", "newdb")
    pg.execute("CREATE DATABASE copydb TEMPLATE tmpl STRATEGY FILE_COPY")
    pg.execute("DROP DATABASE dropdb")
    pg.execute("INSERT INTO t SELECT g, 'later' FROM generate_series(2001, 2100) g", "tsdb")
    pg.execute("CHECKPOINT")

    diff = dvault.backup("d", "--type", "diff")
    want = pg.table_checksums()  # right after the differential, nothing written in between
    assert diff["type"] == "diff" and diff["copy_only"] is False
    assert diff["base"] == full["point_id"]
    assert diff["base_start_lsn"] == full["start_lsn"]
    # a SIMPLE-model instance: no WAL in the vault to track changes with (see
    # test_tracked_differential.py for the FULL model)
    assert diff["delta_source"]["source"] == "lsn-scan"
    assert "SIMPLE" in diff["delta_source"]["reason"]
    assert diff["pages_changed"] > 0 and diff["files_delta"] > 0
    assert diff["files_whole"] > 0 and diff["files_dropped"] > 0
    assert diff["files_not_read"] > 0
    assert diff["files_unchanged"] > diff["files_not_read"]  # scanned, nothing changed
    assert diff["bytes_stored"] < full["bytes_stored"]
    assert {"app.newtab", "newdb.n", "copydb.copied"} <= set(want)
    assert "app.dropme" not in want and not any(k.startswith("dropdb.") for k in want)

    manifest = dvault.repository().load_manifest_whole(diff["point_id"])
    base = dvault.repository().load_manifest_whole(full["point_id"])
    assert manifest["type"] == "diff" and manifest["base"] == full["point_id"]
    base_sizes = {e["path"]: e["size"] for e in base["files"]}
    deltas = [e for e in manifest["files"] if "delta" in e]
    assert any(e["size"] < base_sizes[e["path"]] for e in deltas), "no truncated file"
    assert any(e["size"] > base_sizes[e["path"]] for e in deltas), "no grown file"
    assert set(manifest["dropped"]) == set(base_sizes) - {e["path"] for e in manifest["files"]}
    assert manifest["dropped"]
    points = {p["point_id"]: p for p in dvault.points("d")}
    assert points[diff["point_id"]]["type"] == "diff"

    restored_pg = _restore_started(dvault, diff["point_id"], area / "r",
                                   **{oids["ts1"]: area / "r_ts1", oids["ts2"]: area / "r_ts2"})
    try:
        _same_tables(restored_pg.table_checksums(), want)
        assert restored_pg.scalar("SELECT count(*) FROM grow", a) == 30000
        assert restored_pg.scalar("SELECT count(*) FROM shrink", a) == 500
        assert restored_pg.scalar("SELECT spcname FROM pg_class c JOIN pg_tablespace t "
                                  "ON t.oid = c.reltablespace WHERE relname = 'moveme'",
                                  a) == "ts1"
        # The visibility maps were stored whole: no page marked all-visible holds a tuple
        # that is not (their bits are cleared without the map page's LSN moving).
        restored_pg.execute("CREATE EXTENSION pg_visibility", a)
        for table in ("upd", "pgbench_accounts", "shrink", "grow"):
            bad = restored_pg.scalar(f"SELECT count(*) FROM pg_check_visible('{table}')", a)
            assert bad == 0, f"{table}: {bad} tuples on all-visible pages are not visible"
    finally:
        restored_pg.stop()


def test_diff_stores_far_less_than_the_full(dsrc, dvault):
    pg, _ = dsrc
    full = dvault.backup("d")
    pg.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 4242", "app")
    diff = dvault.backup("d", "--type", "diff")
    assert diff["base"] == full["point_id"]
    assert 1 <= diff["pages_changed"] < 100
    assert diff["bytes_stored"] <= 0.1 * full["bytes_stored"], (diff, full)
    # differentials are cumulative: the next one is based on the full too, never on a diff
    pg.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 9999", "app")
    second = dvault.backup("d", "--type", "diff")
    assert second["base"] == full["point_id"]
    assert second["pages_changed"] > diff["pages_changed"]


def test_diff_needs_a_full(dsrc, dvault):
    out = dvault.fail("backup.no_full", "backup", "d", "--type", "diff")
    assert "dbsafe backup d --type full" in out["error"]["message"]
    dvault.backup("d", "--type", "copy-only")  # a copy-only full is never a base
    dvault.fail("backup.no_full", "backup", "d", "--type", "diff")
    assert [p["type"] for p in dvault.points("d")] == ["copy-only"]


def test_diff_after_copy_only_uses_the_real_full(dsrc, dvault, area):
    pg, _ = dsrc
    full = dvault.backup("d")
    pg.execute("UPDATE upd SET v = 'between' WHERE id % 11 = 0", "app")
    copy = dvault.backup("d", "--type", "copy-only")
    pg.execute("UPDATE upd SET v = 'after copy' WHERE id % 13 = 0", "app")
    diff = dvault.backup("d", "--type", "diff")
    want = pg.table_checksums()
    assert diff["base"] == full["point_id"] != copy["point_id"]
    # cumulative: the pages changed before the copy-only full are in the differential too
    assert dvault.repository().load_manifest_whole(diff["point_id"])["base"] == full["point_id"]
    restored_pg = _restore_started(dvault, diff["point_id"], area / "r", **_ts_elsewhere(pg, area))
    try:
        _same_tables(restored_pg.table_checksums(), want)
    finally:
        restored_pg.stop()


def _ts_elsewhere(pg: Pg, area: Path) -> dict[str, Path]:
    return {str(oid): area / f"ts_{name}" for name, oid in pg.execute(
        "SELECT spcname, oid FROM pg_tablespace WHERE spcname LIKE 'ts%'")}


def _blobs(vault) -> dict[str, tuple[str, int, int]]:
    """{block id: (pack id, offset, length)} from the index files."""
    repo = vault.repository()
    out = {}
    for f in (vault.path / "index").iterdir():
        doc = repo.load_index_file(f.name)
        for id_hex, offset, length, _raw, _codec in doc["blobs"]:
            out[id_hex] = (doc["pack"], offset, length)
    return out


def test_verify_checks_the_diff_and_the_base_blocks_it_uses(dsrc, dvault, area):
    pg, _ = dsrc
    full = dvault.backup("d")
    pg.execute("UPDATE upd SET v = 'verify' WHERE id % 3 = 0", "app")
    diff = dvault.backup("d", "--type", "diff")
    report = dvault.ok("verify", "d", "--point", diff["point_id"])
    assert report["ok"] is True
    (point,) = report["points"]
    repo = dvault.repository()
    manifest = repo.load_manifest_whole(diff["point_id"])
    base = repo.load_manifest_whole(full["point_id"])
    own = {b for e in manifest["files"] + manifest["wal"] for b in e["blocks"]}
    assert point["blocks"] > len(own)  # base blocks counted too

    # Damage a base block that only the base stores and that the diff's restore reads.
    zero = repo.keyed.digest(bytes(repo.block_size)).hex()
    delta_paths = {e["path"] for e in manifest["files"] if "delta" in e and e["size"]}
    candidates = [b for e in base["files"] if e["path"] in delta_paths for b in e["blocks"]
                  if b not in own and b != zero]
    assert candidates
    block = candidates[0]
    pack, offset, length = _blobs(dvault)[block]
    with open(dvault.path / "data" / pack[:2] / pack, "r+b") as f:
        f.seek(offset + length // 2)
        byte = f.read(1)
        f.seek(offset + length // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    res = dvault.run("verify", "d", "--point", diff["point_id"], "--json")
    assert res.returncode != 0, res.describe()
    out = res.json()
    assert out["error"]["code"] == "verify.failed"
    (bad,) = out["report"]["points"]
    assert [p["block_id"] for p in bad["problems"]] == [block]
    # ... and a restore of the diff refuses rather than write it
    dvault.fail("vault.block_corrupt", "restore", "d", "--point", diff["point_id"],
                "--to-pgdata", area / "r", *_map_args(pg, area))


def _map_args(pg: Pg, area: Path) -> list[str]:
    return [f"--tablespace-map={oid}={path}" for oid, path in _ts_elsewhere(pg, area).items()]


def test_diff_without_its_base_manifest_is_refused(dsrc, dvault, area):
    full = dvault.backup("d")
    diff = dvault.backup("d", "--type", "diff")
    (dvault.path / "manifests" / full["point_id"]).unlink()
    out = dvault.fail("point.base_missing", "restore", "d", "--point", diff["point_id"],
                      "--to-pgdata", area / "r", *_map_args(dsrc[0], area))
    assert full["point_id"] in out["error"]["message"]
    assert not (area / "r").exists()
    res = dvault.run("verify", "d", "--point", diff["point_id"], "--json")
    assert res.returncode != 0
    (bad,) = res.json()["report"]["points"]
    assert bad["problems"][0]["problem"] == "base_missing"
    assert json.dumps(bad)  # serialisable


def _pgbench_sums(pg: Pg) -> dict[str, int]:
    """Sums that each pgbench (tpcb-like) transaction changes by the same delta."""
    a, t, b, d, n = (int(x) for x in pg.execute(
        "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts),"
        "       (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers),"
        "       (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches),"
        "       (SELECT coalesce(sum(delta), 0) FROM pgbench_history),"
        "       (SELECT count(*) FROM pgbench_history)", "app")[0])
    return {"accounts": a - d, "tellers": t - d, "branches": b - d, "history_rows": n}


def test_diff_under_write_load_restores_a_consistent_cluster(dsrc, dvault, area):
    """pgbench writes while the differential runs (pages torn, extended, rewritten during
    the read): full + diff must restore a transactionally consistent cluster."""
    pg, _ = dsrc
    dvault.backup("d")
    base = _pgbench_sums(pg)
    load = subprocess.Popen(
        [str(PG_BIN / "pgbench"), "-h", str(pg.sockdir), "-p", str(pg.port), "-U", "postgres",
         "-n", "-c", "2", "-j", "1", "-T", "300", "app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _pgbench_sums(pg)["history_rows"] <= base["history_rows"] + 200:
            assert time.monotonic() < deadline and load.poll() is None, "pgbench wrote nothing"
            time.sleep(0.2)
        rows_at_start = _pgbench_sums(pg)["history_rows"]
        diff = dvault.backup("d", "--type", "diff")
        rows_at_end = _pgbench_sums(pg)["history_rows"]
    finally:
        interrupt(load)
    assert rows_at_end > rows_at_start, "no writes happened while the differential ran"
    assert diff["pages_changed"] > 0

    restored_pg = _restore_started(dvault, diff["point_id"], area / "r", **_ts_elsewhere(pg, area))
    try:
        got = _pgbench_sums(restored_pg)
        for key in ("accounts", "tellers", "branches"):
            assert got[key] == base[key], f"pgbench invariant {key} broken: {got} vs {base}"
        assert rows_at_start <= got["history_rows"] <= rows_at_end
        check = subprocess.run(
            [str(PG_BIN / "pg_amcheck"), "-h", str(restored_pg.sockdir), "-p",
             str(restored_pg.port), "-U", "postgres", "--install-missing", "--heapallindexed",
             "-d", "app"], capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, f"pg_amcheck: {check.stdout}{check.stderr}"
    finally:
        restored_pg.stop()


def test_a_differential_after_data_checksums_were_turned_on_is_refused(pg_template, area,
                                                                       vault):
    """pg_checksums --enable rewrites every page with its checksum, without WAL and
    without moving the page's LSN: a differential would restore the full's pages, which
    have no checksum, into a cluster that expects one. Refused, with what to do."""
    pg = new_cluster(pg_template, area, "sums")
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pg.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g")

    def checksums(action: str) -> None:
        pg.stop()
        done = as_postgres([str(PG_BIN / "pg_checksums"), action, "-D", str(pg.pgdata)])
        assert done.returncode == 0, done.stdout + done.stderr
        pg.start()

    checksums("--disable")
    vault.add_server("sums", pg)
    full = vault.backup("sums")
    assert vault.repository().load_manifest_whole(full["point_id"])["instance"][
        "data_checksums"] is False
    checksums("--enable")
    refused = vault.fail("backup.base_unusable", "backup", "sums", "--type", "diff")
    assert "checksums were turned on" in refused["error"]["message"]
    assert "--type full" in refused["error"]["message"]
    assert vault.backup("sums", "--type", "full")["type"] == "full"
    assert vault.backup("sums", "--type", "diff")["type"] == "diff"


def test_usage_sizes_each_database_and_charges_it_the_bytes_its_files_stored(dsrc, dvault):
    """stats.usage and the reports' usage per database: each database's size is that of its
    relation files in the point (a tablespace's too), the items' new bytes add up to the
    point's, and a differential charges the database that changed."""
    pg, _ = dsrc
    # hint bits set now, not by the full's row counts (its pages then in the differential)
    for (db,) in pg.execute("SELECT datname FROM pg_database WHERE datallowconn"):
        pg.execute("VACUUM FREEZE", db)
    full = dvault.backup("d")
    pg.execute("UPDATE upd SET v = md5(v) WHERE id <= 4000", "app")
    diff = dvault.backup("d", "--type", "diff")
    usage = {}
    for point in (full, diff):
        manifest = dvault.repository().load_manifest_whole(point["point_id"])
        usage[point["type"]] = found = manifest["stats"]["usage"]
        oids = {d["name"]: d["oid"] for d in manifest["databases"] if d["included"]}
        sizes: dict[int, int] = {}
        for e in manifest["files"]:
            if (oid := database_oid(e["path"])) is not None:
                sizes[oid] = sizes.get(oid, 0) + e["size"]
        assert found["databases"] == {name: {"bytes": sizes.get(oid, 0),
                                             "stored": found["databases"][name]["stored"]}
                                      for name, oid in oids.items()}
        assert sum(d["stored"] for d in found["databases"].values()) \
            + found["instance"]["stored"] == manifest["stats"]["bytes_stored"]
    assert usage["full"]["databases"]["tsdb"]["bytes"] > 0  # in a tablespace
    assert usage["full"]["databases"]["app"]["stored"] > usage["full"]["databases"]["tmpl"][
        "stored"] > 0
    changed = usage["diff"]["databases"]
    assert changed["app"]["stored"] > 0
    assert sum(d["stored"] for name, d in changed.items() if name != "app") \
        <= 0.05 * changed["app"]["stored"], json.dumps(changed)

    report = dvault.ok("report", "--days", "1", "--server", "d")
    assert {r["server"] for r in report["databases"]} == {"d"}
    rows = {r["database"]: r for r in report["databases"]}
    assert rows["app"]["size_at_end"] == changed["app"]["bytes"]
    assert rows["app"]["stored_by_backups"] == usage["full"]["databases"]["app"]["stored"] \
        + changed["app"]["stored"]
    (server,) = report["storage"]
    assert sum(r["held_at_end"] for r in rows.values()) == server["held_at_end"] \
        == full["bytes_stored"] + diff["bytes_stored"]
    text = dvault.run("report")
    assert text.returncode == 0 and "Usage per database" in text.stdout, text.describe()
    assert "None" not in text.stdout and "(the instance)" in text.stdout
