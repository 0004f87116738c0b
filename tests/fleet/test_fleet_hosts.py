"""A control plane and agents on simulated hosts (hosts.py): each host's clusters and the
agent's folder exist only in that host's namespaces, so what the control plane learns of a
cluster and every byte of a backup went through that host's agent.

The control plane (`dbsafe serve`, this test's namespaces) listens for agents on the fleet's
bridge; the repository is an S3-compatible server (moto) on the bridge too, as a fleet's is
an object store (docs/fleet.md); the catalog is the control plane's SQLite.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import PG_BIN, free_port, make_area, remove_area, run_cli
from replicas import basebackup_argv, wait_streaming
from servers.moto import S3_ENV, MotoServer
from servers.processes import stop_server

from dbsafe.catalog.base import parse_time
from dbsafe.services.handle import Vault

from .hosts import Fleet, HostPg, SimulatedHost, wait_until

LOST_AFTER = 12
REGION = "West Europe"


@pytest.fixture
def control_plane(fleet: Fleet, cli_env: dict[str, str]):
    area = make_area("fleet-cp-")
    moto = MotoServer(area, host=fleet.gateway)
    # the control plane's own WAL agent, if it ever starts one, runs from its area (where
    # remove_area stops it), not from this machine's /var/lib/dbsafe
    env = {**cli_env, **S3_ENV, "DBSAFE_RUN_DIR": str(area / "run")}
    cp = ControlPlane(area / "cp", env, fleet.gateway, area)
    try:
        moto.start()
        location = moto.location("dbsafe-fleet", "vault")
        res = run_cli(env, "vault", "init", "--repository", location, "--region", REGION,
                      "--json", vault=area / "cp")
        assert res.returncode == 0, res.describe()
        cp.start()
        yield cp
    finally:
        cp.stop()
        if (area / "serve.log").exists():
            print((area / "serve.log").read_text()[-4000:])
        moto.stop()
        remove_area(area)


class ControlPlane:
    """`dbsafe serve` with its agents' listener on the fleet's bridge."""

    def __init__(self, vault: Path, env: dict[str, str], address: str, area: Path) -> None:
        self.vault, self.env, self.area = vault, env, area
        self.port = free_port()
        self.address = address
        self.url = f"https://{address}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with (self.area / "serve.log").open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dbsafe", "--vault", str(self.vault), "serve", "--port",
                 str(free_port()), "--tick", "1", "--agents-host", self.address,
                 "--agents-port", str(self.port), "--agents-url", self.url,
                 "--agent-lost-after", str(LOST_AFTER)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._listening, 60, "the agents' listener")

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, \
            (self.area / "serve.log").read_text()
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex((self.address, self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)

    def ok(self, *args: object) -> object:
        res = run_cli(self.env, *map(str, args), "--json", vault=self.vault)
        assert res.returncode == 0, res.describe()
        return res.json()

    def fail(self, code: str, *args: object) -> dict:
        res = run_cli(self.env, *map(str, args), "--json", vault=self.vault)
        assert res.returncode != 0, res.describe()
        out = res.json()
        assert out["error"]["code"] == code, res.describe()
        return out


AGENT_HOME = Path("/var/lib/dbsafe/agent")  # the default, on every host


def agent_env(host: SimulatedHost) -> dict[str, str]:
    """What the agent of ``host`` runs with: the storage's keys, and dbsafe's default
    folders, which are the host's own: /var/lib/dbsafe is a tmpfs of the host's mount
    namespace (as each VM has its own disk), so the agent's folder and its WAL socket sit
    at the same paths on every host, as in a real fleet."""
    Path("/var/lib/dbsafe").mkdir(mode=0o755, parents=True, exist_ok=True)
    host.run(["sh", "-c", "mountpoint -q /var/lib/dbsafe || "
              "mount -t tmpfs -o mode=0755,size=256m dbsafe /var/lib/dbsafe"])
    return {"XDG_STATE_HOME": str(host.root / "state"), "XDG_DATA_HOME": str(host.root / "data"),
            **S3_ENV}


def start_agent(cp: ControlPlane, host: SimulatedHost) -> tuple[str, subprocess.Popen]:
    """Register the host's agent with a one-time token and start it, in the host."""
    token = cp.ok("agent", "token", "create", "--host", host.name)
    env = agent_env(host)
    done = host.run([sys.executable, "-m", "dbsafe", "agent", "register", cp.url, "--token",
                     token["token"], "--fingerprint", token["fingerprint"], "--host",
                     host.name, "--json"], env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    agent_id = json.loads(done.stdout)["agent_id"]
    proc = host.popen([sys.executable, "-m", "dbsafe", "agent", "run"], env=env)
    return agent_id, proc


def host_with_server(fleet: Fleet, cp: ControlPlane) -> tuple[SimulatedHost, HostPg]:
    """Host a with its agent, and its cluster registered as server ``main`` through that
    agent (database ``app`` with an empty table ``t``)."""
    host_a = fleet.add_host("a")
    pg = host_a.make_cluster("main")
    pg.execute("CREATE DATABASE app")
    pg.execute("CREATE TABLE t (id int)", "app")
    agent_a, _proc = start_agent(cp, host_a)
    cp.ok("server", "add", "main", "--agent", agent_a, "--pgdata", pg.pgdata, "--port",
          pg.port)
    return host_a, pg


def test_jobs_run_on_the_host_of_their_cluster(fleet: Fleet, control_plane: ControlPlane):
    cp = control_plane
    host_a, host_b = fleet.add_host("a"), fleet.add_host("b")
    pg = host_a.make_cluster("main")
    pg.execute("CREATE DATABASE app")
    pg.execute("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v "
               "FROM generate_series(1, 5000) g", "app")
    agent_a, proc_a = start_agent(cp, host_a)
    agent_b, proc_b = start_agent(cp, host_b)

    # the control plane cannot reach the cluster: only through A's agent
    cp.fail("server.pgdata_missing", "server", "add", "main", "--pgdata", pg.pgdata,
            "--port", pg.port)
    added = cp.ok("server", "add", "main", "--agent", agent_a, "--pgdata", pg.pgdata,
                  "--port", pg.port)
    assert added["pgdata"] == str(pg.pgdata)
    agents = {a["id"]: a for a in cp.ok("agent", "list")}
    assert agents[agent_a]["servers"] == ["main"] and agents[agent_b]["servers"] == []
    assert agents[agent_a]["address"] == host_a.address  # it called from its own address

    full = cp.ok("backup", "main", "--type", "full")
    job = cp.ok("job", "show", full["job_id"])
    assert (job["state"], job["host"], job["agent_id"]) == ("completed", "a", agent_a)
    # the bytes are in the repository: the control plane checks every block it wrote
    verified = cp.ok("verify", "main", "--point", full["point_id"])
    assert verified["ok"] is True, verified

    # B's agent may not act for A's server: refused and audited
    token = json.loads(host_b.read_file(AGENT_HOME / "agent.json"))
    refused = host_b.run([sys.executable, "-c", CALL, cp.url, token["credential"],
                          str(AGENT_HOME / "control-plane.pem"), "get_server",
                          "main"], check=False)
    assert refused.stdout.strip() == "403 agent.out_of_scope", refused.stdout + refused.stderr
    audit = cp.ok("audit", "--limit", "20")
    assert any(r["actor"] == f"agent:{agent_b}" and r["outcome"] == "agent.out_of_scope"
               for r in audit)

    # revoked: cut off at once
    cp.ok("agent", "revoke", agent_b)
    gone = host_b.run([sys.executable, "-c", CALL, cp.url, token["credential"],
                       str(AGENT_HOME / "control-plane.pem"), "list_servers"],
                      check=False)
    assert gone.stdout.strip() == "401 agent.revoked", gone.stdout + gone.stderr
    for proc in (proc_a, proc_b):
        host_a.terminate(proc) if proc is proc_a else host_b.terminate(proc)


# a catalog call made by hand with an agent's credential and pinned certificate
CALL = """
import sys, httpx, ssl
url, credential, pem, method, *args = sys.argv[1:]
ctx = ssl.create_default_context(cafile=pem)
ctx.check_hostname = False
r = httpx.post(f"{url}/agent/v1/catalog/{method}", json={"args": args, "kwargs": {}},
               headers={"Authorization": f"Bearer {credential}"}, verify=ctx, timeout=10)
print(r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else "ok")
"""


def test_silent_agent_fails_its_queued_job_within_the_bound(fleet: Fleet,
                                                            control_plane: ControlPlane):
    cp = control_plane
    host_a = fleet.add_host("a")
    pg = host_a.make_cluster("main")
    agent_a, proc_a = start_agent(cp, host_a)
    cp.ok("server", "add", "main", "--agent", agent_a, "--pgdata", pg.pgdata, "--port",
          pg.port)
    host_a.terminate(proc_a)  # the host goes away
    started = time.monotonic()
    failed = cp.fail("job.agent_lost", "backup", "main", "--type", "full")
    assert "host a" in failed["error"]["message"]
    assert time.monotonic() - started < 2 * LOST_AFTER + 10  # silent, then the job's bound
    assert cp.ok("points", "main")["points"] == []


def test_wal_is_archived_by_the_agent_of_its_host(fleet: Fleet, control_plane: ControlPlane):
    cp = control_plane
    host_a, pg = host_with_server(fleet, cp)
    protected = cp.ok("protect", "main", "--all", "--restart")
    assert protected["recovery_model"] == "FULL" and protected["archiving_active"], protected
    # the archive_command PostgreSQL runs is the agent's, in host a
    command = pg.scalar("SHOW archive_command")
    client = Path(command.split()[0])  # the agent's client, in host a only
    assert str(client).startswith("/var/lib/dbsafe/agent-"), command
    assert host_a.exists(client) and not client.exists()
    full = cp.ok("backup", "main", "--type", "full")
    pg.execute("INSERT INTO t SELECT generate_series(1, 1000)", "app")
    log = cp.ok("backup", "main", "--type", "log")
    assert log["type"] == "log" and not log["warnings"], log
    chain = cp.ok("points", "main")
    assert chain["gaps"] == [] and chain["log_ranges"][0]["base"] == full["point_id"], chain
    # the control plane's scheduler (a pass a second) started no WAL agent of its own: the
    # FULL server is another host's, archived by that host's agent
    assert not _agents_of(cp.vault), _agents_of(cp.vault)


def _agents_of(vault: Path) -> list[str]:
    """`dbsafe --vault VAULT agent run` processes of this machine."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if str(vault).encode() in argv and b"agent" in argv and b"run" in argv:
            found.append(b" ".join(argv).decode())
    return found


def _archived(pg) -> tuple[int, int, str | None]:
    row = pg.execute("SELECT archived_count, failed_count, last_archived_wal "
                     "FROM pg_stat_archiver")[0]
    return int(row[0]), int(row[1]), row[2]


def test_wal_reaches_the_repository_while_the_control_plane_is_away(
        fleet: Fleet, control_plane: ControlPlane):
    cp = control_plane
    host_a, pg = host_with_server(fleet, cp)
    cp.ok("protect", "main", "--all", "--restart")
    full = cp.ok("backup", "main", "--type", "full")
    cp.ok("backup", "main", "--type", "log")  # the agent has read what archiving needs

    cp.stop()
    before = _archived(pg)
    switched = []
    for n in range(3):  # three segments while nobody answers the agent's reports
        pg.execute(f"INSERT INTO t SELECT generate_series(1, {1000 * (n + 1)})", "app")
        switched.append(pg.scalar("SELECT pg_walfile_name(pg_switch_wal())"))
    wait_until(lambda: _archived(pg)[2] == switched[-1], 60,
               "PostgreSQL's archiving of the segments made while the control plane is away")
    after = _archived(pg)
    assert after[0] >= before[0] + 3, (before, after)
    outbox = AGENT_HOME / "outbox.jsonl"
    waiting = host_a.read_file(outbox).splitlines()
    assert {json.loads(line)["method"] for line in waiting} == {"add_wal_file"}
    assert {json.loads(line)["args"][0]["name"] for line in waiting} >= set(switched)

    cp.start()  # the reports arrive; the chain has no gap
    wait_until(lambda: not host_a.exists(outbox), 60, "the agent's waiting reports")
    log = cp.ok("backup", "main", "--type", "log")
    assert not log["warnings"], log
    chain = cp.ok("points", "main")
    assert chain["gaps"] == [], chain["gaps"]
    assert chain["log_ranges"][0]["base"] == full["point_id"]


def _digest(pg, db: str = "app") -> tuple[str | None, ...]:
    return pg.execute("SELECT count(*), md5(string_agg(id::text, ',' ORDER BY id)) FROM t",
                      db)[0]


def _checks(cp: ControlPlane, *args: object) -> dict:
    """`dbsafe restore ... --check` on the control plane: each check's (ok, code)."""
    res = run_cli(cp.env, "restore", *map(str, args), "--check", "--json", vault=cp.vault)
    assert res.returncode in (0, 1), res.describe()
    return {c["check"]: (c["ok"], c["code"]) for c in res.json()["checks"]}


def test_restore_onto_other_hosts(fleet: Fleet, control_plane: ControlPlane):
    cp = control_plane
    host_a, host_b, host_c = fleet.add_host("a"), fleet.add_host("b"), fleet.add_host("c")
    source = host_a.make_cluster("main")
    source.execute("CREATE DATABASE app")
    source.execute("CREATE TABLE t (id int PRIMARY KEY)", "app")
    other = host_c.make_cluster("other")
    agents = {h.name: start_agent(cp, h)[0] for h in (host_a, host_b, host_c)}
    cp.ok("server", "add", "main", "--agent", agents["a"], "--pgdata", source.pgdata,
          "--port", source.port)
    cp.ok("server", "add", "other", "--agent", agents["c"], "--pgdata", other.pgdata,
          "--port", other.port)
    cp.ok("protect", "main", "--all", "--restart")
    cp.ok("backup", "main", "--type", "full")
    source.execute("INSERT INTO t SELECT generate_series(1, 500)", "app")
    instant = source.scalar("SELECT now()")  # committed rows 1..500 at this instant
    expected = _digest(source)
    time.sleep(1.1)
    source.execute("INSERT INTO t SELECT generate_series(501, 900)", "app")
    cp.ok("backup", "main", "--type", "log")

    # the whole instance at the instant, into a new data directory on host b
    roots = host_b.root / "restores"
    allowed = host_b.run([sys.executable, "-m", "dbsafe", "--vault",
                          str(AGENT_HOME / "vault"), "vault", "restore-roots", "add",
                          str(roots), "--json"], env=agent_env(host_b), check=False)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    target = roots / "main-copy"
    checked = _checks(cp, "main", "--time", instant, "--to-pgdata", target, "--host", "b",
                      "--port", 15500, "--start")
    assert all(ok for ok, _ in checked.values()), checked
    out = cp.ok("restore", "main", "--time", instant, "--to-pgdata", target, "--host", "b",
                "--port", 15500, "--start")
    job = cp.ok("job", "show", out["job_id"])
    assert (job["host"], job["agent_id"]) == ("b", agents["b"]), job
    copy = HostPg(host_b, "main-copy", target, 15500, target, target / "log")
    try:
        assert _digest(copy) == expected
        # the copy's port is taken on host b only: checked there it is in use, checked on
        # the control plane's host (no --host) it is free
        again = ("main", "--time", instant, "--to-pgdata", roots / "again", "--port", 15500)
        assert _checks(cp, *again, "--host", "b")["port"] == (False, "restore.port_in_use")
        assert _checks(cp, *again)["port"] == (True, None)
    finally:
        copy.stop("fast")
    assert not host_a.exists(target) and not host_c.exists(target)

    # one database at the instant, into the live server of host c, under a new name
    out = cp.ok("restore", "main", "--db", "app", "--time", instant, "--target-server",
                "other", "--as", "app_then")
    assert cp.ok("job", "show", out["job_id"])["host"] == "c"
    assert _digest(other, "app_then") == expected
    assert _digest(source) != expected  # the source kept its later rows


def test_replica_set_across_hosts(fleet: Fleet, control_plane: ControlPlane):
    """A primary on host a, its standby on host b streaming across the namespaces; the set
    backed up with preference secondary: fulls on a, copy-only on b, logs switched on a and
    stored by b's agent, as the node reports say."""
    cp = control_plane
    host_a, host_b = fleet.add_host("a"), fleet.add_host("b")
    p1 = host_a.make_cluster("p1", listen_on_address=True,
                             hba=[f"host replication postgres {host_b.address}/32 trust",
                                  f"host all postgres {host_b.address}/32 trust"])
    p1.execute("CREATE DATABASE app")
    p1.execute("CREATE TABLE t (id int)", "app")
    s1 = host_b.make_standby(p1, "s1")
    agent_a, _ = start_agent(cp, host_a)
    agent_b, _ = start_agent(cp, host_b)
    cp.ok("server", "add", "p1", "--agent", agent_a, "--pgdata", p1.pgdata, "--port", p1.port)
    cp.ok("server", "add", "s1", "--agent", agent_b, "--pgdata", s1.pgdata, "--port", s1.port)
    cp.ok("replicaset", "add", "rs", "--preference", "secondary")
    cp.ok("replicaset", "node", "add", "rs", "p1")
    cp.ok("replicaset", "node", "add", "rs", "s1")

    def roles() -> dict:
        shown = cp.ok("replicaset", "show", "rs")
        return {n["server"]: (n["role"], n["healthy"]) for n in shown["nodes"]}
    wait_until(lambda: roles() == {"p1": ("primary", True), "s1": ("standby", True)}, 60,
               "the agents' reports of the nodes")
    plan = {k: v["server"] for k, v in cp.ok("replicaset", "show", "rs")["plan"].items()}
    assert plan == {"full": "p1", "diff": "p1", "log": "s1", "copy-only": "s1"}, plan

    protected = cp.ok("protect", "rs", "--all", "--restart")
    assert protected["archiving_active"], protected
    assert s1.scalar("SHOW archive_command").startswith("/var/lib/dbsafe/agent-")
    assert s1.scalar("SHOW archive_mode") == "always"
    # restarted, the standby streams again once its WAL receiver reconnects (up to
    # wal_retrieve_retry_interval, 5 s), and its agent says so at its next look (every
    # 5 s): a copy-only backup decided before that rightly goes to the primary (a run
    # failed so)
    wait_streaming(s1)
    # and both nodes must be seen healthy after the restart: a report of p1 taken while it
    # restarted says "unknown", and a full decided on it finds no primary (a run failed so)
    streaming = datetime.now(UTC)
    catalog = Vault.records(cp.vault)
    try:
        wait_until(lambda: all(parse_time(catalog.get_node_report(n)["reported"]) > streaming
                               for n in ("p1", "s1"))
                   and roles() == {"p1": ("primary", True), "s1": ("standby", True)},
                   60, "its agents' reports of both nodes after the restart")
    finally:
        catalog.close()

    full = cp.ok("backup", "rs", "--type", "full")
    assert cp.ok("job", "show", full["job_id"])["host"] == "a" and full["node"] == "p1"
    copy = cp.ok("backup", "rs", "--type", "copy-only")
    assert cp.ok("job", "show", copy["job_id"])["host"] == "b" and copy["node"] == "s1"
    p1.execute("INSERT INTO t SELECT generate_series(1, 1000)", "app")
    log = cp.ok("backup", "rs", "--type", "log")
    assert cp.ok("job", "show", log["job_id"])["host"] == "a"  # it switched WAL there
    assert log["node"] == "s1" and not log["warnings"], log  # b's agent stored it
    chain = cp.ok("points", "rs")
    assert chain["gaps"] == [] and chain["log_ranges"][0]["base"] == full["point_id"]

    # fail over to b: a's cluster crashes, s1 is promoted; the logs go on from b
    p1.stop("immediate")
    promoted = host_b.run([str(PG_BIN / "pg_ctl"), "-D", str(s1.pgdata), "promote", "-w"],
                          user="postgres", check=False)
    assert promoted.returncode == 0, promoted.stderr
    wait_until(lambda: roles() == {"p1": ("unknown", False), "s1": ("primary", True)}, 60,
               "the reports after the failover")
    s1.execute("INSERT INTO t SELECT generate_series(1001, 2000)", "app")
    log = cp.ok("backup", "rs", "--type", "log")
    assert cp.ok("job", "show", log["job_id"])["host"] == "b" and log["node"] == "s1", log
    assert log["timeline"] == 2 and not log["warnings"], log

    # fail back: p1 rebuilt as a standby of s1, across the hosts again, and protected again
    # (its copied archive_command is b's agent's); logs from the secondary, now on a
    s1.configure({"listen_addresses": f"'localhost,{host_b.address}'"})
    s1.add_hba(f"host replication postgres {host_a.address}/32 trust",
               f"host all postgres {host_a.address}/32 trust")
    restarted = s1.pg_ctl("restart", "-w", "-m", "fast", "-l", str(s1.log))
    assert restarted.returncode == 0, (restarted.stdout, restarted.stderr,
                                       s1.server_log()[-3000:])
    host_a.run(["rm", "-rf", str(p1.pgdata)])
    host_a.mkdir(p1.pgdata, owner="postgres", mode=0o700)
    host_a.run(basebackup_argv(host_b.address, s1.port, p1.pgdata), user="postgres",
               timeout=300)
    p1.configure(host_a.local_settings(p1, listen_on_address=True))
    p1.start()
    wait_streaming(p1)
    cp.ok("protect", "rs", "--all", "--restart")
    wait_until(lambda: roles() == {"p1": ("standby", True), "s1": ("primary", True)}, 60,
               "the reports after the fail-back")
    s1.execute("INSERT INTO t SELECT generate_series(2001, 3000)", "app")
    log = cp.ok("backup", "rs", "--type", "log")
    assert cp.ok("job", "show", log["job_id"])["host"] == "b" and log["node"] == "p1", log
    assert log["timeline"] == 2 and not log["warnings"], log
    chain = cp.ok("points", "rs")
    assert chain["gaps"] == [], chain["gaps"]
    assert [r["timeline"] for r in chain["log_ranges"]] == [1, 2], chain["log_ranges"]
