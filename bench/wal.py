#!/usr/bin/env python3
"""WAL archiving and point-in-time restore: dbsafe vs pgBackRest (async archive-push).

Run as root from the checkout:   .venv/bin/python bench/wal.py [--repeat 3]

Three measurements, each tool on its own copy of the benchmark dataset cluster (see
bench/README.md, *WAL archiving and point-in-time restore*):

  load     pgbench for --load-seconds with archiving on; pg_current_wal_lsn and
           pg_stat_archiver sampled every 0.25 s: WAL generated, segments archived per
           second, archive lag (max / mean), time after the load until the archive caught up
  drain    --drain-mb of WAL made while archiving is paused (empty archive_command), then
           archiving resumed: seconds until the backlog is archived (pure throughput)
  latency  wall time of one archive_command call, cold and when the segment was already
           pushed ahead (dbsafe read-ahead / pgBackRest async queue)
  pitr     one cluster archiving into both (one archive_command running both tools), a full
           with each, --pitr-mb of pgbench WAL, then restore to one target time with each
           tool into fresh folders, replay, promote, stop; both restored clusters queried

Results: bench/results/<timestamp>-wal.json and a summary on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset  # noqa: E402
from dataset import BIN, PG_USER, Cluster, as_postgres, log  # noqa: E402
from run import busy_cores, du, git_commit, pgbackrest_conf, version, warm  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results"
WORK = Path("/var/tmp/dbsafe-walbench")
SEG = 16 << 20
STANZA = "bench"
SERVER = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DBSAFE = str(ROOT / ".venv" / "bin" / "dbsafe")
PGBR = "/usr/bin/pgbackrest"
TARGETS = {"pitr_vs_pgbackrest": 0.6,           # dbsafe PITR time <= 0.6 x pgBackRest's
           "drain_rate_vs_pgbackrest_min": 1.0,  # dbsafe segments/s >= pgBackRest's
           }


def sh(argv: list[str], env: dict | None = None, cwd: str | None = None,
       check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, text=True, capture_output=True, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(argv)}\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def parse_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def segno_of(walname: str | None) -> int | None:
    """Segment number of a WAL file name (16 MB segments), None for history files."""
    if not walname or len(walname) < 24 or not re.fullmatch(r"[0-9A-F]{24}", walname[:24]):
        return None
    return int(walname[8:16], 16) * 0x100 + int(walname[16:24], 16)


def wait_quiet(timeout: float = 20.0, limit: float = 0.3) -> float:
    t0 = time.monotonic()
    calm = 0
    while time.monotonic() - t0 < timeout:
        calm = calm + 1 if busy_cores() < limit else 0
        if calm >= 3:
            break
    return round(time.monotonic() - t0, 1)


# ---------------------------------------------------------------------------------------------
# CPU per process class, from /proc (utime+stime; the archiver's cutime+cstime is the exact
# CPU of every archive_command it ran and reaped)


def proc_table() -> dict[int, tuple[int, str, float, float]]:
    """pid -> (ppid, comm, own CPU s, reaped children's CPU s)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        try:
            comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
            rest = stat[stat.rindex(b")") + 2:].split()
            out[int(name)] = (int(rest[1]), comm, (int(rest[11]) + int(rest[12])) / CLK_TCK,
                              (int(rest[13]) + int(rest[14])) / CLK_TCK)
        except (IndexError, ValueError):
            continue
    return out


def descendants(table: dict, roots: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, row in table.items():
        children.setdefault(row[0], []).append(pid)
    found: set[int] = set()
    stack = [r for r in roots if r]
    while stack:
        pid = stack.pop()
        if pid in table and pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


class Ledger:
    """CPU seconds used during a window, per class; first sample = baseline."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[float, str]] = {}
        self.extra_first: dict[str, float] = {}
        self.extra_last: dict[str, float] = {}

    def add(self, table: dict, classify, extra: dict[str, float] | None = None) -> None:
        baseline = not self.last
        for pid, (_, comm, cpu, _) in table.items():
            kind = classify(pid, comm)
            if kind is None:
                continue
            if pid not in self.first:
                self.first[pid] = cpu if baseline else 0.0
            self.last[pid] = (cpu, kind)
        for k, v in (extra or {}).items():
            self.extra_first.setdefault(k, v)
            self.extra_last[k] = v

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, (cpu, kind) in self.last.items():
            out[kind] = out.get(kind, 0.0) + max(0.0, cpu - self.first.get(pid, 0.0))
        for k, v in self.extra_last.items():
            out[k] = out.get(k, 0.0) + max(0.0, v - self.extra_first[k])
        return {k: round(v, 2) for k, v in sorted(out.items())}


# ---------------------------------------------------------------------------------------------
# Clusters


class PG(Cluster):
    """A copy of the template cluster under the run folder, run as postgres."""

    def start(self) -> None:
        """Start on a free port the first time, then always on the same one (dbsafe and
        pgBackRest have it registered)."""
        if self.port is None:
            super().start()
            return
        sh(as_postgres([str(BIN / "pg_ctl"), "-D", str(self.pgdata), "-l",
                        str(self.server_log), "-w", "-t", "300",
                        "-o", f"-p {self.port} -k {self.socket_dir}", "start"]))
        self.started = True

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=PG_USER,
                               dbname="postgres", autocommit=True)

    def one(self, sql: str):
        with self.connect() as conn:
            return conn.execute(sql).fetchone()

    def lsn(self) -> int:
        return parse_lsn(self.one("SELECT pg_current_wal_lsn()::text")[0])

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def ready(self) -> int:
        try:
            return sum(n.endswith(".ready")
                       for n in os.listdir(self.pgdata / "pg_wal" / "archive_status"))
        except OSError:
            return -1

    def set_archive_command(self, command: str) -> None:
        with self.connect() as conn:
            conn.execute("ALTER SYSTEM SET archive_command = "
                         + "'" + command.replace("'", "''") + "'")
            conn.execute("SELECT pg_reload_conf()")
        # the archiver applies a reload at its next loop; make sure it is in effect
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.one("SHOW archive_command")[0] == (command or ""):
                return
            time.sleep(0.05)


def make_cluster(run_dir: Path, name: str, template: Path) -> PG:
    folder = run_dir / name
    folder.mkdir(mode=0o755)
    shutil.chown(folder, PG_USER, PG_USER)
    pgdata = folder / "pgdata"
    t0 = time.perf_counter()
    if (template / "postmaster.pid").exists():
        raise RuntimeError(f"{template} is running: it cannot be copied consistently")
    sh(["cp", "-a", str(template), str(pgdata)])
    if (template / "postmaster.pid").exists():
        raise RuntimeError(f"{template} was started while it was being copied")
    for stale in ("postmaster.opts", "log"):
        p = pgdata / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    with open(pgdata / "postgresql.conf", "a") as f:
        # no background WAL from autovacuum (hint bits and freezing log full pages with
        # data checksums on): every run and both tools archive the load's WAL only
        f.write("\n# dbsafe WAL benchmark\nautovacuum = off\n")
    log(f"{name}: copied {template} in {time.perf_counter() - t0:.1f} s")
    return PG(pgdata, folder / "socket", folder / "server.log")


def build_template(scale: int) -> Path:
    """A fresh pgbench cluster (used with --small, or when the dataset is unavailable)."""
    tdir = WORK / f"template-s{scale}"
    pgdata = tdir / "pgdata"
    if (tdir / "done").exists():
        return pgdata
    if tdir.exists():
        shutil.rmtree(tdir)
    tdir.mkdir(parents=True, mode=0o755)
    shutil.chown(tdir, PG_USER, PG_USER)
    sh(as_postgres([str(BIN / "initdb"), "--data-checksums", "-A", "trust", "-U", PG_USER,
                    "-D", str(pgdata)]))
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write("\n# dbsafe benchmark\n")
        for k, v in dataset.SERVER_SETTINGS.items():
            f.write(f"{k} = {v}\n")
    c = PG(pgdata, tdir / "socket", tdir / "server.log")
    c.start()
    try:
        sh([str(BIN / "pgbench"), "-i", "-s", str(scale), "-q", *c.conn_args(), "postgres"])
        c.psql("VACUUM (FREEZE, ANALYZE)")
        c.psql("CHECKPOINT")
    finally:
        c.stop()
    (tdir / "done").touch()
    return pgdata


def pgbench(pg: PG, seconds: float, clients: int, jobs: int) -> dict:
    proc = sh([str(BIN / "pgbench"), "-n", "-c", str(clients), "-j", str(jobs), "-T",
               str(int(seconds)), *pg.conn_args(), "postgres"])
    m = re.search(r"tps = ([\d.]+)", proc.stdout)
    n = re.search(r"number of transactions actually processed: (\d+)", proc.stdout)
    return {"tps": float(m.group(1)) if m else None,
            "transactions": int(n.group(1)) if n else None}


def generate_wal(pg: PG, nbytes: int, clients: int, jobs: int) -> dict:
    """pgbench in 5-second bursts until the WAL position moved by ``nbytes``."""
    start = pg.lsn()
    t0 = time.perf_counter()
    txns = 0
    while pg.lsn() - start < nbytes:
        txns += pgbench(pg, 5, clients, jobs)["transactions"] or 0
    return {"wal_bytes": pg.lsn() - start, "seconds": round(time.perf_counter() - t0, 1),
            "transactions": txns}


# ---------------------------------------------------------------------------------------------
# The two tools


class Dbsafe:
    name = "dbsafe"

    def __init__(self, run_dir: Path, tag: str, pg: PG) -> None:
        self.pg = pg
        self.vault = run_dir / f"vault-{tag}"
        self.run_dir = run_dir
        self.agent_dir = run_dir / "agent"
        self.env = {**os.environ, "DBSAFE_HOME": str(self.vault),
                    "DBSAFE_RUN_DIR": str(self.agent_dir), "PGUSER": PG_USER}
        self.vault_id: str | None = None

    def cli(self, *args: str) -> dict:
        proc = sh([DBSAFE, *args, "--json"], env=self.env)
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def setup(self) -> None:
        self.agent_dir.mkdir(mode=0o755, exist_ok=True)
        self.cli("vault", "init")
        self.cli("vault", "restore-roots", "add", str(self.run_dir))
        self.cli("server", "add", SERVER, "--pgdata", str(self.pg.pgdata), "--port",
                 str(self.pg.port), "--host", str(self.pg.socket_dir))
        out = self.cli("protect", SERVER, "--all", "--restart")
        if not out.get("archiving_active"):
            raise RuntimeError(f"dbsafe protect did not turn archiving on: {out}")
        self.command = self.pg.one("SHOW archive_command")[0]
        status = self.cli("agent", "status")
        self.agent_pid = status.get("pid")
        self.agent_log = Path(status["log"])
        log(f"dbsafe: vault {self.vault}, agent pid {self.agent_pid}, "
            f"archive_command = {self.command}")

    def daemon_pids(self, table: dict) -> set[int]:
        return descendants(table, [self.agent_pid]) if self.agent_pid else set()

    def agent_log_problems(self) -> list[str]:
        try:
            lines = self.agent_log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [ln for ln in lines if re.search(r"ERROR|Traceback|WARNING|Exception", ln)][-50:]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.cli("agent", "stop")


class PgBackRest:
    name = "pgbackrest"

    def __init__(self, run_dir: Path, tag: str, pg: PG) -> None:
        self.pg = pg
        self.dir = run_dir / f"pgbackrest-{tag}"
        self.repo = self.dir / "repo"
        self.conf = self.dir / "pgbackrest.conf"

    def write_conf(self) -> None:
        self.conf.write_text(pgbackrest_conf(self.repo, self.dir, self.pg.pgdata, self.pg.port,
                                             self.pg.socket_dir, async_archive=True))

    def argv(self, *args: str) -> list[str]:
        return as_postgres([PGBR, f"--config={self.conf}", f"--stanza={STANZA}", *args])

    def setup(self, set_archiving: bool = True) -> None:
        for sub in ("", "repo", "log", "lock", "spool"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
            shutil.chown(self.dir / sub, PG_USER, PG_USER)
        self.write_conf()
        self.command = f"{PGBR} --config={self.conf} --stanza={STANZA} archive-push %p"
        if set_archiving:
            self.pg.psql("ALTER SYSTEM SET archive_mode = on")
            self.pg.psql("ALTER SYSTEM SET archive_command = '" + self.command + "'")
            self.pg.restart()
            self.write_conf()  # the restart may have picked another port
        sh(self.argv("stanza-create"))
        if set_archiving:
            sh(self.argv("check"))
        log(f"pgBackRest: repo {self.repo}, archive_command = {self.command}")

    def daemon_pids(self, table: dict) -> set[int]:
        """Our archive-push:async process and its archive-push:local workers, the ones
        started with --exec-id (pgBackRest execs them detached from the archive_command:
        their CPU is reaped by nobody we can see, so it is sampled live)."""
        out = set()
        for pid, row in table.items():
            if row[1] == "pgbackrest":
                cmd = _cmdline(pid)
                if "--exec-id=" in cmd and str(self.conf) in cmd:
                    out.add(pid)
        return out

    def stop(self) -> None:
        """Wait for (then end) the async processes still running on our config."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = self.own_pids()
            if not pids:
                return
            time.sleep(0.5)
        for pid in self.own_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def own_pids(self) -> list[int]:
        pids = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    cmd = Path(f"/proc/{name}/cmdline").read_bytes()
                except OSError:
                    continue
                if str(self.conf).encode() in cmd:
                    pids.append(int(name))
        return pids


# ---------------------------------------------------------------------------------------------
# Archiving: sampler, load test, drain test, per-call latency


class Sampler:
    """Every ``interval`` s: WAL position, pg_stat_archiver, .ready count, CPU per class."""

    SQL = ("SELECT pg_current_wal_lsn()::text, archived_count, last_archived_wal, "
           "failed_count, last_failed_wal FROM pg_stat_archiver")

    def __init__(self, pg: PG, tool, interval: float = 0.5) -> None:
        self.pg, self.tool, self.interval = pg, tool, interval
        self.samples: list[dict] = []
        self.ledger = Ledger()
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._conn = pg.connect()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> dict:
        lsn, archived, last, failed, last_failed = self._conn.execute(self.SQL).fetchone()
        table = proc_table()
        pm = self.pg.postmaster_pid() or 0
        server = descendants(table, [pm])
        archiver = next((p for p in server if table[p][1].startswith("postgres")
                         and "archiver" in _cmdline(p)), None)
        under_archiver = descendants(table, [archiver]) - {archiver} if archiver else set()
        daemon = self.tool.daemon_pids(table)
        me = os.getpid()

        def classify(pid: int, comm: str) -> str | None:
            if pid == me:
                return "bench_sampler"
            if pid in daemon:
                return "tool_daemon"
            if pid in under_archiver:
                return None  # counted exactly in the archiver's cutime once reaped
            if pid == archiver:
                return "archiver"
            if pid in server:
                return "postgres"
            if comm == "pgbench":
                return "pgbench"
            return "other"

        extra = {"archive_command": table[archiver][3]} if archiver in table else {}
        self.ledger.add(table, classify, extra)
        s = {"t": round(time.perf_counter() - self.t0, 3), "lsn": parse_lsn(lsn),
             "archived_count": archived, "last_archived": last,
             "archived_segno": segno_of(last), "failed_count": failed,
             "last_failed": last_failed, "ready": self.pg.ready()}
        self.samples.append(s)
        return s

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - keep sampling
                log(f"sampler: {exc}")

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def wait_caught_up(self, end_lsn: int, timeout: float, after: float = 0.0) -> float | None:
        """Seconds (sampler clock) of the first sample taken at or after ``after`` that shows
        every segment finished before ``end_lsn`` archived and no .ready left; None after
        ``timeout``."""
        want = end_lsn // SEG - 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.samples[-1]
            if s["t"] >= after and s["archived_segno"] is not None and \
                    s["archived_segno"] >= want and s["ready"] == 0:
                return s["t"]
            time.sleep(0.02)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # last CPU sample
        self._conn.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def lag_stats(samples: list[dict], t_from: float, t_to: float, base_segno: int) -> dict:
    lag, ready = [], []
    for s in samples:
        if t_from <= s["t"] <= t_to:
            upto = ((s["archived_segno"] if s["archived_segno"] is not None
                     else base_segno - 1) + 1) * SEG
            lag.append(max(0, s["lsn"] - upto))
            ready.append(s["ready"])
    if not lag:
        return {}
    return {"lag_max_mb": round(max(lag) / 1e6, 1),
            "lag_mean_mb": round(statistics.mean(lag) / 1e6, 1),
            "lag_max_segments": round(max(lag) / SEG, 2),
            "lag_mean_segments": round(statistics.mean(lag) / SEG, 2),
            "ready_max": max(ready), "ready_mean": round(statistics.mean(ready), 2),
            "samples": len(lag)}


def prepare_load(pg: PG) -> None:
    """The same start for every run: pgbench's own pre-run cleanup, then a checkpoint (so
    every run writes full-page images at the same rate)."""
    pg.psql("VACUUM pgbench_branches, pgbench_tellers")
    pg.psql("TRUNCATE pgbench_history")
    pg.psql("CHECKPOINT")


def load_test(tool, pg: PG, args) -> dict:
    prepare_load(pg)
    waited = wait_quiet()
    smp = Sampler(pg, tool, 0.25).start()
    s0 = smp.samples[-1]
    t0, lsn0 = s0["t"], s0["lsn"]
    bench = pgbench(pg, args.load_seconds, args.clients, args.jobs)
    t1 = smp.now()
    lsn1 = pg.lsn()
    smp.interval = 0.1
    caught = smp.wait_caught_up(lsn1, args.catchup_timeout, after=t1)
    smp.stop()
    at_end = [s for s in smp.samples if s["t"] <= t1][-1]
    last = smp.samples[-1]
    base_segno = lsn0 // SEG
    wal_bytes = lsn1 - lsn0
    archived_load = at_end["archived_count"] - s0["archived_count"]
    archived_all = last["archived_count"] - s0["archived_count"]
    total_s = (caught if caught is not None else last["t"]) - t0
    r = {
        "load_seconds": round(t1 - t0, 2), "pgbench": bench,
        "wal_bytes": wal_bytes, "wal_mb_per_s": round(wal_bytes / 1e6 / (t1 - t0), 1),
        "wal_segments_per_s": round(wal_bytes / SEG / (t1 - t0), 2),
        "segments_finished": lsn1 // SEG - base_segno,
        "archived_during_load": archived_load,
        "archived_per_s_during_load": round(archived_load / (t1 - t0), 2),
        "archived_until_caught_up": archived_all,
        "archived_per_s_until_caught_up": round(archived_all / total_s, 2),
        "caught_up_after_load_s": round(caught - t1, 2) if caught is not None else None,
        "behind_at_load_end_segments": (lsn1 // SEG - 1) - (at_end["archived_segno"] or 0),
        "ready_at_load_end": at_end["ready"],
        "failed_during_run": last["failed_count"] - s0["failed_count"],
        **lag_stats(smp.samples, t0, t1, base_segno),
        "cpu_seconds": smp.ledger.totals(),
        "waited_for_idle_s": waited,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        "series": [[s["t"], s["lsn"] - lsn0, s["archived_count"] - s0["archived_count"],
                    s["ready"]] for s in smp.samples],
    }
    log(f"  {tool.name} load: {r['wal_mb_per_s']} MB/s of WAL ({r['pgbench']['tps']} tps), "
        f"archived {r['archived_per_s_during_load']} seg/s, lag max {r.get('lag_max_mb')} MB "
        f"mean {r.get('lag_mean_mb')} MB, caught up {r['caught_up_after_load_s']} s after "
        f"the load; CPU {r['cpu_seconds']}")
    return r


def drain_test(tool, pg: PG, args) -> dict:
    prepare_load(pg)
    pg.set_archive_command("")
    made = generate_wal(pg, args.drain_mb << 20, args.clients, args.jobs)
    pg.psql("CHECKPOINT")  # flush the load's dirty pages now, not during the drain
    waited = wait_quiet()
    smp = Sampler(pg, tool, 0.1).start()
    s0 = smp.samples[-1]
    t0 = smp.now()
    end_lsn = s0["lsn"]
    pg.set_archive_command(tool.command)
    caught = smp.wait_caught_up(end_lsn, args.catchup_timeout)
    smp.stop()
    last = smp.samples[-1]
    n = last["archived_count"] - s0["archived_count"]
    secs = (caught if caught is not None else last["t"]) - t0
    r = {"backlog_segments": s0["ready"], "wal_made": made, "archived": n,
         "seconds": round(secs, 2), "segments_per_s": round(n / secs, 2),
         "mb_per_s": round(n * SEG / 1e6 / secs, 1), "complete": caught is not None,
         "failed_during_run": last["failed_count"] - s0["failed_count"],
         "cpu_seconds": smp.ledger.totals(), "waited_for_idle_s": waited,
         "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]}
    log(f"  {tool.name} drain: {n} segments in {r['seconds']} s = {r['segments_per_s']} seg/s "
        f"({r['mb_per_s']} MB/s); CPU {r['cpu_seconds']}")
    return r


TIMER = r"""
import json, os, subprocess, sys, time
cwd, plan = sys.argv[1], json.loads(sys.argv[2])
out = []
for label, cmd, name in plan:
    if cmd is None:
        time.sleep(float(label)); continue
    t = time.perf_counter()
    rc = subprocess.run(cmd, shell=True, cwd=cwd, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE).returncode
    out.append([label, round(time.perf_counter() - t, 4), rc])
    if rc == 0 and name:  # as PostgreSQL does after a successful archive_command
        os.rename(f"{cwd}/pg_wal/archive_status/{name}.ready",
                  f"{cwd}/pg_wal/archive_status/{name}.done")
print(json.dumps(out))
"""


def latency_test(tool, pg: PG, run_dir: Path, args) -> dict:
    """archive_command calls timed as PostgreSQL makes them (sh -c, cwd = data dir, as
    postgres): one cold (nothing pushed ahead yet), then 8 whose segments the tool pushed
    ahead (dbsafe's read-ahead, pgBackRest's async queue), 0.5 s apart."""
    timer = run_dir / "timer.py"
    timer.write_text(TIMER)
    prepare_load(pg)
    pg.set_archive_command("")
    generate_wal(pg, 12 * SEG, args.clients, args.jobs)
    status = pg.pgdata / "pg_wal" / "archive_status"
    names = sorted(n[:-6] for n in os.listdir(status) if n.endswith(".ready"))[:10]
    plan = [["3", None, None]]

    def cmd(name: str) -> str:
        return tool.command.replace("%p", f"pg_wal/{name}")

    plan += [["cold", cmd(names[0]), names[0]], ["3", None, None]]
    for name in names[1:9]:
        plan += [["ahead", cmd(name), name], ["0.5", None, None]]
    base = ("/usr/bin/python3 -I -S -c pass" if tool.name == "dbsafe"
            else f"{PGBR} version")
    plan += [["baseline", base, None] for _ in range(5)]
    wait_quiet()
    proc = sh(as_postgres(["/usr/bin/python3", str(timer), str(pg.pgdata), json.dumps(plan)]))
    out = json.loads(proc.stdout)
    pg.set_archive_command(tool.command)
    smp = Sampler(pg, tool, 0.2).start()
    smp.wait_caught_up(pg.lsn(), args.catchup_timeout)
    smp.stop()

    def ms(label: str) -> list[float]:
        return [round(t * 1000, 1) for lab, t, _ in out if lab == label]

    r = {"cold_ms": ms("cold"), "ahead_ms": ms("ahead"),
         "ahead_median_ms": statistics.median(ms("ahead")),
         "baseline_ms": ms("baseline"), "baseline_median_ms": statistics.median(ms("baseline")),
         "baseline_command": base, "exit_codes": [rc for _, _, rc in out]}
    log(f"  {tool.name} archive_command: cold {r['cold_ms']} ms, pushed ahead median "
        f"{r['ahead_median_ms']} ms {r['ahead_ms']}, bare start {r['baseline_median_ms']} ms")
    return r


def archiving_phase(run_dir: Path, template: Path, args, result: dict) -> None:
    tools = {}
    clusters = {}
    try:
        for tag, cls in (("dbsafe", Dbsafe), ("pgbackrest", PgBackRest)):
            pg = clusters[tag] = make_cluster(run_dir, f"arch-{tag}", template)
            pg.start()
            tools[tag] = cls(run_dir, tag, pg)
            tools[tag].setup()
            # warm the page cache for pgbench's tables, settle after the restart
            pg.psql("SELECT count(*) FROM pgbench_accounts")
            pg.stop()
        res = result["archiving"] = {t: {"load": [], "drain": [], "latency": None}
                                     for t in tools}
        for rep in range(1, args.repeat + 1):
            order = ["dbsafe", "pgbackrest"] if rep % 2 else ["pgbackrest", "dbsafe"]
            log(f"--- archiving, repetition {rep}/{args.repeat} ({' then '.join(order)})")
            for tag in order:
                pg, tool = clusters[tag], tools[tag]
                pg.start()
                try:
                    if rep == 1:
                        res[tag]["latency"] = latency_test(tool, pg, run_dir, args)
                    res[tag]["load"].append(load_test(tool, pg, args))
                    res[tag]["drain"].append(drain_test(tool, pg, args))
                finally:
                    pg.stop()
        res["dbsafe"]["agent_log_problems"] = tools["dbsafe"].agent_log_problems()
        res["pgbackrest"]["repo_bytes"] = du(tools["pgbackrest"].repo)
        res["dbsafe"]["vault_bytes"] = du(tools["dbsafe"].vault)
    finally:
        for pg in clusters.values():
            pg.stop("immediate")
        for tool in tools.values():
            tool.stop()
        if not args.keep_run:
            for tag in clusters:
                shutil.rmtree(run_dir / f"arch-{tag}", ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Point-in-time restore


CHECK_SQL = ("SELECT json_build_object("
             "'history_rows', (SELECT count(*) FROM pgbench_history), "
             "'history_delta_sum', (SELECT sum(delta) FROM pgbench_history), "
             "'history_max_mtime', (SELECT max(mtime)::text FROM pgbench_history), "
             "'abalance_sum', (SELECT sum(abalance) FROM pgbench_accounts), "
             "'tbalance_sum', (SELECT sum(tbalance) FROM pgbench_tellers))")

LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (\w+)")


def server_log_facts(path: Path) -> dict:
    """From a restored server's log: the instants of recovery's milestones and redo's own
    usage line (PostgreSQL 15: 'redo done at ... system usage: CPU: user: X s, system: Y s,
    elapsed: Z s')."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    marks = {"start": "starting point-in-time recovery", "redo_start": "redo starts at",
             "consistent": "consistent recovery state reached",
             "target": "recovery stopping", "redo_done": "redo done at",
             "promoted": "database system is ready to accept connections",
             "shutdown": "database system is shut down"}
    times: dict[str, str] = {}
    facts: dict = {}
    for line in text.splitlines():
        for key, needle in marks.items():
            if needle in line and key not in times:
                m = LOG_TS.match(line)
                if m:
                    times[key] = m.group(1)
        m = re.search(r"redo done at .*user: ([\d.]+) s, system: ([\d.]+) s, elapsed: "
                      r"([\d.]+) s", line)
        if m:
            facts["redo_cpu_user_s"], facts["redo_cpu_sys_s"], facts["redo_elapsed_s"] = \
                map(float, m.groups())
        if "recovery stopping" in line:
            facts["stop_line"] = line.split(": ", 1)[-1][:200]
        if "restored log file" in line:
            facts["restored_log_lines"] = facts.get("restored_log_lines", 0) + 1
    if "promoted" in times:  # the first "ready to accept" after the target
        later = [ln for ln in text.splitlines()
                 if "database system is ready to accept connections" in ln]
        m = LOG_TS.match(later[-1]) if later else None
        if m:
            times["promoted"] = m.group(1)

    def at(key: str) -> datetime | None:
        return datetime.strptime(times[key], "%Y-%m-%d %H:%M:%S.%f") if key in times else None

    spans = {}
    for a, b in (("start", "redo_start"), ("redo_start", "target"), ("target", "promoted"),
                 ("promoted", "shutdown"), ("start", "shutdown")):
        if at(a) and at(b):
            spans[f"{a}_to_{b}_s"] = round((at(b) - at(a)).total_seconds(), 2)
    return {**facts, "spans": spans}


class Timeline:
    """Wall time of a sequence of steps plus CPU of (our children + the restored server)
    vs everything else on the machine, sampled every 0.2 s."""

    def __init__(self, pgdata: Path, conf: Path | None = None) -> None:
        self.pgdata = pgdata
        self.conf = str(conf) if conf else None
        self.ledger = Ledger()
        self.steps: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        table = proc_table()
        me = os.getpid()
        try:
            pm = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pm = 0
        ours = descendants(table, [me, pm])
        self.ledger.add(table, lambda pid, comm: (
            "bench_sampler" if pid == me else "tool_and_restored_server" if pid in ours
            else "pgbackrest_async" if comm == "pgbackrest" and self.conf
            and self.conf in _cmdline(pid) else "other"))

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> Timeline:
        self._sample()
        self.t0 = self.last = time.perf_counter()
        self._thread.start()
        return self

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.steps[name] = round(now - self.last, 3)
        self.last = now

    def __exit__(self, *exc) -> None:
        self.seconds = round(time.perf_counter() - self.t0, 3)
        self._stop.set()
        self._thread.join()
        self._sample()


def check_restored(pgdata: Path, folder: Path) -> dict:
    """Start a restored (stopped) cluster with archiving off, query it, stop it."""
    sock = folder / "check-socket"
    for p in (folder, sock):
        p.mkdir(mode=0o755, exist_ok=True)
        shutil.chown(p, PG_USER, PG_USER)
    c = PG(pgdata, sock, folder / "check.log")
    c.port = dataset.free_port(sock)
    try:
        sh(as_postgres([str(BIN / "pg_ctl"), "-D", str(pgdata), "-l", str(c.server_log), "-w",
                        "-t", "600", "-o", f"-p {c.port} -k {sock} -c archive_mode=off",
                        "start"]))
        c.started = True
        return json.loads(c.psql(CHECK_SQL))
    finally:
        c.stop("fast")


def dbsafe_restore(tool: Dbsafe, target_time: str, dest: Path) -> dict:
    warm(tool.vault)
    os.sync()
    waited = wait_quiet()
    with Timeline(dest) as tl:
        proc = sh([DBSAFE, "restore", SERVER, "--time", target_time, "--to-pgdata", str(dest),
                   "--json"], env=tool.env)
        tl.step("dbsafe_restore")
    out = json.loads(proc.stdout)
    rec = out.get("recovery") or {}
    r = {"seconds": tl.seconds, "dbsafe_seconds": out.get("seconds"),
         "restore_seconds": out.get("restore_seconds"), "recovery_seconds": rec.get("seconds"),
         "wal_files": rec.get("wal_files"), "wal_staged": rec.get("wal_staged"),
         "base_point": rec.get("base_point"), "recovery_target": rec.get("target"),
         "cpu_seconds": tl.ledger.totals(), "waited_for_idle_s": waited,
         "server_log": server_log_facts(dest / "dbsafe-restore-start.log")}
    log(f"  dbsafe PITR: {r['seconds']} s (base restore {r['restore_seconds']} s, recovery "
        f"{r['recovery_seconds']} s; redo {r['server_log'].get('redo_elapsed_s')} s); "
        f"CPU {r['cpu_seconds']}")
    return r


def pgbackrest_restore(tool: PgBackRest, target_time: str, dest: Path, spool: Path) -> dict:
    folder = dest.parent / f"{dest.name}-run"
    for p in (dest, folder, spool):
        p.mkdir(mode=0o700 if p == dest else 0o755)
        shutil.chown(p, PG_USER, PG_USER)
    warm(tool.repo)
    os.sync()
    waited = wait_quiet()
    pg = PG(dest, folder, folder / "server.log")
    pg.port = dataset.free_port(folder)
    with Timeline(dest, tool.conf) as tl:
        sh(tool.argv(f"--pg1-path={dest}", f"--spool-path={spool}", "--type=time",
                     f"--target={target_time}", "--target-action=promote",
                     "--archive-mode=off", "restore"))
        tl.step("pgbackrest_restore")
        sh(as_postgres([str(BIN / "pg_ctl"), "-D", str(dest), "-l", str(pg.server_log), "-w",
                        "-t", "3600", "-o", f"-p {pg.port} -k {folder}", "start"]))
        pg.started = True
        tl.step("pg_ctl_start")
        while True:
            try:
                if not pg.one("SELECT pg_is_in_recovery()")[0]:
                    break
            except psycopg.Error:
                if pg.postmaster_pid() is None:
                    raise RuntimeError(f"restored server stopped; see {pg.server_log}") \
                        from None
            time.sleep(0.1)
        tl.step("wait_promoted")
        pg.stop("fast")
        tl.step("pg_ctl_stop")
    auto = (dest / "postgresql.auto.conf").read_text()
    r = {"seconds": tl.seconds, "steps": tl.steps, "cpu_seconds": tl.ledger.totals(),
         "waited_for_idle_s": waited,
         "restore_command": next((ln for ln in auto.splitlines()
                                  if ln.startswith("restore_command")), None),
         "server_log": server_log_facts(pg.server_log)}
    log(f"  pgBackRest PITR: {r['seconds']} s {r['steps']}; redo "
        f"{r['server_log'].get('redo_elapsed_s')} s; CPU {r['cpu_seconds']}")
    return r


def pitr_phase(run_dir: Path, template: Path, args, result: dict) -> None:
    pg = make_cluster(run_dir, "pitr-src", template)
    pg.start()
    ds = Dbsafe(run_dir, "pitr", pg)
    br = PgBackRest(run_dir, "pitr", pg)
    res: dict = {"runs": {"dbsafe": [], "pgbackrest": []}}
    result["pitr"] = res
    restored: list[Path] = []
    try:
        ds.setup()
        br.setup(set_archiving=False)
        both = f"{ds.command} && {br.command}"
        pg.set_archive_command(both)
        res["archive_command"] = both
        sh(br.argv("check"))
        t = time.perf_counter()
        res["dbsafe_full"] = ds.cli("backup", SERVER, "--type", "full")
        res["dbsafe_full"]["wall_seconds"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        sh(br.argv("backup", "--type=full"))
        res["pgbackrest_full_seconds"] = round(time.perf_counter() - t, 2)
        info = json.loads(sh(br.argv("info", "--output=json")).stdout)
        res["pgbackrest_backup"] = info[0]["backup"][-1]["label"]
        log(f"fulls taken: dbsafe {res['dbsafe_full'].get('point_id')}, pgBackRest "
            f"{res['pgbackrest_backup']}")
        prepare_load(pg)
        res["load"] = generate_wal(pg, args.pitr_mb << 20, args.clients, args.jobs)
        load_end = datetime.now(UTC)
        log(f"WAL made: {res['load']['wal_bytes'] / 1e6:.0f} MB in {res['load']['seconds']} s")
        res["log_backup"] = ds.cli("backup", SERVER, "--type", "log")
        smp = Sampler(pg, ds, 0.2).start()
        smp.wait_caught_up(pg.lsn(), args.catchup_timeout)
        smp.stop()
        points = ds.cli("points", SERVER)
        res["log_ranges"] = points.get("log_ranges")
        rng = points["log_ranges"][-1]
        # the target: 1 s before the load ended (inside the range, so both tools replay
        # nearly all of the load's WAL); the same instant for both, written two ways
        target = load_end - timedelta(seconds=1)
        start, end = (datetime.fromisoformat(rng["start_time"]),
                      datetime.fromisoformat(rng["end_time"]))
        if not start <= target < end:
            raise RuntimeError(f"target {target} outside dbsafe's range {rng}")
        t_dbsafe = target.isoformat(timespec="microseconds")
        t_pgbr = target.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00"
        res["target"] = {"dbsafe": t_dbsafe, "pgbackrest": t_pgbr, "range": rng}
        res["source_rows_before_target"] = json.loads(pg.psql(
            "SELECT json_build_object('history_rows_mtime_le_target', count(*)) FROM "
            f"pgbench_history WHERE mtime <= '{t_pgbr}'::timestamptz"))
        pg.stop()  # the source is idle from here: restores alone on the machine
        res["vault_bytes"] = du(ds.vault)
        res["pgbackrest_repo_bytes"] = du(br.repo)
        for rep in range(1, args.repeat + 1):
            order = ["dbsafe", "pgbackrest"] if rep % 2 else ["pgbackrest", "dbsafe"]
            log(f"--- PITR, repetition {rep}/{args.repeat} ({' then '.join(order)})")
            for tag in order:
                dest = run_dir / f"restore-{tag}-{rep}"
                restored.append(dest)
                if tag == "dbsafe":
                    r = dbsafe_restore(ds, t_dbsafe, dest)
                else:
                    r = pgbackrest_restore(br, t_pgbr, dest, run_dir / f"spool-restore-{rep}")
                    restored.append(run_dir / f"restore-{tag}-{rep}-run")
                if rep == args.repeat:
                    r["check"] = check_restored(dest, dest.parent / f"{dest.name}-check")
                    restored.append(dest.parent / f"{dest.name}-check")
                res["runs"][tag].append(r)
                if rep != args.repeat:
                    shutil.rmtree(dest)
        checks = [res["runs"][t][-1].get("check") for t in ("dbsafe", "pgbackrest")]
        res["checks_equal"] = checks[0] == checks[1] and checks[0] is not None
        log(f"restored clusters: dbsafe {checks[0]}, pgBackRest {checks[1]}: equal = "
            f"{res['checks_equal']}")
        res["agent_log_problems"] = ds.agent_log_problems()
    finally:
        pg.stop("immediate")
        ds.stop()
        br.stop()
        if not args.keep_run:
            shutil.rmtree(run_dir / "pitr-src", ignore_errors=True)
            for p in restored:
                shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(result: dict) -> dict:
    s: dict = {}
    arch = result.get("archiving")
    if arch:
        for tag in ("dbsafe", "pgbackrest"):
            loads, drains = arch[tag]["load"], arch[tag]["drain"]
            s[tag] = {
                "load_wal_mb_per_s": med([r["wal_mb_per_s"] for r in loads]),
                "load_tps": med([r["pgbench"]["tps"] for r in loads]),
                "load_wal_segments_per_s": med([r["wal_segments_per_s"] for r in loads]),
                "load_archived_per_s": med([r["archived_per_s_during_load"] for r in loads]),
                "load_lag_max_mb": med([r.get("lag_max_mb") for r in loads]),
                "load_lag_mean_mb": med([r.get("lag_mean_mb") for r in loads]),
                "load_ready_max": med([r.get("ready_max") for r in loads]),
                "caught_up_after_load_s": med([r["caught_up_after_load_s"] for r in loads]),
                "archive_cpu_s_per_segment_load": med([
                    (r["cpu_seconds"].get("archive_command", 0)
                     + r["cpu_seconds"].get("tool_daemon", 0))
                    / max(1, r["archived_until_caught_up"]) for r in loads]),
                "drain_segments_per_s": med([r["segments_per_s"] for r in drains]),
                "drain_seconds": med([r["seconds"] for r in drains]),
                "archive_cpu_s_per_segment_drain": med([
                    (r["cpu_seconds"].get("archive_command", 0)
                     + r["cpu_seconds"].get("tool_daemon", 0)) / max(1, r["archived"])
                    for r in drains]),
                "latency_ahead_ms": (arch[tag]["latency"] or {}).get("ahead_median_ms"),
                "latency_cold_ms": ((arch[tag]["latency"] or {}).get("cold_ms") or [None])[0],
            }
        if s["pgbackrest"]["drain_segments_per_s"]:
            s["drain_rate_vs_pgbackrest"] = round(
                s["dbsafe"]["drain_segments_per_s"] / s["pgbackrest"]["drain_segments_per_s"], 3)
    pitr = result.get("pitr")
    if pitr and pitr["runs"]["dbsafe"] and pitr["runs"]["pgbackrest"]:
        d, p = pitr["runs"]["dbsafe"], pitr["runs"]["pgbackrest"]
        s["pitr"] = {
            "dbsafe_seconds": med([r["seconds"] for r in d]),
            "dbsafe_base_restore_s": med([r["restore_seconds"] for r in d]),
            "dbsafe_recovery_s": med([r["recovery_seconds"] for r in d]),
            "dbsafe_redo_elapsed_s": med([r["server_log"].get("redo_elapsed_s") for r in d]),
            "pgbackrest_seconds": med([r["seconds"] for r in p]),
            "pgbackrest_base_restore_s": med([r["steps"]["pgbackrest_restore"] for r in p]),
            "pgbackrest_start_to_stop_s": med([r["seconds"] - r["steps"]["pgbackrest_restore"]
                                               for r in p]),
            "pgbackrest_redo_elapsed_s": med([r["server_log"].get("redo_elapsed_s")
                                              for r in p]),
            "wal_mb": round(pitr["load"]["wal_bytes"] / 1e6),
            "checks_equal": pitr.get("checks_equal"),
        }
        s["pitr_vs_pgbackrest"] = round(s["pitr"]["dbsafe_seconds"]
                                        / s["pitr"]["pgbackrest_seconds"], 3)
    return s


def new_run(work: Path, small: bool) -> tuple[str, Path, Path, str]:
    """(timestamp, a fresh run folder under ``work`` owned by postgres, the cluster to copy,
    what it is): the bench dataset when it is there and stopped, else a pgbench cluster."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work.mkdir(mode=0o755, exist_ok=True)
    work.chmod(0o755)
    run_dir = work / f"run-{stamp}"
    run_dir.mkdir(mode=0o755)
    shutil.chown(run_dir, PG_USER, PG_USER)
    if small:
        return stamp, run_dir, build_template(10), "fresh pgbench -s 10 (--small)"
    if (dataset.PGDATA / "PG_VERSION").exists() and \
            not (dataset.PGDATA / "postmaster.pid").exists():
        return stamp, run_dir, dataset.PGDATA, "copy of the bench dataset (stopped)"
    return stamp, run_dir, build_template(100), "fresh pgbench -s 100 (dataset busy/absent)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["archiving", "pitr"], help="run one phase only")
    ap.add_argument("--load-seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--drain-mb", type=int, default=1024)
    ap.add_argument("--pitr-mb", type=int, default=1024, help="WAL to replay (MiB)")
    ap.add_argument("--catchup-timeout", type=float, default=600)
    ap.add_argument("--small", action="store_true",
                    help="a fresh pgbench -s 10 cluster and small sizes (to try the script)")
    ap.add_argument("--keep-run", action="store_true", help=f"keep {WORK}/run-*")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if args.small:
        args.load_seconds, args.drain_mb, args.pitr_mb = 10, 128, 128
    stamp, run_dir, template, source = new_run(WORK, args.small)
    log(f"dbsafe {git_commit()}, clusters: {source}")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    result: dict = {
        "timestamp": stamp, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3]},
        "versions": {"dbsafe": git_commit(), "pgbackrest": version([PGBR, "version"]),
                     "postgres": version([str(BIN / "postgres"), "--version"]),
                     "python": platform.python_version()},
        "cluster_source": source, "template": str(template),
        "args": vars(args),
        "other_postgres_servers_at_start": [ln for ln in ps.splitlines()
                                            if "/bin/postgres " in ln],
    }
    t0 = time.perf_counter()
    try:
        if args.only in (None, "archiving"):
            archiving_phase(run_dir, template, args, result)
        if args.only in (None, "pitr"):
            pitr_phase(run_dir, template, args, result)
    finally:
        result["summary"] = summarize(result) if "archiving" in result or "pitr" in result \
            else {}
        result["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
        result["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{stamp}-wal.json"
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(json.dumps(result["summary"], indent=2))
        log(f"results: {path}")
        if not args.keep_run:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
