"""Which files of a data directory ``files.walk`` hands to a backup."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from conftest import chown_postgres, new_cluster, pg_uid_gid

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import cluster
from dbsafe.engines.postgres import files as pgfiles
from dbsafe.services.backup import copy


def _touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_walk_rules_on_a_synthetic_data_directory(tmp_path):
    d = tmp_path / "pgdata"
    keep = ["PG_VERSION", "postgresql.conf", "global/1262", "global/pg_control",
            "base/1/1259", "base/1/1259_fsm", "base/1/1259_vm", "base/1/1259.1",
            "base/5/16400_init", "base/5/16401", "pg_xact/0000", "pg_stat/pgstat.stat"]
    skip = ["postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map",
            "pg_wal/000000010000000000000001", "pg_wal/archive_status/x.ready",
            "pg_replslot/slot1/state", "pg_stat_tmp/global.stat", "pg_subtrans/0000",
            "pg_notify/0000", "pg_serial/0000", "pg_snapshots/00000003-1",
            "pg_dynshmem/mmap.1", "base/pgsql_tmp/pgsql_tmp123.0",
            "base/5/pgsql_tmp456.1", "global/pg_internal.init", "base/5/pg_internal.init",
            "base/5/16400", "base/5/16400.1", "base/5/16400_fsm", "base/5/16400_vm"]
    for rel in keep + skip:
        _touch(d / rel)
    files, dirs, tablespaces = pgfiles.walk(d)
    listed = {f.path for f in files}
    assert listed == set(keep)
    dir_paths = {x["path"] for x in dirs}
    assert {"pg_wal", "pg_wal/archive_status", "pg_replslot", "pg_stat_tmp"} <= dir_paths
    assert "pg_replslot/slot1" not in dir_paths and "base/pgsql_tmp" not in dir_paths
    assert tablespaces == []
    by_path = {f.path: f for f in files}
    assert by_path["base/1/1259"].paged and by_path["global/1262"].paged
    assert by_path["base/1/1259.1"].first_page == 131072
    assert not by_path["postgresql.conf"].paged and not by_path["pg_xact/0000"].paged


@pytest.fixture
def live(pg_template, area):
    return new_cluster(pg_template, area, "walk")


def test_walk_on_a_running_cluster(live):
    pg = live
    pg.execute("CREATE UNLOGGED TABLE u (id int PRIMARY KEY, v text)")
    pg.execute("INSERT INTO u SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
    pg.execute("VACUUM u")  # gives the unlogged table fsm and vm forks, too
    pg.execute("CREATE TABLE l (id int)")
    pg.execute("INSERT INTO l VALUES (1)")
    pg.execute("SELECT pg_create_physical_replication_slot('walk_slot', true)")
    pg.execute("CHECKPOINT")
    u = pg.relation_path("u").relative_to(pg.pgdata).as_posix()
    u_index = pg.relation_path("u_pkey").relative_to(pg.pgdata).as_posix()
    logged = pg.relation_path("l").relative_to(pg.pgdata).as_posix()
    tmp_file = pg.pgdata / "base" / "pgsql_tmp" / "pgsql_tmp99999.0"
    _touch(tmp_file)
    chown_postgres(tmp_file.parent, recursive=True)
    on_disk = {p.relative_to(pg.pgdata).as_posix() for p in pg.pgdata.rglob("*") if p.is_file()}
    for must_exist in ("postmaster.pid", u, f"{u}_init", f"{u}_fsm", f"{u}_vm",
                       f"{u_index}_init", "pg_replslot/walk_slot/state", "global/pg_internal.init",
                       "base/pgsql_tmp/pgsql_tmp99999.0"):
        assert must_exist in on_disk, must_exist
    assert any(p.startswith("pg_wal/0000") for p in on_disk)

    try:
        files, dirs, _ = pgfiles.walk(pg.pgdata)
    finally:
        pg.execute("SELECT pg_drop_replication_slot('walk_slot')")
        tmp_file.unlink()
    listed = {f.path for f in files}
    assert f"{u}_init" in listed and f"{u_index}_init" in listed
    assert not {u, f"{u}_fsm", f"{u}_vm", u_index} & listed
    assert logged in listed and "global/pg_control" in listed and "PG_VERSION" in listed
    assert "postmaster.pid" not in listed and "postmaster.opts" not in listed
    assert not [p for p in listed if p.startswith(("pg_wal/", "pg_replslot/"))]
    assert not [p for p in listed if os.path.basename(p).startswith("pgsql_tmp")]
    assert not [p for p in listed if os.path.basename(p).startswith("pg_internal.init")]
    dir_paths = {d["path"] for d in dirs}
    assert {"pg_wal", "pg_replslot", "base"} <= dir_paths
    sizes = {f.path: f.size for f in files}
    assert sizes[logged] == (pg.pgdata / logged).stat().st_size


def test_walk_skips_temporary_relations(live):
    """PostgreSQL's base backup skips temporary relation files (t<backend>_<relfilenode>):
    they are useless after a restore and can be large."""
    pg = live
    with psycopg.connect(host=str(pg.sockdir), port=pg.port, dbname="postgres",
                         user="postgres", autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE scratch AS SELECT g FROM generate_series(1, 50000) g")
        temp_rel = conn.execute("SELECT pg_relation_filepath('scratch')").fetchone()[0]
        assert os.path.basename(temp_rel).startswith("t")
        assert (pg.pgdata / temp_rel).exists()
        files, _, _ = pgfiles.walk(pg.pgdata)
    listed = {f.path for f in files}
    assert temp_rel not in listed, f"temporary relation file {temp_rel} is backed up"


# --- what the postgres OS user can plant: links, FIFOs, files swapped after the walk -----

def _secret(tmp_path: Path) -> Path:
    """A root-owned folder with a file root alone may read."""
    folder = tmp_path / "roots"
    folder.mkdir(mode=0o700)
    _touch(folder / "shadow", b"root:secret\n")
    (folder / "shadow").chmod(0o600)
    return folder


def test_tablespace_links_are_followed_only_as_the_server_reports_them(tmp_path):
    d = tmp_path / "pgdata"
    _touch(d / "PG_VERSION", b"15\n")
    ts = tmp_path / "ts1"
    _touch(ts / "PG_15_202209061" / "16384" / "16400")
    (d / "pg_tblspc").mkdir()
    (d / "pg_tblspc" / "16500").symlink_to(ts)
    secret = _secret(tmp_path)
    (d / "pg_tblspc" / "99999").symlink_to(secret)  # a link the server does not know
    files, dirs, tablespaces = pgfiles.walk(d, {"16500": str(ts)})
    assert tablespaces == [{"oid": "16500", "location": str(ts)}]
    assert {f.path for f in files} == {"PG_VERSION", "pg_tblspc/16500/PG_15_202209061/16384/16400"}
    assert "pg_tblspc/99999" not in {x["path"] for x in dirs}
    # the link was changed after the server was asked: refused
    with pytest.raises(DbsafeError) as caught:
        pgfiles.walk(d, {"16500": str(tmp_path / "elsewhere")})
    assert caught.value.code == "backup.tablespace_unsafe"
    # the server reports the link as it is (pg_tablespace_location reads it), so a link
    # its owner re-pointed at root's folder is refused by that folder's owner
    chown_postgres(d)
    with pytest.raises(DbsafeError) as caught:
        pgfiles.walk(d, {"16500": str(ts)})
    assert caught.value.code == "backup.tablespace_unsafe" and "uid 0" in caught.value.message
    # no link is followed anywhere else
    (d / "base").mkdir()
    (d / "base" / "1").symlink_to(secret)
    (d / "postgresql.auto.conf").symlink_to(secret / "shadow")
    files, _, _ = pgfiles.walk(d, {})
    assert {f.path for f in files} == {"PG_VERSION"}


@pytest.fixture
def walked(tmp_path) -> tuple[Path, dict]:
    """A data directory of the postgres user, walked: {path: SourceFile}."""
    d = tmp_path / "pgdata"
    for rel in ("PG_VERSION", "global/pg_control", "base/1/1259", "pg_logical/replorigin"):
        _touch(d / rel, b"x" * 100)
    chown_postgres(d, recursive=True)
    files, _, _ = pgfiles.walk(d)
    assert all(f.owner == pg_uid_gid()[0] and f.identity for f in files)
    return d, {f.path: f for f in files}


def _unsafe(source) -> str:
    with pytest.raises(DbsafeError) as caught:
        copy.open_source(source)
    assert caught.value.code == "backup.file_unsafe"
    return caught.value.message


def test_a_file_swapped_after_the_walk_is_refused(walked, tmp_path):
    d, by_path = walked
    secret = _secret(tmp_path) / "shadow"
    # the file itself: a link to root's file, a FIFO (would block a reader forever)
    (d / "global/pg_control").unlink()
    (d / "global/pg_control").symlink_to(secret)
    assert "symbolic link" in _unsafe(by_path["global/pg_control"])
    (d / "PG_VERSION").unlink()
    os.mkfifo(d / "PG_VERSION")
    assert "a FIFO" in _unsafe(by_path["PG_VERSION"])
    # a folder above it: base/1 renamed away and a link to root's folder put in its place
    (d / "base/1").rename(d / "base/1.old")
    (d / "base/1").symlink_to(secret.parent)
    (secret.parent / "1259").write_bytes(b"root's own")
    assert "replaced since the backup listed it" in _unsafe(by_path["base/1/1259"])
    # PostgreSQL renames a new file over an old one (checkpoints do): the owner's file is read
    new = d / "pg_logical/replorigin.tmp"
    _touch(new, b"y" * 100)
    chown_postgres(new)
    new.rename(d / "pg_logical/replorigin")
    fd = copy.open_source(by_path["pg_logical/replorigin"])
    try:
        assert os.pread(fd, 100, 0) == b"y" * 100
    finally:
        os.close(fd)
    (d / "pg_logical/replorigin").unlink()
    assert copy.open_source(by_path["pg_logical/replorigin"]) is None  # gone: vanished


def test_small_files_of_the_data_directory_are_read_as_regular_files(tmp_path):
    """PG_VERSION and postmaster.pid are read by every command: a link (to /dev/zero, or
    to a file of root's) or a FIFO in their place is refused, never followed or waited on."""
    d = tmp_path / "pgdata"
    (d / "global").mkdir(parents=True)
    elsewhere = tmp_path / "version"
    elsewhere.write_text("15\n")
    (d / "PG_VERSION").symlink_to(elsewhere)
    with pytest.raises(DbsafeError) as caught:
        cluster.major_version(d)
    assert caught.value.code == "server.pgdata_missing" and "symbolic link" in str(caught.value)
    (d / "PG_VERSION").unlink()
    os.mkfifo(d / "PG_VERSION")
    with pytest.raises(DbsafeError, match="a FIFO"):
        cluster.major_version(d)
    (d / "postmaster.pid").symlink_to("/dev/zero")
    with pytest.raises(DbsafeError) as caught:
        cluster.running_postmaster(d)
    assert caught.value.code == "server.not_running" and "symbolic link" in str(caught.value)
