#!/usr/bin/env python3
"""Build (or reuse) the benchmark's PostgreSQL 15 dataset cluster.

The cluster lives in /var/tmp/dbsafe-bench/dataset/pgdata, made with
``initdb --data-checksums -A trust``; it holds ``pgbench -i -s 100`` (~1.5 GB) plus the table
``bench_text`` of hard-to-compress text (md5 hex strings drawn with a fixed ``setseed``,
~0.95 GB), frozen, analysed and checkpointed. ``dataset.json`` next to it is written only once
the build completed: a cluster without it is rebuilt.

Usage (as root):  python3 bench/dataset.py [--rebuild] [--keep-running]

run.py imports this module: ``ensure()`` builds or reuses the dataset, ``Cluster`` starts and
stops the server (always as the postgres OS user, on a free port, with a private socket
folder and ``listen_addresses = ''`` so it never clashes with other clusters).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BASE = Path("/var/tmp/dbsafe-bench")
DATASET_DIR = BASE / "dataset"
PGDATA = DATASET_DIR / "pgdata"
SOCKET_DIR = DATASET_DIR / "socket"
SERVER_LOG = DATASET_DIR / "server.log"
META = DATASET_DIR / "dataset.json"
BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"

SCALE = 100
TEXT_ROWS = 3_200_000   # ~0.95 GB: rows of 8 md5 hex strings (256 chars) each
TEXT_MD5_PER_ROW = 8
SEED = 0.42
DATASET_VERSION = 1     # bump when the recipe changes: an old dataset is then rebuilt

SERVER_SETTINGS = {
    "listen_addresses": "''",
    "shared_buffers": "'256MB'",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'30min'",
    "wal_level": "'replica'",
    "max_wal_senders": "10",
    "logging_collector": "off",
}


def log(msg: str) -> None:
    print(f"[dataset {datetime.now():%H:%M:%S}] {msg}", flush=True)


def as_postgres(argv: list[str]) -> list[str]:
    """Run ``argv`` as the postgres OS user (we are root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", PG_USER, "--", *argv]


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, text=True, capture_output=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(argv)}\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def chown_postgres(path: Path) -> None:
    shutil.chown(path, PG_USER, PG_USER)


def port_free(port: int, socket_dir: Path) -> bool:
    if (socket_dir / f".s.PGSQL.{port}").exists():
        return False
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((addr, port))
        except OSError as exc:
            if exc.errno == 98:  # in use
                return False
    return True


def free_port(socket_dir: Path, start: int = 56500) -> int:
    for port in range(start, start + 1000):
        if port != 5432 and port_free(port, socket_dir):
            return port
    raise RuntimeError("no free port")


class Cluster:
    """A PostgreSQL cluster run as the postgres user on a free port and a private socket."""

    def __init__(self, pgdata: Path = PGDATA, socket_dir: Path = SOCKET_DIR,
                 server_log: Path = SERVER_LOG) -> None:
        self.pgdata = pgdata
        self.socket_dir = socket_dir
        self.server_log = server_log
        self.port: int | None = None
        self.started = False  # only a server this object started is ever stopped by it

    @property
    def running(self) -> bool:
        return subprocess.run(as_postgres([str(BIN / "pg_ctl"), "-D", str(self.pgdata),
                                           "status"]), capture_output=True).returncode == 0

    def start(self) -> None:
        if self.running:
            # Someone else's (or an interrupted run's): never stop a server we did not start.
            raise RuntimeError(
                f"the cluster in {self.pgdata} is already running, started outside this "
                "script; stop it first (runuser -u postgres -- "
                f"{BIN / 'pg_ctl'} -D {self.pgdata} stop) or wait until its user is done")
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        chown_postgres(self.socket_dir)
        self.port = free_port(self.socket_dir)
        run(as_postgres([str(BIN / "pg_ctl"), "-D", str(self.pgdata), "-l",
                         str(self.server_log), "-w", "-t", "300",
                         "-o", f"-p {self.port} -k {self.socket_dir}", "start"]))
        self.started = True
        log(f"server started on port {self.port} (socket {self.socket_dir})")

    def stop(self, mode: str = "fast") -> None:
        if not self.started:
            return
        if self.running:
            run(as_postgres([str(BIN / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w",
                             "-t", "300", "stop"]))
            log("server stopped")
        self.started = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def conn_args(self) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(self.port), "-U", PG_USER]

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL with psql as root connecting as the postgres role; returns stdout."""
        proc = run([str(BIN / "psql"), *self.conn_args(), "-d", db, "-X", "-q", "-A", "-t",
                    "-v", "ON_ERROR_STOP=1", "-c", sql])
        return proc.stdout.strip()


def data_bytes(pgdata: Path = PGDATA) -> int:
    """Apparent size of the files a base backup reads: the data dir without pg_wal."""
    total = 0
    for root, dirs, files in os.walk(pgdata):
        if Path(root) == pgdata and "pg_wal" in dirs:
            dirs.remove("pg_wal")
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def build() -> dict:
    """initdb + pgbench -i -s 100 + bench_text, VACUUM FREEZE ANALYZE, CHECKPOINT."""
    t0 = time.perf_counter()
    cluster = Cluster()
    if PGDATA.exists() and cluster.running:
        raise RuntimeError(f"cannot rebuild: the cluster in {PGDATA} is running (started "
                           "outside this script); stop it first")
    if DATASET_DIR.exists():
        shutil.rmtree(DATASET_DIR)
    DATASET_DIR.mkdir(parents=True)
    chown_postgres(DATASET_DIR)
    BASE.chmod(0o755)
    log(f"initdb --data-checksums -A trust {PGDATA}")
    run(as_postgres([str(BIN / "initdb"), "--data-checksums", "-A", "trust", "-U", PG_USER,
                     "-D", str(PGDATA)]))
    with open(PGDATA / "postgresql.conf", "a") as f:
        f.write("\n# dbsafe benchmark\n")
        for k, v in SERVER_SETTINGS.items():
            f.write(f"{k} = {v}\n")
    cluster.start()
    try:
        log(f"pgbench -i -s {SCALE}")
        t = time.perf_counter()
        run(as_postgres([str(BIN / "pgbench"), "-i", "-s", str(SCALE), "-q",
                         "-h", str(SOCKET_DIR), "-p", str(cluster.port), "-U", PG_USER,
                         "postgres"]))
        log(f"  done in {time.perf_counter() - t:.0f} s")
        log(f"bench_text: {TEXT_ROWS} rows of {TEXT_MD5_PER_ROW} md5 strings, "
            f"setseed({SEED})")
        t = time.perf_counter()
        payload = " || ".join(["md5(random()::text)"] * TEXT_MD5_PER_ROW)
        cluster.psql(
            "CREATE TABLE bench_text (id integer PRIMARY KEY, payload text NOT NULL);"
            f"SELECT setseed({SEED});"
            f"INSERT INTO bench_text SELECT g, {payload} "
            f"FROM generate_series(1, {TEXT_ROWS}) g ORDER BY g;")
        log(f"  done in {time.perf_counter() - t:.0f} s")
        log("VACUUM (FREEZE, ANALYZE); CHECKPOINT")
        cluster.psql("VACUUM (FREEZE, ANALYZE);")
        cluster.psql("CHECKPOINT;")
        sizes = cluster.psql(
            "SELECT json_build_object("
            "'database_bytes', pg_database_size('postgres'),"
            "'pgbench_accounts', pg_total_relation_size('pgbench_accounts'),"
            "'bench_text', pg_total_relation_size('bench_text'))")
    finally:
        cluster.stop()
    meta = {
        "version": DATASET_VERSION, "built": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - t0, 1), "pgdata": str(PGDATA),
        "pgbench_scale": SCALE, "text_rows": TEXT_ROWS, "text_md5_per_row": TEXT_MD5_PER_ROW,
        "seed": SEED, "data_checksums": True, **json.loads(sizes),
        "data_dir_bytes": data_bytes(),
    }
    META.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"dataset built in {meta['build_seconds']} s: data dir "
        f"{meta['data_dir_bytes'] / 1e9:.2f} GB")
    return meta


def ensure(rebuild: bool = False) -> dict:
    """The dataset's facts; builds it if missing, incomplete, outdated or asked to."""
    if not rebuild and META.exists() and (PGDATA / "PG_VERSION").exists():
        meta = json.loads(META.read_text())
        if meta.get("version") == DATASET_VERSION:
            log(f"reusing dataset built {meta['built']} ({PGDATA})")
            return meta
    return build()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rebuild", action="store_true", help="build it again from scratch")
    ap.add_argument("--keep-running", action="store_true",
                    help="leave the server running afterwards (prints its port)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the server runs as the postgres user via runuser)")
    meta = ensure(args.rebuild)
    print(json.dumps(meta, indent=2))
    if args.keep_running:
        c = Cluster()
        c.start()
        print(f"running: psql -h {c.socket_dir} -p {c.port} -U postgres")


if __name__ == "__main__":
    main()
