"""Scale: 40 agents reporting to one control plane with a PostgreSQL catalog and
2,000 protected databases; every scheduled slot of one hour runs exactly once.

- The control plane is a real `dbsafe serve --no-scheduler` (the agents' API); the 40 agents
  are real `dbsafe agent run` processes on loopback, each registered for a host of its own
  (h01 … h40, tests/fleet_helpers.py).
- The simulated hosts are light: 4 clusters of 50 databases (postgres and 49 copies of
  template0, ~390 MB each), each registered under 10 server names, one per agent (a shared
  cluster with distinct server records; an agent sees only its own servers, so the same data
  directory is no conflict). 40 servers × 50 protected databases = 2,000, all in the SIMPLE
  model (one archive_command per cluster rules out FULL on a shared cluster) with a daily
  full whose one slot falls in the simulated hour.
- The scheduler is the product's own ``Scheduler`` in this process, on the same catalog,
  with a ``FakeClock``: one pass every simulated minute through one hour, while the agents
  run what it queues.

The simulated clock never runs ahead of the real one: the agents' reports and contacts are
stamped with the real clock, and the scheduler's watch over them (a job not reported for
60 s is lost, an agent not heard from for 180 s is silent) compares those stamps with its
own clock. A new item's first slot is the first after it was protected, so the slot is put
at the real minute just after the protection, near the end of the hour: the hour's first
58 minutes pass in seconds (passes that find nothing due, the slot of the day before
included), its last two at the real clock's pace.

Measured and printed (not asserted): wall time, the catalog's transactions (xact_commit of
its database), CPU of the scheduler (this process), of `serve` and of the agents.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import Pg, Vault, catalog_dsn, own_cluster
from fleet_helpers import Agent, ControlPlane, cpu_seconds, print_logs

from dbsafe.catalog.base import parse_time
from dbsafe.core.errors import DbsafeError
from dbsafe.policy.schedule import slots_between
from dbsafe.scheduler.clock import FakeClock
from dbsafe.scheduler.service import Scheduler
from dbsafe.services.inventory import get_policy

AGENTS = 40
CLUSTERS = 4                   # each registered by AGENTS // CLUSTERS agents
DATABASES = 50                 # protected per server: postgres and db01 … db49
POLICY = "scale"
TICK = timedelta(minutes=1)    # between two passes of the scheduler (simulated time)
SLOT_AFTER = timedelta(minutes=58)  # the slot's place in the hour
SETUP_WORKERS = 4              # CLI calls at a time while the fleet is set up
# the client's environment the in-process scheduler reads (logs, keys out of /root)
CLIENT_VARS = ("XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
               "DBSAFE_KEY_DIR")


def _parallel(fn, items):
    with ThreadPoolExecutor(SETUP_WORKERS) as pool:
        return list(pool.map(fn, items))


def _cluster(area: Path, name: str) -> Pg:
    """A cluster of its own, made by initdb: its own system identifier, as every real
    cluster has (copies of the test template share one, and the servers of one system
    identifier are one lineage whose points every health check reads together)."""
    pg = own_cluster(area, name)
    with pg.connect() as conn:
        for n in range(1, DATABASES):
            conn.execute(f"CREATE DATABASE db{n:02d} TEMPLATE template0 STRATEGY FILE_COPY")
    return pg


def _xacts(catalog_cluster: Pg) -> int:
    """Transactions committed so far in the catalog's database (pg_stat_database)."""
    return catalog_cluster.scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")


STATS_DELAY = 11  # seconds: a busy backend reports its counts at most 10 s late


class Connections:
    """The most connections to the catalog's database seen, sampled every half second."""

    def __init__(self, catalog_cluster: Pg) -> None:
        self.most = 0
        self._stop = threading.Event()
        self._conn = catalog_cluster.connect()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            (n,) = self._conn.execute("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE datname = current_database()").fetchone()
            self.most = max(self.most, n - 1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self._conn.close()
        return self.most


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Fleet:
    def __init__(self, vault: Vault, cp: ControlPlane, agents: list[Agent],
                 clusters: list[Pg], dsn: str, schema: str) -> None:
        self.vault, self.cp, self.agents, self.clusters = vault, cp, agents, clusters
        self.dsn, self.schema = dsn, schema
        # server name -> its agent; h01..h10 register c1, h11..h20 c2, ...
        per = AGENTS // CLUSTERS
        self.servers = {f"s{n + 1:02d}": (agents[n], clusters[n // per])
                        for n in range(AGENTS)}


@pytest.fixture
def scale_fleet(area: Path, cli_env: dict[str, str], catalog_cluster: Pg,
                monkeypatch: pytest.MonkeyPatch):
    for name in CLIENT_VARS:
        monkeypatch.setenv(name, cli_env[name])
    schema = f"scale_{uuid.uuid4().hex[:10]}"
    dsn = catalog_dsn(catalog_cluster, schema)
    vault = Vault(area / "cp", cli_env)
    info = vault.ok("vault", "init", "--repository", area / "repository", "--catalog", dsn)
    assert info["catalog"]["backend"] == "postgresql"
    clusters = [_cluster(area, f"c{n + 1}") for n in range(CLUSTERS)]
    cp = ControlPlane(vault, area, scheduler=False, lost_after=60)
    agents: list[Agent] = []
    try:
        for n in range(0, AGENTS, SETUP_WORKERS):  # registered a few at a time
            batch = _parallel(lambda host: Agent(cp, area, host),
                              [f"h{k + 1:02d}" for k in range(n, n + SETUP_WORKERS)])
            for agent in batch:
                agent.start()
            agents += batch
        for agent in agents:
            agent.wait_serving()
        yield Fleet(vault, cp, agents, clusters, dsn, schema)
    finally:
        for agent in agents:
            agent.kill()
        cp.stop()
        print_logs(area, tail=1500)


def test_forty_agents_run_every_slot_of_an_hour_once(scale_fleet: Fleet, area: Path,
                                                     catalog_cluster: Pg):
    fleet, vault = scale_fleet, scale_fleet.vault
    test_started = time.monotonic()
    vault.ok("policy", "create", POLICY, "--full", "daily", "--full-time", "00:00",
             "--log-every", "none")

    def register(name: str) -> None:
        agent, pg = fleet.servers[name]
        added = vault.ok("server", "add", name, "--agent", agent.id, "--pgdata", pg.pgdata,
                         "--port", pg.port)
        assert added["name"] == name
        out = vault.ok("protect", name, "--all", "--policy", POLICY)
        assert out["recovery_model"] == "SIMPLE" and len(out["databases"]) == DATABASES

    _parallel(register, sorted(fleet.servers))
    listed = {a["id"]: a for a in vault.ok("agent", "list")}
    assert {listed[a.id]["host"] for a in fleet.agents} == {a.host for a in fleet.agents}
    assert all(listed[a.id]["state"] == "active" for a in fleet.agents)
    set_up = time.monotonic() - test_started

    from dbsafe.services.handle import Vault as VaultHandle

    handle = VaultHandle.open(vault.path)
    try:
        items = handle.catalog.list_items()
        assert len(items) == AGENTS * DATABASES
        # the slot: the first whole minute after every item was protected
        since = max(parse_time(i["since"]) for i in items)
        slot = since.replace(second=0, microsecond=0) + timedelta(minutes=1)
        vault.ok("policy", "edit", POLICY, "--full-time", slot.strftime("%H:%M"))
        hour = slot - SLOT_AFTER
        end = hour + timedelta(hours=1)
        # the schedule's own account of the hour: its one slot
        assert slots_between(get_policy(handle, POLICY), "full", hour - timedelta(
            microseconds=1), end - timedelta(microseconds=1)) == [slot]
        servers = {name: handle.catalog.get_server(name) for name in fleet.servers}
        assert {s["agent_id"] for s in servers.values()} == {a.id for a in fleet.agents}
        ran = _run_the_hour(fleet, catalog_cluster, hour, end, slot)
        _check_once(fleet, handle, servers, ran, slot)
    finally:
        handle.catalog.close()
    print(f"\nset-up (policy, {AGENTS} servers added and protected): {set_up:.1f} s; "
          f"whole test body {time.monotonic() - test_started:.1f} s")


def _run_the_hour(fleet: Fleet, catalog_cluster: Pg, hour: datetime, end: datetime,
                  slot: datetime) -> dict:
    """One pass of the scheduler every simulated minute from ``hour`` to ``end``, never
    ahead of the real clock; the runs it started, by pass; the figures printed."""
    other = fleet.vault.path.parent / "other-host"  # a client folder of another host
    Vault(other, fleet.vault.env).ok("vault", "connect", "--repository",
                                     fleet.vault.path.parent / "repository",
                                     "--catalog", fleet.dsn)
    clock = FakeClock(hour)
    started: dict[datetime, list] = {}
    pids = {"serve": fleet.cp.proc.pid, **{a.host: a.proc.pid for a in fleet.agents}}
    with contextlib.ExitStack() as held:
        # the default limits: 4 runs at a time per agent's host, and this host's 4 not
        # counting them, so that the 40 hosts' runs start together
        scheduler = Scheduler(fleet.vault.path, clock)
        held.callback(scheduler.vault.catalog.close)
        second = Scheduler(other, FakeClock(hour))
        held.callback(second.vault.catalog.close)
        scheduler.acquire()
        held.callback(scheduler.release)
        with pytest.raises(DbsafeError) as refused:
            second.acquire()
        assert refused.value.code == "serve.scheduler_elsewhere", refused.value.message

        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        connections = Connections(catalog_cluster)
        held.callback(connections.stop)
        own0, xact0, wall0 = time.process_time(), _xacts(catalog_cluster), time.monotonic()
        fast = None
        while clock.now() < end:
            if clock.now() == slot:
                fast = time.monotonic() - wall0
            ahead = (clock.now() - datetime.now(UTC)).total_seconds()
            if ahead > 0:
                time.sleep(ahead)
            started[clock.now()] = scheduler.tick()
            if clock.now() == slot:  # while the runs go on, still refused
                with pytest.raises(DbsafeError) as again:
                    second.acquire()
                assert again.value.code == "serve.scheduler_elsewhere"
            clock.advance(seconds=TICK.total_seconds())
        passes = len(started)
        assert scheduler.runner.join(600), "the scheduled runs did not end"
        # a pass after the runs ended (its clock still in the hour): nothing is due again
        clock.advance(seconds=-1)
        assert scheduler.tick() == []
        wall = time.monotonic() - wall0
        own = time.process_time() - own0
        cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
        rss = {k: _rss_mb(p) for k, p in pids.items()}
        most_connections = connections.stop()
        time.sleep(STATS_DELAY)
        xacts = _xacts(catalog_cluster) - xact0
    # with the lock given back, the other host's scheduler may start
    after = Scheduler(other, FakeClock(end))
    try:
        after.acquire()
    finally:
        after.release()
        after.vault.catalog.close()

    # the 40 runs followed at once share the scheduler's catalog (scheduler/execute.py): a
    # handle of their own each took 97 of the catalog cluster's 100 connections
    assert most_connections < AGENTS, f"{most_connections} catalog connections at once"
    agents_cpu = sum(v for k, v in cpu.items() if k != "serve")
    agents_rss = sum(v for k, v in rss.items() if k != "serve")
    most = {k: max(v[a.host] for a in fleet.agents) for k, v in (("cpu", cpu), ("rss", rss))}
    print(f"\nthe hour: {passes} passes of the scheduler and one after, {wall:.1f} s wall "
          f"(the {SLOT_AFTER // TICK} passes before the slot: {fast:.1f} s; then the real "
          "clock's pace)")
    print(f"catalog transactions (xact_commit): {xacts} in the hour; at most "
          f"{most_connections} connections to it at once")
    print(f"CPU: scheduler (this process) {own:.1f} s, serve {cpu['serve']:.1f} s, "
          f"{AGENTS} agents {agents_cpu:.1f} s (largest {most['cpu']:.1f} s)")
    print(f"memory (RSS) at the end: serve {rss['serve']:.0f} MB, {AGENTS} agents "
          f"{agents_rss:.0f} MB (largest {most['rss']:.0f} MB)")
    return started


def _check_once(fleet: Fleet, handle, servers: dict, started: dict, slot: datetime) -> None:
    catalog = handle.catalog
    # the scheduler: every run started at the slot's pass, one per server, nothing else
    assert {t: len(w) for t, w in started.items() if w} == {slot: AGENTS}
    works = started[slot]
    assert sorted(w.server for w in works) == sorted(fleet.servers)
    assert {(w.kind, w.slot, w.attempt, w.policy) for w in works} == {
        ("full", slot, 1, POLICY)}

    # the jobs: one scheduled backup per server, run by the agent of its host
    jobs = catalog.list_jobs(1000, type="backup")
    assert sorted(j["server"] for j in jobs) == sorted(fleet.servers), jobs
    by_server = {j["server"]: j for j in jobs}
    for name, (agent, _pg) in fleet.servers.items():
        job = by_server[name]
        assert job["state"] == "completed", job
        assert job["trigger"] == "scheduled" and job["backup_type"] == "full", job
        assert job["agent_id"] == agent.id and job["host"] == agent.host, job
        assert servers[name]["agent_id"] == agent.id

    begun = min(parse_time(j["start_time"]) for j in jobs)
    ended = max(parse_time(j["end_time"]) for j in jobs)
    print(f"the {AGENTS} runs: queued from {begun:%H:%M:%S}, the last ended "
          f"{(ended - begun).total_seconds():.1f} s later")

    # the schedule's memory: each slot once, naming its job
    with psycopg.connect(fleet.dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT instance_id, policy, kind, last_slot, attempts, job_id "
            f"FROM {fleet.schema}.schedule_state ORDER BY instance_id").fetchall()
    assert len(rows) == AGENTS
    instance_of = {s["instance_id"]: name for name, s in servers.items()}
    assert sorted(instance_of[r[0]] for r in rows) == sorted(fleet.servers)
    for instance_id, policy, kind, last_slot, attempts, job_id in rows:
        assert (policy, kind, parse_time(last_slot), attempts) == (POLICY, "full", slot, 1)
        assert job_id == by_server[instance_of[instance_id]]["id"]

    # nothing failed, nothing alerted but the backups' own notices
    assert catalog.list_jobs(1000, state="failed") == []
    alerts = {(a["kind"], a["severity"]) for a in catalog.list_alerts()}
    assert alerts <= {("backup_succeeded", "notice")}, alerts

    # the points: one per server, each holding its 50 databases
    for name, server in servers.items():
        points = catalog.list_points(server["instance_id"])
        assert len(points) == 1, (name, points)
        point = points[0]
        assert point["type"] == "full", point
        assert point["point_id"] == json.loads(by_server[name]["result"])["point_id"]
        held = set(json.loads(point["databases"])) - set(json.loads(point["left_out"] or "[]"))
        protected = {i["name"] for i in catalog.list_items(server["instance_id"])}
        assert len(protected) == DATABASES and protected <= held, (name, held)
