#!/usr/bin/env python3
"""Log backups of a replica set: from the primary or from a streaming standby.

Run as root from the checkout:   .venv/bin/python bench/replica_log.py [--drain-mb 1024]

One primary (a copy of the benchmark dataset, or a fresh pgbench cluster with --small) and
one streaming standby made with ``pg_basebackup -R`` (its own replication slot), both on
free ports under /var/tmp, run as postgres. Measurements (see bench/README.md, *Log backups
from a standby*):

  drain    --drain-mb of pgbench WAL made while archiving is paused (archive_command = '' on
           every archiving node), then archiving resumed: seconds until the whole backlog is
           in the archive, for
             a  dbsafe replica set, preference primary   (the primary's WAL is stored)
             b  dbsafe replica set, preference secondary (the standby's WAL is stored; the
                primary's pushes are deferred until the vault holds the standby's copy)
             c  pgBackRest async archive-push on the standby (archive_mode=always)
             d  pgBackRest async archive-push on the primary
           and the CPU of every process class during it (archivers and their archive_command
           calls per node, the dbsafe agent split into its long-lived threads and its
           per-request threads, pgBackRest's async processes)
  latency  wall time of `dbsafe backup SET --type log --json` (switch -> segment in the
           vault), preference primary vs secondary, alternating, --latency-runs each

Results: bench/results/<timestamp>-replica-log.json and a summary on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dataset import BIN, PG_USER, as_postgres, log  # noqa: E402
from run import git_commit, version  # noqa: E402
from wal import (  # noqa: E402
    DBSAFE,
    PG,
    PGBR,
    SEG,
    Dbsafe,
    Ledger,
    PgBackRest,
    _cmdline,
    descendants,
    generate_wal,
    make_cluster,
    med,
    new_run,
    prepare_load,
    proc_table,
    segno_of,
    sh,
    wait_quiet,
)

RESULTS = HERE / "results"
WORK = Path("/var/tmp/dbsafe-replbench")
REGION = "West Europe"
SET = "rs"
SLOT = "bench_standby"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CASES = {"a": "dbsafe, preference primary", "b": "dbsafe, preference secondary",
         "c": "pgBackRest async from the standby", "d": "pgBackRest async from the primary"}


# ---------------------------------------------------------------------------------------------
# The two nodes


class Node(PG):
    """A PG of the pair; a standby's position is what it received."""

    def __init__(self, *a, standby: bool = False, **kw) -> None:
        super().__init__(*a, **kw)
        self.standby = standby

    def lsn(self) -> int:
        if not self.standby:
            return super().lsn()
        text = self.one("SELECT pg_last_wal_receive_lsn()::text")[0]
        hi, lo = text.split("/")
        return (int(hi, 16) << 32) | int(lo, 16)

    def ready_names(self) -> list[str]:
        try:
            return sorted(n[:-6] for n in os.listdir(self.pgdata / "pg_wal" / "archive_status")
                          if n.endswith(".ready"))
        except OSError:
            return []

    def alter(self, **settings: str) -> None:
        with self.connect() as conn:
            for k, v in settings.items():
                conn.execute(f"ALTER SYSTEM SET {k} = '" + v.replace("'", "''") + "'")


def make_standby(run_dir: Path, primary: Node) -> Node:
    folder = run_dir / "standby"
    folder.mkdir(mode=0o755)
    shutil.chown(folder, PG_USER, PG_USER)
    pgdata = folder / "pgdata"
    t0 = time.perf_counter()
    sh(as_postgres([str(BIN / "pg_basebackup"), "-h", str(primary.socket_dir), "-p",
                    str(primary.port), "-U", PG_USER, "-D", str(pgdata), "-R", "-X", "stream",
                    "-c", "fast", "-C", "-S", SLOT]))
    log(f"standby: pg_basebackup -R in {time.perf_counter() - t0:.1f} s")
    node = Node(pgdata, folder / "socket", folder / "server.log", standby=True)
    node.start()
    wait_streaming(node)
    return node


def wait_streaming(standby: Node, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if standby.one("SELECT count(*) FROM pg_stat_wal_receiver "
                           "WHERE status = 'streaming'")[0] == 1:
                return
        time.sleep(0.2)
    raise RuntimeError(f"standby {standby.pgdata} does not stream")


def wait_replayed(primary: Node, standby: Node, timeout: float = 600) -> None:
    lsn = primary.one("SELECT pg_current_wal_lsn()::text")[0]
    deadline = time.monotonic() + timeout
    while not standby.one(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")[0]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"standby did not replay up to {lsn}")
        time.sleep(0.1)


def set_archiving(nodes: dict[str, Node], commands: dict[str, str]) -> None:
    """archive_command of each node in ``commands`` at the same moment: ALTER SYSTEM on every
    one, then a reload of every one, then wait until each shows it."""
    for n, cmd in commands.items():
        nodes[n].alter(archive_command=cmd)
    for n in commands:
        nodes[n].one("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    for n, cmd in commands.items():
        while nodes[n].one("SHOW archive_command")[0] != cmd and time.monotonic() < deadline:
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# Sampling both nodes: archiver progress and CPU per class


def task_cpu(pid: int) -> dict[int, float]:
    """tid -> CPU s of every live thread of ``pid``."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                rest = f.read().rsplit(b")", 1)[1].split()
            out[int(tid)] = (int(rest[11]) + int(rest[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
    return out


class PairSampler:
    """Every ``interval`` s: pg_stat_archiver and .ready count of each node, CPU per class."""

    SQL = "SELECT archived_count, last_archived_wal, failed_count FROM pg_stat_archiver"

    def __init__(self, nodes: dict[str, Node], agent_pid: int | None = None,
                 pgbr: PgBackRest | None = None, interval: float = 0.1) -> None:
        self.nodes, self.agent_pid, self.pgbr, self.interval = nodes, agent_pid, pgbr, interval
        self.samples: list[dict] = []
        self.ledger = Ledger()
        self.threads_first: dict[int, float] = {}
        self.threads_last: dict[int, float] = {}
        self.t0 = time.perf_counter()
        self._conns = {n: pg.connect() for n, pg in nodes.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> PairSampler:
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> dict:
        s: dict = {"t": round(time.perf_counter() - self.t0, 3)}
        for n, conn in self._conns.items():
            archived, last, failed = conn.execute(self.SQL).fetchone()
            s[n] = {"archived_count": archived, "archived_segno": segno_of(last),
                    "failed_count": failed, "ready": self.nodes[n].ready()}
        table = proc_table()
        me = os.getpid()
        roles: dict[int, str] = {}
        extra: dict[str, float] = {}
        agent = descendants(table, [self.agent_pid]) if self.agent_pid else set()
        pgbr = self.pgbr.daemon_pids(table) if self.pgbr else set()
        for n, pg in self.nodes.items():
            server = descendants(table, [pg.postmaster_pid() or 0])
            archiver = next((p for p in server if "archiver" in _cmdline(p)), None)
            under = descendants(table, [archiver]) - {archiver} if archiver else set()
            for pid in server:
                roles[pid] = f"{n}_postgres"
            for pid in under:
                roles[pid] = ""  # counted in the archiver's cutime once reaped
            if archiver:
                roles[archiver] = f"{n}_archiver"
                extra[f"{n}_archive_command"] = table[archiver][3]
        for pid in agent:
            roles[pid] = "dbsafe_agent"
        for pid in pgbr:
            roles[pid] = "pgbackrest_async"

        def classify(pid: int, comm: str) -> str | None:
            if pid == me:
                return "bench_sampler"
            role = roles.get(pid, "other")
            return role or None

        self.ledger.add(table, classify, extra)
        if self.agent_pid:
            threads = task_cpu(self.agent_pid)
            baseline = not self.threads_last
            for tid, cpu in threads.items():
                self.threads_first.setdefault(tid, cpu if baseline else 0.0)
            self.threads_last = threads
        self.samples.append(s)
        return s

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - keep sampling
                log(f"sampler: {exc}")

    def wait(self, done, timeout: float) -> float | None:
        """Sampler seconds of the first sample for which ``done(sample)`` holds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            while seen < len(self.samples):
                s = self.samples[seen]
                seen += 1
                if done(s):
                    return s["t"]
            time.sleep(0.02)
        return None

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.sample()
        for c in self._conns.values():
            c.close()
        cpu = self.ledger.totals()
        if self.agent_pid:
            live = sum(max(0.0, c - self.threads_first.get(t, 0.0))
                       for t, c in self.threads_last.items())
            # threads still alive at the end: the main thread and the archiving pool (the
            # stored node's work); the rest ended during the window: one thread per
            # archive_command call (waiting on the pool's result, or a deferred push's polls)
            cpu["dbsafe_agent_long_lived_threads"] = round(live, 2)
            cpu["dbsafe_agent_request_threads"] = round(
                max(0.0, cpu.get("dbsafe_agent", 0.0) - live), 2)
        return cpu


def caught_up(node: str, want: int):
    def done(s: dict) -> bool:
        x = s[node]
        return x["archived_segno"] is not None and x["archived_segno"] >= want and \
            x["ready"] == 0
    return done


# ---------------------------------------------------------------------------------------------
# dbsafe on the pair


class DbsafeSet(Dbsafe):
    def __init__(self, run_dir: Path, nodes: dict[str, Node]) -> None:
        super().__init__(run_dir, "set", nodes["primary"])
        self.nodes = nodes

    def setup(self) -> None:
        self.agent_dir.mkdir(mode=0o755, exist_ok=True)
        self.cli("vault", "init", "--region", REGION)
        for n, pg in self.nodes.items():
            self.cli("server", "add", n, "--pgdata", str(pg.pgdata), "--port", str(pg.port),
                     "--host", str(pg.socket_dir))
        self.cli("replicaset", "add", SET, "--preference", "primary")
        for n in self.nodes:
            shown = self.cli("replicaset", "node", "add", SET, n, "--region", REGION)
        self.sysid = shown["system_identifier"]
        out = self.cli("protect", SET, "--all", "--restart")
        if not out.get("archiving_active"):
            raise RuntimeError(f"dbsafe protect did not turn archiving on: {out}")
        wait_streaming(self.nodes["standby"])
        self.commands = {n: pg.one("SHOW archive_command")[0] for n, pg in self.nodes.items()}
        self.modes = {n: pg.one("SHOW archive_mode")[0] for n, pg in self.nodes.items()}
        status = self.cli("agent", "status")
        self.agent_pid = status.get("pid")
        self.agent_log = Path(status["log"])
        log(f"dbsafe: vault {self.vault}, agent pid {self.agent_pid}, archive_mode "
            f"{self.modes}, archive_command {self.commands['primary']}")

    def prefer(self, preference: str) -> None:
        self.cli("replicaset", "set", SET, "--preference", preference)
        time.sleep(2.5)  # the agent reuses its choice of log node for 2 s (LOG_NODE_TTL)

    def wal_rows(self) -> dict[str, dict]:
        with contextlib.closing(sqlite3.connect(
                f"file:{self.vault / 'catalog.sqlite'}?mode=ro", uri=True, timeout=30)) as db:
            rows = db.execute("SELECT name, archived, server FROM wal_files "
                              "WHERE system_identifier = ?", (self.sysid,)).fetchall()
        return {r[0]: {"archived": r[1], "server": r[2]} for r in rows}


# ---------------------------------------------------------------------------------------------
# Drain


def make_backlog(nodes: dict[str, Node], args) -> dict:
    """With archiving paused: --drain-mb of pgbench WAL on the primary, received and replayed
    by the standby, both checkpointed (so no dirty-page flush during the drain)."""
    p, s = nodes["primary"], nodes["standby"]
    prepare_load(p)
    made = generate_wal(p, args.drain_mb << 20, args.clients, args.jobs)
    p.psql("CHECKPOINT")
    wait_replayed(p, s)
    s.psql("CHECKPOINT")  # a restartpoint
    made["end_lsn"] = p.lsn()
    return made


def drain(case: str, nodes: dict[str, Node], args, *, archiving: list[str], store: str,
          commands: dict[str, str], agent_pid: int | None = None,
          pgbr: PgBackRest | None = None, ds: DbsafeSet | None = None) -> dict:
    """``archiving``: the nodes whose archive_command runs; ``store``: the node whose WAL the
    archive keeps (its archiver's success means the file is in the archive)."""
    set_archiving(nodes, {n: "" for n in archiving})
    made = make_backlog(nodes, args)
    want = made["end_lsn"] // SEG - 1
    backlog = {n: [w for w in nodes[n].ready_names() if segno_of(w) is not None]
               for n in archiving}
    waited = wait_quiet()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    smp = PairSampler(nodes, agent_pid, pgbr).start()
    s0 = smp.samples[-1]
    t_resume_wall = datetime.now(UTC)
    t0 = time.perf_counter() - smp.t0
    set_archiving(nodes, {n: commands[n] for n in archiving})
    stored_at = smp.wait(caught_up(store, want), args.catchup_timeout)
    every = smp.wait(lambda s: all(caught_up(n, want)(s) for n in archiving),
                     args.catchup_timeout)
    cpu = smp.stop()
    last = smp.samples[-1]
    r: dict = {
        "case": case, "what": CASES[case], "archiving_nodes": archiving, "stored_node": store,
        "wal_made": made, "want_segno": want,
        "backlog_segments": {n: len(v) for n, v in backlog.items()},
        "stored_node_acked_s": round(stored_at - t0, 2) if stored_at is not None else None,
        "all_nodes_acked_s": round(every - t0, 2) if every is not None else None,
        "archived": {n: last[n]["archived_count"] - s0[n]["archived_count"] for n in archiving},
        "failed": {n: last[n]["failed_count"] - s0[n]["failed_count"] for n in nodes},
        "cpu_seconds": cpu, "waited_for_idle_s": waited, "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        "series": [[round(s["t"] - t0, 2), *[s[n]["ready"] for n in nodes]]
                   for s in smp.samples[::10]],
    }
    n_seg = len(backlog[store])
    if ds is not None:  # in the archive = in the vault's catalog
        rows = ds.wal_rows()
        segs = sorted(set().union(*backlog.values()))
        missing = [w for w in segs if w not in rows]
        times = [datetime.fromisoformat(rows[w]["archived"]) for w in segs if w in rows]
        r["catalog"] = {
            "segments": len(segs), "missing": missing[:20], "missing_count": len(missing),
            "stored_from": sorted({rows[w]["server"] for w in segs if w in rows}),
            "last_archived_s": round((max(times) - t_resume_wall).total_seconds(), 2)
            if times else None}
        r["seconds"] = r["catalog"]["last_archived_s"] if not missing else None
        n_seg = len(segs)
    else:
        r["seconds"] = r["stored_node_acked_s"]
    r["segments"] = n_seg
    if r["seconds"]:
        r["segments_per_s"] = round(n_seg / r["seconds"], 2)
        r["mb_per_s"] = round(n_seg * SEG / 1e6 / r["seconds"], 1)
    primary_side = cpu.get("primary_archiver", 0) + cpu.get("primary_archive_command", 0)
    if case == "a":  # the agent's archiving pool stores the primary's files
        primary_side += cpu.get("dbsafe_agent_long_lived_threads", 0)
    elif case == "b":  # the agent's per-request threads poll the primary's deferred pushes
        primary_side += cpu.get("dbsafe_agent_request_threads", 0)
    elif case == "d":
        primary_side += cpu.get("pgbackrest_async", 0)
    r["primary_side_cpu_s"] = round(primary_side, 2)
    log(f"  {case} ({CASES[case]}): {n_seg} segments in {r['seconds']} s "
        f"({r.get('segments_per_s')} seg/s); stored node acked {r['stored_node_acked_s']} s, "
        f"all nodes {r['all_nodes_acked_s']} s; failures {r['failed']}; CPU {cpu}"
        + (f"; catalog {r['catalog']}" if ds else ""))
    return r


# ---------------------------------------------------------------------------------------------
# Log backup latency


def log_latency(ds: DbsafeSet, runs: int) -> dict:
    out: dict = {"primary": [], "secondary": []}
    for i in range(runs):
        for pref in (("primary", "secondary") if i % 2 == 0 else ("secondary", "primary")):
            ds.prefer(pref)
            waited = wait_quiet()
            t = time.perf_counter()
            proc = sh([DBSAFE, "backup", SET, "--type", "log", "--json"], env=ds.env)
            secs = time.perf_counter() - t
            res = json.loads(proc.stdout)
            out[pref].append({"seconds": round(secs, 3), "node": res.get("node"),
                              "last_segment": res.get("last_segment"),
                              "waited_for_idle_s": waited})
            log(f"  log backup, preference {pref}: {secs:.2f} s (node {res.get('node')})")
    return out


# ---------------------------------------------------------------------------------------------


def summarize(result: dict) -> dict:
    s: dict = {"drain": {}}
    for case in CASES:
        runs = result["drain"].get(case) or []
        if runs:
            s["drain"][case] = {
                "what": CASES[case], "seconds": med([r["seconds"] for r in runs]),
                "segments": med([r["segments"] for r in runs]),
                "segments_per_s": med([r.get("segments_per_s") for r in runs]),
                "all_nodes_acked_s": med([r["all_nodes_acked_s"] for r in runs]),
                "primary_side_cpu_s": med([r["primary_side_cpu_s"] for r in runs]),
                "failures": sum(sum(r["failed"].values()) for r in runs)}
    d = s["drain"]

    def ratio(x: str, y: str) -> float | None:
        if x in d and y in d and d[x]["seconds"] and d[y]["seconds"]:
            return round(d[x]["seconds"] / d[y]["seconds"], 3)
        return None

    s["ratio_b_over_a"] = ratio("b", "a")
    s["ratio_b_over_c"] = ratio("b", "c")
    s["ratio_c_over_d"] = ratio("c", "d")
    lat = result.get("latency") or {}
    if lat:
        s["log_backup_seconds"] = {p: med([r["seconds"] for r in lat[p]]) for p in lat}
        s["log_backup_nodes"] = {p: sorted({r["node"] for r in lat[p]}) for p in lat}
    return s


def print_table(s: dict) -> None:
    print("\ndrain of the backlog (seconds until every segment is in the archive)")
    print(f"{'case':<40} {'seconds':>8} {'seg':>5} {'seg/s':>7} {'all acked':>10} "
          f"{'primary CPU s':>14} {'fail':>5}")
    for case, r in s["drain"].items():
        print(f"{case + ' ' + r['what']:<40} {r['seconds']!s:>8} {r['segments']!s:>5} "
              f"{r['segments_per_s']!s:>7} {r['all_nodes_acked_s']!s:>10} "
              f"{r['primary_side_cpu_s']!s:>14} {r['failures']:>5}")
    print(f"ratio b/a (dbsafe: standby vs primary)      {s['ratio_b_over_a']}")
    print(f"ratio b/c (dbsafe vs pgBackRest, standby)   {s['ratio_b_over_c']}")
    print(f"ratio c/d (pgBackRest: standby vs primary)  {s['ratio_c_over_d']}")
    if "log_backup_seconds" in s:
        print(f"log backup, median s: {s['log_backup_seconds']} (nodes {s['log_backup_nodes']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drain-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1, help="drains per case")
    ap.add_argument("--latency-runs", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--catchup-timeout", type=float, default=900)
    ap.add_argument("--small", action="store_true", help="a fresh pgbench -s 10 cluster")
    ap.add_argument("--only", choices=["dbsafe", "pgbackrest"])
    ap.add_argument("--keep-run", action="store_true", help=f"keep {WORK}/run-*")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    stamp, run_dir, template, source = new_run(WORK, args.small)
    log(f"dbsafe {git_commit()}, primary: {source}")
    result: dict = {
        "timestamp": stamp, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
                    "uptime_at_start": subprocess.run(["uptime"], capture_output=True,
                                                      text=True).stdout.strip()},
        "versions": {"dbsafe": git_commit(), "pgbackrest": version([PGBR, "version"]),
                     "postgres": version([str(BIN / "postgres"), "--version"]),
                     "python": platform.python_version()},
        "cluster_source": source, "args": vars(args), "drain": {}, "latency": None}
    nodes: dict[str, Node] = {}
    ds: DbsafeSet | None = None
    tools: list[PgBackRest] = []
    t0 = time.perf_counter()
    try:
        pg = make_cluster(run_dir, "primary", template)
        primary = nodes["primary"] = Node(pg.pgdata, pg.socket_dir, pg.server_log)
        primary.start()
        nodes["standby"] = make_standby(run_dir, primary)
        primary.psql("SELECT count(*) FROM pgbench_accounts")  # warm pgbench's table
        if args.only in (None, "dbsafe"):
            ds = DbsafeSet(run_dir, nodes)
            ds.setup()
            result["dbsafe_settings"] = {"archive_mode": ds.modes, "commands": ds.commands}
            for rep in range(args.repeat):
                order = [("a", "primary", "primary"), ("b", "secondary", "standby")]
                for case, pref, store in order if rep % 2 == 0 else order[::-1]:
                    ds.prefer(pref)
                    result["drain"].setdefault(case, []).append(drain(
                        case, nodes, args, archiving=["primary", "standby"], store=store,
                        commands=ds.commands, agent_pid=ds.agent_pid, ds=ds))
            log("log backup latency")
            result["latency"] = log_latency(ds, args.latency_runs)
            result["dbsafe_agent_log_problems"] = ds.agent_log_problems()
            ds.stop()
        if args.only in (None, "pgbackrest"):
            for case, src, other in (("c", "standby", "primary"), ("d", "primary", "standby")):
                br = PgBackRest(run_dir, src, primary)
                tools.append(br)
                br.setup(set_archiving=False)  # stanza-create against the primary
                br.pg = nodes[src]
                br.write_conf()  # pg1 = the archiving node
                nodes[other].alter(archive_mode="off", archive_command="")
                nodes[src].alter(archive_mode="always" if src == "standby" else "on",
                                 archive_command=br.command)
                for n in ("primary", "standby"):
                    nodes[n].restart()
                wait_streaming(nodes["standby"])
                for _ in range(args.repeat):
                    result["drain"].setdefault(case, []).append(drain(
                        case, nodes, args, archiving=[src], store=src,
                        commands={src: br.command}, pgbr=br))
                br.stop()
    finally:
        result["summary"] = summarize(result)
        result["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
        result["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        for n in ("standby", "primary"):
            if n in nodes:
                with contextlib.suppress(Exception):
                    nodes[n].stop("immediate")
        if ds is not None:
            ds.stop()
        for br in tools:
            with contextlib.suppress(Exception):
                br.stop()
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{stamp}-replica-log.json"
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print_table(result["summary"])
        log(f"results: {path}")
        if not args.keep_run:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
