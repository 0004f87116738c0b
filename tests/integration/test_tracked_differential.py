"""WAL-tracked differentials (docs/change-map.md) on real clusters with real WAL archiving:
every kind of change between a full and a differential that reads only the pages the WAL
names. The oracle: the restored full + differential equals the source table by table, and
no page the differential left out carries an LSN inside ``[base start, diff start)``
(read on the live files after a checkpoint: a page changed in that range and not read
would be restored as the base's stale copy)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import (
    PG_BIN,
    Pg,
    as_postgres,
    chown_postgres,
    free_port,
    interrupt,
    new_cluster,
    restored,
)

from dbsafe.engines.postgres.files import RELATION_FILE
from dbsafe.engines.postgres.wal import parse_lsn

PAGE = 8192


def _protected(pg_template, area: Path, vault, name: str = "t") -> tuple[Pg, dict]:
    pg = new_cluster(pg_template, area, name)
    spaces = {}
    for ts in ("ts1", "ts2"):
        (area / f"{name}_{ts}").mkdir()
        chown_postgres(area / f"{name}_{ts}")
        pg.execute(f"CREATE TABLESPACE {ts} LOCATION '{area / f'{name}_{ts}'}'")
        spaces[ts] = str(pg.scalar("SELECT oid FROM pg_tablespace WHERE spcname = %s",
                                   params=(ts,)))
    vault.add_server(name, pg)
    out = vault.ok("protect", name, "--auto", "--restart")  # the databases made later too
    assert out["recovery_model"] == "FULL" and out["archiving_active"], out
    return pg, spaces


def _before_full(pg: Pg) -> None:
    a = "app"
    pg.execute("CREATE DATABASE app")
    pg.pgbench("-i", "-s", "2", "-q", dbname=a)
    rows = "SELECT g, md5(g::text) FROM generate_series(1, {})"
    for table, n in (("hot", 20000), ("nonhot", 20000), ("del", 20000), ("trunc", 5000),
                     ("vf", 20000), ("clu", 10000), ("dropme", 5000), ("moveme", 10000),
                     ("shrink", 30000)):
        pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text) "
                   "WITH (fillfactor = 70)", a)
        pg.execute(f"INSERT INTO {table} {rows.format(n)} g", a)
    pg.execute("CREATE INDEX nonhot_v ON nonhot (v)", a)
    pg.execute("CREATE TABLE hashed (id int, v text)", a)
    pg.execute("CREATE INDEX hashed_id ON hashed USING hash (id)", a)
    pg.execute(f"INSERT INTO hashed {rows.format(10000)} g", a)
    pg.execute("CREATE TABLE docs (id int, words tsvector)", a)
    pg.execute("CREATE INDEX docs_words ON docs USING gin (words)", a)
    pg.execute("INSERT INTO docs SELECT g, to_tsvector('simple', md5(g::text) || ' w' || g % 50)"
               " FROM generate_series(1, 5000) g", a)
    pg.execute("CREATE UNLOGGED TABLE scratch (id int, v text)", a)
    pg.execute(f"INSERT INTO scratch {rows.format(5000)} g", a)
    pg.execute("CREATE TABLE blobs (id int, oid oid)", a)
    pg.execute("INSERT INTO blobs SELECT g, lo_from_bytea(0, convert_to(repeat(md5(g::text), "
               "100), 'UTF8')) FROM generate_series(1, 20) g", a)
    pg.execute("CREATE DATABASE tmpl")
    pg.execute("CREATE TABLE copied (id int, v text)", "tmpl")
    pg.execute(f"INSERT INTO copied {rows.format(3000)} g", "tmpl")
    pg.execute("CREATE DATABASE mover")
    pg.execute("CREATE TABLE m (id int, v text)", "mover")
    pg.execute(f"INSERT INTO m {rows.format(3000)} g", "mover")
    pg.execute("CREATE DATABASE dropdb")
    pg.execute("VACUUM ANALYZE", a)
    pg.execute("CHECKPOINT")


def _every_change(pg: Pg) -> None:
    """Each kind of change the change map must see (docs/change-map.md)."""
    a = "app"
    pg.execute("INSERT INTO hot SELECT g, 'new' FROM generate_series(20001, 21000) g", a)
    pg.execute("UPDATE hot SET v = 'hot' WHERE id % 13 = 0", a)        # HOT: no index on v
    pg.execute("UPDATE nonhot SET v = 'x' || v WHERE id % 11 = 0", a)  # indexed: not HOT
    pg.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 97 = 0", a)
    pg.execute("DELETE FROM del WHERE id % 3 = 0", a)
    pg.execute("VACUUM del", a)
    pg.execute("DELETE FROM shrink WHERE id > 700", a)
    pg.execute("VACUUM shrink", a)  # cuts the file: a truncation record
    pg.execute("TRUNCATE trunc", a)
    pg.execute("INSERT INTO trunc SELECT g, 'after' FROM generate_series(1, 50) g", a)
    pg.execute("DELETE FROM vf WHERE id % 2 = 0", a)
    pg.execute("VACUUM FULL vf", a)
    pg.execute("CREATE INDEX clu_v ON clu (v)", a)
    pg.execute("CLUSTER clu USING clu_v", a)
    pg.execute("DROP TABLE dropme", a)
    pg.execute("CREATE TABLE newtab AS SELECT g AS id, md5(g::text) AS v "
               "FROM generate_series(1, 5000) g", a)
    pg.execute("ALTER TABLE moveme SET TABLESPACE ts1", a)
    pg.execute("INSERT INTO hashed SELECT g, 'more' FROM generate_series(10001, 12000) g", a)
    pg.execute("INSERT INTO docs SELECT g, to_tsvector('simple', 'later w' || g % 7) "
               "FROM generate_series(5001, 6000) g", a)
    pg.execute("INSERT INTO scratch SELECT g, 'unlogged' FROM generate_series(1, 1000) g", a)
    pg.execute("SELECT lo_put(oid, 10, 'changed') FROM blobs WHERE id % 4 = 0", a)
    pg.execute("INSERT INTO blobs SELECT g, lo_from_bytea(0, 'new blob') "
               "FROM generate_series(21, 25) g", a)
    pg.execute("CREATE DATABASE walcopy TEMPLATE tmpl STRATEGY WAL_LOG")
    pg.execute("CREATE DATABASE filecopy TEMPLATE tmpl STRATEGY FILE_COPY")
    pg.execute("INSERT INTO copied SELECT g, 'after copy' FROM generate_series(1, 100) g",
               "walcopy")
    pg.execute("ALTER DATABASE mover SET TABLESPACE ts2")
    pg.execute("INSERT INTO m SELECT g, 'moved' FROM generate_series(1, 100) g", "mover")
    pg.execute("DROP DATABASE dropdb")


def _blob_digest(pg: Pg) -> str:
    return str(pg.scalar("SELECT md5(string_agg(b.id || ':' || encode(lo_get(b.oid), 'hex'), "
                         "',' ORDER BY b.id)) FROM blobs b", "app"))


def _read_pages(manifest: dict) -> dict[str, set[int] | None]:
    """The pages of each file the differential read (None: the whole file)."""
    out: dict[str, set[int] | None] = {}
    for e in manifest["files"]:
        if "delta" not in e:
            out[e["path"]] = None
        else:
            out[e["path"]] = {p for first, n in e["delta"]["pages"]
                              for p in range(first, first + n)}
    return out


def left_out_in_range(pg: Pg, manifest: dict, low: int, high: int) -> list[str]:
    """Pages of the live main-fork files the differential did not read whose LSN lies in
    ``[low, high)``: each one a page the change map missed."""
    missed = []
    for path, read in _read_pages(manifest).items():
        m = RELATION_FILE.match(path.rsplit("/", 1)[-1])
        if read is None or m is None or m.group(3) is not None:
            continue
        try:
            data = (pg.pgdata / path).read_bytes()
        except FileNotFoundError:
            continue
        for i in range(len(data) // PAGE):
            if i in read:
                continue
            hi = int.from_bytes(data[i * PAGE:i * PAGE + 4], "little")
            lo = int.from_bytes(data[i * PAGE + 4:i * PAGE + 8], "little")
            if low <= (hi << 32 | lo) < high:
                missed.append(f"{path} page {i} LSN {hi:X}/{lo:X}")
    return missed


def _restore(vault, server: str, point_id: str, target: Path, spaces: dict) -> Pg:
    port = free_port()
    maps = [f"--tablespace-map={oid}={target.parent / (target.name + '_' + ts)}"
            for ts, oid in spaces.items()]
    out = vault.ok("restore", server, "--point", point_id, "--to-pgdata", target, "--port",
                   port, "--start", *maps)
    assert out["started"] is True, out
    return restored(target, port)


def _point_counts(vault, point_id: str) -> dict:
    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        (text,) = db.execute("SELECT table_counts FROM recovery_points WHERE point_id = ?",
                             (point_id,)).fetchone()
    return json.loads(text)


def _amcheck(pg: Pg, db: str) -> None:
    """Every heap and btree index of ``db`` checked whole by pg_amcheck."""
    check = subprocess.run(
        [str(PG_BIN / "pg_amcheck"), "-h", str(pg.sockdir), "-p", str(pg.port),
         "-U", "postgres", "--install-missing", "--heapallindexed", "-d", db],
        capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, f"pg_amcheck: {check.stdout}{check.stderr}"


def _small_table(pg: Pg) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pg.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")


def _restores_equal(vault, server: str, point_id: str, target: Path, spaces: dict,
                    want: dict) -> None:
    got = _restore(vault, server, point_id, target, spaces)
    try:
        assert got.table_checksums() == want
    finally:
        got.stop()


def test_every_kind_of_change_is_tracked_and_restores_equal(pg_template, area, wal_vault):
    vault = wal_vault
    pg, spaces = _protected(pg_template, area, vault)
    _before_full(pg)
    full = vault.backup("t", "--type", "full")
    _every_change(pg)

    diff = vault.backup("t", "--type", "diff")
    want, blobs = pg.table_checksums(), _blob_digest(pg)
    source = diff["delta_source"]
    assert source["source"] == "wal", source
    assert source["records"] > 0 and source["blocks"] > 0 and source["segments"] >= 1
    assert source["start_lsn"] == full["start_lsn"] and source["stop_lsn"] == diff["start_lsn"]
    job = next(j for j in vault.jobs() if j["id"] == diff["job_id"])
    assert not [w for w in job.get("warnings") or [] if w["code"] == "backup.diff_untracked"]

    repo = vault.repository()
    manifest = repo.load_manifest(diff["point_id"])
    assert manifest["delta_source"]["source"] == "wal"
    pg.execute("CHECKPOINT")  # what the buffers hold reaches the files the oracle reads
    missed = left_out_in_range(pg, manifest, parse_lsn(full["start_lsn"]),
                                parse_lsn(diff["start_lsn"]))
    assert not missed, f"pages changed since the full that the differential left out: {missed}"
    # exactly the pages changed since the full are read, no more: the table's pages whose
    # LSN is at or after the full's start (nothing wrote after the differential started)
    accounts = str(pg.relation_path("pgbench_accounts", "app").relative_to(pg.pgdata))
    data = (pg.pgdata / accounts).read_bytes()
    changed = {i for i in range(len(data) // PAGE)
               if int.from_bytes(data[i * PAGE:i * PAGE + 4], "little") << 32
               | int.from_bytes(data[i * PAGE + 4:i * PAGE + 8], "little")
               >= parse_lsn(full["start_lsn"])}
    assert changed and _read_pages(manifest)[accounts] == changed
    assert diff["bytes_read_data"] < diff["bytes_read"]
    # the row counts for drills: the base's kept for the tables nothing changed since
    # (not counted again), each equal to the table's count now; the others counted
    counts = _point_counts(vault, diff["point_id"])["databases"]
    # (tmpl.copied is counted again: the full's own count set its hint bits, and with
    # data checksums on that wrote full-page images of it after the full started)
    assert {"public.pgbench_branches", "public.pgbench_tellers"} <= set(counts["app"]["reused"])
    assert not {"public.hot", "public.pgbench_accounts", "public.vf", "public.clu",
                "public.blobs"} & set(counts["app"]["reused"])
    assert "reused" not in counts["mover"]  # moved to another tablespace: counted again
    for db, taken in counts.items():
        for key in taken.get("reused", []):
            assert pg.scalar(f"SELECT count(*) FROM {key}", db) == taken["tables"][key], key
    # and a restore drill of the differential finds every count, kept or taken, right
    drill = vault.ok("drill", "run", "t", "--point", diff["point_id"], "--scratch-root",
                     area / "drills")
    assert drill["state"] == "completed" and drill["failed_check"] is None, drill
    checks = {c["name"]: c for c in drill["checks"]}
    assert checks["row_counts"]["ok"] and checks["row_counts"]["changed"] == []
    assert checks["row_counts"]["tables_compared"] >= 20

    got = _restore(vault, "t", diff["point_id"], area / "r", spaces)
    try:
        have = got.table_checksums()
        differing = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        assert have == want, f"tables that differ: {differing}"
        assert _blob_digest(got) == blobs
        assert {"app.newtab", "walcopy.copied", "filecopy.copied", "mover.m"} <= set(want)
        assert got.scalar("SELECT count(*) FROM scratch", "app") == 0  # unlogged: empty
        assert got.scalar("SELECT spcname FROM pg_database d JOIN pg_tablespace t "
                          "ON t.oid = d.dattablespace WHERE datname = 'mover'") == "ts2"
        _amcheck(got, "app")
    finally:
        got.stop()


def _pgbench_sums(pg: Pg) -> dict:
    row = pg.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                     "(SELECT sum(tbalance) FROM pgbench_tellers), "
                     "(SELECT sum(bbalance) FROM pgbench_branches), "
                     "(SELECT count(*) FROM pgbench_history)", "app")[0]
    return dict(zip(("accounts", "tellers", "branches", "history_rows"), row, strict=True))


def test_changes_under_pgbench_load_are_tracked(pg_template, area, wal_vault):
    """The workload runs while pgbench writes, and pgbench goes on during the
    differential: nothing in the range is left out, the restore is consistent."""
    vault = wal_vault
    pg, spaces = _protected(pg_template, area, vault, "l")
    _before_full(pg)
    vault.backup("l", "--type", "full")
    full = vault.points("l")[-1]
    load = subprocess.Popen(
        [str(PG_BIN / "pgbench"), "-h", str(pg.sockdir), "-p", str(pg.port), "-U", "postgres",
         "-n", "-c", "2", "-j", "1", "-T", "300", "app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        _every_change(pg)
        diff = vault.backup("l", "--type", "diff")
    finally:
        interrupt(load)
    assert diff["delta_source"]["source"] == "wal", diff["delta_source"]
    pg.execute("CHECKPOINT")
    manifest = vault.repository().load_manifest(diff["point_id"])
    missed = left_out_in_range(pg, manifest, parse_lsn(full["start_lsn"]),
                                parse_lsn(diff["start_lsn"]))
    assert not missed, f"pages changed since the full that the differential left out: {missed}"
    got = _restore(vault, "l", diff["point_id"], area / "r", spaces)
    try:
        sums = _pgbench_sums(got)
        # pgbench keeps the three sums equal; the workload added 1 to every 97th account
        bumped = got.scalar("SELECT count(*) FROM pgbench_accounts WHERE aid % 97 = 0", "app")
        assert sums["accounts"] - bumped == sums["tellers"] == sums["branches"], sums
        _amcheck(got, "app")
    finally:
        got.stop()


def test_a_gap_in_the_chain_falls_back_to_the_lsn_scan_and_says_why(pg_template, area,
                                                                      wal_vault):
    """A segment of the range gone from the vault and from pg_wal: the differential scans
    page LSNs instead, warns ``backup.diff_untracked`` naming the segment, and restores
    equal to the source."""
    vault = wal_vault
    pg, spaces = _protected(pg_template, area, vault, "g")
    _small_table(pg)
    full = vault.backup("g", "--type", "full")
    pg.execute("UPDATE t SET v = 'one' WHERE id % 10 = 0")
    lost = pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
    pg.execute("SELECT pg_switch_wal()")
    pg.execute("UPDATE t SET v = 'two' WHERE id % 10 = 1")
    vault.backup("g", "--type", "log")  # the switched segment is in the vault now
    pg.execute("CHECKPOINT")
    sysid = str(pg.scalar("SELECT system_identifier FROM pg_control_system()"))
    vault.repository().delete_wal_record(sysid, lost)
    (pg.pgdata / "pg_wal" / lost).unlink(missing_ok=True)

    diff = vault.backup("g", "--type", "diff")
    want = pg.table_checksums()
    assert diff["delta_source"]["source"] == "lsn-scan"
    assert lost in diff["delta_source"]["reason"] and "gap" in diff["delta_source"]["reason"]
    job = next(j for j in vault.jobs() if j["id"] == diff["job_id"])
    (warning,) = [w for w in job["warnings"] if w["code"] == "backup.diff_untracked"]
    assert lost in warning["message"]
    assert diff["base"] == full["point_id"] and diff["pages_changed"] > 0
    _restores_equal(vault, "g", diff["point_id"], area / "r", spaces, want)
    said = vault.run("backup", "g", "--type", "diff")  # what a DBA reads
    assert said.returncode == 0 and "pages chosen by scanning page LSNs" in said.stdout
    assert lost in said.stdout


def test_a_recycled_file_in_pg_wal_is_not_read_for_its_name(pg_template, area, wal_vault):
    """pg_wal holds, under a segment's name, another segment's bytes (PostgreSQL recycles
    old files under future names): the map reads the vault's copy instead, stays WAL-
    tracked, and misses nothing."""
    vault = wal_vault
    pg, spaces = _protected(pg_template, area, vault, "c")
    _small_table(pg)
    older = pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
    pg.execute("SELECT pg_switch_wal()")
    full = vault.backup("c", "--type", "full")
    pg.execute("UPDATE t SET v = 'one' WHERE id % 10 = 0")
    replaced = pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
    pg.execute("SELECT pg_switch_wal()")
    pg.execute("UPDATE t SET v = 'two' WHERE id % 10 = 1")
    vault.backup("c", "--type", "log")
    pg.execute("CHECKPOINT")
    wal_dir = pg.pgdata / "pg_wal"
    if not (wal_dir / older).exists():  # recycled already: any other old bytes will do
        older = next(iter(sorted(p.name for p in wal_dir.iterdir() if len(p.name) == 24)))
    (wal_dir / replaced).write_bytes((wal_dir / older).read_bytes())

    diff = vault.backup("c", "--type", "diff")
    want = pg.table_checksums()
    source = diff["delta_source"]
    assert source["source"] == "wal", source
    assert source["wal_bytes_from_vault"] > 0
    said = vault.run("backup", "c", "--type", "diff")  # what a DBA reads
    assert said.returncode == 0 and "pages chosen by the WAL since the full" in said.stdout
    pg.execute("CHECKPOINT")
    manifest = vault.repository().load_manifest(diff["point_id"])
    assert not left_out_in_range(pg, manifest, parse_lsn(full["start_lsn"]),
                                  parse_lsn(diff["start_lsn"]))
    _restores_equal(vault, "c", diff["point_id"], area / "r", spaces, want)


def test_a_timeline_switch_falls_back_to_the_lsn_scan(pg_template, area, wal_vault):
    """The server promoted (a new timeline) after the full: the map follows one timeline's
    WAL, so the differential scans page LSNs, says why, and restores equal; the full is
    still its base, as the server went through the full's end before it switched."""
    vault = wal_vault
    pg, spaces = _protected(pg_template, area, vault, "s")
    _small_table(pg)
    full = vault.backup("s", "--type", "full")
    pg.execute("UPDATE t SET v = 'before' WHERE id % 10 = 0")
    pg.stop()
    (pg.pgdata / "standby.signal").touch()
    chown_postgres(pg.pgdata / "standby.signal")
    pg.start()
    promoted = as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pg.pgdata), "promote", "-w"])
    assert promoted.returncode == 0, promoted.stderr
    assert pg.scalar("SELECT timeline_id FROM pg_control_checkpoint()") == 2
    pg.execute("UPDATE t SET v = 'after' WHERE id % 10 = 1")

    diff = vault.backup("s", "--type", "diff")
    want = pg.table_checksums()
    assert diff["base"] == full["point_id"] and diff["timeline"] == 2
    source = diff["delta_source"]
    assert source["source"] == "lsn-scan" and "timeline" in source["reason"], source
    job = next(j for j in vault.jobs() if j["id"] == diff["job_id"])
    assert [w for w in job["warnings"] if w["code"] == "backup.diff_untracked"]
    got = _restore(vault, "s", diff["point_id"], area / "r", spaces)
    try:
        assert got.table_checksums() == want
        assert got.scalar("SELECT count(*) FROM t WHERE v IN ('before', 'after')") == 4000
    finally:
        got.stop()
