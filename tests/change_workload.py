"""A workload with every kind of change a change map must see (docs/change-map.md), and
what the tests of WAL-tracked differentials and synthetic fulls check with it: real
clusters with two tablespaces, protected with real WAL archiving."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from conftest import PG_BIN, Pg, chown_postgres, free_port, new_cluster, restored

from dbsafe.engines.postgres.files import RELATION_FILE

PAGE = 8192


def protected(pg_template, area: Path, vault, name: str = "t") -> tuple[Pg, dict]:
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


def before_full(pg: Pg) -> None:
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


def every_change(pg: Pg) -> None:
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


def blob_digest(pg: Pg) -> str:
    return str(pg.scalar("SELECT md5(string_agg(b.id || ':' || encode(lo_get(b.oid), 'hex'), "
                         "',' ORDER BY b.id)) FROM blobs b", "app"))


def read_pages(manifest: dict) -> dict[str, set[int] | None]:
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
    for path, read in read_pages(manifest).items():
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


def restore(vault, server: str, point_id: str, target: Path, spaces: dict) -> Pg:
    port = free_port()
    maps = [f"--tablespace-map={oid}={target.parent / (target.name + '_' + ts)}"
            for ts, oid in spaces.items()]
    out = vault.ok("restore", server, "--point", point_id, "--to-pgdata", target, "--port",
                   port, "--start", *maps)
    assert out["started"] is True, out
    return restored(target, port)


def point_counts(vault, point_id: str) -> dict:
    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        (text,) = db.execute("SELECT table_counts FROM recovery_points WHERE point_id = ?",
                             (point_id,)).fetchone()
    return json.loads(text)


def amcheck(pg: Pg, db: str) -> None:
    """Every heap and btree index of ``db`` checked whole by pg_amcheck."""
    check = subprocess.run(
        [str(PG_BIN / "pg_amcheck"), "-h", str(pg.sockdir), "-p", str(pg.port),
         "-U", "postgres", "--install-missing", "--heapallindexed", "-d", db],
        capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, f"pg_amcheck: {check.stdout}{check.stderr}"


def small_table(pg: Pg) -> None:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pg.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")


def restores_equal(vault, server: str, point_id: str, target: Path, spaces: dict,
                    want: dict) -> None:
    got = restore(vault, server, point_id, target, spaces)
    try:
        assert got.table_checksums() == want
    finally:
        got.stop()
