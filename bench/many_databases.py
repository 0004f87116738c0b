#!/usr/bin/env python3
"""2,000 databases on one instance: discovery, auto-protection, a full and a differential
backup side by side with pgBackRest's, and the 2,001st refused (the support matrix's "2000
databases per server" row).

Run as root from the checkout:   .venv/bin/python bench/many_databases.py

Steps, each timed (see bench/README.md, *Many databases*):
  1. a fresh cluster (initdb --data-checksums; fsync=off, as a test cluster) and
     N-1 databases made with CREATE DATABASE ... STRATEGY FILE_COPY on parallel
     connections (with ``postgres`` that is N protectable databases; template1 is not);
  2. pgBackRest set up on it as bench/run.py does (untimed): archive_mode = on with
     ``archive_command = pgbackrest archive-push``, a restart, ``stanza-create``,
     ``check``; its config is run.py's ``pgbackrest_conf`` (zstd level 1, process-max=2,
     start-fast), its repo, logs and lock below the run's area, owned by postgres. dbsafe
     (the SIMPLE model: no archiving) backs up beside it with a coexistence warning;
  3. ``dbsafe server add`` (reads all N databases' sizes and files);
  4. auto-protection on, then ``dbsafe discover``: finds and protects all N;
  5. ``dbsafe discover`` again with nothing new (the scheduler's steady-state cost);
  6. ``dbsafe backup`` (one full of all N: the databases are copies of one template, so
     the vault stores their blocks once), then ``dbsafe backup --type diff`` with nothing
     changed;
  7. on the same cluster, unchanged: ``pgbackrest backup --type=full``, then
     ``--type=diff`` with nothing changed;
  8. ``dbsafe verify`` of the full, ``dbsafe restore`` of the full and of the
     differential (full + diff), ``pgbackrest restore`` of its latest backup (its diff:
     full + diff) into a new folder, never started; each restored folder removed;
  9. one more database, ``dbsafe discover``: not protected, reported; and the protect
     check refuses it with limit.items_per_server.
Every dbsafe and pgBackRest step of 6-8 runs under GNU time (``/usr/bin/time -f %M``): wall
seconds and peak RSS. For dbsafe (one process) that is its peak RSS; for pgBackRest (a main
process plus process-max local workers) %M is the largest single process of its tree, so
the sum of the tree's pgbackrest processes is also sampled every 50 ms and reported. The
result has dbsafe / pgBackRest ratios for the full, the no-change diff and the restore
(dbsafe's restore of the diff against pgBackRest's, both restoring full + diff) and the
issue's targets: each ratio <= 0.4, dbsafe's peak RSS <= 300 MB in each step.
Everything lives in /var/tmp/dbsafe-bench/many-<time> and is removed at the end (--keep
keeps it). Results: a table on stdout and bench/results/many-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dataset import BASE, BIN, Cluster, as_postgres, chown_postgres, log, run  # noqa: E402
from run import (  # noqa: E402  (run.py's pgBackRest config)
    STANZA,
    compile_dbsafe,
    git_commit,
    pgbackrest_conf,
)

ROOT = HERE.parent
RESULTS = HERE / "results"
SETTINGS = {"listen_addresses": "''", "fsync": "off", "full_page_writes": "off",
            "autovacuum": "off", "max_connections": "50", "logging_collector": "off"}
PAGE = os.sysconf("SC_PAGE_SIZE")
TARGETS = {"ratio": 0.4,              # dbsafe time <= 0.4 x pgBackRest's (full, diff, restore)
           "dbsafe_peak_rss_mb": 300}  # in each of dbsafe's full, diff and restore


def dbsafe(vault: Path, *args: str) -> tuple[float, dict]:
    """Run ``dbsafe --vault VAULT ARGS --json``; (wall seconds, parsed output)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dbsafe", "--vault", str(vault), *args,
                           "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dbsafe {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return seconds, json.loads(proc.stdout)


def timed_rss(vault: Path, *args: str) -> tuple[float, float]:
    """Run ``dbsafe --vault VAULT ARGS --json`` under GNU time: (wall seconds, its peak
    RSS in MB)."""
    seconds, rss, _ = timed_json(vault, *args)
    return seconds, rss


def timed_json(vault: Path, *args: str) -> tuple[float, float, dict]:
    """``timed_rss`` and the command's parsed JSON output."""
    os.sync()  # an earlier step's writeback (a restore, a removed folder) is not timed here
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "dbsafe",
                           "--vault", str(vault), *args, "--json"], capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dbsafe {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024, json.loads(proc.stdout)


def _pgbackrest_rss(root: int) -> int:
    """Bytes of RSS of the pgbackrest processes below ``root`` right now."""
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            comm = stat[stat.index(b"(") + 1:stat.rindex(b")")]
            rest = stat[stat.rindex(b")") + 2:].split()  # state, ppid, ... rss is 24th
            procs[int(name)] = (int(rest[1]), comm, int(rest[21]) * PAGE)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        if pid in procs and procs[pid][1] == b"pgbackrest":
            total += procs[pid][2]
    return total


class PgBackRest:
    """pgBackRest on the bench's cluster: config, repo, logs and lock in ``folder`` (owned
    by postgres); run as the postgres OS user."""

    def __init__(self, folder: Path, cluster: Cluster) -> None:
        self.folder, self.cluster = folder, cluster
        self.repo, self.conf = folder / "repo", folder / "pgbackrest.conf"
        for sub in (folder, self.repo, folder / "log", folder / "lock", folder / "spool"):
            sub.mkdir(parents=True, exist_ok=True)
            chown_postgres(sub)

    def write_conf(self) -> None:
        c = self.cluster
        self.conf.write_text(pgbackrest_conf(self.repo, self.folder, c.pgdata, c.port,
                                             c.socket_dir))
        self.conf.chmod(0o644)

    def setup(self) -> None:
        """bench/run.py's setup: archive_mode on with archive-push, restart, stanza-create,
        check."""
        self.write_conf()
        command = f"pgbackrest --config={self.conf} --stanza={STANZA} archive-push %p"
        self.cluster.psql("ALTER SYSTEM SET archive_mode = on")
        self.cluster.psql(f"ALTER SYSTEM SET archive_command = '{command}'")
        log("archive_mode = on, archive_command = pgbackrest archive-push: restarting")
        self.cluster.restart()
        self.write_conf()  # the restart may have picked another free port
        self.run("stanza-create")
        self.run("check")
        log("pgBackRest stanza-create and check: ok")

    def argv(self, *args: str) -> list[str]:
        return as_postgres(["pgbackrest", f"--config={self.conf}", f"--stanza={STANZA}",
                            *args])

    def run(self, *args: str) -> str:
        return run(self.argv(*args)).stdout

    def timed(self, *args: str) -> tuple[float, float, float]:
        """Run it under GNU time: (wall seconds, peak RSS MB of its largest process (%M),
        peak of the sum of its pgbackrest processes' RSS in MB, sampled every 50 ms)."""
        peak, done = [0], threading.Event()
        os.sync()  # as timed_json
        t0 = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", *self.argv(*args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def poll() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], _pgbackrest_rss(proc.pid))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        stdout, stderr = proc.communicate()
        seconds = time.perf_counter() - t0
        done.set()
        poller.join()
        if proc.returncode != 0:
            raise RuntimeError(f"pgbackrest {' '.join(args)} failed ({proc.returncode}): "
                               f"{stdout}{stderr}")
        largest = int(stderr.strip().splitlines()[-1]) / 1024
        return seconds, largest, max(peak[0] / 1024 / 1024, largest)


def fresh_cluster(name: str, **settings: str) -> tuple[Path, Cluster]:
    """(the run's area BASE/``name``, a new cluster in it, not started): initdb
    --data-checksums, ``SETTINGS`` and ``settings``."""
    area = BASE / name
    area.mkdir(parents=True)
    chown_postgres(BASE)
    chown_postgres(area)
    pgdata = area / "pgdata"
    run(as_postgres([str(BIN / "initdb"), "--data-checksums", "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--locale", "C", "-D", str(pgdata)]))
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write("".join(f"{k} = {v}\n" for k, v in {**SETTINGS, **settings}.items()))
    return area, Cluster(pgdata, area / "socket", area / "server.log")


def create_databases(cluster: Cluster, names: list[str], workers: int) -> float:
    def make(chunk: list[str]) -> None:
        with psycopg.connect(host=str(cluster.socket_dir), port=cluster.port,
                             user="postgres", dbname="postgres", autocommit=True) as conn:
            for name in chunk:
                conn.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')

    t0 = time.perf_counter()
    chunks = [names[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(make, chunks))
    return time.perf_counter() - t0


def set_auto_protection(vault: Path, server: str, policy: str) -> None:
    """Turn auto-protection on through the catalog (what ``dbsafe protect NAME --auto
    --policy P`` records)."""
    from dbsafe.services.handle.vault_handle import Vault

    v = Vault.open(vault)
    v.catalog.update_instance(v.catalog.get_server(server)["instance_id"],
                              auto_protect_policy=policy)
    v.catalog.close()


def refused_over_limit(vault: Path, server: str, name: str) -> str:
    from dbsafe.core.errors import DbsafeError
    from dbsafe.services.handle.vault_handle import Vault
    from dbsafe.services.inventory import limits

    v = Vault.open(vault)
    try:
        limits.check_protect(v, v.catalog.get_server(server), [name], auto=False)
    except DbsafeError as exc:
        return f"{exc.code}: {exc.message}"
    finally:
        v.catalog.close()
    raise AssertionError(f"protecting {name} was not refused")


def du(path: Path) -> int:
    return int(run(["du", "-sb", str(path)]).stdout.split()[0])


def warnings_of(out: dict) -> list[str]:
    """A backup's warnings (e.g. coexistence.archive_command beside pgBackRest), as codes."""
    return [w.get("code", str(w)) if isinstance(w, dict) else str(w)
            for w in out.get("warnings") or []]


def pgbackrest_backups(pgbr: PgBackRest) -> dict:
    """What pgBackRest's info says of its full and diff: bytes copied and stored, labels."""
    info = json.loads(pgbr.run("info", "--output=json"))[0]["backup"]
    out = {}
    for b in info:
        key = {"full": "pgbr_full", "diff": "pgbr_diff"}[b["type"]]
        out.update({f"{key}_bytes_read": b["info"]["delta"],  # what it copied
                    f"{key}_bytes_stored": b["info"]["repository"]["delta"],
                    f"{key}_label": b["label"]})
    return out


def comparison(res: dict) -> dict:
    """dbsafe / pgBackRest (time) for the full, the no-change diff and the restore (each side
    restoring its diff: full + diff), and whether the issue's targets are met."""
    ratios = {"full_vs_pgbackrest": res["backup_s"] / res["pgbr_full_s"],
              "diff_vs_pgbackrest": res["diff_s"] / res["pgbr_diff_s"],
              "restore_vs_pgbackrest": res["restore_diff_s"] / res["pgbr_restore_s"],
              # for information: dbsafe's restore of the full against pgBackRest's of its diff
              "restore_full_vs_pgbackrest": res["restore_s"] / res["pgbr_restore_s"]}
    rss = {k: res[f"{k}_peak_rss_mb"] for k in ("backup", "diff", "restore", "restore_diff")}
    met = {k: ratios[k] <= TARGETS["ratio"] for k in
           ("full_vs_pgbackrest", "diff_vs_pgbackrest", "restore_vs_pgbackrest")}
    met.update({f"{k}_peak_rss": v <= TARGETS["dbsafe_peak_rss_mb"] for k, v in rss.items()})
    return {"ratios": {k: round(v, 3) for k, v in ratios.items()}, "targets": TARGETS,
            "targets_met": met,
            "pgbackrest_rss_note": "pgbr_*_peak_rss_mb: GNU time %M, the largest single "
                                   "process of pgBackRest's tree (main or a local worker); "
                                   "pgbr_*_peak_rss_sum_mb: the peak of the sum of its "
                                   "pgbackrest processes' RSS, sampled every 50 ms"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--databases", type=int, default=2000,
                    help="protectable databases, postgres included (default 2000)")
    ap.add_argument("--workers", type=int, default=2, help="connections creating databases")
    ap.add_argument("--keep", action="store_true", help="keep the cluster and the vault")
    ap.add_argument("--settle", type=float, default=0, metavar="SECONDS",
                    help="start the full at least this long after the databases were made "
                         "(default 0: at once). A differential reads or scans a file whose "
                         "mtime lies within 60 s of its base's start (MTIME_MARGIN in "
                         "services/backup/differential.py); 61 makes the no-change "
                         "differential one of data at rest")
    args = ap.parse_args()
    if args.databases < 2000:  # a smaller trial run: lower the limit to match (see limits.py)
        os.environ["DBSAFE_MAX_ITEMS_PER_SERVER"] = str(args.databases)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    area, cluster = fresh_cluster(f"many-{stamp}")
    pgdata, vault = cluster.pgdata, area / "vault"
    res: dict = {"databases": args.databases, "time": stamp, "cpus": os.cpu_count(),
                 "dbsafe_code": git_commit(), "pgbackrest": run(["pgbackrest", "version"])
                 .stdout.strip(), "dbsafe_bytecode": compile_dbsafe(sys.executable)}
    try:
        cluster.start()
        names = [f"db{i:04d}" for i in range(1, args.databases)]
        log(f"creating {len(names)} databases")
        res["create_s"] = create_databases(cluster, names, args.workers)
        created = time.monotonic()
        res["data_bytes"] = du(pgdata / "base")
        pgbr = PgBackRest(area / "pgbackrest", cluster)
        pgbr.setup()  # restarts the cluster (archive_mode): before dbsafe records its port
        dbsafe(vault, "vault", "init")
        res["server_add_s"], _ = dbsafe(vault, "server", "add", "many", "--pgdata",
                                        str(pgdata), "--port", str(cluster.port))
        set_auto_protection(vault, "many", "default")
        log("discovery with auto-protection")
        res["discover_protect_s"], out = dbsafe(vault, "discover", "many")
        res["auto_protected"] = len(out["auto_protected"])
        assert res["auto_protected"] == args.databases, (res, out["warnings"])
        res["discover_again_s"], out = dbsafe(vault, "discover", "many")
        assert out["auto_protected"] == [] and out["new"] == [], out["new"][:10]
        res["files"] = sum(d["file_count"] for d in out["databases"])
        res["settle_s"] = args.settle
        if (wait := args.settle - (time.monotonic() - created)) > 0:
            log(f"--settle: waiting {wait:.0f} s before the full")
            time.sleep(wait)
        log("dbsafe full backup")
        # under GNU time: its own peak RSS (RUSAGE_CHILDREN would be the largest child so
        # far, which need not be the backup)
        res["backup_s"], res["backup_peak_rss_mb"], out = timed_json(vault, "backup", "many")
        res.update(backup_seconds_own=out["seconds"], bytes_read=out["bytes_read"],
                   bytes_stored=out["bytes_stored"], files_backed_up=out["files"],
                   blocks_new=out["blocks_new"], blocks_reused=out["blocks_reused"],
                   vault_bytes=du(vault))
        point = out["point_id"]
        res["backup_warnings"] = warnings_of(out)
        log(f"  {res['backup_s']:.1f} s, {res['backup_peak_rss_mb']:.0f} MB")
        log("dbsafe differential, nothing changed")
        res["diff_s"], res["diff_peak_rss_mb"], out = timed_json(vault, "backup", "many",
                                                                 "--type", "diff")
        assert out["type"] == "diff", out
        diff_point = out["point_id"]
        res.update(diff_seconds_own=out["seconds"], diff_bytes_read=out["bytes_read"],
                   diff_bytes_stored=out["bytes_stored"], diff_files=out["files"],
                   diff_warnings=warnings_of(out))
        log(f"  {res['diff_s']:.1f} s, {res['diff_peak_rss_mb']:.0f} MB, read "
            f"{res['diff_bytes_read'] / 1e6:.1f} MB")
        log("pgBackRest full backup")
        res["pgbr_full_s"], res["pgbr_full_peak_rss_mb"], res["pgbr_full_peak_rss_sum_mb"] = \
            pgbr.timed("backup", "--type=full")
        log(f"  {res['pgbr_full_s']:.1f} s, {res['pgbr_full_peak_rss_mb']:.0f} MB")
        log("pgBackRest differential, nothing changed")
        res["pgbr_diff_s"], res["pgbr_diff_peak_rss_mb"], res["pgbr_diff_peak_rss_sum_mb"] = \
            pgbr.timed("backup", "--type=diff")
        log(f"  {res['pgbr_diff_s']:.1f} s, {res['pgbr_diff_peak_rss_mb']:.0f} MB")
        res.update(pgbackrest_backups(pgbr))
        _, out = dbsafe(vault, "points", "many")
        points = {p["point_id"]: p for p in out["points"]}
        res["verify_s"], res["verify_peak_rss_mb"] = timed_rss(vault, "verify", "many",
                                                               "--point", point)
        dbsafe(vault, "vault", "restore-roots", "add", str(area / "restores"))
        res["restore_s"], res["restore_peak_rss_mb"] = timed_rss(
            vault, "restore", "many", "--point", point, "--to-pgdata",
            str(area / "restores" / "pgdata"))
        log(f"verify {res['verify_s']:.1f} s, {res['verify_peak_rss_mb']:.0f} MB; restore "
            f"{res['restore_s']:.1f} s, {res['restore_peak_rss_mb']:.0f} MB")
        shutil.rmtree(area / "restores" / "pgdata")
        res["restore_diff_s"], res["restore_diff_peak_rss_mb"] = timed_rss(
            vault, "restore", "many", "--point", diff_point, "--to-pgdata",
            str(area / "restores" / "pgdata-diff"))
        res["restore_diff_bytes"] = du(area / "restores" / "pgdata-diff")
        log(f"restore of the diff {res['restore_diff_s']:.1f} s, "
            f"{res['restore_diff_peak_rss_mb']:.0f} MB")
        shutil.rmtree(area / "restores" / "pgdata-diff")
        target = area / "pgbackrest" / "restore"  # never started
        target.mkdir(mode=0o700)
        chown_postgres(target)
        (res["pgbr_restore_s"], res["pgbr_restore_peak_rss_mb"],
         res["pgbr_restore_peak_rss_sum_mb"]) = pgbr.timed(f"--pg1-path={target}", "restore")
        res["pgbr_restore_bytes"] = du(target)
        log(f"pgBackRest restore of its diff {res['pgbr_restore_s']:.1f} s, "
            f"{res['pgbr_restore_peak_rss_mb']:.0f} MB")
        shutil.rmtree(target)
        res.update(comparison(res))
        held = points[point]["databases"]
        res["databases_in_backup"] = len(json.loads(held) if isinstance(held, str) else held)
        # template1 too: every backup holds the template databases (CREATE DATABASE's source)
        assert res["databases_in_backup"] == args.databases + 1, res
        extra = f"db{args.databases:04d}"
        create_databases(cluster, [extra], 1)
        _, out = dbsafe(vault, "discover", "many")
        assert extra in out["new"] and extra not in out["auto_protected"], out["warnings"]
        res["over_limit_warning"] = out["warnings"][0]
        res["over_limit_refusal"] = refused_over_limit(vault, "many", extra)
    finally:
        cluster.stop("immediate")
        if not args.keep:
            shutil.rmtree(area, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"many-{stamp}.json").write_text(json.dumps(res, indent=2))
    print_table(res)


def print_table(res: dict) -> None:
    n = res["databases"]

    def pgbr_rss(step: str) -> str:
        return (f"peak RSS {res[f'pgbr_{step}_peak_rss_mb']:.0f} MB largest process, "
                f"{res[f'pgbr_{step}_peak_rss_sum_mb']:.0f} MB all its processes")
    rows = [("create databases", f"{res['create_s']:.1f} s",
             f"{n - 1} x CREATE DATABASE ... FILE_COPY, {res['data_bytes'] / 1e9:.1f} GB"),
            ("dbsafe server add", f"{res['server_add_s']:.1f} s", f"reads {n + 1} databases"),
            ("dbsafe discover (auto-protect)", f"{res['discover_protect_s']:.1f} s",
             f"{res['auto_protected']} protected"),
            ("dbsafe discover (no change)", f"{res['discover_again_s']:.1f} s",
             f"{res['files']} files counted"),
            ("dbsafe backup (full)", f"{res['backup_s']:.1f} s",
             f"own {res['backup_seconds_own']:.1f} s; {res['databases_in_backup']} databases, "
             f"{res['files_backed_up']} files, read {res['bytes_read'] / 1e9:.1f} GB, "
             f"stored {res['bytes_stored'] / 1e6:.1f} MB, vault {res['vault_bytes'] / 1e6:.1f} MB, "
             f"peak RSS {res['backup_peak_rss_mb']:.0f} MB"),
            ("dbsafe backup (diff, no change)", f"{res['diff_s']:.1f} s",
             f"own {res['diff_seconds_own']:.1f} s; {res['diff_files']} files, read "
             f"{res['diff_bytes_read'] / 1e6:.1f} MB, stored "
             f"{res['diff_bytes_stored'] / 1e6:.1f} MB, peak RSS "
             f"{res['diff_peak_rss_mb']:.0f} MB"),
            ("pgBackRest full", f"{res['pgbr_full_s']:.1f} s",
             f"copied {res['pgbr_full_bytes_read'] / 1e9:.1f} GB, stored "
             f"{res['pgbr_full_bytes_stored'] / 1e6:.1f} MB, " + pgbr_rss("full")),
            ("pgBackRest diff (no change)", f"{res['pgbr_diff_s']:.1f} s",
             f"copied {res['pgbr_diff_bytes_read'] / 1e6:.1f} MB, stored "
             f"{res['pgbr_diff_bytes_stored'] / 1e6:.1f} MB, " + pgbr_rss("diff")),
            ("dbsafe verify", f"{res['verify_s']:.1f} s",
             f"peak RSS {res['verify_peak_rss_mb']:.0f} MB"),
            ("dbsafe restore", f"{res['restore_s']:.1f} s",
             f"of the full, peak RSS {res['restore_peak_rss_mb']:.0f} MB"),
            ("dbsafe restore (diff)", f"{res['restore_diff_s']:.1f} s",
             f"of the diff (full + diff), {res['restore_diff_bytes'] / 1e9:.1f} GB, "
             f"peak RSS {res['restore_diff_peak_rss_mb']:.0f} MB"),
            ("pgBackRest restore (diff)", f"{res['pgbr_restore_s']:.1f} s",
             f"of its diff (full + diff), {res['pgbr_restore_bytes'] / 1e9:.1f} GB, "
             + pgbr_rss("restore"))]
    width = max(len(r[0]) for r in rows)
    for step, secs, what in rows:
        print(f"{step:<{width}}  {secs:>8}  {what}")
    ratios, met = res["ratios"], res["targets_met"]
    limit, rss_limit = res["targets"]["ratio"], res["targets"]["dbsafe_peak_rss_mb"]
    print(f"dbsafe / pgBackRest (time; target <= {limit}):")
    for label, key, rss in (("full", "full_vs_pgbackrest", "backup"),
                            ("diff (no change)", "diff_vs_pgbackrest", "diff"),
                            ("restore (diff)", "restore_vs_pgbackrest", "restore_diff")):
        print(f"  {label:<17} {ratios[key]:6.3f}  {'met' if met[key] else 'NOT met'};  "
              f"dbsafe peak RSS {res[f'{rss}_peak_rss_mb']:.0f} MB (target <= {rss_limit}: "
              f"{'met' if met[f'{rss}_peak_rss'] else 'NOT met'})")
    print(f"  {'restore (full)':<17} {ratios['restore_full_vs_pgbackrest']:6.3f}  "
          "(dbsafe's restore of the full, for information)")
    print(f"database {n + 1} (discover): {res['over_limit_warning']}")
    print(f"database {n + 1} (protect):  {res['over_limit_refusal']}")


if __name__ == "__main__":
    main()
