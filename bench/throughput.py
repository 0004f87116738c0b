#!/usr/bin/env python3
"""Throughput of dbsafe's full and differential backups from 2.5 GB to 25 GB, side by side
with pgBackRest: is it flat, so that it extrapolates to 2 TB?

Run as root from the checkout, on an idle machine (the lead's run: ~35-60 min; at the 25 GB
size ~45 GB used under /var/tmp at the peak, and the script wants 52 GB free before building
it):

    .venv/bin/python bench/throughput.py --sizes 2.5,10,25

For each size (GB of data directory without pg_wal, 10^9 bytes), smallest first, one
PostgreSQL 15 cluster is built (``initdb --data-checksums -A trust``, bench/dataset.py's
SERVER_SETTINGS, run as postgres on a free port >= 56500 with a private socket folder and
``listen_addresses = ''``): ``pgbench -i -s <scale>`` (logged tables) for ~2/3 of the size
and a table ``bench_text`` of md5 hex text (8 ``md5(random()::text)`` a row after
``setseed(0.42)``, as bench/dataset.py's) for ~1/3, then ``VACUUM (FREEZE, ANALYZE)`` and
``CHECKPOINT``. Then pgBackRest is set up as bench/run.py does (zstd level 1,
``process-max=2``, ``start-fast=y``; ``archive_mode = on`` with ``archive-push``, a restart,
``stanza-create`` and ``check``), all before anything is timed, and, in this order:

  1. dbsafe full:      ``dbsafe --vault V backup bench --type full --json`` into a new vault
                       (default workers and compression);
  2. pgBackRest full:  ``pgbackrest backup --type=full`` (as postgres);
  3. the change (untimed): one tuple updated on each of 1% of pgbench_accounts' heap pages
     drawn at random (bench/diff.py's change, seed fixed), ``CHECKPOINT``, archiver idle;
     as in bench/diff.py, dbsafe's instance is put in the FULL model and the WAL since its
     full archived into its vault (``--lsn-scan``: left SIMPLE, the diff scans page LSNs);
  4. dbsafe diff:      ``dbsafe --vault V backup bench --type diff --json``;
  5. pgBackRest diff:  ``pgbackrest backup --type=diff``.

Each step is measured as bench/run.py's ``measure`` does (``sync``, a warm page cache --
``--cold``: emptied with drop_caches instead, as a data dir larger than the RAM is --, wall
time from fork to wait4, peak RSS: ``ru_maxrss`` of wait4 = what ``/usr/bin/time -f %M``
prints, and the sum over the process tree, CPU of others; a disturbed step is run again,
``--retries``). MB/s = data directory bytes (without pg_wal) / seconds, for every step,
diffs included. Reported per size: seconds and MB/s of the four steps, dbsafe / pgBackRest
time ratios, and each MB/s relative to the smallest size ("flatness", 1.00 there).
Results: bench/results/throughput-<UTC time>.json (written after each size) and a table.

Each cluster, vault and pgBackRest repo is deleted before the next size is built (``--keep``
keeps them all under /var/tmp/dbsafe-bench/throughput-*; mind the disk). Every server the
script started is stopped at the end, on errors too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset  # noqa: E402
import diff  # noqa: E402
import run  # noqa: E402
from dataset import BASE, BIN, PG_USER, SERVER_SETTINGS, Cluster, as_postgres, log  # noqa: E402
from run import RESULTS, du, measure, median_of, wait_archive_idle  # noqa: E402

# Sizing. Measured on PostgreSQL 15: pgbench scale 1 = 100 000 accounts = 1 640 heap pages
# + 2.2 MB primary key ~ 15.7 MB; a bench_text row (id + 256 hex chars) ~ 325 bytes with its
# primary key; an empty cluster ~ 23 MB without pg_wal.
PGBENCH_BYTES_PER_SCALE = 15.7e6
TEXT_BYTES_PER_ROW = 325
EMPTY_CLUSTER_BYTES = 23e6
TEXT_SHARE = 1 / 3
TEXT_MD5_PER_ROW = 8
TEXT_SEED = 0.42
CHANGE_SEED = 20261125   # bench/diff.py's
CHANGE_FRACTION = 0.01
FLAT_BAND = 0.15         # the issue: flat within +-15%
EXTRAPOLATE_TO = 2e12    # 2 TB

# Disk: the data dir, its pg_wal (up to max_wal_size = 8 GB after a big load), the vault and
# the pgBackRest repo (each ~0.2 x the data: md5 text compresses ~2:1, pgbench pages ~10:1),
# pgBackRest's diff (the changed files whole) and the WAL archives.
DISK_FACTOR = 1.6
DISK_WAL_CAP = 9e9
DISK_MARGIN = 3e9


def need_disk(size_bytes: float) -> float:
    return DISK_FACTOR * size_bytes + min(DISK_WAL_CAP, size_bytes) + DISK_MARGIN


def drop_caches(_path: Path | None = None) -> float:
    """--cold: instead of warming the page cache before a step, empty it (sync, then
    drop_caches; the whole machine's page cache, dentries and inodes)."""
    t0 = time.perf_counter()
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    return time.perf_counter() - t0


def psql_stdin(cluster: Cluster, sql: str) -> str:
    """Run SQL given on stdin (a statement with thousands of tids is longer than one
    command-line argument may be, 128 KiB)."""
    proc = dataset.run([str(BIN / "psql"), *cluster.conn_args(), "-d", "postgres", "-X", "-q",
                        "-A", "-t", "-v", "ON_ERROR_STOP=1"], input=sql)
    return proc.stdout.strip()


class DiskPeak:
    """Samples the space used under a folder (allocated blocks) every few seconds."""

    def __init__(self, root: Path, every: float = 3.0) -> None:
        self.root, self.every = root, every
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def used(self) -> int:
        total = 0
        for top, _, files in os.walk(self.root):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(top, name)).st_blocks * 512
        return total

    def loop(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)

    def sample(self) -> int:
        used = self.used()
        self.peak = max(self.peak, used)
        return used

    def reset(self) -> None:
        self.peak = self.used()

    def __enter__(self) -> DiskPeak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class SizeRun(run.Bench):
    """One size: build its cluster, set up pgBackRest, measure, tear down."""

    STEPS = ["dbsafe_full", "pgbackrest_full", "dbsafe_diff", "pgbackrest_diff"]

    def __init__(self, args: argparse.Namespace, size_gb: float, root: Path, stamp: str,
                 deadline: float) -> None:
        super().__init__(args)
        self.stamp = stamp
        self.size_gb = size_gb
        self.label = f"{size_gb:g}GB"
        self.dir = root / f"size-{self.label}"
        self.run_dir = self.dir / "run"
        self.logs = self.run_dir / "logs"
        self.pgbr_dir = self.run_dir / "pgbackrest"
        self.pgbr_repo = self.pgbr_dir / "repo"
        self.pgbr_conf = self.pgbr_dir / "pgbackrest.conf"
        self.cluster = Cluster(self.dir / "pgdata", self.dir / "socket",
                               self.dir / "server.log")
        run.SERVER_PGDATA[0] = self.cluster.pgdata  # whose CPU the ledger counts as "server"
        self.deadline = deadline
        self.changes: list[dict] = []
        self.pgbr_last: dict[str, str] = {}
        self.pgbr_stale: list[str] = []
        self.build_info: dict = {}
        self.db_bytes_by_rep: list[int] = []

    # build ---------------------------------------------------------------------------------

    def plan(self) -> dict:
        size = self.size_gb * 1e9
        text_rows = max(1000, round(size * TEXT_SHARE / TEXT_BYTES_PER_ROW))
        pgbench = size - text_rows * TEXT_BYTES_PER_ROW - EMPTY_CLUSTER_BYTES
        scale = max(1, round(pgbench / PGBENCH_BYTES_PER_SCALE))
        return {"size_asked_bytes": round(size), "pgbench_scale": scale,
                "text_rows": text_rows, "text_md5_per_row": TEXT_MD5_PER_ROW,
                "text_seed": TEXT_SEED}

    def build(self) -> dict:
        t0 = time.perf_counter()
        info = self.plan()
        c = self.cluster
        self.dir.mkdir(parents=True)
        dataset.chown_postgres(self.dir)
        self.dir.chmod(0o755)
        log(f"[{self.label}] initdb --data-checksums -A trust {c.pgdata}")
        dataset.run(as_postgres([str(BIN / "initdb"), "--data-checksums", "-A", "trust",
                                 "-U", PG_USER, "-D", str(c.pgdata)]))
        with open(c.pgdata / "postgresql.conf", "a") as f:
            f.write("\n# dbsafe benchmark (bench/throughput.py)\n")
            for k, v in SERVER_SETTINGS.items():
                f.write(f"{k} = {v}\n")
        c.start()
        try:
            log(f"[{self.label}] pgbench -i -s {info['pgbench_scale']}")
            t = time.perf_counter()
            dataset.run(as_postgres([str(BIN / "pgbench"), "-i", "-s",
                                     str(info["pgbench_scale"]), "-q", *c.conn_args(),
                                     "postgres"]))
            info["pgbench_seconds"] = round(time.perf_counter() - t, 1)
            log(f"[{self.label}]   done in {info['pgbench_seconds']:.0f} s")
            log(f"[{self.label}] bench_text: {info['text_rows']} rows of {TEXT_MD5_PER_ROW} "
                f"md5 strings, setseed({TEXT_SEED})")
            t = time.perf_counter()
            payload = " || ".join(["md5(random()::text)"] * TEXT_MD5_PER_ROW)
            c.psql("CREATE TABLE bench_text (id integer PRIMARY KEY, payload text NOT NULL);"
                   f"SELECT setseed({TEXT_SEED});"
                   f"INSERT INTO bench_text SELECT g, {payload} "
                   f"FROM generate_series(1, {info['text_rows']}) g ORDER BY g;")
            info["text_seconds"] = round(time.perf_counter() - t, 1)
            log(f"[{self.label}]   done in {info['text_seconds']:.0f} s")
            t = time.perf_counter()
            c.psql("VACUUM (FREEZE, ANALYZE);")
            c.psql("CHECKPOINT;")
            info["vacuum_checkpoint_seconds"] = round(time.perf_counter() - t, 1)
            info.update(json.loads(c.psql(
                "SELECT json_build_object("
                "'database_bytes', pg_database_size('postgres'),"
                "'pgbench_accounts_bytes', pg_total_relation_size('pgbench_accounts'),"
                "'bench_text_bytes', pg_total_relation_size('bench_text'))")))
        finally:
            c.stop()
        info["data_dir_bytes"] = dataset.data_bytes(c.pgdata)
        info["pg_wal_bytes"] = du(c.pgdata / "pg_wal")
        info["build_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"[{self.label}] built in {info['build_seconds']:.0f} s: data dir "
            f"{info['data_dir_bytes'] / 1e9:.3f} GB (asked {self.size_gb:g}), pg_wal "
            f"{info['pg_wal_bytes'] / 1e9:.2f} GB")
        self.build_info = info
        return info

    # setup / teardown ----------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()  # start, pgBackRest config, archive_mode + restart, stanza-create
        if not self.args.lsn_scan:
            # the WAL since the dbsafe full stays in pg_wal until archived into its vault
            self.cluster.psql("ALTER SYSTEM SET wal_keep_size = '4GB'")
            self.cluster.psql("SELECT pg_reload_conf()")

    def teardown(self) -> None:
        """Stop the server this object started; keep or delete this size's folder."""
        try:
            if self.cluster.started and self.cluster.running and self.args.keep:
                for setting in ("archive_mode", "archive_command", "wal_keep_size"):
                    self.cluster.psql(f"ALTER SYSTEM RESET {setting}")
        except Exception as exc:  # noqa: BLE001 - keep tearing down
            log(f"[{self.label}] warning: could not reset the archive settings: {exc}")
        try:
            self.cluster.stop("fast")
        except Exception as exc:  # noqa: BLE001
            log(f"[{self.label}] warning: fast stop failed ({exc}); stopping immediate")
            self.cluster.stop("immediate")
        if self.logs.exists():
            saved = RESULTS / f"throughput-{self.stamp}-logs" / self.label
            shutil.copytree(self.logs, saved, dirs_exist_ok=True)
        if self.args.keep:
            log(f"[{self.label}] kept {self.dir}")
        elif self.dir.exists():
            shutil.rmtree(self.dir)
            log(f"[{self.label}] removed {self.dir}")

    # the change ------------------------------------------------------------------------------

    def change(self, rep: int) -> dict:
        """One tuple updated on each of 1% of pgbench_accounts' heap pages (bench/diff.py's
        change), CHECKPOINT, archiver idle."""
        c = self.cluster
        pages = int(c.psql("SELECT pg_relation_size('pgbench_accounts') / 8192"))
        rng = random.Random(CHANGE_SEED + rep)
        chosen = rng.sample(range(pages), max(1, round(pages * CHANGE_FRACTION)))
        tids = ",".join(f"'({p},{rng.randint(1, 60)})'" for p in chosen)
        t0 = time.perf_counter()
        rows = int(psql_stdin(c, (
            "WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + 1 "
            f"WHERE ctid = ANY(ARRAY[{tids}]::tid[]) RETURNING 1) SELECT count(*) FROM u;")))
        c.psql("CHECKPOINT")
        wait_archive_idle(c.pgdata, timeout=600)
        info = {"heap_pages": pages, "pages_chosen": len(chosen), "rows_updated": rows,
                "seconds": round(time.perf_counter() - t0, 2)}
        log(f"[{self.label}]   change: {rows} rows updated on {len(chosen)} of {pages} "
            "heap pages")
        return info

    # bench/diff.py's: the vault's instance in the FULL model and the finished WAL segments
    # since its full archived into it (untimed, as pgBackRest's archive-push)
    archive_since_full = diff.DiffBench.archive_since_full

    # steps -------------------------------------------------------------------------------------

    DIFF_FIELDS = ("point_id", "base", "bytes_read", "bytes_read_data", "bytes_stored",
                   "pages_changed", "files", "files_whole", "files_delta", "files_unchanged",
                   "files_not_read", "wal_segments", "seconds", "workers", "delta_source")

    def vault_copy(self, snapshot: Path, folder: str) -> Path:
        """The vault as the full left it, for a differential that may be retried: packs and
        index files hard-linked (written once), the catalog copied."""
        trial = self.run_dir / folder
        if trial.exists():
            shutil.rmtree(trial)
        dataset.run(["cp", "-al", str(snapshot), str(trial)])
        (trial / "catalog.sqlite").unlink()
        shutil.copy2(snapshot / "catalog.sqlite", trial / "catalog.sqlite")
        return trial

    def dbsafe_diff(self, snapshot: Path, name: str) -> dict:
        trial = self.vault_copy(snapshot, "vault-diff")
        r = self.dbsafe_backup(trial, name, "diff", self.DIFF_FIELDS)
        self.diff_vault = trial
        return r

    def pgbackrest_backup(self, kind: str, name: str) -> dict:
        """bench/diff.py's: a retried diff first expires the previous attempt; a retried full
        cannot (pgBackRest expires a full only once a newer one exists): it is left for
        ``expire_stale_fulls`` after the step."""
        if kind in self.pgbr_last:
            if kind == "full":
                self.pgbr_stale.append(self.pgbr_last.pop(kind))
            else:
                self.pgbackrest("expire", f"--set={self.pgbr_last.pop(kind)}")
        wait_archive_idle(self.cluster.pgdata, timeout=600)
        run.warm(self.cluster.pgdata)
        backup0, archive0 = du(self.pgbr_repo / "backup"), du(self.pgbr_repo / "archive")
        r = measure(name, self.pgbackrest_argv("backup", f"--type={kind}"), self.logs)
        wait_archive_idle(self.cluster.pgdata, timeout=600)  # its WAL is part of what it stores
        r["bytes_stored_backup"] = du(self.pgbr_repo / "backup") - backup0
        r["bytes_stored_archive"] = du(self.pgbr_repo / "archive") - archive0
        r["bytes_stored"] = r["bytes_stored_backup"] + r["bytes_stored_archive"]
        last = json.loads(self.pgbackrest("info", "--output=json"))[0]["backup"][-1]
        r["pgbackrest_label"] = last["label"]
        self.pgbr_last[kind] = last["label"]
        return r

    # the run ---------------------------------------------------------------------------------

    def measure_all(self) -> dict:
        t0 = time.perf_counter()
        self.setup()
        log(f"[{self.label}] preparing the page cache: {run.warm(self.cluster.pgdata):.1f} s")
        for rep in range(1, self.args.repeat + 1):
            self.db_bytes = dataset.data_bytes(self.cluster.pgdata)
            self.db_bytes_by_rep.append(self.db_bytes)
            log(f"[{self.label}] --- repetition {rep}/{self.args.repeat}: data dir "
                f"{self.db_bytes / 1e9:.3f} GB")
            self.repetition(rep)
        return self.result(time.perf_counter() - t0)

    def repetition(self, rep: int) -> None:
        state: dict = {}
        previous_full = self.pgbr_last.get("full")
        self.pgbr_last = {}

        def name(step: str) -> str:
            return f"{step}-{rep}-{len(self.runs.get(step, [])) + 1}"

        def dbsafe_full() -> dict:
            if "vault" in state:  # a retry: a full into an empty vault again
                shutil.rmtree(state["vault"])
            state["vault"] = self.new_vault()
            return self.dbsafe_backup(state["vault"], name("dbsafe_full"))

        def pgbackrest_full() -> dict:
            return self.pgbackrest_backup("full", name("pgbackrest_full"))

        self.attempt("dbsafe_full", dbsafe_full)
        self.attempt("pgbackrest_full", pgbackrest_full)
        # untimed, only to save disk: the previous repetition's sets and retried fulls
        for label in [*([previous_full] if previous_full else []), *self.pgbr_stale]:
            self.pgbackrest("expire", f"--set={label}")
        self.pgbr_stale = []
        change = self.change(rep)
        if not self.args.lsn_scan:
            change["archived"] = self.archive_since_full(state["vault"])
        self.changes.append(change)
        snapshot = self.run_dir / "vault-after-full"
        shutil.move(state["vault"], snapshot)
        self.attempt("dbsafe_diff", lambda: self.dbsafe_diff(snapshot, name("dbsafe_diff")))
        self.attempt("pgbackrest_diff",
                     lambda: self.pgbackrest_backup("diff", name("pgbackrest_diff")))
        shutil.rmtree(snapshot)
        shutil.rmtree(self.diff_vault)

    def result(self, seconds: float) -> dict:
        med, counts = {}, {}
        for step, runs in self.runs.items():
            calm = [r for r in runs if not r.get("disturbed")]
            med[step] = median_of(calm or runs)
            counts[step] = {"runs": len(runs), "undisturbed": len(calm)}

        def ratio(a: str, b: str) -> float | None:
            return round(med[a]["seconds"] / med[b]["seconds"], 3) if med[b]["seconds"] \
                else None

        db_bytes = round(statistics.median(self.db_bytes_by_rep))
        for step in ("dbsafe_full", "dbsafe_diff"):
            own = med[step].get("dbsafe_seconds")
            med[step]["own_mb_per_s"] = round(db_bytes / own / 1e6, 1) if own else None
        return {
            "size_gb": self.size_gb, "label": self.label, "data_bytes": db_bytes,
            "data_bytes_by_repetition": self.db_bytes_by_rep, "build": self.build_info,
            "changes": self.changes, "median": med, "run_counts": counts, "runs": self.runs,
            "ratios": {"full_time_vs_pgbackrest": ratio("dbsafe_full", "pgbackrest_full"),
                       "diff_time_vs_pgbackrest": ratio("dbsafe_diff", "pgbackrest_diff")},
            # above ~0.5 the data dir no longer stays in the page cache between steps
            "data_vs_ram": round(db_bytes / (os.sysconf("SC_PHYS_PAGES") * run.PAGE), 3),
            "measure_seconds": round(seconds, 1),
        }


# -----------------------------------------------------------------------------------------------
# Report


KEYS = [("dbsafe full", "dbsafe_full"), ("pgBackRest full", "pgbackrest_full"),
        ("dbsafe diff", "dbsafe_diff"), ("pgBackRest diff", "pgbackrest_diff")]


def summarize(sizes: list[dict]) -> dict:
    """Flatness (each MB/s over the smallest size's) and a 2 TB extrapolation."""
    if not sizes:
        return {}
    base = sizes[0]["median"]
    flat: dict[str, list] = {}
    for _, key in KEYS:
        flat[key] = [round(s["median"][key]["mb_per_s"] / base[key]["mb_per_s"], 3)
                     for s in sizes]
    for key in ("dbsafe_full", "dbsafe_diff"):
        if all(s["median"][key].get("own_mb_per_s") for s in sizes):
            flat[f"{key}_own"] = [round(s["median"][key]["own_mb_per_s"] /
                                        base[key]["own_mb_per_s"], 3) for s in sizes]
    within = {k: all(abs(x - 1) <= FLAT_BAND for x in v) for k, v in flat.items()}
    last = sizes[-1]["median"]
    hours = {key: round(EXTRAPOLATE_TO / (last[key]["mb_per_s"] * 1e6) / 3600, 2)
             for _, key in KEYS}
    return {"flatness_vs_smallest": flat, "flat_within_band": within, "band": FLAT_BAND,
            "hours_for_2TB_at_largest_size_rate": hours}


def print_table(res: dict) -> None:
    sizes, summary = res["sizes"], res["summary"]
    if not sizes:
        return
    print()
    print(f"dbsafe {res['versions']['dbsafe']['git_head']}, {res['versions']['pgbackrest']}; "
          f"{res['repeat']} repetition(s), medians of the undisturbed runs; "
          f"{run.CPUS} cores; diff: {res['diff_mode']}; cache: {res['page_cache'].split(':')[0]}")
    head = (f"{'size':>6} {'data GB':>8} | {'step':16} {'seconds':>8} {'MB/s':>7} "
            f"{'flat':>5} {'stored MB':>10} {'RSS MB':>7} {'tree MB':>8} {'others CPU':>10} "
            f"{'runs':>5}")
    print(head)
    print("-" * len(head))
    flat = summary["flatness_vs_smallest"]
    for i, s in enumerate(sizes):
        for n, (label, key) in enumerate(KEYS):
            m, c = s["median"][key], s["run_counts"][key]
            first = f"{s['label']:>6} {s['data_bytes'] / 1e9:8.3f}" if n == 0 else " " * 15
            print(f"{first} | {label:16} {m['seconds']:8.2f} {m['mb_per_s']:7.0f} "
                  f"{flat[key][i]:5.2f} {m['bytes_stored'] / 1e6:10.1f} "
                  f"{m['ru_maxrss_mb']:7.0f} {m['peak_rss_tree_mb']:8.0f} "
                  f"{m.get('other_cpu_seconds', 0):10.1f} "
                  f"{c['undisturbed']}/{c['runs']:<3}")
        r = s["ratios"]
        print(f"{'':15} | dbsafe / pgBackRest time: full {r['full_time_vs_pgbackrest']}, "
              f"diff {r['diff_time_vs_pgbackrest']}; dbsafe's own seconds (no start-up): "
              f"full {s['median']['dbsafe_full'].get('dbsafe_seconds')}, diff "
              f"{s['median']['dbsafe_diff'].get('dbsafe_seconds')}")
        ch = s["changes"][-1]
        read = s["runs"]["dbsafe_diff"][-1]["dbsafe_json"].get("bytes_read_data") or 0
        print(f"{'':15} | change: {ch['rows_updated']} rows on {ch['pages_chosen']} of "
              f"{ch['heap_pages']} heap pages; the last dbsafe diff read {read / 1e6:.1f} MB "
              "of the data dir")
    print()
    print("flatness = MB/s / MB/s at the smallest size (band +-"
          f"{summary['band']:.0%}):")
    for key, values in flat.items():
        print(f"  {key:22} {' '.join(f'{v:5.2f}' for v in values)}   within band: "
              f"{summary['flat_within_band'][key]}")
    print("dbsafe / pgBackRest time ratio per size: full "
          + " ".join(str(s["ratios"]["full_time_vs_pgbackrest"]) for s in sizes)
          + "; diff " + " ".join(str(s["ratios"]["diff_time_vs_pgbackrest"]) for s in sizes))
    hours = summary["hours_for_2TB_at_largest_size_rate"]
    print(f"2 TB at the largest size's MB/s: dbsafe full {hours['dbsafe_full']} h, pgBackRest "
          f"full {hours['pgbackrest_full']} h (diffs: {hours['dbsafe_diff']} h and "
          f"{hours['pgbackrest_diff']} h, if the change scaled with the data)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2.5,10,25",
                    help="data directory sizes in GB (10^9 bytes), comma-separated; "
                         "measured smallest first (default 2.5,10,25)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="repetitions per size (medians reported; default 1)")
    ap.add_argument("--keep", action="store_true",
                    help="keep every size's cluster, vault and pgBackRest repo (mind the "
                         "disk: they are otherwise deleted before the next size is built)")
    run.retry_options(ap, retries=1, budget_minutes=240)
    ap.add_argument("--cold", action="store_true",
                    help="empty the page cache (drop_caches) before each timed step instead "
                         "of reading the data dir into it: every size read from disk, as 2 TB "
                         "would be (the default, warm, cannot hold a data dir larger than "
                         "about half the RAM)")
    ap.add_argument("--lsn-scan", action="store_true",
                    help="leave dbsafe's instance in the SIMPLE model: the differential "
                         "scans page LSNs instead of reading the WAL's change map")
    args = ap.parse_args()
    args.keep_run = args.keep  # run.Bench's name for it
    args.rebuild = False
    run.require_root()
    try:
        sizes = sorted({float(x) for x in args.sizes.split(",") if x.strip()})
    except ValueError:
        sys.exit(f"--sizes: numbers in GB, comma-separated, not {args.sizes!r}")
    if not sizes or min(sizes) <= 0:
        sys.exit("--sizes: at least one size > 0")

    # SIGTERM (and SIGHUP) run the cleanup below as Ctrl-C does
    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    if args.cold:
        run.warm = drop_caches  # run.Bench.dbsafe_backup and this script call run.warm

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = BASE / f"throughput-{stamp}"
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o755)
    root.mkdir()
    root.chmod(0o755)
    RESULTS.mkdir(exist_ok=True)
    out_path = RESULTS / f"throughput-{stamp}.json"
    t_start = time.perf_counter()
    deadline = time.monotonic() + args.budget_minutes * 60
    results: list[dict] = []
    res: dict = {}
    code: dict = {}
    failed = False
    with DiskPeak(root) as disk:
        try:
            for size_gb in sizes:
                free = shutil.disk_usage(BASE).free
                need = need_disk(size_gb * 1e9)
                if free < need:
                    raise RuntimeError(
                        f"{size_gb:g} GB needs ~{need / 1e9:.0f} GB free under {BASE}, "
                        f"{free / 1e9:.0f} GB are: stopping before building it")
                bench = SizeRun(args, size_gb, root, stamp, deadline)
                try:
                    bench.build()
                    r = bench.measure_all()  # its setup records the code measured
                finally:
                    bench.teardown()
                code = code or bench.code
                r["disk_peak_bytes"] = disk.peak
                r["disk_need_estimate_bytes"] = round(need)
                log(f"[{bench.label}] peak disk used under {root}: {disk.peak / 1e9:.2f} GB")
                if not args.keep:
                    disk.reset()
                results.append(r)
                res = report(args, stamp, code, sizes, results, t_start, out_path)
        except (RuntimeError, subprocess.CalledProcessError, KeyboardInterrupt) as exc:
            log(f"error: {exc}")
            failed = True
        finally:
            if not args.keep and root.exists():
                shutil.rmtree(root)
                log(f"removed {root}")
    if res:
        print_table(res)
        log(f"results: {out_path} ({res['elapsed_seconds'] / 60:.1f} min)")
    if failed:
        sys.exit(1)


def report(args: argparse.Namespace, stamp: str, code: dict, sizes: list[float],
           results: list[dict], t_start: float, path: Path) -> dict:
    res = {
        "timestamp": stamp, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": {"cpus": run.CPUS,
                    "mem_gb": round(os.sysconf("SC_PHYS_PAGES") * run.PAGE / 2**30, 1),
                    "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3]},
        "versions": {"dbsafe": code, "git_head_at_end": run.git_commit(),
                     "pgbackrest": run.version(["pgbackrest", "version"]),
                     "postgres": run.version([str(BIN / "postgres"), "--version"])},
        "sizes_asked_gb": sizes, "repeat": args.repeat,
        "diff_mode": "page-LSN scan (SIMPLE)" if args.lsn_scan else
                     "WAL change map (FULL, WAL since the full archived untimed)",
        "page_cache": "cold: sync + drop_caches before each step" if args.cold else
                      "warm: the data dir read once before each step (run.py's warm)",
        "server_settings": SERVER_SETTINGS,
        "settings": {
            "dbsafe": "backup --type full|diff --json, default workers (cores) and zstd "
                      "level 1",
            "pgbackrest": "compress-type=zst compress-level=1 process-max=2 start-fast=y, "
                          "archive_mode=on with archive-push",
            "mb_per_s": "data dir bytes without pg_wal / wall seconds (diffs too)",
            "peak_rss": "ru_maxrss_mb: wait4's, as /usr/bin/time -f %M; peak_rss_tree_mb: "
                        "sum over the process tree sampled every 50 ms",
            "change": f"one tuple on each of {CHANGE_FRACTION:.0%} of pgbench_accounts' heap "
                      "pages drawn at random, CHECKPOINT",
        },
        "sizes": results, "summary": summarize(results),
        "elapsed_seconds": round(time.perf_counter() - t_start, 1),
    }
    path.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
