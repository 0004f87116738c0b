#!/usr/bin/env python3
"""Figures the resource planner needs that the other benchmarks do not report.

On a fresh throwaway cluster built like the full-backup dataset at a smaller scale
(initdb --data-checksums; ``pgbench -i -s SCALE`` plus ``bench_text``, SCALE x 32 000 rows of
8 md5 strings; VACUUM FREEZE, CHECKPOINT), a load of ``--transactions`` runs: pgbench's
TPC-B-like script for 60% of them, an update of one random ``bench_text`` row (new md5
strings) for 40% (the text table is ~40% of the dataset's bytes). Default 400: random
updates to about 1% of the ``pgbench_accounts`` heap pages at scale 20. Then:

- **WAL stored ratio**: every WAL segment the load filled whole (not the first and the
  last, which hold other WAL or zeros), cut into the vault's 1 MiB blocks
  and compressed as dbsafe archives WAL (zstd level 1, dbsafe.vault.blocks parameters):
  compressed bytes / WAL bytes;
- **pages vs blocks changed**, in the whole database and in ``pgbench_accounts`` (heap and
  primary key) alone: pages whose LSN is past the load's start LSN, and the 1 MiB blocks
  holding at least one of them (main forks only);
- **WAL per changed byte**: WAL bytes of the load / (the database's changed pages x 8 KiB).

Usage (as root):  .venv/bin/python bench/planner.py [--scale 20] [--transactions 400]
[--keep-run]
Writes bench/results/<timestamp>-planner.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dataset  # noqa: E402
import zstandard  # noqa: E402

from dbsafe.vault.blocks import compression_params  # noqa: E402

BLOCK = 1 << 20
PAGE = 8192
RESULTS = Path(__file__).resolve().parent / "results"


def lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def wal_ratio(pg_wal: Path, names: list[str]) -> tuple[int, int]:
    compressor = zstandard.ZstdCompressor(compression_params=compression_params(1, BLOCK))
    raw = stored = 0
    for name in names:
        data = (pg_wal / name).read_bytes()
        for i in range(0, len(data), BLOCK):
            chunk = data[i:i + BLOCK]
            raw += len(chunk)
            stored += len(compressor.compress(chunk))
    return raw, stored


def changed(files: list[Path], start: int) -> tuple[int, int, int, int]:
    """(pages, changed pages, 1 MiB blocks, changed blocks) of relation segment files."""
    pages = changed_pages = blocks = changed_blocks = 0
    for path in files:
        data = path.read_bytes()
        for b in range(0, len(data), BLOCK):
            blocks += 1
            block_changed = False
            for p in range(b, min(b + BLOCK, len(data)), PAGE):
                hi, lo = struct.unpack_from("<II", data, p)
                pages += 1
                if ((hi << 32) | lo) > start:
                    changed_pages += 1
                    block_changed = True
            changed_blocks += block_changed
    return pages, changed_pages, blocks, changed_blocks


def shares(pages: int, changed_pages: int, blocks: int, changed_blocks: int) -> dict:
    return {"pages": pages, "changed_pages": changed_pages, "blocks": blocks,
            "changed_blocks": changed_blocks,
            "changed_page_share": round(changed_pages / pages, 5),
            "changed_block_share": round(changed_blocks / blocks, 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=20)
    ap.add_argument("--transactions", type=int, default=400)
    ap.add_argument("--keep-run", action="store_true")
    args = ap.parse_args()

    dataset.BASE.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="planner-", dir=dataset.BASE))
    shutil.chown(run_dir, dataset.PG_USER, dataset.PG_USER)
    pgdata = run_dir / "pgdata"
    cluster = dataset.Cluster(pgdata, run_dir / "socket", run_dir / "server.log")
    try:
        dataset.run(dataset.as_postgres([str(dataset.BIN / "initdb"), "--data-checksums",
                                         "-A", "trust", "-U", dataset.PG_USER, "-D",
                                         str(pgdata)]))
        with open(pgdata / "postgresql.conf", "a") as f:
            # wal_keep_size: the load's segments stay in pg_wal after the checkpoint
            for k, v in {**dataset.SERVER_SETTINGS, "autovacuum": "off",
                         "wal_keep_size": "'4GB'"}.items():
                f.write(f"{k} = {v}\n")
        cluster.start()
        bench = [str(dataset.BIN / "pgbench"), *cluster.conn_args()]
        dataset.log(f"pgbench -i -s {args.scale}")
        dataset.run([*bench, "-i", "-s", str(args.scale), "-q", "postgres"])
        rows = args.scale * 32_000
        payload = " || ".join(["md5(random()::text)"] * 8)
        cluster.psql("CREATE TABLE bench_text (id integer PRIMARY KEY, payload text NOT NULL);"
                     f"SELECT setseed({dataset.SEED});"
                     f"INSERT INTO bench_text SELECT g, {payload} "
                     f"FROM generate_series(1, {rows}) g ORDER BY g;")
        script = run_dir / "text.sql"
        script.write_text(f"\\set id random(1, {rows})\n"
                          f"UPDATE bench_text SET payload = {payload} WHERE id = :id;\n")
        cluster.psql("VACUUM (FREEZE, ANALYZE)")
        cluster.psql("CHECKPOINT")
        start = cluster.psql("SELECT pg_current_wal_lsn()")
        first = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        dataset.log(f"load: {args.transactions} transactions")
        dataset.run([*bench, "-n", "-c", "1", "-t", str(args.transactions), "-b",
                     "tpcb-like@6", "-f", f"{script}@4", "postgres"])
        end = cluster.psql("SELECT pg_current_wal_lsn()")
        last = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        cluster.psql("CHECKPOINT")       # flush the changed pages so their LSNs are on disk
        rels = cluster.psql("SELECT string_agg(pg_relation_filepath(c), ' ') FROM "
                            "unnest(ARRAY['pgbench_accounts'::regclass, "
                            "'pgbench_accounts_pkey'::regclass]) c").split()
        db_dir = pgdata / Path(rels[0]).parent
        cluster.stop()
        names = sorted(n.name for n in (pgdata / "pg_wal").iterdir()
                       if len(n.name) == 24 and first < n.name < last)
        raw, stored = wal_ratio(pgdata / "pg_wal", names)
        def main_forks(names: set[str] | None) -> list[Path]:
            return sorted(f for f in db_dir.iterdir() if f.name.split(".")[0].isdigit()
                          and (names is None or f.name.split(".")[0] in names))

        accounts = changed(main_forks({Path(r).name for r in rels}), lsn(start))
        whole = changed(main_forks(None), lsn(start))
        wal_bytes = lsn(end) - lsn(start)
        result = {
            "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
            "args": vars(args),
            "wal": {"segments": len(names), "bytes": raw, "stored": stored,
                    "stored_ratio": round(stored / raw, 4) if raw else None},
            "database": shares(*whole), "pgbench_accounts": shares(*accounts),
            "wal_bytes_of_load": wal_bytes,
            "wal_per_changed_page_byte": round(wal_bytes / (whole[1] * PAGE), 3)
            if whole[1] else None,
        }
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"{result['timestamp']}-planner.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        cluster.stop("immediate")
        if not args.keep_run:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
