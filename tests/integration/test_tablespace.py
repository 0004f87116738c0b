"""Tablespaces: backed up through their pg_tblspc links, restored where --tablespace-map says."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import (
    Pg,
    allow_restores,
    chown_postgres,
    free_port,
    make_vault,
    new_cluster,
    restored,
)


@pytest.fixture(scope="module")
def ts_cluster(pg_template, module_area) -> tuple[Pg, str, Path]:
    """A cluster with tablespace ts1 holding a table, an index and a whole database.
    Returns (cluster, tablespace oid, tablespace location). Tests may write to it: each
    compares against the state it saw at its own backup."""
    pg = new_cluster(pg_template, module_area, "tssrc")
    location = module_area / "ts_orig"
    location.mkdir()
    chown_postgres(location)
    pg.execute(f"CREATE TABLESPACE ts1 LOCATION '{location}'")
    pg.execute("CREATE TABLE in_ts (id int, v text) TABLESPACE ts1")
    pg.execute("INSERT INTO in_ts SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    pg.execute("CREATE INDEX in_ts_id ON in_ts (id) TABLESPACE ts1")
    pg.execute("CREATE TABLE in_default (id int)")
    pg.execute("INSERT INTO in_default SELECT generate_series(1, 100)")
    pg.execute("CREATE DATABASE tsdb TABLESPACE ts1")
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", "tsdb")
    pg.execute("INSERT INTO t SELECT g, repeat('x', g % 100) FROM generate_series(1, 3000) g",
               "tsdb")
    pg.execute("CHECKPOINT")
    oid = str(pg.scalar("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'"))
    return pg, oid, location


@pytest.fixture
def ts_vault(ts_cluster, area, cli_env):
    vault = make_vault(cli_env, area / "vault")
    vault.add_server("ts", ts_cluster[0])
    return vault


def test_tablespace_round_trip(ts_cluster, ts_vault, area):
    pg, oid, location = ts_cluster
    before = pg.table_checksums()
    assert {"postgres.in_ts", "postgres.in_default", "tsdb.t"} <= set(before)
    result = ts_vault.backup("ts")
    manifest = ts_vault.repository().load_manifest_whole(result["point_id"])
    assert manifest["tablespaces"] == [{"oid": oid, "location": str(location)}]
    assert any(f["path"].startswith(f"pg_tblspc/{oid}/PG_15_") for f in manifest["files"])

    pg.execute("INSERT INTO in_ts SELECT g, 'after' FROM generate_series(1, 500) g")
    pg.execute("DELETE FROM t WHERE id < 100", "tsdb")
    assert pg.table_checksums() != before

    target, new_location, port = area / "r", area / "ts_new", free_port()
    out = ts_vault.ok("restore", "ts", "--point", result["point_id"], "--to-pgdata", target,
                      "--port", port, "--start", "--tablespace-map", f"{oid}={new_location}")
    assert out["tablespaces"] == {oid: str(new_location)}
    restored_pg = restored(target, port)
    try:
        link = target / "pg_tblspc" / oid
        assert link.is_symlink()
        assert os.readlink(link) == str(new_location)
        assert restored_pg.scalar("SELECT pg_tablespace_location(%s::oid)",
                                  params=(int(oid),)) == str(new_location)
        assert restored_pg.table_checksums() == before
        # The table's file really is in the new location, not in the source's tablespace.
        rel = restored_pg.scalar("SELECT pg_relation_filepath('in_ts')")
        assert rel.startswith(f"pg_tblspc/{oid}/")
        real = Path(os.path.realpath(target / rel))
        assert real.is_relative_to(new_location) and real.is_file()
        assert new_location.stat().st_uid == location.stat().st_uid  # owned by postgres
    finally:
        restored_pg.stop()


def test_restore_refuses_occupied_tablespace_location(ts_cluster, ts_vault, area):
    """Without a map the tablespace would go back to its original place: refused when that
    is outside the restore roots, and when it exists."""
    _pg, oid, location = ts_cluster
    point = ts_vault.backup("ts")["point_id"]
    listing = sorted(p.name for p in location.iterdir())
    out = ts_vault.fail("restore.tablespace_target", "restore", "ts", "--point", point,
                        "--to-pgdata", area / "r")
    assert oid in out["error"]["message"] and "restore-roots add" in out["error"]["message"]
    allow_restores(ts_vault.path, area, location.parent)
    out = ts_vault.fail("restore.tablespace_target", "restore", "ts", "--point", point,
                        "--to-pgdata", area / "r")
    assert oid in out["error"]["message"] and "exists" in out["error"]["message"]
    assert sorted(p.name for p in location.iterdir()) == listing
    assert not (area / "r").exists()


def test_relative_tablespace_map_path(ts_cluster, ts_vault, area):
    """``--tablespace-map OID=relative/dir`` names a folder relative to the current
    directory, as ``--to-pgdata`` does; the restored link must lead to the restored files."""
    pg, oid, _location = ts_cluster
    before = pg.table_checksums()
    point = ts_vault.backup("ts")["point_id"]
    port = free_port()
    ts_vault.ok("restore", "ts", "--point", point, "--to-pgdata", "r", "--port", port,
                "--start", "--tablespace-map", f"{oid}=ts_rel", cwd=area)
    restored_pg = restored(area / "r", port)
    try:
        link = area / "r" / "pg_tblspc" / oid
        assert Path(os.path.realpath(link)) == area / "ts_rel", (
            f"pg_tblspc/{oid} -> {os.readlink(link)!r} does not lead to {area / 'ts_rel'}, "
            "where the tablespace's files were written")
        assert restored_pg.table_checksums() == before
    finally:
        if restored_pg.running:
            restored_pg.stop("immediate")


def test_discover_counts_files_in_tablespaces(ts_cluster, ts_vault):
    pg, _oid, _location = ts_cluster
    dbs = {d["name"]: d for d in ts_vault.ok("discover", "ts")["databases"]}
    assert dbs["tsdb"]["size_bytes"] == pg.scalar("SELECT pg_database_size('tsdb')")
    assert dbs["tsdb"]["file_count"] > 0
    # Database postgres keeps in_ts and its index in ts1: they count, too.
    postgres_oid = dbs["postgres"]["oid"]
    in_base = sum(1 for p in (pg.pgdata / "base" / str(postgres_oid)).iterdir() if p.is_file())
    assert dbs["postgres"]["file_count"] > in_base


def test_backup_follows_only_the_tablespaces_the_server_reports(ts_cluster, ts_vault, area):
    """The postgres OS user can put links in pg_tblspc: a link of its own, and a
    tablespace's link pointed elsewhere, never make root copy another folder's files."""
    pg, oid, location = ts_cluster
    secret = area / "roots"
    secret.mkdir(mode=0o700)
    (secret / "shadow").write_text("root:secret\n")
    planted = pg.pgdata / "pg_tblspc" / "99999"
    planted.symlink_to(secret)
    try:
        manifest = ts_vault.repository().load_manifest_whole(ts_vault.backup("ts")["point_id"])
    finally:
        planted.unlink()
    assert manifest["tablespaces"] == [{"oid": oid, "location": str(location)}]
    assert not [f for f in manifest["files"] if f["path"].startswith("pg_tblspc/99999")]
    # ts1's own link pointed at a copy of the tablespace in root's folder (the server
    # keeps working; it reports the new place, since it reads the link): the backup stops
    pg.execute("CHECKPOINT")  # nothing of ts1 left to write: the copy stays unchanged
    copy = area / "ts_copy"
    subprocess.run(["cp", "-a", str(location), str(copy)], check=True)
    os.chown(copy, 0, 0)
    (copy / "shadow").write_text("root:secret\n")
    (copy / "shadow").chmod(0o600)
    link = pg.pgdata / "pg_tblspc" / oid
    link.unlink()
    link.symlink_to(copy)
    try:
        out = ts_vault.fail("backup.tablespace_unsafe", "backup", "ts")
    finally:
        link.unlink()
        link.symlink_to(location)
    assert str(copy) in out["error"]["message"]
