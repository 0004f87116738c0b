#!/usr/bin/env python3
"""2,000 databases on one instance: discovery, auto-protection, one full backup, and the
2,001st refused (the support matrix's "2000 databases per server" row).

Run as root from the checkout:   .venv/bin/python bench/many_databases.py

Steps, each timed (see bench/README.md, *Many databases*):
  1. a fresh cluster (initdb --data-checksums; fsync=off, as a test cluster) and
     N-1 databases made with CREATE DATABASE ... STRATEGY FILE_COPY on parallel
     connections (with ``postgres`` that is N protectable databases; template1 is not);
  2. ``dbsafe server add`` (reads all N databases' sizes and files);
  3. auto-protection on, then ``dbsafe discover``: finds and protects all N;
  4. ``dbsafe discover`` again with nothing new (the scheduler's steady-state cost);
  5. ``dbsafe backup`` (one full of all N: the databases are copies of one template, so
     the vault stores their blocks once), ``dbsafe verify`` and ``dbsafe restore`` of it
     (each with its peak RSS);
  6. one more database, ``dbsafe discover``: not protected, reported; and the protect
     check refuses it with limit.items_per_server.
Everything lives in /var/tmp/dbsafe-bench/many-<time> and is removed at the end (--keep
keeps it). Results: a table on stdout and bench/results/many-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dataset import BASE, BIN, Cluster, as_postgres, chown_postgres, log, run  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results"
SETTINGS = {"listen_addresses": "''", "fsync": "off", "full_page_writes": "off",
            "autovacuum": "off", "max_connections": "50", "logging_collector": "off"}


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
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "dbsafe",
                           "--vault", str(vault), *args, "--json"], capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dbsafe {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--databases", type=int, default=2000,
                    help="protectable databases, postgres included (default 2000)")
    ap.add_argument("--workers", type=int, default=2, help="connections creating databases")
    ap.add_argument("--keep", action="store_true", help="keep the cluster and the vault")
    args = ap.parse_args()
    if args.databases < 2000:  # a smaller trial run: lower the limit to match (see limits.py)
        os.environ["DBSAFE_MAX_ITEMS_PER_SERVER"] = str(args.databases)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    area = BASE / f"many-{stamp}"
    area.mkdir(parents=True)
    chown_postgres(BASE)
    chown_postgres(area)
    pgdata, vault = area / "pgdata", area / "vault"
    run(as_postgres([str(BIN / "initdb"), "--data-checksums", "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--locale", "C", "-D", str(pgdata)]))
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write("".join(f"{k} = {v}\n" for k, v in SETTINGS.items()))
    cluster = Cluster(pgdata, area / "socket", area / "server.log")
    res: dict = {"databases": args.databases, "time": stamp, "cpus": os.cpu_count()}
    try:
        cluster.start()
        names = [f"db{i:04d}" for i in range(1, args.databases)]
        log(f"creating {len(names)} databases")
        res["create_s"] = create_databases(cluster, names, args.workers)
        res["data_bytes"] = du(pgdata / "base")
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
        log("full backup")
        res["backup_s"], out = dbsafe(vault, "backup", "many")
        # the backup is the largest child so far: its peak RSS
        res["backup_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        res.update(backup_seconds_own=out["seconds"], bytes_read=out["bytes_read"],
                   bytes_stored=out["bytes_stored"], files_backed_up=out["files"],
                   blocks_new=out["blocks_new"], blocks_reused=out["blocks_reused"],
                   vault_bytes=du(vault))
        _, out = dbsafe(vault, "points", "many")
        point = out["points"][0]["point_id"]
        res["verify_s"], res["verify_peak_rss_mb"] = timed_rss(vault, "verify", "many",
                                                               "--point", point)
        dbsafe(vault, "vault", "restore-roots", "add", str(area / "restores"))
        res["restore_s"], res["restore_peak_rss_mb"] = timed_rss(
            vault, "restore", "many", "--point", point, "--to-pgdata",
            str(area / "restores" / "pgdata"))
        log(f"verify {res['verify_s']:.1f} s, {res['verify_peak_rss_mb']:.0f} MB; restore "
            f"{res['restore_s']:.1f} s, {res['restore_peak_rss_mb']:.0f} MB")
        shutil.rmtree(area / "restores" / "pgdata")
        held = out["points"][0]["databases"]
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
            ("dbsafe verify", f"{res['verify_s']:.1f} s",
             f"peak RSS {res['verify_peak_rss_mb']:.0f} MB"),
            ("dbsafe restore", f"{res['restore_s']:.1f} s",
             f"peak RSS {res['restore_peak_rss_mb']:.0f} MB")]
    width = max(len(r[0]) for r in rows)
    for step, secs, what in rows:
        print(f"{step:<{width}}  {secs:>8}  {what}")
    print(f"database {n + 1} (discover): {res['over_limit_warning']}")
    print(f"database {n + 1} (protect):  {res['over_limit_refusal']}")


if __name__ == "__main__":
    main()
