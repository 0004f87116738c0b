#!/usr/bin/env python3
"""dbsafe vs pgBackRest vs pg_basebackup, side by side on one PostgreSQL 15 cluster.

Run as root from the checkout:   .venv/bin/python bench/run.py --keep

Steps (each one timed, its bytes stored and peak memory measured; see bench/README.md):
  dbsafe full, pgBackRest full, pg_basebackup, a 2nd dbsafe full (nothing changed),
  dbsafe restore, pgBackRest restore.
Results go to bench/results/<timestamp>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset  # noqa: E402
from dataset import BASE, BIN, PG_USER, Cluster, as_postgres, log  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results"
STANZA = "bench"
SERVER = "bench"
PAGE = os.sysconf("SC_PAGE_SIZE")
POLL = 0.05  # seconds between /proc samples
CPUS = os.cpu_count() or 1
QUIET_TIMEOUT = [60.0]  # seconds to wait for an idle machine before a step (5 once over budget)
DISTURBED_SHARE = 0.05  # a step is "disturbed" if others used more than 5% of the machine
DISTURBED_MIN_CPU = 0.5  # ... and more than 0.5 CPU seconds

TARGETS = {
    "full_vs_pgbackrest": 0.5,     # dbsafe full time <= 0.5 x pgBackRest full
    "full_vs_pg_basebackup": 0.8,  # dbsafe full time <= 0.8 x pg_basebackup
    "stored_vs_pgbackrest": 1.0,   # bytes stored <= pgBackRest's
    "second_full_added_vs_db": 0.01,  # unchanged 2nd full adds <= 1% of db size
    "restore_vs_pgbackrest": 0.6,  # dbsafe restore time <= 0.6 x pgBackRest restore
    "dbsafe_peak_rss_mb": 300,     # dbsafe peak memory <= 300 MB
}


# ---------------------------------------------------------------------------------------------
# Measuring one command: wall time, rusage from wait4, peak RSS of its process tree


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, int, float]]:
    """pid -> (ppid, rss bytes, CPU seconds so far) for every process we can read."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # fields after the ")" closing the command name, from field 3 (state): ppid is
        # field 4, utime 14, stime 15, rss (pages) 24 -- see proc(5)
        rest = stat[stat.rindex(b")") + 2:].split()
        try:
            cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
            table[int(name)] = (int(rest[1]), int(rest[21]) * PAGE, cpu)
        except (IndexError, ValueError):
            continue
    return table


def _descendants(table: dict, roots: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [r for r in roots if r]
    while stack:
        pid = stack.pop()
        if pid in table and pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


def pgbackrest_conf(repo: Path, work_dir: Path, pgdata: Path, port: int, socket_dir: Path,
                    async_archive: bool = False) -> str:
    """The pgBackRest configuration every benchmark uses: zstd level 1, 2 processes (as
    dbsafe's 2 threads), fast start; ``async_archive`` for archive-push/get with a spool."""
    return f"""\
[global]
repo1-path={repo}
repo1-retention-full=99
log-path={work_dir / 'log'}
lock-path={work_dir / 'lock'}
spool-path={work_dir / 'spool'}
{"archive-async=y" + chr(10) if async_archive else ""}compress-type=zst
compress-level=1
process-max=2
start-fast=y
log-level-console=warn
log-level-file=info

[{STANZA}]
pg1-path={pgdata}
pg1-port={port}
pg1-socket-path={socket_dir}
pg1-user={PG_USER}
"""


class CpuLedger:
    """CPU seconds used during a step by: the tool's tree, the benchmark's PostgreSQL server,
    and everything else on the machine (other people's work competing for the 2 cores)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[float, str]] = {}

    def add(self, table: dict, tool: set[int], server: set[int]) -> None:
        baseline = not self.last  # first sample: what each process had used before the step
        me = os.getpid()
        for pid, (_, _, cpu) in table.items():
            kind = ("tool" if pid in tool else "server" if pid in server else
                    "bench_poller" if pid == me else "other")
            if pid not in self.first:
                self.first[pid] = cpu if baseline else 0.0  # born during the step
            self.last[pid] = (cpu, kind)

    def totals(self) -> dict[str, float]:
        out = {"tool": 0.0, "server": 0.0, "bench_poller": 0.0, "other": 0.0}
        for pid, (cpu, kind) in self.last.items():
            out[kind] += max(0.0, cpu - self.first.get(pid, 0.0))
        return {k: round(v, 2) for k, v in out.items()}


SERVER_PGDATA = [dataset.PGDATA]  # whose server's CPU the ledger counts (diff.py: a copy)


def server_pid() -> int | None:
    try:
        return int((SERVER_PGDATA[0] / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def busy_cores(window: float = 0.5) -> float:
    """Average number of busy cores over ``window`` seconds (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = f[3] + f[4]
        return sum(f[:8]) - idle, sum(f[:8])
    b0, t0 = sample()
    time.sleep(window)
    b1, t1 = sample()
    return (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1)


def wait_quiet(limit: float = 0.3, timeout: float = 60) -> float:
    """Wait until the machine is idle (other people's tests share these 2 cores); returns
    the seconds waited. Gives up after ``timeout`` and runs anyway (the CPU ledger of each
    step then shows the competition)."""
    t0 = time.monotonic()
    calm = 0
    while time.monotonic() - t0 < timeout:
        calm = calm + 1 if busy_cores() < limit else 0
        if calm >= 3:
            break
    waited = time.monotonic() - t0
    if waited > 5:
        log(f"  waited {waited:.0f} s for the machine to be idle")
    return waited


def measure(name: str, argv: list[str], logdir: Path, env: dict | None = None) -> dict:
    """Run argv, return wall seconds, rusage and the peak RSS of its process tree.

    Peak RSS is measured two ways: (1) every 50 ms the RSS of the child and all its
    descendants (found through /proc/*/stat ppid links) is summed, and the largest sum is
    kept: this counts processes that run at the same time (pgBackRest's local workers,
    pg_basebackup's WAL streamer); (2) ru_maxrss of wait4(), the largest single process of
    the tree (Linux reports the max, not the sum, over reaped descendants).
    """
    os.sync()  # writeback of earlier steps must not land in this one's timing
    waited = wait_quiet(timeout=QUIET_TIMEOUT[0])
    pg = server_pid()
    ledger = CpuLedger()
    out_path = logdir / f"{name}.out"
    err_path = logdir / f"{name}.err"
    peak = {"tree": 0, "single": 0, "procs": 0, "samples": 0}
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        done = threading.Event()

        def poll() -> None:
            while True:
                table = _proc_table()
                tree = _descendants(table, [proc.pid])
                ledger.add(table, tree, _descendants(table, [pg]))
                if done.is_set():  # one last sample after the end, for the CPU ledger
                    return
                rss = [table[p][1] for p in tree]
                peak["tree"] = max(peak["tree"], sum(rss))
                peak["single"] = max([peak["single"], *rss])
                peak["procs"] = max(peak["procs"], len(rss))
                peak["samples"] += 1
                done.wait(POLL)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, ru = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        done.set()
        poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed with exit {proc.returncode}: {' '.join(argv)}\n"
                           f"stdout: {stdout[-2000:]}\nstderr: {err_path.read_text()[-3000:]}")
    return {
        "seconds": round(seconds, 3),
        "cpu_user_seconds": round(ru.ru_utime, 2), "cpu_sys_seconds": round(ru.ru_stime, 2),
        # a sample can miss a short-lived maximum that wait4 saw: never report less than it
        "peak_rss_tree_mb": round(max(peak["tree"], ru.ru_maxrss * 1024) / 1e6, 1),
        "peak_rss_single_mb": round(max(peak["single"], ru.ru_maxrss * 1024) / 1e6, 1),
        "ru_maxrss_mb": round(ru.ru_maxrss * 1024 / 1e6, 1),
        "max_processes": peak["procs"], "rss_samples": peak["samples"],
        "cpu_seconds_during_step": (cpu := ledger.totals()),
        "server_cpu_seconds": cpu["server"], "other_cpu_seconds": cpu["other"],
        "waited_for_idle_seconds": round(waited, 1),
        "stdout": stdout,
    }


# ---------------------------------------------------------------------------------------------
# Helpers


def du(path: Path) -> int:
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def warm(path: Path) -> float:
    """Read every file under path once so that the page cache holds it (warm-cache runs)."""
    t0 = time.perf_counter()
    buf = bytearray(1 << 20)
    for root, _, files in os.walk(path):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
            except (FileNotFoundError, PermissionError, IsADirectoryError):
                pass
    return time.perf_counter() - t0


def chown_postgres(*paths: Path) -> None:
    for p in paths:
        shutil.chown(p, PG_USER, PG_USER)


def fresh_path(path: Path) -> Path:
    """A restore target for dbsafe: absent (dbsafe creates its target; an existing folder,
    even empty, is refused)."""
    if path.exists():
        shutil.rmtree(path)
    return path


def empty_dir(path: Path, owner_postgres: bool = False) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True)
    if owner_postgres:
        chown_postgres(path)
    return path


def wait_archive_idle(pgdata: Path, timeout: float = 120) -> None:
    """Wait until the archiver pushed every finished WAL segment (nothing .ready left)."""
    status = pgdata / "pg_wal" / "archive_status"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(n.endswith(".ready") for n in os.listdir(status)):
            return
        time.sleep(0.2)
    log("warning: WAL archiving still has .ready segments after "
        f"{timeout:.0f} s; see the server log")


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def compile_dbsafe(python: str, env: dict | None = None) -> str:
    """Byte-compile the dbsafe package the benchmark measures, as installing it does (pip
    compiles a package's modules when it installs it; a source tree gets its ``.pyc`` files
    at the first run). Without this, in a shell with PYTHONDONTWRITEBYTECODE set (this
    machine's) a fresh checkout or worktree is never compiled, and every dbsafe command
    compiles its ~240 modules again: ~0.16 s a command (imports 0.40 s against 0.24 s) that
    the product, installed, does not pay. Returns what was done, for the results."""
    proc = subprocess.run([python, "-c", (
        "import compileall, dbsafe, os; "
        "ok = compileall.compile_dir(os.path.dirname(dbsafe.__file__), quiet=1); "
        "print('compiled' if ok else 'some modules did not compile')")],
        env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dbsafe's modules did not compile: {proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def git_commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty-src" if dirty else "")


def median_of(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) and
                                      not isinstance(r.get(k), bool) for r in runs)]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


# ---------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    STEPS = ["dbsafe_full", "pgbackrest_full", "pg_basebackup", "dbsafe_full_2nd_unchanged",
             "dbsafe_restore", "pgbackrest_restore"]

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.run_dir = BASE / f"run-{self.stamp}"
        self.logs = self.run_dir / "logs"
        self.cluster = Cluster()
        self.pgbr_dir = self.run_dir / "pgbackrest"
        self.pgbr_repo = self.pgbr_dir / "repo"
        self.pgbr_conf = self.pgbr_dir / "pgbackrest.conf"
        self.runs: dict[str, list[dict]] = {}
        self.env = {**os.environ, "PGUSER": PG_USER}
        self.checks: dict[str, dict] = {}
        self.vault_no = 0
        self.deadline = time.monotonic() + args.budget_minutes * 60

    # setup -------------------------------------------------------------------------------

    def record_code(self) -> None:
        """Record which dbsafe is measured: the checkout's installed package (``pip install
        -e .`` builds its C extension), at the current commit."""
        python = ROOT / ".venv" / "bin" / "python"
        if not python.exists():
            sys.exit(f"{python} not found: run scripts/install.sh first")
        self.dbsafe = [str(python), "-m", "dbsafe"]
        proc = subprocess.run([str(python), "-c", (
            "import dbsafe; print(dbsafe.__file__); "
            "from dbsafe.engines.postgres import pages; pages.bad_pages(bytes(1 << 20), 0)")],
            env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"dbsafe does not import: {proc.stdout}{proc.stderr}")
        self.code = {"source": "installed", "git_head": git_commit(),
                     "package": proc.stdout.strip(),
                     "bytecode": compile_dbsafe(str(python), self.env)}
        log(f"dbsafe code: {self.code['git_head']} ({self.code['package']})")

    def setup(self) -> None:
        self.run_dir.mkdir(parents=True)
        self.run_dir.chmod(0o755)
        self.logs.mkdir()
        self.record_code()
        self.cluster.start()
        for sub in ("repo", "log", "lock", "spool"):
            (self.pgbr_dir / sub).mkdir(parents=True)
        chown_postgres(self.pgbr_dir, *(self.pgbr_dir / s for s in ("repo", "log", "lock",
                                                                     "spool")))
        self.write_pgbackrest_conf()
        archive_command = (f"pgbackrest --config={self.pgbr_conf} --stanza={STANZA} "
                           "archive-push %p")
        self.cluster.psql("ALTER SYSTEM SET archive_mode = on")
        self.cluster.psql(f"ALTER SYSTEM SET archive_command = '{archive_command}'")
        log("archive_mode = on, archive_command = pgbackrest archive-push: restarting")
        self.cluster.restart()
        self.write_pgbackrest_conf()  # the restart may have picked another free port
        self.pgbackrest("stanza-create")
        self.pgbackrest("check")
        log("pgBackRest stanza-create and check: ok")

    def write_pgbackrest_conf(self) -> None:
        c = self.cluster
        self.pgbr_conf.write_text(pgbackrest_conf(self.pgbr_repo, self.pgbr_dir, c.pgdata,
                                                  c.port, c.socket_dir))
        self.pgbr_conf.chmod(0o644)

    def pgbackrest_argv(self, *args: str) -> list[str]:
        return as_postgres(["pgbackrest", f"--config={self.pgbr_conf}", f"--stanza={STANZA}",
                            *args])

    def pgbackrest(self, *args: str) -> str:
        proc = subprocess.run(self.pgbackrest_argv(*args), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pgbackrest {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def new_vault(self) -> Path:
        self.vault_no += 1
        vault = self.run_dir / f"vault-{self.vault_no}"
        for argv in (["vault", "init", "--json"],
                     ["vault", "restore-roots", "add", str(self.run_dir), "--json"],
                     ["server", "add", SERVER, "--pgdata", str(self.cluster.pgdata),
                      "--port", str(self.cluster.port), "--json"]):
            proc = subprocess.run([*self.dbsafe, "--vault", str(vault), *argv],
                                  capture_output=True, text=True, env=self.env)
            if proc.returncode != 0:
                raise RuntimeError(f"dbsafe {' '.join(argv)} failed: {proc.stdout}"
                                   f"{proc.stderr}")
        return vault

    def teardown(self) -> None:
        """Archive settings back to off, stop the server, remove the run's repos/restores."""
        try:
            if self.cluster.started and self.cluster.running:
                self.cluster.psql("ALTER SYSTEM RESET archive_mode")
                self.cluster.psql("ALTER SYSTEM RESET archive_command")
        except Exception as exc:  # noqa: BLE001 - keep tearing down
            log(f"warning: could not reset archive settings: {exc}")
        self.cluster.stop()
        if self.args.keep_run:
            log(f"kept {self.run_dir}")
        elif self.run_dir.exists():
            logs = self.run_dir / "logs"
            saved = RESULTS / f"{self.stamp}-logs"
            if logs.exists():
                shutil.copytree(logs, saved, dirs_exist_ok=True)
            shutil.rmtree(self.run_dir)
            log(f"removed {self.run_dir} (step logs copied to {saved})")
        if not self.args.keep and self.cluster.running:
            log(f"kept {dataset.DATASET_DIR}: its server runs, started by someone else")
        elif not self.args.keep:
            shutil.rmtree(dataset.DATASET_DIR, ignore_errors=True)
            log(f"removed the dataset {dataset.DATASET_DIR} (use --keep to reuse it)")

    # steps: each returns one measurement ---------------------------------------------------

    def attempt(self, step: str, fn) -> dict:  # noqa: ANN001
        """Run a step; if other processes took a fair share of the CPU meanwhile (other
        people's tests on these 2 cores), keep that run flagged ``disturbed`` and run the
        step again, up to --retries times."""
        retries = self.args.retries
        if time.monotonic() > self.deadline:
            retries = 0
            QUIET_TIMEOUT[0] = 5.0
        for n in range(retries + 1):
            r = fn()
            r.pop("stdout", None)
            r["mb_per_s"] = round(self.db_bytes / r["seconds"] / 1e6, 1)
            limit = max(DISTURBED_MIN_CPU, DISTURBED_SHARE * r["seconds"] * CPUS)
            r["disturbed"] = r["other_cpu_seconds"] > limit
            self.runs.setdefault(step, []).append(r)
            log(f"  {step}: {r['seconds']:.1f} s, {r['mb_per_s']:.0f} MB/s, "
                f"stored {r.get('bytes_stored', 0) / 1e6:.1f} MB, "
                f"peak RSS {r['peak_rss_tree_mb']:.0f} MB, CPU s {r['cpu_seconds_during_step']}"
                + (" DISTURBED" if r["disturbed"] else ""))
            if not r["disturbed"]:
                break
            if n < retries:
                log(f"  {step}: other processes used {r['other_cpu_seconds']} CPU s "
                    f"(> {limit:.1f}); running it again")
        return r

    FULL_FIELDS = ("point_id", "bytes_read", "bytes_stored", "blocks_new", "blocks_reused",
                   "files", "wal_segments", "seconds", "mb_per_second", "corrupt_pages",
                   "workers", "compression_level")

    def dbsafe_backup(self, vault: Path, name: str, type: str = "full",
                    fields: tuple[str, ...] = FULL_FIELDS, extra: tuple[str, ...] = ()) -> dict:
        """One dbsafe backup of ``type`` into ``vault``: time, bytes added, its JSON's
        ``fields`` (bench/diff.py measures differentials and synthetic fulls through this
        too, ``extra`` holding their options)."""
        wait_archive_idle(self.cluster.pgdata)
        warm(self.cluster.pgdata)
        before = du(vault)
        r = measure(name, [*self.dbsafe, "--vault", str(vault), "backup", SERVER, "--type",
                           type, *extra, "--json"], self.logs, self.env)
        out = json.loads(r["stdout"])
        r["bytes_stored"] = du(vault) - before
        r["dbsafe_seconds"] = out.get("seconds")
        r["dbsafe_json"] = {k: out.get(k) for k in fields}
        missing = [k for k, v in r["dbsafe_json"].items() if v is None]
        if missing:
            r["dbsafe_json_missing"] = missing
        return r

    def pgbackrest_full(self, name: str) -> dict:
        wait_archive_idle(self.cluster.pgdata)
        warm(self.cluster.pgdata)
        backup0, archive0 = du(self.pgbr_repo / "backup"), du(self.pgbr_repo / "archive")
        r = measure(name, self.pgbackrest_argv("backup", "--type=full"), self.logs)
        wait_archive_idle(self.cluster.pgdata)  # its WAL is part of what it stores
        r["bytes_stored_backup"] = du(self.pgbr_repo / "backup") - backup0
        r["bytes_stored_archive"] = du(self.pgbr_repo / "archive") - archive0
        r["bytes_stored"] = r["bytes_stored_backup"] + r["bytes_stored_archive"]
        return r

    def pg_basebackup(self, name: str) -> dict:
        wait_archive_idle(self.cluster.pgdata)
        warm(self.cluster.pgdata)
        target = self.run_dir / name
        c = self.cluster
        r = measure(name, [str(BIN / "pg_basebackup"), "-Ft", "--compress=client-zstd:1",
                           "-c", "fast", "-D", str(target), "-U", PG_USER,
                           "-h", str(c.socket_dir), "-p", str(c.port)], self.logs)
        r["bytes_stored"] = du(target)
        r["output_files"] = {p.name: p.stat().st_size for p in target.iterdir()}
        shutil.rmtree(target)
        return r

    def dbsafe_restore(self, vault: Path, point_id: str, name: str) -> dict:
        if "dbsafe" in self.restored:  # a retry: remove the previous restore first
            shutil.rmtree(self.restored.pop("dbsafe"))
        target = fresh_path(self.run_dir / name)
        warm(vault)
        r = measure(name, [*self.dbsafe, "--vault", str(vault), "restore", SERVER, "--point",
                           point_id, "--to-pgdata", str(target), "--json"], self.logs,
                    self.env)
        out = json.loads(r["stdout"])
        r["dbsafe_seconds"] = out.get("seconds")
        r["dbsafe_json"] = {k: out.get(k) for k in ("bytes_written", "files", "wal_segments",
                                                    "seconds", "restore_seconds")}
        r["bytes_restored"] = du(target)
        r["owner"] = pwd.getpwuid(target.stat().st_uid).pw_name
        self.restored["dbsafe"] = target
        return r

    def pgbackrest_restore(self, name: str) -> dict:
        if "pgbackrest" in self.restored:  # a retry: remove the previous restore first
            shutil.rmtree(self.restored.pop("pgbackrest"))
        target = empty_dir(self.run_dir / name, owner_postgres=True)
        warm(self.pgbr_repo)
        r = measure(name, self.pgbackrest_argv(f"--pg1-path={target}", "restore"), self.logs)
        r["bytes_restored"] = du(target)
        self.restored["pgbackrest"] = target
        return r

    # checking restores (untimed, --verify-restores) ---------------------------------------

    CHECK_SQL = ("SELECT json_build_object("
                 "'accounts', (SELECT count(*) FROM pgbench_accounts), "
                 "'abalance_sum', (SELECT sum(abalance) FROM pgbench_accounts), "
                 "'text_rows', (SELECT count(*) FROM bench_text), "
                 "'text_hash', (SELECT sum(hashtext(payload)::bigint) FROM bench_text))")

    def check_restored(self, pgdata: Path, label: str) -> dict:
        """Start a restored data dir (archive_mode off), query it, stop it."""
        folder = empty_dir(self.run_dir / f"check-{label}", owner_postgres=True)
        folder.chmod(0o755)
        c = Cluster(pgdata, folder, folder / "server.log")
        t0 = time.perf_counter()
        try:
            c.port = dataset.free_port(folder)
            dataset.run(as_postgres([str(BIN / "pg_ctl"), "-D", str(pgdata), "-l",
                                     str(c.server_log), "-w", "-t", "600", "-o",
                                     f"-p {c.port} -k {folder} -c archive_mode=off",
                                     "start"]))
            c.started = True
            started = time.perf_counter() - t0
            facts = json.loads(c.psql(self.CHECK_SQL))
            return {"start_seconds": round(started, 1), **facts,
                    "matches_source": facts == self.source_facts}
        except Exception as exc:  # noqa: BLE001 - report, do not abort the benchmark
            log_tail = c.server_log.read_text()[-2000:] if c.server_log.exists() else ""
            return {"error": str(exc)[-2000:], "server_log_tail": log_tail,
                    "matches_source": False}
        finally:
            c.stop("immediate")

    # the run -----------------------------------------------------------------------------

    def run(self) -> dict:
        meta = dataset.ensure(self.args.rebuild)
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        self.other_servers = [line for line in ps.splitlines()
                              if "/bin/postgres " in line and str(dataset.PGDATA) not in line]
        t_start = time.perf_counter()
        self.setup()
        self.db_bytes = dataset.data_bytes(self.cluster.pgdata)
        if self.args.verify_restores:
            self.source_facts = json.loads(self.cluster.psql(self.CHECK_SQL))
            log(f"source facts: {self.source_facts}")
        log(f"database: {self.db_bytes / 1e9:.3f} GB in the data dir (without pg_wal)")
        log(f"warming the page cache: {warm(self.cluster.pgdata):.1f} s")
        for rep in range(1, self.args.repeat + 1):
            log(f"--- repetition {rep}/{self.args.repeat}")
            self.repetition(rep)
        return self.report(meta, time.perf_counter() - t_start)

    def repetition(self, rep: int) -> None:
        state: dict = {}
        self.restored: dict[str, Path] = {}

        def name(step: str) -> str:
            return f"{step}-{rep}-{len(self.runs.get(step, [])) + 1}"

        def first_full() -> dict:
            if "vault" in state:  # a retry: the first full needs an empty vault again
                shutil.rmtree(state["vault"])
            state["vault"] = self.new_vault()
            r = self.dbsafe_backup(state["vault"], name("dbsafe_full"))
            state["point"] = r["dbsafe_json"]["point_id"]
            return r

        self.attempt("dbsafe_full", first_full)
        self.attempt("pgbackrest_full", lambda: self.pgbackrest_full(name("pgbackrest_full")))
        self.attempt("pg_basebackup", lambda: self.pg_basebackup(name("pg_basebackup")))
        self.attempt("dbsafe_full_2nd_unchanged", lambda: self.dbsafe_backup(
            state["vault"], name("dbsafe_full_2nd_unchanged")))
        self.attempt("dbsafe_restore", lambda: self.dbsafe_restore(
            state["vault"], state["point"], name("dbsafe_restore")))
        self.attempt("pgbackrest_restore", lambda: self.pgbackrest_restore(
            name("pgbackrest_restore")))
        for label, target in self.restored.items():
            if self.args.verify_restores and rep == self.args.repeat:
                check = self.checks[label] = self.check_restored(target, label)
                log(f"  restored {label} cluster started and queried: "
                    f"matches source = {check['matches_source']}")
            shutil.rmtree(target)
        shutil.rmtree(state["vault"])

    def report(self, meta: dict, elapsed: float) -> dict:
        med, med_all, counts = {}, {}, {}
        for step, runs in self.runs.items():
            calm = [r for r in runs if not r["disturbed"]]
            med[step] = median_of(calm or runs)
            med_all[step] = median_of(runs)
            counts[step] = {"runs": len(runs), "undisturbed": len(calm)}

        def ratio(a: float, b: float) -> float | None:
            return round(a / b, 3) if b else None

        ratios = {
            "full_vs_pgbackrest": ratio(med["dbsafe_full"]["seconds"],
                                        med["pgbackrest_full"]["seconds"]),
            "full_vs_pg_basebackup": ratio(med["dbsafe_full"]["seconds"],
                                           med["pg_basebackup"]["seconds"]),
            "stored_vs_pgbackrest": ratio(med["dbsafe_full"]["bytes_stored"],
                                          med["pgbackrest_full"]["bytes_stored"]),
            "stored_vs_pg_basebackup": ratio(med["dbsafe_full"]["bytes_stored"],
                                             med["pg_basebackup"]["bytes_stored"]),
            "second_full_added_vs_db": round(
                med["dbsafe_full_2nd_unchanged"]["bytes_stored"] / self.db_bytes, 6),
            "restore_vs_pgbackrest": ratio(med["dbsafe_restore"]["seconds"],
                                           med["pgbackrest_restore"]["seconds"]),
            "dbsafe_peak_rss_mb": max(med[s]["peak_rss_tree_mb"] for s in (
                "dbsafe_full", "dbsafe_full_2nd_unchanged", "dbsafe_restore")),
            "full_peak_rss_vs_pgbackrest": ratio(med["dbsafe_full"]["peak_rss_tree_mb"],
                                                 med["pgbackrest_full"]["peak_rss_tree_mb"]),
            "restore_peak_rss_vs_pgbackrest": ratio(
                med["dbsafe_restore"]["peak_rss_tree_mb"],
                med["pgbackrest_restore"]["peak_rss_tree_mb"]),
        }
        verdict = {k: (ratios[k] is not None and ratios[k] <= t) for k, t in TARGETS.items()}
        head_now = git_commit()
        result = {
            "timestamp": self.stamp,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": CPUS, "platform": platform.platform(),
                        "mem_gb": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30, 1),
                        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3]},
            "versions": {"dbsafe": self.code, "git_head_at_end": head_now,
                         "pgbackrest": version(["pgbackrest", "version"]),
                         "pg_basebackup": version([str(BIN / "pg_basebackup"), "--version"]),
                         "postgres": version([str(BIN / "postgres"), "--version"]),
                         "python": platform.python_version()},
            "dataset": meta,
            "database_bytes": self.db_bytes,
            "repeat": self.args.repeat,
            "settings": {
                "dbsafe_full": "dbsafe backup --type full --json (default workers = cores, "
                               "zstd level 1)",
                "pgbackrest": "compress-type=zst compress-level=1 process-max=2 start-fast=y, "
                              "archive_mode=on with archive-push",
                "pg_basebackup": "-Ft --compress=client-zstd:1 -c fast (-X stream default)",
                "page_cache": "warm: data dir (or vault/repo for restores) read once "
                              "before each step; os.sync() before each step",
                "peak_rss": "sum of RSS over the process tree sampled every 50 ms via /proc; "
                            "ru_maxrss from wait4 = largest single process",
                "disturbed": f"other processes used > max({DISTURBED_MIN_CPU}, "
                             f"{DISTURBED_SHARE} x seconds x cores) CPU s during the step; "
                             f"retried up to {self.args.retries} times; medians use the "
                             "undisturbed runs when there are any",
            },
            "median": med,
            "median_all_runs": med_all,
            "run_counts": counts,
            "runs": self.runs,
            "ratios": ratios,
            "targets": TARGETS,
            "meets_target": verdict,
            "restore_checks": self.checks,
            "other_postgres_servers_running": self.other_servers,
            "elapsed_seconds": round(elapsed, 1),
        }
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.stamp}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print_table(result)
        if head_now != self.code["git_head"]:
            log(f"note: HEAD moved from {self.code['git_head']} to {head_now} during the run; "
                "the figures may mix both versions")
        log(f"results: {path}")
        return result


def print_table(res: dict) -> None:
    med, ratios = res["median"], res["ratios"]
    db = res["database_bytes"]
    rows = [("dbsafe full", "dbsafe_full"), ("pgBackRest full", "pgbackrest_full"),
            ("pg_basebackup", "pg_basebackup"),
            ("dbsafe 2nd full (unchanged)", "dbsafe_full_2nd_unchanged"),
            ("dbsafe restore", "dbsafe_restore"), ("pgBackRest restore", "pgbackrest_restore")]
    print()
    print(f"database: {db / 1e9:.3f} GB; {res['repeat']} repetition(s), median of the "
          f"undisturbed runs; {res['machine']['cpus']} cores; dbsafe "
          f"{res['versions']['dbsafe']['git_head']} ({res['versions']['dbsafe']['source']})")
    head = f"{'step':30} {'seconds':>8} {'MB/s':>7} {'stored MB':>10} {'peak RSS MB':>12} " \
           f"{'CPU s':>7} {'others CPU s':>12} {'runs':>6}"
    print(head)
    print("-" * len(head))
    for label, key in rows:
        m = med[key]
        c = res["run_counts"][key]
        runs = f"{c['undisturbed']}/{c['runs']}"
        stored = f"{m['bytes_stored'] / 1e6:10.1f}" if "bytes_stored" in m else f"{'-':>10}"
        print(f"{label:30} {m['seconds']:8.1f} {m['mb_per_s']:7.0f} {stored} "
              f"{m['peak_rss_tree_mb']:12.0f} {m['cpu_user_seconds'] + m['cpu_sys_seconds']:7.1f}"
              f" {m.get('other_cpu_seconds', 0):12.1f} {runs:>6}")
    own = med["dbsafe_full"].get("dbsafe_seconds")
    print(f"(dbsafe's own 'seconds' in its JSON, without process start-up: full "
          f"{own}, 2nd full {med['dbsafe_full_2nd_unchanged'].get('dbsafe_seconds')}, "
          f"restore {med['dbsafe_restore'].get('dbsafe_seconds')})")
    print()
    labels = {
        "full_vs_pgbackrest": "dbsafe full / pgBackRest full (time)",
        "full_vs_pg_basebackup": "dbsafe full / pg_basebackup (time)",
        "stored_vs_pgbackrest": "dbsafe bytes stored / pgBackRest",
        "stored_vs_pg_basebackup": "dbsafe bytes stored / pg_basebackup",
        "second_full_added_vs_db": "2nd full added / database size",
        "restore_vs_pgbackrest": "dbsafe restore / pgBackRest restore (time)",
        "dbsafe_peak_rss_mb": "dbsafe peak RSS (MB)",
        "full_peak_rss_vs_pgbackrest": "dbsafe full / pgBackRest full (peak RSS)",
        "restore_peak_rss_vs_pgbackrest": "dbsafe restore / pgBackRest restore (peak RSS)",
    }
    for key, label in labels.items():
        target = res["targets"].get(key)
        mark = "" if target is None else (
            f"  target <= {target}: {'PASS' if res['meets_target'][key] else 'FAIL'}")
        print(f"{label:48} {ratios[key]!s:>9}{mark}")


def save_results(name: str, result: dict) -> Path:
    """``result`` as ``bench/results/<name>.json`` (the folder made if need be)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


ROOT_NEEDED = ("run as root: dbsafe reads the data dir as root; the servers and pgBackRest "
               "run as postgres through runuser")


def retry_options(ap: argparse.ArgumentParser, retries: int, budget_minutes: float) -> None:
    """``--retries`` and ``--budget-minutes``, as every side-by-side bench takes them."""
    ap.add_argument("--retries", type=int, default=retries,
                    help="run a step again (at most N times) when other processes took a "
                         f"fair share of the CPU during it (default {retries})")
    ap.add_argument("--budget-minutes", type=float, default=budget_minutes,
                    help="past this, no more retries and short waits for an idle machine")


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit(ROOT_NEEDED)


def run_to_end(bench: Any, errors: tuple[type[BaseException], ...] = (RuntimeError,)
               ) -> None:
    """``bench.run()``, then ``bench.teardown()`` whatever happened; one of ``errors``
    is logged and ends the script with status 1."""
    try:
        bench.run()
    except errors as exc:
        log(f"error: {exc}")
        sys.exit(1)
    finally:
        bench.teardown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3,
                    help="run each measurement N times and report the median")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the dataset cluster")
    ap.add_argument("--keep", action="store_true",
                    help="keep the dataset cluster's data dir for the next run (the server "
                         "is stopped either way)")
    ap.add_argument("--keep-run", action="store_true",
                    help="keep this run's vault, pgBackRest repo and logs under "
                         f"{BASE}/run-*")
    retry_options(ap, retries=2, budget_minutes=14)
    ap.add_argument("--verify-restores", action="store_true",
                    help="after the last repetition's restores (untimed), start both "
                         "restored clusters and compare row counts and a hash of the data")
    args = ap.parse_args()
    require_root()
    run_to_end(Bench(args))


if __name__ == "__main__":
    main()
