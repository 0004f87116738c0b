#!/usr/bin/env python3
"""A fleet on this machine: job dispatch latency with 40 agents (PostgreSQL and SQLite
catalogs), a backup through an agent against the same backup run locally, and what 40 idle
agents cost the control plane (bench/README.md, *A fleet*).

Run as root from the checkout:   .venv/bin/python bench/fleet.py

Everything is real processes on loopback, as tests/integration/test_fleet_agents.py runs
them: one ``dbsafe serve --agents-host 127.0.0.1`` per catalog, 40 ``dbsafe agent run``
processes, each registered with a one-time token for a host name of its own
(DBSAFE_AGENT_HOME per agent) and owning one server record (the same small cluster
registered under 40 names: an agent's check of the data directory sees only its own
servers). Throw-away PostgreSQL 15 clusters (initdb as ``postgres``, free ports >= 56500,
sockets only) hold the catalog and the data backed up.

Parts (each can be left out):
  1. dispatch: N jobs (default 1,000) queued from this process with
     ``services.fleet.queue.queue_job``, round robin over the agents, in bursts of 4 at
     random moments (Poisson arrivals, a burst every 0.4 s on average); latency =
     the moment the agent's long poll returned the job (every agent runs under a tracer of
     its calls to the control plane, ``traced_main``) minus the job row's ``start_time``
     (stamped when queued). The row's ``reported`` is the claim's time only until the
     agent's first write on the job (every scoped ``update_job`` is a heartbeat too), so
     it is not read after the run. The job is a ``server-add`` of the agent's own
     server's name: the agent claims it, asks the control plane for the server (one
     scoped catalog call), is refused with ``server.exists`` and ends the job failed (two
     more calls): the cheapest real job.
  2. backup (PostgreSQL catalog): ``dbsafe backup NAME --type full`` of a pgbench scale-30
     cluster, alternately a server of this host (no agent) and the same cluster's server
     owned by agent 0, N times each after one untimed warm-up of each; wall time of the
     command. Agent 0's trace gives its calls to the control plane during each backup;
     one more local backup runs under the tracer of catalog calls (untimed).
  3. idle (PostgreSQL catalog): serve and the 40 agents left alone (warm-up, then a
     window of 3 minutes): serve's CPU from /proc/PID/stat, catalog statements from the
     catalog cluster's log (log_statement = all) and transactions from pg_stat_database.
     The SQLite fleet gets a shorter idle window for serve's CPU alone.

Everything lives in /var/tmp/dbsafe-bench/fleet-<time> (removed at the end unless --keep);
every process started is stopped by its pid and every cluster with pg_ctl, on Ctrl-C too.
Results: a table on stdout and bench/results/fleet-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dataset import BASE, BIN, Cluster, as_postgres, chown_postgres, run  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results"
CLK = os.sysconf("SC_CLK_TCK")
APP = "fleet-bench"  # application_name of this script's own catalog queries (not counted)

CATALOG_SETTINGS = {
    "listen_addresses": "''", "max_connections": "200", "logging_collector": "off",
    # every statement, with time, pid and application name; no bind parameters (job
    # results would fill the log)
    "log_statement": "'all'", "log_line_prefix": "'%m [%p] %a '",
    "log_parameter_max_length": "0",
}
SOURCE_SETTINGS = {
    "listen_addresses": "''", "fsync": "off", "autovacuum": "off", "max_connections": "100",
    "max_wal_size": "'2GB'", "logging_collector": "off",
}


# ---------------------------------------------------------------------------------------
# processes, clusters, measurements
# ---------------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[fleet {datetime.now():%H:%M:%S}] {msg}", flush=True)


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of a process from /proc/PID/stat; with ``children``
    also those of its children it waited for."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cluster_cpu(pgdata: Path) -> float:
    """CPU seconds of a PostgreSQL cluster: its postmaster (with the children it reaped)
    plus its live children."""
    pm = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    total = proc_cpu(pm, children=True)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pm:
            total += (int(fields[11]) + int(fields[12])) / CLK
    return total


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; by pid, never by name."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def new_cluster(area: Path, name: str, settings: dict[str, str],
                checksums: bool = False) -> Cluster:
    pgdata = area / name
    run(as_postgres([str(BIN / "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                     "--locale", "C", "--no-sync", *(["--data-checksums"] if checksums else []),
                     "-D", str(pgdata)]))
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write("\n# bench/fleet.py\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    cluster = Cluster(pgdata, area / f"{name}-socket", area / f"{name}.log")
    cluster.start()
    return cluster


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def stamp_of(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def read_trace(path: Path) -> list[dict]:
    """The records of a tracer's file (``traced_main``); a line being written is left out."""
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


class StatementLog:
    """The catalog cluster's statements (log_statement = all) between two offsets of its
    log: counted, and by statement (this script's own, application_name fleet-bench, left
    out; BEGIN/COMMIT counted apart)."""

    LINE = re.compile(r"^\S+ \S+ \S+ \[\d+\] (\S*) ?LOG:  (?:statement|execute [^:]*): (.*)$")

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        return self.path.stat().st_size

    def between(self, start: int, end: int) -> dict:
        with open(self.path, "rb") as f:
            f.seek(start)
            text = f.read(end - start).decode(errors="replace")
        kinds: Counter[str] = Counter()
        tx = 0
        for line in text.splitlines():
            m = self.LINE.match(line)
            if not m or m.group(1) == APP:
                continue
            statement = " ".join(m.group(2).split())
            if statement.upper() in ("BEGIN", "COMMIT", "ROLLBACK"):
                tx += 1
                continue
            kinds[statement[:90]] += 1
        return {"statements": sum(kinds.values()), "begin_commit": tx,
                "by_statement": dict(kinds.most_common(20))}


class CatalogStats:
    """Transactions of the catalog's database (pg_stat_database), on a connection of this
    script's own (its samples subtracted)."""

    def __init__(self, cluster: Cluster) -> None:
        import psycopg

        self.conn = psycopg.connect(host=str(cluster.socket_dir), port=cluster.port,
                                    user="postgres", dbname="postgres", autocommit=True,
                                    application_name=APP)
        self.samples = 0

    def xacts(self) -> int:
        self.samples += 1
        row = self.conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                "WHERE datname = 'postgres'").fetchone()
        return int(row[0]) - self.samples

    def close(self) -> None:
        self.conn.close()


class NotifyProbe:
    """A listener of this script's own on a PostgreSQL catalog's jobs channel, beside
    serve's: when each queued job's NOTIFY reached a listener ({agent id: [epoch
    seconds, ...]} in order)."""

    def __init__(self, cluster: Cluster, channel: str) -> None:
        import psycopg

        self.conn = psycopg.connect(host=str(cluster.socket_dir), port=cluster.port,
                                    user="postgres", dbname="postgres", autocommit=True,
                                    application_name=APP)
        self.conn.execute(f"LISTEN {channel}")
        self.seen: dict[str, list[float]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        import psycopg

        try:
            while not self._stop.is_set():
                for note in self.conn.notifies(timeout=0.5):
                    self.seen[note.payload].append(time.time())
        except psycopg.Error as exc:  # the catalog stopped under it (an interrupted run)
            if not self._stop.is_set():
                log(f"the NOTIFY listener stopped: {exc}")

    def stop(self) -> dict[str, list[float]]:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()
        return self.seen


# ---------------------------------------------------------------------------------------
# a fleet: serve, agents, their servers
# ---------------------------------------------------------------------------------------

class Agent:
    def __init__(self, n: int, home: Path) -> None:
        self.n = n
        self.host = f"bench-host-{n:02d}"
        self.server = f"fleet-{n:02d}"
        self.home = home
        self.id = ""
        self.proc: subprocess.Popen | None = None
        self.log = home.parent / f"{home.name}.log"
        self.trace = home.parent / f"{home.name}.trace.jsonl"


class Fleet:
    """A vault, its ``dbsafe serve`` with the agents' listener, and its agents."""

    def __init__(self, area: Path, env: dict[str, str], name: str,
                 catalog: str | None) -> None:
        self.area = area / name
        self.area.mkdir()
        self.env = env
        self.name = name
        self.vault_path = self.area / "vault"
        self.serve: subprocess.Popen | None = None
        self.agents: list[Agent] = []
        init = ["vault", "init"] + (["--catalog", catalog] if catalog else [])
        self.cli(*init)
        self.vault = None  # this process's handle (opened once serve runs)

    def cli(self, *args: str, timeout: float = 600) -> dict:
        proc = subprocess.run([sys.executable, "-m", "dbsafe", "--vault", str(self.vault_path),
                               *args, "--json"], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"dbsafe {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return json.loads(proc.stdout)

    def start_serve(self) -> None:
        self.agents_port = free_tcp_port()
        self.url = f"https://127.0.0.1:{self.agents_port}"
        self.serve_log = self.area / "serve.log"
        with open(self.serve_log, "w") as out:
            self.serve = subprocess.Popen(
                [sys.executable, "-m", "dbsafe", "--vault", str(self.vault_path), "serve",
                 "--port", str(free_tcp_port()), "--agents-host", "127.0.0.1",
                 "--agents-port", str(self.agents_port), "--agents-url", self.url],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if self.serve.poll() is not None:
                raise RuntimeError(f"serve ended: {self.serve_log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the agents' listener did not start")
            settings = json.loads((self.vault_path / "client.json").read_text())
            if "agents" in settings:
                try:
                    httpx.get(f"{self.url}/agent/v1/hello", verify=False, timeout=2)  # noqa: S501
                    self.fingerprint = settings["agents"]["fingerprint"]
                    break
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        from dbsafe.services.handle.vault_handle import Vault

        self.vault = Vault.open(self.vault_path)

    def register_agents(self, count: int) -> None:
        """Tokens made here (the service `agent token create` runs), traded by
        ``agent.enrolment.register`` (what `dbsafe agent register` runs) for each agent's
        folder."""
        from dbsafe.agent import enrolment
        from dbsafe.services import fleet

        self.agents = [Agent(n, self.area / f"agent-{n:02d}") for n in range(count)]
        tokens = [fleet.create_token(self.vault, "bench", a.host, 60)["token"]
                  for a in self.agents]

        def register(pair: tuple[Agent, str]) -> None:
            agent, token = pair
            out = enrolment.register(self.url, token, fingerprint_given=self.fingerprint,
                                     host=agent.host, home=agent.home)
            agent.id = out["agent_id"]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(register, zip(self.agents, tokens, strict=True)))

    def start_agents(self) -> float:
        """Start every agent under the call tracer (``traced_main``: it records when each
        job reached the agent); wait until each says it serves. Returns the seconds it
        took."""
        t0 = time.perf_counter()
        for agent in self.agents:
            # a run folder each (its WAL socket): one agent per vault may serve a host's,
            # and these 40 simulated hosts share one machine
            env = {**self.env, "DBSAFE_AGENT_HOME": str(agent.home),
                   "DBSAFE_RUN_DIR": str(agent.home / "run")}
            argv = [sys.executable, str(HERE / "fleet.py"), "_traced", str(agent.trace),
                    "agent", "run"]
            with open(agent.log, "w") as out:
                agent.proc = subprocess.Popen(argv, env=env, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        waiting = list(self.agents)
        while waiting:
            for agent in list(waiting):
                if agent.proc.poll() is not None:
                    raise RuntimeError(f"agent {agent.n} ended: {agent.log.read_text()[-2000:]}")
                if " serving " in agent.log.read_text():
                    waiting.remove(agent)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} agents did not start")
            time.sleep(0.25)
        return time.perf_counter() - t0

    def add_servers(self, source: Cluster) -> None:
        """Each agent registers the source cluster as its own server (``fleet.add_server``,
        what `dbsafe server add NAME --agent ID` runs)."""
        from dbsafe.services import fleet

        def add(agent: Agent) -> None:
            fleet.add_server(self.vault, agent.id, agent.server, str(source.pgdata),
                             source.port)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(add, self.agents))

    def received(self) -> dict[str, float]:
        """When each job reached its agent (the end of the long poll that returned it),
        from the agents' traces: {job id: epoch seconds}."""
        found: dict[str, float] = {}
        for agent in self.agents:
            for rec in read_trace(agent.trace):
                if rec.get("job"):
                    found[rec["job"]] = rec["t"] + rec["ms"] / 1000
        return found

    def agent_cpu(self) -> float:
        return sum(proc_cpu(a.proc.pid) for a in self.agents)

    def log_problems(self) -> dict:
        """Warnings, errors and tracebacks in serve's and the agents' logs, but for the
        dispatched jobs' own refusal (counted apart)."""
        pattern = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback")
        expected = re.compile(r"job server-add-bench-\S+ failed: a server named '[^']+' is "
                              "already registered")
        found: dict[str, list[str]] = {}
        refusals = 0
        for path in [self.serve_log, *(a.log for a in self.agents)]:
            if path.exists():
                lines = []
                for ln in path.read_text(errors="replace").splitlines():
                    if expected.search(ln):
                        refusals += 1
                    elif pattern.search(ln):
                        lines.append(ln)
                if lines:
                    found[path.name] = lines[:5] + ([f"... {len(lines)} in all"]
                                                    if len(lines) > 5 else [])
        return {"dispatched_jobs_refused_as_expected": refusals, "other": found}

    def stop(self) -> None:
        """SIGTERM to every agent at once, SIGKILL to those left after 5 s (an idle agent
        ends only when its long poll does, up to 25 s later; none has a job by now); then
        serve."""
        running = [a.proc for a in self.agents if a.proc is not None and a.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.serve is not None:
            stop_process(self.serve, 30)
        if self.vault is not None:
            self.vault.catalog.close()
            self.vault = None


# ---------------------------------------------------------------------------------------
# 1. dispatch latency
# ---------------------------------------------------------------------------------------

def dispatch(fleet: Fleet, source: Cluster, jobs: int, burst: int, interval: float,
             probe: NotifyProbe | None = None) -> dict:
    """Queue ``jobs`` server-add jobs, ``burst`` at a time (to as many agents), round
    robin over the agents, the bursts at random (Poisson: exponential gaps of mean
    ``burst * interval`` seconds, so that no periodic wake-up of the control plane lines
    up with them); then the time each was queued (its row), its NOTIFY reached a listener
    (``probe``) and it reached its agent (the agents' traces)."""
    from dbsafe.services.activity.jobs import FINAL
    from dbsafe.services.fleet.queue import queue_job

    agents = fleet.agents
    ids: list[str] = []
    queue_ms: list[float] = []
    t0 = time.perf_counter()
    serve_cpu0, agents_cpu0 = proc_cpu(fleet.serve.pid), fleet.agent_cpu()
    busy0 = machine_busy()
    gaps = random.Random(18)
    next_at = time.monotonic()
    for n in range(jobs):
        agent = agents[n % len(agents)]
        job_id = f"server-add-bench-{n:04d}-{os.urandom(3).hex()}"
        request = {"name": agent.server, "pgdata": str(source.pgdata), "port": source.port,
                   "host": None, "bin_dir": None, "region": None}
        q0 = time.perf_counter()
        queue_job(fleet.vault, agent.id, "server-add", agent.server, request, job_id=job_id)
        queue_ms.append((time.perf_counter() - q0) * 1000)
        ids.append(job_id)
        if (n + 1) % burst == 0:
            next_at += gaps.expovariate(1 / (burst * interval))
            time.sleep(max(0.0, next_at - time.monotonic()))
    queued_s = time.perf_counter() - t0
    deadline = time.monotonic() + 120
    while True:
        rows = {r["id"]: r for r in fleet.vault.catalog.list_jobs(jobs + 500, type="server-add")}
        pending = [i for i in ids if i not in rows or rows[i]["state"] not in FINAL]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    serve_cpu = proc_cpu(fleet.serve.pid) - serve_cpu0
    agents_cpu = fleet.agent_cpu() - agents_cpu0
    wall = time.perf_counter() - t0
    machine_cpu = machine_busy() - busy0
    received = fleet.received()
    notified = probe.stop() if probe else {}
    wake, after_wake = [], []
    latency, end_to_end, last_write, busy = [], [], [], 0
    states: Counter[str] = Counter()
    last_end: dict[str, float] = {}
    for job_id in ids:
        row = rows.get(job_id)
        if row is None:
            states["missing"] += 1
            continue
        states[f"{row['state']}:{row['error_code']}"] += 1
        queued, reported, ended = (stamp_of(row["start_time"]), stamp_of(row["reported"]),
                                   stamp_of(row["end_time"]))
        if job_id in received:
            latency.append((received[job_id] - queued) * 1000)
        if notified.get(row["agent_id"]):  # this agent's NOTIFYs, in the order queued
            heard = notified[row["agent_id"]].pop(0)
            wake.append((heard - queued) * 1000)
            if job_id in received:
                after_wake.append((received[job_id] - heard) * 1000)
        if ended is not None:
            end_to_end.append((ended - queued) * 1000)
        if reported is not None:  # the claim's stamp, overwritten by the agent's last write
            last_write.append((reported - queued) * 1000)
        if row["agent_id"] in last_end and last_end[row["agent_id"]] > queued:
            busy += 1  # the agent's previous job had not ended when this one was queued
        if ended is not None:
            last_end[row["agent_id"]] = ended
    return {
        "jobs": jobs, "agents": len(agents), "burst": burst,
        "interval_ms": interval * 1000, "queued_in_s": round(queued_s, 1),
        "received": len(latency), "pending_at_end": len(pending), "states": dict(states),
        "agent_still_busy": busy,
        "latency_ms": summary(latency), "end_to_end_ms": summary(end_to_end),
        "reported_minus_queued_ms": summary(last_write),
        "notify_heard_ms": summary(wake), "notify_to_agent_ms": summary(after_wake),
        "queue_call_ms": summary(queue_ms),
        "latency_histogram_ms": histogram(latency),
        "serve_cpu_s": round(serve_cpu, 2), "agents_cpu_s": round(agents_cpu, 2),
        "machine_busy_cores": round(machine_cpu / wall, 2), "wall_s": round(wall, 1),
    }


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    return {"n": len(values), "p50": round(percentile(values, 50), 1),
            "p90": round(percentile(values, 90), 1), "p99": round(percentile(values, 99), 1),
            "max": round(max(values), 1), "min": round(min(values), 1),
            "mean": round(statistics.fmean(values), 1)}


def histogram(values: list[float]) -> dict[str, int]:
    edges = [2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    counts: Counter[str] = Counter()
    for v in values:
        label = next((f"<{e}" for e in edges if v < e), f">={edges[-1]}")
        counts[label] += 1
    return {f"<{e}": counts[f"<{e}"] for e in edges if counts[f"<{e}"]} | (
        {f">={edges[-1]}": counts[f">={edges[-1]}"]} if counts[f">={edges[-1]}"] else {})


# ---------------------------------------------------------------------------------------
# 2. a backup through an agent vs. the same backup run here
# ---------------------------------------------------------------------------------------

def timed_backup(fleet: Fleet, server: str, stmts: StatementLog, stats: CatalogStats,
                 agent: Agent, traced: Path | None = None) -> dict:
    """``dbsafe backup SERVER --type full --json`` (under the catalog-call tracer when
    ``traced``): wall time, the job's times, CPU of serve, agent and the command."""
    subprocess.run(["sync"], check=True)
    argv = ([sys.executable, str(HERE / "fleet.py"), "_traced", str(traced)] if traced
            else [sys.executable, "-m", "dbsafe"])
    argv += ["--vault", str(fleet.vault_path), "backup", server, "--type", "full", "--json"]
    off0, x0 = stmts.offset(), stats.xacts()
    serve0, agent0 = proc_cpu(fleet.serve.pid), proc_cpu(agent.proc.pid)
    # the command's CPU: this process's waited-for children, before and after (nothing
    # else is reaped meanwhile: serve and the agents run to the end)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    p0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=fleet.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=900)
    wall = time.perf_counter() - p0
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    usage = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
    if proc.returncode != 0:
        raise RuntimeError(f"backup {server} failed: {out}{err}")
    result = json.loads(out)
    time.sleep(0.3)  # the log's last lines
    statements = stmts.between(off0, stmts.offset())
    job = fleet.vault.catalog.get_job(result["job_id"])
    queued, job_end = stamp_of(job["start_time"]), stamp_of(job["end_time"])
    claimed = fleet.received().get(result["job_id"]) if job.get("agent_id") else None
    return {
        "server": server, "wall_s": round(wall, 3), "started": started, "ended": ended,
        "own_seconds": result.get("seconds"), "point_id": result["point_id"],
        "bytes_read": result.get("bytes_read"), "bytes_stored": result.get("bytes_stored"),
        "job_id": result["job_id"], "job_state": job["state"],
        # command start -> job row; job row -> the job reached the agent; then -> the
        # job's end; job end -> command exit
        "to_job_s": round(queued - started, 3),
        "to_claim_s": round(claimed - queued, 3) if claimed else None,
        "job_run_s": round(job_end - (claimed or queued), 3),
        "after_end_s": round(ended - job_end, 3),
        "command_cpu_s": usage, "serve_cpu_s": round(proc_cpu(fleet.serve.pid) - serve0, 2),
        "agent_cpu_s": round(proc_cpu(agent.proc.pid) - agent0, 2),
        "catalog_statements": statements["statements"],
        "catalog_begin_commit": statements["begin_commit"],
        "catalog_xacts": stats.xacts() - x0,
    }


def agent_calls(trace: Path, start: float, end: float) -> dict:
    """The calls agent 0 made to the control plane between two instants: by call, with
    their time (its long polls left out: they wait by design)."""
    calls: Counter[str] = Counter()
    ms: Counter[str] = Counter()
    for rec in read_trace(trace):
        if rec["kind"] != "http" or not start <= rec["t"] <= end \
                or rec["name"].endswith("/jobs/next"):
            continue
        calls[rec["name"]] += 1
        ms[rec["name"]] += rec["ms"]
    return {"calls": sum(calls.values()), "ms": round(sum(ms.values()), 1),
            "by_call": {k: {"n": n, "ms": round(ms[k], 1)} for k, n in calls.most_common()}}


def local_calls(trace: Path) -> dict:
    calls: Counter[str] = Counter()
    ms: Counter[str] = Counter()
    for rec in read_trace(trace):
        if rec["kind"] == "catalog":
            calls[rec["name"]] += 1
            ms[rec["name"]] += rec["ms"]
    return {"calls": sum(calls.values()), "ms": round(sum(ms.values()), 1),
            "by_call": {k: {"n": n, "ms": round(ms[k], 1)} for k, n in calls.most_common()}}


def call_round_trips(fleet: Fleet, agent: Agent, n: int = 300) -> dict:
    """One catalog read made ``n`` times by this process: with agent 0's credential through
    the agents' API (what each of an agent's catalog calls costs), and straight on the
    catalog (what the same read costs a command run here): p50 / p90 in ms."""
    from dbsafe.agent import enrolment

    control = enrolment.load(agent.home).control()
    instance = fleet.vault.catalog.get_server(agent.server)["instance_id"]
    calls = {
        "get_server": (lambda: control.catalog("get_server", [agent.server], {}),
                       lambda: fleet.vault.catalog.get_server(agent.server)),
        "list_items": (lambda: control.catalog("list_items", [instance], {}),
                       lambda: fleet.vault.catalog.list_items(instance)),
    }
    out: dict = {}
    try:
        for name, (remote, here) in calls.items():
            for arm, fn in (("agents_api", remote), ("catalog", here)):
                fn()  # the connection, the scope's cache
                ms = []
                for _ in range(n):
                    t = time.perf_counter()
                    fn()
                    ms.append((time.perf_counter() - t) * 1000)
                out[f"{name}_{arm}"] = {"p50": round(percentile(ms, 50), 2),
                                        "p90": round(percentile(ms, 90), 2)}
    finally:
        control.close()
    return out


def backups(fleet: Fleet, source: Cluster, stmts: StatementLog, stats: CatalogStats,
            repeat: int) -> dict:
    agent = fleet.agents[0]
    busy0, t0 = machine_busy(), time.perf_counter()
    round_trips = call_round_trips(fleet, agent)
    log(f"backup: one catalog call, through the agents' API / here: {round_trips}")
    log("backup: untimed warm-up, local then through agent 0")
    warm = [timed_backup(fleet, "local", stmts, stats, agent),
            timed_backup(fleet, agent.server, stmts, stats, agent)]
    runs: dict[str, list[dict]] = {"local": [], "agent": []}
    for n in range(repeat):
        order = ("local", "agent") if n % 2 == 0 else ("agent", "local")
        for arm in order:
            res = timed_backup(fleet, "local" if arm == "local" else agent.server, stmts,
                               stats, agent)
            if arm == "agent":
                res["agent_calls"] = agent_calls(agent.trace, res["started"], res["ended"])
            runs[arm].append(res)
            log(f"  {arm:5} {res['wall_s']:.2f} s (job {res['job_run_s']:.2f} s)")
    traced = fleet.area / "local-backup.trace.jsonl"
    traced_run = timed_backup(fleet, "local", stmts, stats, agent, traced=traced)
    med = {arm: statistics.median(r["wall_s"] for r in rs) for arm, rs in runs.items()}

    def median_of(arm: str, key: str) -> float | None:
        values = [r[key] for r in runs[arm] if r.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    breakdown = {arm: {k: median_of(arm, k) for k in
                       ("wall_s", "own_seconds", "to_job_s", "to_claim_s", "job_run_s",
                        "after_end_s", "command_cpu_s", "serve_cpu_s", "agent_cpu_s",
                        "catalog_statements", "catalog_xacts")} for arm in runs}
    return {
        "repeat": repeat, "source_bytes": du(source.pgdata),
        "machine_busy_cores": round((machine_busy() - busy0) / (time.perf_counter() - t0), 2),
        "median_wall_s": {k: round(v, 3) for k, v in med.items()},
        "ratio_agent_local": round(med["agent"] / med["local"], 3),
        "target_ratio": 1.05, "breakdown_medians": breakdown,
        "agent_calls_per_backup": runs["agent"][-1]["agent_calls"],
        "agent_calls_counts": [r["agent_calls"]["calls"] for r in runs["agent"]],
        "agent_calls_ms": [r["agent_calls"]["ms"] for r in runs["agent"]],
        "local_catalog_calls": local_calls(traced) | {"wall_s": traced_run["wall_s"]},
        "call_round_trips_ms": round_trips,
        "warm_up": warm, "runs": runs,
    }


def du(path: Path) -> int:
    return int(run(["du", "-sb", "--exclude=pg_wal", str(path)]).stdout.split()[0])


# ---------------------------------------------------------------------------------------
# 3. idle
# ---------------------------------------------------------------------------------------

def idle(fleet: Fleet, seconds: float, warm_up: float, stmts: StatementLog | None,
         stats: CatalogStats | None, catalog: Cluster | None) -> dict:
    log(f"idle: {warm_up:.0f} s warm-up, then {seconds:.0f} s")
    time.sleep(warm_up)
    pid = fleet.serve.pid
    off0 = stmts.offset() if stmts else 0
    x0 = stats.xacts() if stats else 0
    cat0 = cluster_cpu(catalog.pgdata) if catalog else 0.0
    serve0, agents0, busy0 = proc_cpu(pid), fleet.agent_cpu(), machine_busy()
    t0, wall0 = time.monotonic(), time.time()
    samples = []
    last = serve0
    while (elapsed := time.monotonic() - t0) < seconds:
        time.sleep(min(10.0, seconds - elapsed))
        now = proc_cpu(pid)
        samples.append(round(now - last, 2))
        last = now
    minutes = (time.monotonic() - t0) / 60
    wall1 = time.time()
    requests: Counter[str] = Counter()
    for agent in fleet.agents:
        for rec in read_trace(agent.trace):
            if rec["kind"] == "http" and wall0 <= rec["t"] + rec["ms"] / 1000 < wall1:
                requests[rec["name"]] += 1
    res = {
        "seconds": round(minutes * 60, 1), "agents": len(fleet.agents),
        "serve_cpu_s_per_min": round((proc_cpu(pid) - serve0) / minutes, 3),
        "serve_cpu_per_10s": samples,
        "agents_cpu_s_per_min_total": round((fleet.agent_cpu() - agents0) / minutes, 3),
        "agent_requests_per_min": {k: round(v / minutes, 1) for k, v in requests.items()},
        "machine_busy_cores": round((machine_busy() - busy0) / (minutes * 60), 2),
        "serve_rss_mb": round(proc_rss_mb(pid), 1),
        "agent_rss_mb_median": round(statistics.median(
            proc_rss_mb(a.proc.pid) for a in fleet.agents), 1),
    }
    if stmts and stats and catalog:
        time.sleep(0.3)
        counted = stmts.between(off0, stmts.offset())
        res.update({
            "catalog_statements_per_min": round(counted["statements"] / minutes, 1),
            "catalog_begin_commit_per_min": round(counted["begin_commit"] / minutes, 1),
            "catalog_xacts_per_min": round((stats.xacts() - x0) / minutes, 1),
            "catalog_server_cpu_s_per_min": round((cluster_cpu(catalog.pgdata) - cat0)
                                                  / minutes, 3),
            "statements_per_min_by_statement": {
                k: round(v / minutes, 1) for k, v in counted["by_statement"].items()},
        })
    return res


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------

def machine() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True).stdout.strip()
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    return {"cpus": os.cpu_count(), "mem_gb": round(mem, 1), "load_avg": os.getloadavg(),
            "python": sys.version.split()[0], "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def child_env(area: Path) -> dict[str, str]:
    """dbsafe's environment: nothing of the caller's dbsafe or libpq settings; its logs,
    state and keys in the run's folder."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DBSAFE_HOME", "PGUSER", "PGHOST", "PGPORT", "PGDATABASE")}
    xdg = area / "xdg"
    env.update(XDG_STATE_HOME=str(xdg / "state"), XDG_DATA_HOME=str(xdg / "data"),
               XDG_CACHE_HOME=str(xdg / "cache"), XDG_CONFIG_HOME=str(xdg / "config"),
               DBSAFE_KEY_DIR=str(area / "keys"), NO_COLOR="1", COLUMNS="200")
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=1000, help="jobs dispatched per catalog")
    ap.add_argument("--burst", type=int, default=4, help="jobs queued at once")
    ap.add_argument("--interval-ms", type=float, default=100,
                    help="mean time between two jobs (a burst every burst x this)")
    ap.add_argument("--repeat", type=int, default=5, help="timed backups per arm")
    ap.add_argument("--scale", type=int, default=30, help="pgbench scale of the source")
    ap.add_argument("--idle-seconds", type=float, default=180)
    ap.add_argument("--idle-warm-up", type=float, default=30)
    ap.add_argument("--sqlite-idle-seconds", type=float, default=60)
    ap.add_argument("--catalogs", default="postgresql,sqlite")
    ap.add_argument("--skip", default="", help="parts left out: dispatch,backup,idle")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (clusters run as postgres through runuser; agents as root)")
    skip = set(filter(None, args.skip.split(",")))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o755)
    area = BASE / f"fleet-{stamp}"
    area.mkdir()
    chown_postgres(area)
    env = child_env(area)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("XDG_", "DBSAFE_"))})
    for k in ("DBSAFE_HOME", "PGUSER", "PGHOST", "PGPORT", "PGDATABASE"):
        os.environ.pop(k, None)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    res: dict = {"time": stamp, "machine": machine(), "settings": vars(args)}
    clusters: list[Cluster] = []
    fleets: list[Fleet] = []
    t_start = time.perf_counter()
    try:
        log(f"run folder {area}")
        source = new_cluster(area, "source", SOURCE_SETTINGS, checksums=True)
        clusters.append(source)
        if "backup" not in skip:
            log(f"pgbench -i -s {args.scale}")
            run(["runuser", "-u", "postgres", "--", str(BIN / "pgbench"), "-i", "-q", "-s",
                 str(args.scale), *source.conn_args(), "postgres"])
            source.psql("VACUUM (FREEZE, ANALYZE)")
            source.psql("CHECKPOINT")
        for catalog_kind in filter(None, args.catalogs.split(",")):
            part: dict = {}
            res[catalog_kind] = part
            catalog = stmts = stats = None
            if catalog_kind == "postgresql":
                catalog = new_cluster(area, "catalog", CATALOG_SETTINGS)
                clusters.append(catalog)
                spec = (f"host={catalog.socket_dir} port={catalog.port} dbname=postgres "
                        "user=postgres")
                stmts, stats = StatementLog(catalog.server_log), CatalogStats(catalog)
            else:
                spec = None
            t = time.perf_counter()
            fleet = Fleet(area, env, f"fleet-{catalog_kind}", spec)
            fleets.append(fleet)
            if catalog_kind == "postgresql":
                # this host's server first: the control plane's check of the data
                # directory sees every server, an agent's only its own
                fleet.cli("server", "add", "local", "--pgdata", str(source.pgdata), "--port",
                          str(source.port))
            fleet.start_serve()
            log(f"{catalog_kind}: serve up; registering {args.agents} agents")
            fleet.register_agents(args.agents)
            part["agents_start_s"] = round(fleet.start_agents(), 1)
            log(f"{catalog_kind}: {args.agents} agents serving after "
                f"{part['agents_start_s']} s; each registers its server")
            t_add = time.perf_counter()
            fleet.add_servers(source)
            part["server_adds_s"] = round(time.perf_counter() - t_add, 1)
            part["setup_s"] = round(time.perf_counter() - t, 1)
            if "dispatch" not in skip:
                log(f"{catalog_kind}: dispatching {args.jobs} jobs")
                off0 = stmts.offset() if stmts else 0
                probe = (NotifyProbe(catalog, fleet.vault.catalog.jobs_channel)
                         if catalog is not None else None)
                part["dispatch"] = dispatch(fleet, source, args.jobs, args.burst,
                                            args.interval_ms / 1000, probe)
                if stmts:
                    counted = stmts.between(off0, stmts.offset())
                    part["dispatch"]["catalog_statements"] = counted["statements"]
                    part["dispatch"]["catalog_by_statement"] = counted["by_statement"]
                lat = part["dispatch"]["latency_ms"]
                log(f"  p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
                    f"max {lat.get('max')} ms")
            if catalog_kind == "postgresql":
                if "idle" not in skip:
                    part["idle"] = idle(fleet, args.idle_seconds, args.idle_warm_up, stmts,
                                        stats, catalog)
                if "backup" not in skip:
                    part["backup"] = backups(fleet, source, stmts, stats, args.repeat)
            elif "idle" not in skip and args.sqlite_idle_seconds > 0:
                part["idle"] = idle(fleet, args.sqlite_idle_seconds, args.idle_warm_up,
                                    None, None, None)
            part["log_problems"] = fleet.log_problems()
            fleet.stop()
            if stats:
                stats.close()
            if catalog is not None:
                catalog.stop()
    finally:
        for fleet in fleets:
            try:
                fleet.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest anyway
                log(f"stopping {fleet.name}: {exc}")
        for cluster in clusters:
            try:
                cluster.stop("fast")
            except Exception as exc:  # noqa: BLE001
                log(f"stopping {cluster.pgdata}: {exc}")
        if not args.keep:
            shutil.rmtree(area, ignore_errors=True)
    res["machine"]["load_avg_end"] = os.getloadavg()
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fleet-{stamp}.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print_table(res)
    print(f"\nresults: {out}")


def print_table(res: dict) -> None:
    m = res["machine"]
    dirty = " (dirty)" if m["dirty"] else ""
    print(f"\nfleet benchmark {res['time']}: dbsafe {m['commit']}{dirty},"
          f" {m['cpus']} CPUs, load {m['load_avg'][0]:.1f} -> {m['load_avg_end'][0]:.1f},"
          f" {res['total_s']:.0f} s")
    print("\n1. dispatch latency, queued -> received by the agent (ms)")
    print(f"   {'catalog':<11} {'jobs':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}"
          f" {'queued->ended p50':>18}  serve CPU s")
    for kind in ("postgresql", "sqlite"):
        d = res.get(kind, {}).get("dispatch")
        if not d or not d["latency_ms"]:
            continue
        lat, e2e = d["latency_ms"], d["end_to_end_ms"]
        print(f"   {kind:<11} {lat['n']:>5} {lat['p50']:>7} {lat['p90']:>7} {lat['p99']:>7}"
              f" {lat['max']:>7} {e2e.get('p50', '-'):>18}  {d['serve_cpu_s']}")
        if d.get("notify_heard_ms"):
            w, a = d["notify_heard_ms"], d["notify_to_agent_ms"]
            print(f"   {'':<11} of which queued -> NOTIFY heard p50 {w['p50']} p99 {w['p99']};"
                  f" NOTIFY -> agent p50 {a['p50']} p99 {a['p99']}")
    b = res.get("postgresql", {}).get("backup")
    if b:
        print(f"\n2. full backup, {b['source_bytes'] / 1e6:.0f} MB cluster, median of "
              f"{b['repeat']} (s)")
        print(f"   local {b['median_wall_s']['local']:.2f}   agent "
              f"{b['median_wall_s']['agent']:.2f}   ratio {b['ratio_agent_local']:.3f}"
              f" (target <= {b['target_ratio']})")
        for arm, d in b["breakdown_medians"].items():
            print(f"   {arm:5}: to job row {d['to_job_s']}, to claim {d['to_claim_s']}, "
                  f"job {d['job_run_s']}, after end {d['after_end_s']}; CPU command "
                  f"{d['command_cpu_s']} serve {d['serve_cpu_s']} agent {d['agent_cpu_s']};"
                  f" catalog statements {d['catalog_statements']}")
        c = b["agent_calls_per_backup"]
        print(f"   agent's calls to the control plane per backup: {c['calls']} "
              f"({c['ms']:.0f} ms); local catalog calls: "
              f"{b['local_catalog_calls']['calls']} ({b['local_catalog_calls']['ms']:.0f} ms)")
        for name, t in b.get("call_round_trips_ms", {}).items():
            print(f"   one {name} call: p50 {t['p50']} ms, p90 {t['p90']} ms")
    for kind in ("postgresql", "sqlite"):
        i = res.get(kind, {}).get("idle")
        if not i:
            continue
        print(f"\n3. idle control plane ({kind}), {i['agents']} agents, {i['seconds']:.0f} s")
        print(f"   serve CPU {i['serve_cpu_s_per_min']:.2f} s/min; agents (all) "
              f"{i['agents_cpu_s_per_min_total']:.2f} s/min; serve RSS {i['serve_rss_mb']} MB,"
              f" agent RSS {i['agent_rss_mb_median']} MB")
        if "catalog_statements_per_min" in i:
            print(f"   catalog: {i['catalog_statements_per_min']} statements/min (+"
                  f"{i['catalog_begin_commit_per_min']} BEGIN/COMMIT), "
                  f"{i['catalog_xacts_per_min']} transactions/min, catalog server CPU "
                  f"{i['catalog_server_cpu_s_per_min']:.2f} s/min")


# ---------------------------------------------------------------------------------------
# the tracer: `fleet.py _traced FILE dbsafe-args...` runs dbsafe with its calls to the
# control plane (agent) and to its catalog (outermost calls only) written to FILE
# ---------------------------------------------------------------------------------------

def traced_main(trace_file: str, argv: list[str]) -> None:
    import functools

    out = open(trace_file, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    lock = threading.Lock()
    depth = threading.local()

    def emit(kind: str, name: str, t: float, ms: float, job: str | None = None) -> None:
        rec = {"t": round(t, 4), "ms": round(ms, 3), "kind": kind, "name": name}
        if job:
            rec["job"] = job
        with lock:
            out.write(json.dumps(rec) + "\n")

    from dbsafe.agent import control

    send = control.ControlPlane._send

    def traced_send(self, method, path, **kw):  # type: ignore[no-untyped-def]
        t, p0 = time.time(), time.perf_counter()
        job = None
        try:
            response = send(self, method, path, **kw)
            if path == "/jobs/next" and response.status_code == 200:
                job = response.json().get("id")
            return response
        finally:
            name = re.sub(r"/jobs/[^/]+/report", "/jobs/{id}/report", path)
            emit("http", f"{method} {name}", t, (time.perf_counter() - p0) * 1000, job)
    control.ControlPlane._send = traced_send

    from dbsafe.catalog import postgres, sql, sqlite

    def wrap(fn, name):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def call(*a, **kw):  # type: ignore[no-untyped-def]
            level = getattr(depth, "n", 0)
            depth.n = level + 1
            t, p0 = time.time(), time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                depth.n = level
                if level == 0:
                    emit("catalog", name, t, (time.perf_counter() - p0) * 1000)
        return call

    skip = {"exclusive", "listen_jobs", "close", "describe"}
    for cls in (sql.SqlCatalog, postgres.PostgresCatalog, sqlite.SqliteCatalog):
        for name, fn in list(vars(cls).items()):
            if name.startswith("_") or name in skip or not callable(fn) \
                    or isinstance(fn, (staticmethod, classmethod, type)):
                continue
            setattr(cls, name, wrap(fn, name))
    sys.argv = ["dbsafe", *argv]
    from dbsafe.cli.app import main as dbsafe_main

    dbsafe_main()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_traced":
        traced_main(sys.argv[2], sys.argv[3:])
    else:
        try:
            main()
        except KeyboardInterrupt:
            sys.exit("interrupted: every process and cluster it started is stopped")
