#!/usr/bin/env python3
"""The portal and the REST API under load: with 2,000 protected
databases and 90 days of points in the catalog, the dashboard and the database list must
render in < 300 ms and the API's item list answer in < 100 ms at the 95th percentile under
20 concurrent clients.

Run from the checkout (wrk from Debian: ``bash scripts/install.sh --bench``):

    .venv/bin/python bench/portal_load.py [--servers 20] [--dbs-per-server 100] [--days 90]
        [--clients 20] [--duration 15s] [--keep] [--vault DIR]

1. Seeds a new vault's catalog through dbsafe's own catalog interface (no PostgreSQL cluster:
   the pages read the catalog only): N servers x M databases, all protected with the policy
   "daily" (weekly full, daily differentials, a log backup every 15 minutes), and per server
   the policy's points for the last D days, the WAL files they imply, one job per backup
   run (a few failed), the scheduler's memory of each kind's last slot and its job, and a
   handful of active alerts. ``--vault DIR`` reuses a seeded vault.
2. Starts ``dbsafe serve --no-scheduler`` on a free loopback port with a reader token.
3. Drives each URL with wrk (a Lua ``done()`` hook prints p50/p95/p99/max and requests/s as
   JSON); the dashboard, the database list and the API item list at ``--clients``, one
   database list page from the middle and one database page (the 90-day timeline) at one
   client, for information.
4. Checks the catalog still holds every seeded point and WAL file (a request that
   reconciles the catalog with the vault drops a row whose manifest or WAL record is
   missing: the seed writes them, header only, ``write_repository``).

``--servers 10 --dbs-per-server 2000`` is a vault at its limit of 20,000 protected
databases (services/inventory/limits.py): the seed writes the catalog's rows directly, so no
limit is in the way; bench/vault_scale.py seeds it with ``seed`` and runs this script on it.

Results: a table on stdout and bench/results/portal-load-<time>.json. Everything lives in
/var/tmp/dbsafe-bench/portal-load-<time>, removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BASE = Path("/var/tmp/dbsafe-bench")
SEG = 16 << 20                     # WAL segment size
SLOT = timedelta(minutes=15)       # the policy's log interval: one segment per slot
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TARGETS_MS = {"dashboard": 300, "databases": 300, "api_items": 100}
TOKEN_ENV = "DBSAFE_BENCH_TOKEN"   # wrk's script reads the token here (never on a command line)

# wrk's Lua hook: the token from the environment, and the figures as one JSON line.
WRK_SCRIPT = r"""
local token = os.getenv("DBSAFE_BENCH_TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'DBSAFE_RESULT {"requests": %d, "seconds": %.3f, "requests_per_second": %.1f, ' ..
    '"p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, "mean_ms": %.2f, ' ..
    '"bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, latency.mean / 1e3, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# --- seeding ------------------------------------------------------------------------------

def daily_policy():
    """The policy every item uses: a weekly full on Sunday, differentials the other days,
    a log backup every 15 minutes (retention long enough to keep the 90 days seeded)."""
    from dbsafe.policy.model import Policy, violations

    policy = Policy(name="daily", full="weekly", full_days=("sun",), full_time="01:00",
                    diff_days=WEEKDAYS[:6], log_every=15, keep_daily=None, keep_weekly=13,
                    keep_diff=90, keep_log=35)
    problems = violations(policy)
    if problems:
        raise SystemExit(f"the benchmark's policy is invalid: {problems}")
    return policy


class ServerSeed:
    """One server's catalog rows, in time order, made the way the services make them
    (services/backup/take.py, log_backup.py, archive.wal_row, jobs.Job)."""

    def __init__(self, index: int, dbs: int, start: datetime, end: datetime,
                 rng: random.Random) -> None:
        self.name = f"srv-{index:02d}"
        self.index = index
        self.sysid = str(7_300_000_000_000_000_000 + index * 1_000_003_117)
        self.dbs = [f"app_{j:03d}" for j in range(dbs)]
        self.start, self.end, self.rng = start, end, rng
        self.first_segno = 0x200 + index * 0x40
        self.points: list[dict] = []
        self.wal: list[dict] = []
        self.jobs: list[dict] = []
        self._serial = 0

    def instance(self) -> dict:
        return {"pgdata": f"/var/lib/postgresql/15/{self.name}", "port": 5432,
                "host": f"{self.name}.bench.invalid", "bin_dir": "/usr/lib/postgresql/15/bin",
                "socket_dir": None, "pg_version": 15, "system_identifier": self.sysid,
                "recovery_model": "FULL", "data_checksums": 1, "wal_segment_size": SEG}

    def databases(self) -> list[dict]:
        rows = [{"name": "postgres", "oid": 5, "size_bytes": 7_500_000, "file_count": 300,
                 "read_only": False, "kind": "system"}]
        for j, db in enumerate(self.dbs):
            size = self.rng.randint(20, 4000) * 1_000_000
            rows.append({"name": db, "oid": 16384 + j, "size_bytes": size,
                         "file_count": 300 + size // 50_000_000, "read_only": False,
                         "kind": "user"})
        return rows

    def _id(self, when: datetime) -> str:
        self._serial += 1
        return f"{when:%Y%m%dT%H%M%SZ}-{self.index:02x}{self._serial:06x}"

    def _job(self, kind: str, started: datetime, ended: datetime, result: dict | None,
             error: tuple[str, str] | None = None) -> dict:
        return {"id": f"backup-{started:%Y%m%dT%H%M%SZ}-{self.index:02x}{self._serial:04x}",
                "type": "backup", "server": self.name,
                "state": "failed" if error else "completed",
                "bytes_done": result["bytes_read"] if result else 0,
                "bytes_total": result["bytes_read"] if result else 0,
                "start_time": iso(started), "end_time": iso(ended), "pid": 4242,
                "error_code": error[0] if error else None,
                "error_message": error[1] if error else None,
                "result": json.dumps(result) if result else None, "trigger": "scheduled",
                "backup_type": kind, "items": json.dumps(self.dbs),
                "warnings": "[]" if result else None, "reason": None, "node": None,
                "host": "bench"}

    def build(self, fail_last_log: bool, fail_every: int) -> None:
        """The rows of every 15-minute slot from ``start`` to ``end``: segment k is written
        in slot k; a log backup at the slot's end switches it and covers every segment
        since the previous log point; a full (Sunday) or differential runs at 01:00."""
        slots = int((self.end - self.start) / SLOT)
        last_log_stop = self.first_segno * SEG
        last_full = None
        for k in range(slots):
            t0 = self.start + k * SLOT
            segno = self.first_segno + k
            switch = segno * SEG + 0xA00000 + self.rng.randrange(0x500000) // 8 * 8
            self.wal.append({
                "system_identifier": self.sysid,
                "name": segment_name(segno), "timeline": 1, "segno": segno,
                "segment_size": SEG, "size": SEG, "end_lsn": lsn(switch),
                "first_xact_time": iso(t0 + timedelta(seconds=2), 6),
                "last_xact_time": iso(t0 + SLOT - timedelta(seconds=3), 6),
                "xacts": self.rng.randint(200, 5000), "restore_points": "[]",
                "mtime": (t0 + SLOT).timestamp(), "archived": iso(t0 + SLOT +
                                                                 timedelta(seconds=1)),
                "server": self.name})
            if t0.hour == 1 and t0.minute == 0:
                last_full = self._base(t0, segno, last_full)
            started = t0 + SLOT
            failed = (fail_last_log and k == slots - 1) or self.rng.randrange(fail_every) == 0
            if failed:
                self._id(started)
                self.jobs.append(self._job("log", started, started + timedelta(seconds=60),
                                           None, ("backup.log_timeout", "the WAL segment "
                                                  "was not archived within 60 seconds")))
                continue
            point = {"point_id": self._id(started), "type": "log", "copy_only": 0,
                     "start_time": iso(started), "end_time": self.wal[-1]["last_xact_time"],
                     "start_lsn": lsn(last_log_stop), "stop_lsn": lsn(switch), "timeline": 1,
                     "bytes_read": SEG * (segno - last_log_stop // SEG + 1),
                     "bytes_stored": 700 + self.rng.randrange(200), "corrupt_pages": 0,
                     "databases": None, "base_point": None}
            last_log_stop = switch
            self.points.append(point)
            self.jobs.append(self._job("log", started, started + timedelta(seconds=2), {
                "point_id": point["point_id"], "type": "log", "server": self.name,
                "start_lsn": point["start_lsn"], "stop_lsn": point["stop_lsn"],
                "timeline": 1, "segments": 1, "last_segment": segment_name(segno),
                "end_time": point["end_time"], "bytes_read": point["bytes_read"],
                "warnings": []}))

    def _base(self, t0: datetime, segno: int, last_full: dict | None) -> dict | None:
        """The 01:00 backup: a full on Sunday (or when there is none yet), else a
        differential on the last full."""
        kind = "full" if t0.weekday() == 6 or last_full is None else "diff"
        minutes = 6 if kind == "full" else 1.5
        total = 100 * 1_100_000_000 if kind == "full" else self.rng.randint(2, 9) * 10**9
        ended = t0 + timedelta(minutes=minutes, seconds=self.rng.randrange(60))
        point = {"point_id": self._id(t0), "type": kind, "copy_only": 0,
                 "start_time": iso(t0), "end_time": iso(ended),
                 "start_lsn": lsn(segno * SEG + 0x28), "stop_lsn": lsn(segno * SEG + 0x4F1A8),
                 "timeline": 1, "bytes_read": total,
                 "bytes_stored": total // (3 if kind == "full" and last_full is None else 40),
                 "corrupt_pages": 0, "databases": json.dumps(self.dbs),
                 "base_point": last_full["point_id"] if kind == "diff" else None}
        # what each database takes (take.py's stats.usage): an equal share, 9/10 of the bytes
        share, stored = total // len(self.dbs), point["bytes_stored"] * 9 // 10 // len(self.dbs)
        point["item_usage"] = json.dumps({
            "databases": {db: {"bytes": share, "stored": stored} for db in self.dbs},
            "instance": {"bytes": total - share * len(self.dbs),
                         "stored": point["bytes_stored"] - stored * len(self.dbs)}})
        self.points.append(point)
        self.jobs.append(self._job(kind, t0, ended, {
            "point_id": point["point_id"], "type": kind, "copy_only": False,
            "server": self.name, "bytes_read": total, "bytes_stored": point["bytes_stored"],
            "files": 300 * len(self.dbs), "start_lsn": point["start_lsn"],
            "stop_lsn": point["stop_lsn"], "timeline": 1, "start_time": point["start_time"],
            "end_time": point["end_time"], "corrupt_pages": 0, "compression_level": 1,
            **({"base": point["base_point"]} if kind == "diff" else {})}))
        return point if kind == "full" else last_full


def iso(t: datetime, digits: int = 3) -> str:
    return t.isoformat(timespec="milliseconds" if digits == 3 else "microseconds")


def lsn(value: int) -> str:
    from dbsafe.engines.postgres.wal import format_lsn

    return format_lsn(value)


def segment_name(segno: int) -> str:
    from dbsafe.engines.postgres.wal import segment_file_name

    return segment_file_name(1, segno, SEG)


def write_repository(repo, s: ServerSeed) -> None:
    """The vault objects the catalog rows stand for, so that a read path which reconciles
    the catalog with the repository (services/lifecycle/points.reconcile, archive.reconcile_wal)
    keeps every row: one manifest per point (its header, the segments a log point covers;
    no files, as no cluster was copied) and one record per WAL file (no blocks). Sealed
    as Repository.save_manifest / save_wal_record seal them, but put without fsync
    (durable=False): ~350,000 fsyncs would take longer than the whole benchmark."""
    from dbsafe.engines.postgres.wal import parse_lsn
    from dbsafe.vault.format import KIND_MANIFEST, KIND_WAL

    objects: list[tuple[str, bytes, dict]] = []
    instance = {"server": s.name, "system_identifier": s.sysid, "pg_version": 15,
                "pgdata": s.instance()["pgdata"]}
    for p in s.points:
        manifest = {"format": 1, "point_id": p["point_id"], "type": p["type"],
                    "copy_only": False, "instance": instance,
                    **{k: p[k] for k in ("start_time", "end_time", "start_lsn", "stop_lsn",
                                         "timeline")},
                    "files": [], "wal": [], "dirs": [], "tablespaces": [],
                    "stats": {"bytes_read": p["bytes_read"], "bytes_stored": 0, "files": 0,
                              "corrupt_pages": 0,
                              **({"usage": json.loads(p["item_usage"])}
                                 if p.get("item_usage") else {})}, "corrupt_pages": []}
        if p["type"] == "log":
            first, last = (parse_lsn(p[k]) // SEG for k in ("start_lsn", "stop_lsn"))
            manifest["segments"] = [segment_name(n) for n in range(first, last + 1)]
        else:
            manifest["databases"] = [{"name": db, "included": True}
                                     for db in json.loads(p["databases"])]
            if p["base_point"]:
                manifest["base"] = p["base_point"]
        objects.append((f"manifests/{p['point_id']}", KIND_MANIFEST, manifest))
    for w in s.wal:
        record = {"format": 1, "name": w["name"], "size": w["size"], "blocks": [],
                  "checksum": "", "mtime": w["mtime"], "archived": w["archived"],
                  "server": s.name, "segment": {
                      "timeline": 1, "segno": w["segno"], "segment_size": SEG,
                      "end_lsn": w["end_lsn"], "first_xact_time": w["first_xact_time"],
                      "last_xact_time": w["last_xact_time"], "xacts": w["xacts"],
                      "switched": True, "restore_points": []}}
        objects.append((f"wal/{s.sysid}/{w['name']}", KIND_WAL, record))
    for name, kind, body in objects:
        repo.storage.put(name, repo.keyed.seal(kind, body, name), durable=False)


JOB_COLS = ("id", "type", "server", "state", "bytes_done", "bytes_total", "start_time",
            "end_time", "pid", "error_code", "error_message", "result", "trigger",
            "backup_type", "items", "warnings", "reason", "node", "host")


def seed(vault_dir: Path, servers: int, dbs: int, days: int, alerts_on: int) -> dict:
    """A new vault whose catalog holds the benchmark's rows; returns what was seeded."""
    from dbsafe.services.activity import alerts
    from dbsafe.services.handle.vault_handle import Vault

    vault = Vault.init(vault_dir)
    catalog = vault.catalog
    policy = daily_policy()
    now = datetime.now(UTC)
    catalog.insert_policy(policy.name, json.dumps(policy.to_dict()), iso(now))
    end = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0)
    start = end - timedelta(days=days)
    rng = random.Random(8)
    counts = {"servers": 0, "items": 0, "points": 0, "wal_files": 0, "jobs": 0}
    failed_last: list[dict] = []
    for i in range(servers):
        s = ServerSeed(i, dbs, start, end, rng)
        s.build(fail_last_log=i < alerts_on, fail_every=700)
        instance_id = catalog.add_server(s.name, s.instance()["host"], None, s.instance())
        databases = s.databases()
        catalog.replace_databases(instance_id, databases)
        catalog.protect_items(instance_id, [(d["name"], d["oid"]) for d in databases
                                            if d["kind"] == "user"], policy.name)
        catalog.update_instance(instance_id, discovered=iso(start))

        # Each server's rows in one transaction, through the catalog's own methods (each
        # joins the transaction on the same connection). Jobs are the exception: create_job
        # is a transaction of its own (a conflict check, then the insert), which cannot
        # nest, so the finished job rows go in with one executemany on the same columns.
        def rows(session, s=s, instance_id=instance_id) -> None:
            for point in s.points:
                catalog.add_point(instance_id, point)
            for row in s.wal:
                catalog.add_wal_file(row)
            session.many(f"INSERT INTO jobs ({', '.join(JOB_COLS)}) VALUES "
                         f"({', '.join('?' for _ in JOB_COLS)})",
                         [tuple(j[c] for c in JOB_COLS) for j in s.jobs])
            # the scheduler's memory: per kind, the slot of the last run and its job (a
            # claim without a job reads as a run that never started, tried again)
            last = {j["backup_type"]: j for j in s.jobs}
            for kind, job in last.items():
                catalog.claim_slot(instance_id, policy.name, kind, job["start_time"])
                catalog.set_slot_job(instance_id, policy.name, kind, job["id"])
        catalog._atomic(rows)
        write_repository(vault.repo, s)
        if i < alerts_on:
            failed_last.append(s.jobs[-1])
        counts["servers"] += 1
        counts["items"] += len(s.dbs)
        counts["points"] += len(s.points)
        counts["wal_files"] += len(s.wal)
        counts["jobs"] += len(s.jobs)
    # the alerts the failed last log backups raise, the way a finished job raises them
    for job in failed_last:
        alerts.job_finished(catalog, {**job, "items": json.loads(job["items"])})
    alerts.raise_alert(catalog, alerts.VAULT_SPACE_LOW, "warning",
                       "the vault's file system has 8% free (bench)")
    counts["active_alerts"] = len(catalog.list_alerts("active"))
    counts["failed_jobs"] = len(catalog.list_jobs(limit=10**6, state="failed"))
    catalog.close()
    return counts


def catalog_counts(vault_dir: Path) -> dict:
    import sqlite3

    db = sqlite3.connect(vault_dir / "catalog.sqlite")
    try:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("recovery_points", "wal_files", "protected_databases", "jobs")}
    finally:
        db.close()


def catalog_bytes(vault_dir: Path) -> int:
    return sum(p.stat().st_size for p in vault_dir.glob("catalog.sqlite*"))


# --- the server and the load ----------------------------------------------------------------

def dbsafe(vault_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dbsafe", "--vault", str(vault_dir), *args],
                          capture_output=True, text=True, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(vault_dir: Path, port: int, logfile: Path) -> subprocess.Popen:
    with open(logfile, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dbsafe", "--vault", str(vault_dir),
                                 "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--no-scheduler"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"dbsafe serve ended (status {proc.returncode}); see {logfile}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"dbsafe serve did not listen on port {port} within 60 s; see {logfile}")


def fetch(url: str, token: str) -> tuple[int, int, float]:
    """One request: (status, body bytes, seconds); a redirect counts as a failure (the
    load must hit the page itself, not a login form)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    t0 = time.perf_counter()
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=60) as resp:
            body = resp.read()
            return resp.status, len(body), time.perf_counter() - t0
    except urllib.error.HTTPError as exc:
        return exc.code, 0, time.perf_counter() - t0


def run_wrk(url: str, clients: int, threads: int, duration: str, script: Path,
            token: str) -> dict:
    cmd = ["wrk", "-t", str(min(threads, clients)), "-c", str(clients), "-d", duration,
           "--timeout", "30s", "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, TOKEN_ENV: token})
    for line in proc.stdout.splitlines():
        if line.startswith("DBSAFE_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError(f"wrk gave no result (status {proc.returncode}): "
                       f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", type=int, default=20)
    p.add_argument("--dbs-per-server", type=int, default=100)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--threads", type=int, default=1,
                   help="wrk threads (default 1: it keeps 20 connections busy, and leaves "
                        "the other core to the server)")
    p.add_argument("--duration", default="15s", help="wrk duration per URL (e.g. 15s, 1m)")
    p.add_argument("--mid-page", type=int, default=None,
                   help="the database list page measured at one client (default: the "
                        "middle, from the first page's size)")
    p.add_argument("--alerts", type=int, default=5,
                   help="servers whose last log backup failed (active alerts)")
    p.add_argument("--vault", type=Path, default=None,
                   help="use this already seeded vault (kept; no seeding)")
    p.add_argument("--keep", action="store_true", help="keep the run's folder and vault")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: bash scripts/install.sh --bench (Debian's wrk)")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    work = BASE / f"portal-load-{stamp}"
    work.mkdir(parents=True)
    vault_dir = args.vault or work / "vault"
    result: dict = {"time": stamp, "commit": git_commit(), "options": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    server = None
    try:
        if args.vault is None:
            log(f"seeding {args.servers} servers x {args.dbs_per_server} databases, "
                f"{args.days} days into {vault_dir}")
            t0 = time.perf_counter()
            result["seeded"] = seed(vault_dir, args.servers, args.dbs_per_server, args.days,
                                    args.alerts)
            result["seed_seconds"] = round(time.perf_counter() - t0, 1)
            log(f"seeded in {result['seed_seconds']} s: {result['seeded']}")
        before = catalog_counts(vault_dir)
        result["catalog"] = {**before, "bytes": catalog_bytes(vault_dir)}
        token = json.loads(dbsafe(vault_dir, "token", "create", f"bench-{stamp}", "--role",
                                  "reader", "--json").stdout)["token"]
        port = free_port()
        server = start_server(vault_dir, port, work / "serve.log")
        base = f"http://127.0.0.1:{port}"
        urls = {"dashboard": "/", "databases": "/databases", "api_items": "/api/v1/items"}
        mid = args.mid_page or mid_page(base, token, before["protected_databases"])
        info = {f"databases_page_{mid}": f"/databases?page={mid}",
                "database_timeline": "/servers/srv-00/databases/app_050",
                "reports_90_days": "/reports?days=90"}
        result["first_request"], result["not_measured"] = {}, {}
        for name, path in {**urls, **info}.items():
            status, size, seconds = fetch(base + path, token)
            if status != 200:  # not there (yet), or an error: see serve.log
                log(f"GET {path} answered {status}, not measured")
                result["not_measured"][name] = {"path": path, "status": status}
                urls.pop(name, None)
                info.pop(name, None)
                continue
            result["first_request"][name] = {"ms": round(seconds * 1000, 1), "bytes": size}
        with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=work, delete=False) as f:
            f.write(WRK_SCRIPT)
        result["load"] = {}
        for name, path in urls.items():
            log(f"wrk {args.clients} clients, {args.duration}: GET {path}")
            result["load"][name] = {"path": path, "clients": args.clients,
                                    **run_wrk(base + path, args.clients, args.threads,
                                              args.duration, Path(f.name), token)}
        for name, path in info.items():
            log(f"wrk 1 client, {args.duration}: GET {path}")
            result["load"][name] = {"path": path, "clients": 1,
                                    **run_wrk(base + path, 1, 1, args.duration, Path(f.name),
                                              token)}
        after = catalog_counts(vault_dir)
        result["catalog_after"] = after
        result["catalog_unchanged"] = after == before
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"portal-load-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nresults: {out}")
    if args.keep or args.vault:
        print(f"kept: {work}" + ("" if args.vault else f" (vault: {vault_dir})"))
    else:
        shutil.rmtree(work)
    failed = not result["catalog_unchanged"] or result["not_measured"] or any(
        r["errors"]["status"] or r["errors"]["timeout"] for r in result["load"].values())
    return 1 if failed else 0


def mid_page(base: str, token: str, items: int) -> int:
    """The middle page of the database list, from the API's first page size."""
    req = urllib.request.Request(base + "/api/v1/items",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError:
        return 1
    rows = body if isinstance(body, list) else body.get("items") or []
    per_page = max(1, len(rows))
    return max(1, -(-items // per_page) // 2)


def git_commit() -> str | None:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


def print_table(result: dict) -> None:
    if "seed_seconds" in result:
        print(f"seeded {result['seeded']} in {result['seed_seconds']} s")
    cat = result.get("catalog", {})
    if cat:
        print(f"catalog: {cat['bytes'] / 1e6:.1f} MB, {cat['recovery_points']} points, "
              f"{cat['wal_files']} WAL files, {cat['jobs']} jobs, "
              f"{cat['protected_databases']} items")
    print(f"\n{'url':40} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'req/s':>7} {'target':>9}")
    for name, r in result.get("load", {}).items():
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else (
            f"{'ok' if r['p95_ms'] < target else 'MISSED'} <{target}")
        errors = sum(r["errors"].values())
        print(f"{'GET ' + r['path']:40} {r['clients']:>7} {r['p50_ms']:>8.1f} "
              f"{r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
              f"{r['requests_per_second']:>7.1f} {verdict:>9}"
              + (f"  errors {r['errors']}" if errors else ""))
    for r in result.get("not_measured", {}).values():
        print(f"{'GET ' + r['path']:40} not measured: answered {r['status']}")
    if result.get("catalog_unchanged") is False:
        print("\nWARNING: the catalog lost rows during the run (a page reconciled it with the "
              f"vault): before {result['catalog']}, after {result['catalog_after']}")


if __name__ == "__main__":
    sys.exit(main())
