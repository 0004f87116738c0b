#!/usr/bin/env python3
"""dbsafe --type diff vs pgBackRest --type=diff and --type=incr after ~1% of pgbench_accounts'
heap pages changed, side by side on a copy of the benchmark dataset.

Run as root from the checkout:   .venv/bin/python bench/diff.py [--repeat 3]

Each repetition: a dbsafe full (new vault) and a pgBackRest full; one tuple updated on each of
1% of pgbench_accounts' heap pages drawn at random; CHECKPOINT; the WAL written since the
dbsafe full's start archived into its vault, untimed, as pgBackRest's archive-push is (the
instance is in the FULL model, so the differential reads only the pages the WAL names:
docs/change-map.md; ``--lsn-scan`` leaves the instance SIMPLE, so it scans page LSNs as
before); then, timed: dbsafe diff,
pgBackRest incr, pgBackRest diff (incr first, so that both pgBackRest backups cover exactly the
changes since the full); a synthetic full (``--synthetic``) after the same change, into a copy
of the vault as the full left it; and restores of the read full and of the synthetic full
from that vault (not started: only the time to write the data directory). Results:
bench/results/diff-<timestamp>.json and a table on stdout.
The dataset itself is never changed: the benchmark runs on a copy it deletes at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset  # noqa: E402
import run  # noqa: E402
from dataset import BASE, Cluster, log  # noqa: E402
from run import RESULTS, SERVER, du, measure, median_of, wait_archive_idle, warm  # noqa: E402

SEED = 20261125
TARGETS = {
    "diff_time_vs_pgbackrest_diff": 0.15,   # dbsafe diff time <= 0.15 x pgBackRest diff
    "diff_bytes_vs_pgbackrest_diff": 0.05,  # dbsafe diff bytes stored <= 0.05 x pgBackRest's
    "diff_data_read_vs_database": 0.05,     # data directory bytes read <= 5% of the instance
    "synthetic_time_vs_pgbackrest_full": 0.2,  # a synthetic full <= 0.2 x pgBackRest's full
    "synthetic_restore_vs_read_restore": 1.0,  # and restores as fast as a read full
}


class DiffBench(run.Bench):
    STEPS = ["dbsafe_full", "pgbackrest_full", "dbsafe_diff", "dbsafe_synthetic",
             "pgbackrest_incr", "pgbackrest_diff", "dbsafe_read_restore",
             "dbsafe_synthetic_restore"]

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.run_dir = BASE / f"diff-run-{self.stamp}"
        self.logs = self.run_dir / "logs"
        self.pgbr_dir = self.run_dir / "pgbackrest"
        self.pgbr_repo = self.pgbr_dir / "repo"
        self.pgbr_conf = self.pgbr_dir / "pgbackrest.conf"
        self.data_dir = BASE / f"diff-data-{self.stamp}"  # the dataset's copy
        self.cluster = Cluster(self.data_dir / "pgdata", self.data_dir / "socket",
                               self.data_dir / "server.log")
        run.SERVER_PGDATA[0] = self.cluster.pgdata
        self.changes: list[dict] = []
        self.pgbr_last: dict[str, str] = {}

    # setup and teardown ----------------------------------------------------------------------

    def copy_dataset(self) -> None:
        if Cluster().running:
            raise RuntimeError(f"the dataset's server ({dataset.PGDATA}) is running: someone "
                               "is using it; try again when it is stopped")
        self.data_dir.mkdir(parents=True)
        shutil.chown(self.data_dir, run.PG_USER, run.PG_USER)
        t0 = time.perf_counter()
        dataset.run(["cp", "-a", str(dataset.PGDATA), str(self.cluster.pgdata)])
        log(f"copied the dataset to {self.cluster.pgdata} in {time.perf_counter() - t0:.0f} s")

    def setup(self) -> None:
        super().setup()
        # the WAL since the dbsafe full stays in pg_wal until archive_since_full took it
        # (pgBackRest's archiving and the change's checkpoint would recycle it)
        self.cluster.psql("ALTER SYSTEM SET wal_keep_size = '4GB'")
        self.cluster.psql("SELECT pg_reload_conf()")

    def teardown(self) -> None:
        self.cluster.stop("immediate")
        saved = RESULTS / f"diff-{self.stamp}-logs"
        if self.logs.exists():
            shutil.copytree(self.logs, saved, dirs_exist_ok=True)
        for folder in (self.run_dir, self.data_dir):
            if self.args.keep_run:
                log(f"kept {folder}")
            elif folder.exists():
                shutil.rmtree(folder)
        log(f"removed the run's folders (step logs copied to {saved}); the dataset is unchanged")

    # the change ---------------------------------------------------------------------------------

    def change(self, rep: int) -> dict:
        """Update one tuple on each of ``--fraction`` of pgbench_accounts' heap pages."""
        c = self.cluster
        pages = int(c.psql("SELECT pg_relation_size('pgbench_accounts') / 8192"))
        rng = random.Random(SEED + rep)
        chosen = rng.sample(range(pages), round(pages * self.args.fraction))
        tids = ",".join(f"'({p},{rng.randint(1, 60)})'" for p in chosen)
        t0 = time.perf_counter()
        rows = int(c.psql(
            "WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + 1 "
            f"WHERE ctid = ANY(ARRAY[{tids}]::tid[]) RETURNING 1) SELECT count(*) FROM u"))
        c.psql("CHECKPOINT")
        wait_archive_idle(c.pgdata)  # the update's WAL is archived before anything is timed
        info = {"heap_pages": pages, "pages_chosen": len(chosen), "rows_updated": rows,
                "seconds": round(time.perf_counter() - t0, 2)}
        log(f"  change: {rows} rows updated on {len(chosen)} of {pages} heap pages")
        return info

    def accounts_files(self) -> list[str]:
        rel = self.cluster.psql("SELECT pg_relation_filepath('pgbench_accounts')")
        return [rel, *(f"{rel}.{n}" for n in range(1, 64))]

    def archive_since_full(self, vault: Path) -> dict:
        """Put the vault's instance in the FULL model and archive into it the finished WAL
        segments since its full started (what dbsafe's archive_command does as each one
        fills, in production: untimed here, as pgBackRest's archive-push is)."""
        from dbsafe.engines.postgres import wal
        from dbsafe.services.handle.vault_handle import Vault
        from dbsafe.services.inventory.servers import get_server
        from dbsafe.services.lifecycle.points import list_points
        from dbsafe.services.logchain.archive import archive_wal_file

        t0 = time.perf_counter()
        v = Vault.open(vault)
        try:
            server = get_server(v, SERVER)
            v.catalog.update_instance(server["instance_id"], recovery_model="FULL")
            server = get_server(v, SERVER)
            size = server["wal_segment_size"]
            first = wal.parse_lsn(list_points(v, SERVER)[-1]["start_lsn"]) // size
            now = wal.parse_lsn(self.cluster.psql("SELECT pg_current_wal_lsn()")) // size
            names = [wal.segment_file_name(1, n, size) for n in range(first, now)]
            for name in names:
                archive_wal_file(v, server, self.cluster.pgdata / "pg_wal" / name, name)
        finally:
            v.catalog.close()
        return {"segments_archived": len(names), "seconds": round(time.perf_counter() - t0, 2)}

    # steps ----------------------------------------------------------------------------------

    def vault_copy(self, snapshot: Path, folder: str) -> Path:
        """A copy of the vault as the full left it (so that a retry does not find its
        blocks stored already): packs and index files are hard links (written once, never
        changed), the catalog a real copy."""
        trial = self.run_dir / folder
        if trial.exists():
            shutil.rmtree(trial)
        dataset.run(["cp", "-al", str(snapshot), str(trial)])
        (trial / "catalog.sqlite").unlink()
        shutil.copy2(snapshot / "catalog.sqlite", trial / "catalog.sqlite")
        return trial

    def dbsafe_diff(self, snapshot: Path, name: str) -> dict:
        """A differential into a copy of the vault as the full left it."""
        trial = self.vault_copy(snapshot, "vault-diff")
        r = self.dbsafe_backup(trial, name, "diff", (
            "point_id", "base", "bytes_read", "bytes_stored", "pages_changed", "files",
            "files_whole", "files_delta", "files_unchanged", "files_not_read",
            "files_dropped", "wal_segments", "seconds", "bytes_read_data", "delta_source"))
        r["bytes_read_data"] = r["dbsafe_json"]["bytes_read_data"]
        r.update(self.heap_pages_in_diff(trial, r["dbsafe_json"]["point_id"]))
        self.diff_vault = trial
        return r

    def dbsafe_synthetic(self, snapshot: Path, name: str) -> dict:
        """A synthetic full (``--synthetic``) into a copy of the vault as the full left it,
        after the same change the differential saw."""
        trial = self.vault_copy(snapshot, "vault-synthetic")
        r = self.dbsafe_backup(trial, name, "full", (
            "point_id", "build", "bytes_read", "bytes_read_data", "bytes_stored",
            "pages_changed", "files", "wal_segments", "seconds", "delta_source"),
            ("--synthetic",))
        build = r["dbsafe_json"]["build"] or {}
        if build.get("kind") != "synthetic":
            raise RuntimeError(f"the full was read, not built: {build}")
        r["bytes_read_data"] = r["dbsafe_json"]["bytes_read_data"]
        self.synthetic_vault = trial
        return r

    def restore_point(self, vault: Path, point: str, name: str) -> dict:
        """A restore of ``point`` into a new folder (not started): its time."""
        target = run.fresh_path(self.run_dir / "restored")
        try:
            r = measure(name, [*self.dbsafe, "--vault", str(vault), "restore", SERVER,
                               "--point", point, "--to-pgdata", str(target), "--json"],
                        self.logs, self.env)
        finally:
            if target.exists():
                shutil.rmtree(target)
        r.pop("stdout")
        return r

    def heap_pages_in_diff(self, vault: Path, point_id: str) -> dict:
        """How many of pgbench_accounts' heap pages the differential stored (the check that
        about 1% changed)."""
        from dbsafe.vault.repository import Repository

        repo = Repository.open(vault)
        heap = set(self.accounts_files())
        entries = [e for e in repo.files_of(repo.load_manifest(point_id)) if e["path"] in heap]
        stored = sum(n for e in entries for _, n in e.get("delta", {}).get("pages", []))
        total = sum(e["size"] for e in entries) // 8192
        whole = [e["path"] for e in entries if "delta" not in e]
        return {"heap_pages_stored": stored, "heap_pages": total,
                "heap_fraction_stored": round(stored / total, 5) if total else None,
                "heap_files_whole": whole}

    def pgbackrest_backup(self, kind: str, name: str) -> dict:
        if kind in self.pgbr_last:  # a retry: remove the previous attempt first
            self.pgbackrest("expire", f"--set={self.pgbr_last.pop(kind)}")
        wait_archive_idle(self.cluster.pgdata)
        warm(self.cluster.pgdata)
        backup0, archive0 = du(self.pgbr_repo / "backup"), du(self.pgbr_repo / "archive")
        r = measure(name, self.pgbackrest_argv("backup", f"--type={kind}"), self.logs)
        wait_archive_idle(self.cluster.pgdata)  # its WAL is part of what it stores
        r["bytes_stored_backup"] = du(self.pgbr_repo / "backup") - backup0
        r["bytes_stored_archive"] = du(self.pgbr_repo / "archive") - archive0
        r["bytes_stored"] = r["bytes_stored_backup"] + r["bytes_stored_archive"]
        info = json.loads(self.pgbackrest("info", "--output=json"))
        last = info[0]["backup"][-1]
        r["pgbackrest_label"] = last["label"]
        r["pgbackrest_reference"] = last.get("reference")
        self.pgbr_last[kind] = last["label"]
        return r

    # the run ----------------------------------------------------------------------------------

    def run(self) -> dict:
        meta = dataset.ensure(False)
        t_start = time.perf_counter()
        self.copy_dataset()
        self.setup()
        self.db_bytes = dataset.data_bytes(self.cluster.pgdata)
        log(f"database: {self.db_bytes / 1e9:.3f} GB in the data dir (without pg_wal)")
        log(f"warming the page cache: {warm(self.cluster.pgdata):.1f} s")
        for rep in range(1, self.args.repeat + 1):
            log(f"--- repetition {rep}/{self.args.repeat}")
            self.repetition(rep)
        return self.report(meta, time.perf_counter() - t_start)

    def repetition(self, rep: int) -> None:
        state: dict = {}
        self.pgbr_last = {}

        def name(step: str) -> str:
            return f"{step}-{rep}-{len(self.runs.get(step, [])) + 1}"

        def dbsafe_full() -> dict:
            if "vault" in state:  # a retry: the full needs an empty vault again
                shutil.rmtree(state["vault"])
            state["vault"] = self.new_vault()
            return self.dbsafe_backup(state["vault"], name("dbsafe_full"))

        def pgbackrest_full() -> dict:
            self.pgbr_last.pop("full", None)
            return self.pgbackrest_full(name("pgbackrest_full"))

        # The fulls set the stage and are measured for reference only: not retried.
        retries, self.args.retries = self.args.retries, 0
        try:
            self.attempt("dbsafe_full", dbsafe_full)
            self.attempt("pgbackrest_full", pgbackrest_full)
        finally:
            self.args.retries = retries
        self.changes.append(self.change(rep))
        if not self.args.lsn_scan:
            self.changes[-1]["archived"] = self.archive_since_full(state["vault"])
        snapshot = self.run_dir / "vault-after-full"
        shutil.move(state["vault"], snapshot)
        self.attempt("dbsafe_diff", lambda: self.dbsafe_diff(snapshot, name("dbsafe_diff")))
        if not self.args.lsn_scan:  # a synthetic full needs the change map
            self.attempt("dbsafe_synthetic",
                         lambda: self.dbsafe_synthetic(snapshot, name("dbsafe_synthetic")))
        self.attempt("pgbackrest_incr",
                     lambda: self.pgbackrest_backup("incr", name("pgbackrest_incr")))
        self.attempt("pgbackrest_diff",
                     lambda: self.pgbackrest_backup("diff", name("pgbackrest_diff")))
        if not self.args.lsn_scan:
            read = self.runs["dbsafe_full"][-1]["dbsafe_json"]["point_id"]
            made = self.runs["dbsafe_synthetic"][-1]["dbsafe_json"]["point_id"]
            restores = [("dbsafe_read_restore", read), ("dbsafe_synthetic_restore", made)]
            for step, point in restores[::1 if rep % 2 else -1]:  # each goes first in turn
                self.attempt(step, lambda step=step, point=point: self.restore_point(
                    self.synthetic_vault, point, name(step)))
            shutil.rmtree(self.synthetic_vault)
        if self.args.verify_restore and rep == self.args.repeat:
            self.verify_restore(rep)
        shutil.rmtree(snapshot)
        shutil.rmtree(self.diff_vault)

    def verify_restore(self, rep: int) -> None:
        """Restore full + diff (timed, for information), start it, compare with the source."""
        self.source_facts = json.loads(self.cluster.psql(self.CHECK_SQL))
        target = run.fresh_path(self.run_dir / "restored")
        point = self.runs["dbsafe_diff"][-1]["dbsafe_json"]["point_id"]
        r = measure(f"dbsafe_diff_restore-{rep}", [
            *self.dbsafe, "--vault", str(self.diff_vault), "restore", SERVER, "--point", point,
            "--to-pgdata", str(target), "--json"], self.logs, self.env)
        r.pop("stdout")
        self.runs.setdefault("dbsafe_diff_restore", []).append(r)
        self.checks["dbsafe_diff"] = check = self.check_restored(target, "diff")
        log(f"  restored full + diff in {r['seconds']:.1f} s, started and queried: "
            f"matches source = {check['matches_source']}")
        shutil.rmtree(target)

    def report(self, meta: dict, elapsed: float) -> dict:
        med, counts = {}, {}
        for step, runs in self.runs.items():
            calm = [r for r in runs if not r.get("disturbed")]
            med[step] = median_of(calm or runs)
            counts[step] = {"runs": len(runs), "undisturbed": len(calm)}

        def ratio(a: str, b: str, key: str) -> float | None:
            return round(med[a][key] / med[b][key], 3) if med[b][key] else None

        data_read = med["dbsafe_diff"].get("bytes_read_data")
        ratios = {
            "diff_data_read_vs_database": round(data_read / self.db_bytes, 4)
            if data_read is not None else None,
            "diff_time_vs_pgbackrest_diff": ratio("dbsafe_diff", "pgbackrest_diff", "seconds"),
            "diff_bytes_vs_pgbackrest_diff": ratio("dbsafe_diff", "pgbackrest_diff",
                                                   "bytes_stored"),
            "diff_time_vs_pgbackrest_incr": ratio("dbsafe_diff", "pgbackrest_incr", "seconds"),
            "diff_bytes_vs_pgbackrest_incr": ratio("dbsafe_diff", "pgbackrest_incr",
                                                   "bytes_stored"),
            "diff_bytes_vs_dbsafe_full": ratio("dbsafe_diff", "dbsafe_full", "bytes_stored"),
            "diff_time_vs_dbsafe_full": ratio("dbsafe_diff", "dbsafe_full", "seconds"),
        }
        if "dbsafe_synthetic" in med:
            ratios.update({
                "synthetic_time_vs_pgbackrest_full": ratio("dbsafe_synthetic",
                                                           "pgbackrest_full", "seconds"),
                "synthetic_time_vs_dbsafe_full": ratio("dbsafe_synthetic", "dbsafe_full",
                                                       "seconds"),
                "synthetic_data_read_vs_database": round(
                    med["dbsafe_synthetic"]["bytes_read_data"] / self.db_bytes, 4),
                "synthetic_restore_vs_read_restore": ratio("dbsafe_synthetic_restore",
                                                           "dbsafe_read_restore", "seconds"),
            })
        result = {
            "timestamp": self.stamp, "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": run.CPUS,
                        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3]},
            "versions": {"dbsafe": self.code, "git_head_at_end": run.git_commit(),
                         "pgbackrest": run.version(["pgbackrest", "version"])},
            "dataset": meta, "database_bytes": self.db_bytes, "repeat": self.args.repeat,
            "change_fraction": self.args.fraction, "changes": self.changes,
            "median": med, "run_counts": counts, "runs": self.runs, "ratios": ratios,
            "targets": TARGETS,
            "meets_target": {k: ratios.get(k) is not None and ratios[k] <= t
                             for k, t in TARGETS.items() if k in ratios},
            "restore_checks": self.checks, "elapsed_seconds": round(elapsed, 1),
        }
        path = run.save_results(f"diff-{self.stamp}", result)
        print_table(result)
        log(f"results: {path}")
        return result


def print_table(res: dict) -> None:
    med = res["median"]
    print()
    print(f"database: {res['database_bytes'] / 1e9:.3f} GB; {res['repeat']} repetition(s), "
          f"median of the undisturbed runs; dbsafe {res['versions']['dbsafe']['git_head']}")
    for c in res["changes"]:
        print(f"change: {c['rows_updated']} rows on {c['pages_chosen']} of {c['heap_pages']} "
              "heap pages of pgbench_accounts")
    head = f"{'step':22} {'seconds':>8} {'stored MB':>10} {'CPU s':>7} {'others CPU s':>12} " \
           f"{'runs':>6}"
    print(head)
    print("-" * len(head))
    for step in [*DiffBench.STEPS, "dbsafe_diff_restore"]:
        if step not in med:
            continue
        m, c = med[step], res["run_counts"][step]
        stored = f"{m['bytes_stored'] / 1e6:10.2f}" if "bytes_stored" in m else f"{'-':>10}"
        print(f"{step:22} {m['seconds']:8.2f} {stored} "
              f"{m['cpu_user_seconds'] + m['cpu_sys_seconds']:7.1f} "
              f"{m.get('other_cpu_seconds', 0):12.1f} {c['undisturbed']}/{c['runs']:<4}")
    d = med["dbsafe_diff"]
    print(f"(dbsafe diff's own seconds {d.get('dbsafe_seconds')}; heap pages stored "
          f"{d.get('heap_pages_stored')} of {d.get('heap_pages')} = "
          f"{d.get('heap_fraction_stored')}; data directory bytes read "
          f"{d.get('bytes_read_data')})")
    sources = {r.get("dbsafe_json", {}).get("delta_source", {}).get("source")
               for r in res["runs"].get("dbsafe_diff", [])}
    print(f"pages chosen by: {', '.join(sorted(map(str, sources)))}")
    print()
    for key, value in res["ratios"].items():
        target = res["targets"].get(key)
        mark = "" if target is None else (
            f"  target <= {target}: {'PASS' if res['meets_target'][key] else 'FAIL'}")
        print(f"{key:34} {value!s:>8}{mark}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="repetitions (medians reported)")
    ap.add_argument("--fraction", type=float, default=0.01,
                    help="share of pgbench_accounts' heap pages changed (default 0.01)")
    run.retry_options(ap, retries=2, budget_minutes=14)
    ap.add_argument("--verify-restore", action="store_true",
                    help="after the last repetition: restore full + diff, start it and "
                         "compare with the source")
    ap.add_argument("--lsn-scan", action="store_true",
                    help="leave the instance in the SIMPLE model: the differential scans "
                         "page LSNs (the fallback) instead of reading the WAL's change map")
    ap.add_argument("--keep-run", action="store_true",
                    help=f"keep the run's folders under {BASE}")
    args = ap.parse_args()
    run.require_root()
    run.run_to_end(DiffBench(args), (RuntimeError, subprocess.CalledProcessError))


if __name__ == "__main__":
    main()
