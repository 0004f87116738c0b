#!/usr/bin/env python3
"""100,000 relation files in one database: a full backup, a differential with nothing
changed, a restore that is started and compared table by table (the seed promises 1,000
files per database; tests/integration/test_limits.py runs 13,200 in the suite).

Run as root from the checkout:   .venv/bin/python bench/many_files.py [--tables 16700]

1. A fresh cluster (initdb --data-checksums; fsync=off, as a test cluster) and one database
   of ``--tables`` tables, each ``(id int PRIMARY KEY, body text)`` with one row whose body
   is long enough for TOAST every 3rd table, then VACUUM: heap, free space map, visibility
   map, TOAST table, TOAST index and primary key, 6 files a table (16,700 tables: 100,200
   relation files). A function ``fingerprint()`` hashes every table's rows in name order.
2. ``dbsafe backup`` (full), ``dbsafe backup --type diff`` with nothing changed, ``dbsafe
   restore --start`` of the full on a free port, each under GNU time (wall seconds and
   peak RSS); the restored server's ``fingerprint()`` and its number of tables must equal
   the source's.
Everything lives in /var/tmp/dbsafe-bench/files-<time>, removed at the end unless
``--keep``. Results: a table and bench/results/files-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dataset import Cluster, chown_postgres, free_port, log  # noqa: E402
from many_databases import dbsafe, du, fresh_cluster, timed_json  # noqa: E402

RESULTS = HERE / "results"
CHUNK = 400  # tables made per transaction (each takes several locks)
FINGERPRINT = """
CREATE FUNCTION fingerprint() RETURNS text LANGUAGE plpgsql AS $$
DECLARE r record; one text; acc text := '';
BEGIN
  FOR r IN SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ '^t[0-9]+$'
           ORDER BY relname LOOP
    EXECUTE format('SELECT md5(string_agg(id::text || body, '','' ORDER BY id)) FROM %I',
                   r.relname) INTO one;
    acc := md5(acc || r.relname || coalesce(one, ''));
  END LOOP;
  RETURN acc;
END $$;
"""


def make_tables(cluster: Cluster, db: str, tables: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, tables, CHUNK):
        end = min(tables, start + CHUNK) - 1
        cluster.psql(f"""DO $$ BEGIN FOR i IN {start}..{end} LOOP
            EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, body text)', i);
            EXECUTE format('INSERT INTO t%s VALUES (%s, repeat(md5(%s::text), %s))', i, i, i,
                           CASE WHEN i % 3 = 0 THEN 200 ELSE 1 END);
            END LOOP; END $$;""", db)
    cluster.psql("VACUUM", db)
    cluster.psql("CHECKPOINT")
    return time.perf_counter() - t0


def relation_files(pgdata: Path, oid: str) -> int:
    return sum(1 for f in os.listdir(pgdata / "base" / oid)
               if f.split("_")[0].split(".")[0].isdigit())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", type=int, default=16_700, help="tables (6 files each)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # fingerprint() reads every table in one transaction: a lock each (the restored copy
    # has the same setting, from the backup)
    area, cluster = fresh_cluster(f"files-{stamp}", max_locks_per_transaction="1024")
    pgdata, vault = cluster.pgdata, area / "vault"
    restored = Cluster(area / "restores" / "pgdata", area / "socket-restored",
                       area / "restored.log")
    res: dict = {"tables": args.tables, "time": stamp}
    try:
        cluster.start()
        cluster.psql("CREATE DATABASE many")
        log(f"creating {args.tables} tables")
        res["create_s"] = make_tables(cluster, "many", args.tables)
        cluster.psql(FINGERPRINT, "many")
        oid = cluster.psql("SELECT oid FROM pg_database WHERE datname = 'many'")
        res["relation_files"] = relation_files(pgdata, oid)
        res["data_bytes"] = du(pgdata / "base")
        res["fingerprint"] = cluster.psql("SELECT fingerprint()", "many")
        dbsafe(vault, "vault", "init")
        dbsafe(vault, "server", "add", "files", "--pgdata", str(pgdata), "--port",
               str(cluster.port))
        dbsafe(vault, "vault", "restore-roots", "add", str(area / "restores"))
        log("full backup")
        res["full_s"], res["full_rss_mb"], out = timed_json(vault, "backup", "files")
        res.update(full_files=out["files"], full_bytes_read=out["bytes_read"])
        log(f"  {res['full_s']:.1f} s, {res['full_rss_mb']:.0f} MB; differential")
        res["diff_s"], res["diff_rss_mb"], out = timed_json(vault, "backup", "files",
                                                            "--type", "diff")
        res.update(diff_bytes_read=out["bytes_read"], diff_files=out["files"])
        _, points = dbsafe(vault, "points", "files")
        full = next(p for p in points["points"] if p["type"] == "full")["point_id"]
        log(f"  {res['diff_s']:.1f} s, {res['diff_rss_mb']:.0f} MB; restore of the full")
        area.joinpath("socket-restored").mkdir()
        chown_postgres(area / "socket-restored")
        port = free_port(area / "socket-restored", 56600)
        res["restore_s"], res["restore_rss_mb"], out = timed_json(
            vault, "restore", "files", "--point", full, "--to-pgdata",
            str(restored.pgdata), "--port", str(port), "--start")
        restored.port, restored.started = port, True
        restored.socket_dir = restored.pgdata  # a started restore's socket: its pgdata
        res["restored_tables"] = int(restored.psql(
            "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname ~ '^t[0-9]+$'",
            "many"))
        res["restored_fingerprint"] = restored.psql("SELECT fingerprint()", "many")
        res["restored_relation_files"] = relation_files(restored.pgdata, oid)
        res["equal"] = res["restored_fingerprint"] == res["fingerprint"] and \
            res["restored_tables"] == args.tables
        log(f"  {res['restore_s']:.1f} s, {res['restore_rss_mb']:.0f} MB; "
            f"equal: {res['equal']}")
    finally:
        restored.stop("immediate")
        cluster.stop("immediate")
        if not args.keep:
            shutil.rmtree(area, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"files-{stamp}.json").write_text(json.dumps(res, indent=2))
    print(f"{res['tables']} tables, {res['relation_files']} relation files in one database, "
          f"{res['data_bytes'] / 1e6:.0f} MB (made in {res['create_s']:.0f} s)")
    for step in ("full", "diff", "restore"):
        print(f"  {step:8} {res[step + '_s']:6.1f} s  peak RSS {res[step + '_rss_mb']:4.0f} MB")
    print(f"  restored: {res['restored_tables']} tables, {res['restored_relation_files']} "
          f"relation files, every table's rows equal: {res['equal']}")
    if not res["equal"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
