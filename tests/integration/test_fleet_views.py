"""The fleet's views and /metrics against a real control plane (`dbsafe serve` with its
agents' listener, tests/fleet_loopback.py) with a real agent registered the way a VM is, a
server on that agent's host and one on the control plane's own, each backed up for real:

- `dbsafe server list` and `GET /servers` say where each server runs (its agent's host, or
  "this host");
- the agents' endpoints by role: any role reads, only a Backup Contributor creates
  registration tokens and revokes; the command a token comes with registers a real agent;
  an unknown agent is 404;
- /metrics needs a reader's token and, parsed with prometheus_client's own parser, holds
  the jobs, the RPO of each protected database (+Inf for one no point holds) and the agents
  (up, last contact, servers).

A last test protects a server in the FULL model (WAL archived by the dbsafe agent) and
checks the log chain's figures and the archiving lag measured by the health check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import secrets_guard
from api_serve import start_serve
from conftest import Pg, make_area, make_vault, new_cluster, remove_area, run_cli
from fleet_helpers import Agent, ControlPlane
from prometheus_client.parser import text_string_to_metric_families

METRICS_TTL = 5  # api/metrics.py Figures.TTL: a change shows in /metrics within it


@dataclass
class Fleet:
    cp: ControlPlane
    agent: Agent
    remote: Pg      # db1, a server of the agent's host
    local: Pg       # local, a server of the control plane's own host


@pytest.fixture(scope="module")
def fleet(pg_template, cli_env) -> Iterator[Fleet]:
    area = make_area("fleetviews-")
    cp = None
    agent = None
    try:
        vault = make_vault(cli_env, area / "cp")
        cp = ControlPlane(vault, area)
        agent = Agent(cp, area, "host-a")
        agent.start()
        remote = new_cluster(pg_template, area, "remote")
        local = new_cluster(pg_template, area, "local")
        local.execute("CREATE DATABASE appx")
        vault.ok("server", "add", "db1", "--agent", agent.id, "--pgdata", remote.pgdata,
                 "--port", remote.port)
        vault.add_server("local", local)
        vault.ok("protect", "local", "--db", "postgres", "--db", "appx",
                 "--recovery-model", "simple")
        vault.backup("db1", "--type", "full")
        vault.backup("local", "--type", "full", "--db", "postgres")  # appx: held by none
        yield Fleet(cp, agent, remote, local)
    finally:
        if agent is not None:
            agent.kill()
        if cp is not None:
            cp.stop()
            for log in sorted(area.glob("*.log")):  # shown by pytest when a test failed
                print(f"--- {log.name}\n{log.read_text()[-4000:]}")
        remove_area(area)


def scrape(client: httpx.Client) -> dict[str, dict[tuple, float]]:
    """/metrics parsed by prometheus_client: {family: {sorted label items: value}}."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return found


def value(figures: dict, name: str, **labels: str) -> float | None:
    return figures.get(name, {}).get(tuple(sorted(labels.items())))


def test_server_list_says_where_each_server_runs(fleet: Fleet):
    cp, a = fleet.cp, fleet.agent
    rows = {s["name"]: s for s in cp.vault.ok("server", "list")}
    assert (rows["db1"]["runs_on"], rows["db1"]["agent_id"]) == ("host-a", a.id)
    assert rows["db1"]["agent_state"] == "active"
    assert (rows["local"]["runs_on"], rows["local"]["agent_id"]) == ("this host", None)
    human = run_cli(cp.vault.env, "server", "list", vault=cp.vault.path)
    assert human.returncode == 0 and "this host" in human.stdout and a.id in human.stdout
    with cp.client("reader") as c:
        listed = {s["name"]: s for s in c.get("/api/v1/servers").json()}
        assert listed["db1"]["runs_on"] == "host-a" and listed["db1"]["agent_id"] == a.id
        assert listed["local"]["runs_on"] == "this host"
        assert c.get("/api/v1/servers/db1").json()["runs_on"] == "host-a"


def test_agents_endpoints_by_role(fleet: Fleet, tmp_path):
    cp, a = fleet.cp, fleet.agent
    clients = {role: cp.client(role) for role in ("reader", "operator", "contributor")}
    try:
        for role, c in clients.items():  # every role reads
            listed = {x["id"]: x for x in c.get("/api/v1/agents").json()}
            assert listed[a.id]["host"] == "host-a" and listed[a.id]["servers"] == ["db1"]
            shown = c.get(f"/api/v1/agents/{a.id}")
            assert shown.status_code == 200 and shown.json()["state"] == "active", role
            unknown = c.get("/api/v1/agents/nosuchagent")
            assert unknown.status_code == 404, role
            assert unknown.json()["error"]["code"] == "agent.unknown"
        for role in ("reader", "operator"):  # only a contributor makes agents or cuts them off
            c = clients[role]
            refused = c.post("/api/v1/agent-tokens", json={"host": "host-b"})
            assert refused.status_code == 403, (role, refused.text)
            assert refused.json()["error"]["code"] == "auth.forbidden"
            refused = c.delete(f"/api/v1/agents/{a.id}")
            assert refused.status_code == 403 and refused.json()["error"]["code"] == \
                "auth.forbidden", role
        c = clients["contributor"]
        for bad in ({"expires_minutes": 0}, {"expires_minutes": 24 * 60 + 1},
                    {"host": "no spaces"}, {"host": ""}, {"other": 1}):
            assert c.post("/api/v1/agent-tokens", json=bad).status_code == 422, bad
        made = c.post("/api/v1/agent-tokens", json={"host": "host-b", "expires_minutes": 5})
        assert made.status_code == 201, made.text
        token = made.json()
        secrets_guard.register(token["token"])
        assert token["host"] == "host-b" and token["token"].startswith("dbr_")
        assert datetime.fromisoformat(token["expires"]) > datetime.now(UTC)
        assert token["note"] is None and token["url"] == cp.url
        assert token["command"] == (f"dbsafe agent register {cp.url} --token "
                                    f"{token['token']} --fingerprint {token['fingerprint']}")
        # the command as given registers a real agent (what the VM's root runs)
        argv = token["command"].split()[1:] + ["--host", "host-b", "--json"]
        env = {**cp.vault.env, "DBSAFE_AGENT_HOME": str(tmp_path / "agent-b")}
        registered = run_cli(env, *argv)
        assert registered.returncode == 0, registered.describe()
        b = registered.json()["agent_id"]
        assert c.get(f"/api/v1/agents/{b}").json()["host"] == "host-b"

        revoked = c.delete(f"/api/v1/agents/{b}")
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        assert c.delete("/api/v1/agents/nosuchagent").status_code == 404
        assert clients["reader"].get(f"/api/v1/agents/{b}").json()["state"] == "revoked"
        # /metrics follows within its cache's life: the revoked agent is down, a is up
        deadline = time.monotonic() + METRICS_TTL + 10
        while True:
            figures = scrape(clients["reader"])
            if value(figures, "dbsafe_agent_up", agent=b, host="host-b") == 0:
                break
            assert time.monotonic() < deadline, figures.get("dbsafe_agent_up")
            time.sleep(1)
        assert value(figures, "dbsafe_agent_up", agent=a.id, host="host-a") == 1
    finally:
        for c in clients.values():
            c.close()


def test_metrics_after_real_backups(fleet: Fleet):
    cp, a = fleet.cp, fleet.agent
    with cp.client(None) as anonymous:
        refused = anonymous.get("/metrics")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == \
            "auth.required"
        bad = anonymous.get("/metrics", headers={"Authorization": "Bearer dbs_x_y"})
        assert bad.status_code == 401
    with cp.client("reader") as c:
        figures = scrape(c)
    assert value(figures, "dbsafe_jobs_last_24h", type="backup", state="completed") >= 2
    assert value(figures, "dbsafe_agent_up", agent=a.id, host="host-a") == 1
    assert value(figures, "dbsafe_agent_servers", agent=a.id, host="host-a") == 1
    assert 0 <= value(figures, "dbsafe_agent_last_contact_seconds", agent=a.id,
                      host="host-a") < 60
    # the RPO of the protected databases: the newest restorable instant is the full's end
    point = cp.vault.points("local")[-1]
    held = value(figures, "dbsafe_database_rpo_seconds", server="local", database="postgres")
    age = (datetime.now(UTC) - datetime.fromisoformat(point["end_time"])).total_seconds()
    assert 0 <= held <= age + 1, (held, age)
    assert age - held < METRICS_TTL + 30  # as old as the reading, no older
    assert value(figures, "dbsafe_database_rpo_seconds", server="local",
                 database="appx") == math.inf  # protected, held by no point yet
    # db1 is protected by nobody: it has no RPO; no job id is ever a label
    assert not any(dict(k).get("server") == "db1"
                   for k in figures.get("dbsafe_database_rpo_seconds", {}))
    assert all("job" not in dict(k) and "id" not in dict(k)
               for samples in figures.values() for k in samples)
    assert value(figures, "dbsafe_metrics_errors") == 0


def test_metrics_of_a_log_chain(pg_template, area, wal_vault):
    """A FULL server (WAL archived by the dbsafe agent): its newest archived commit, its
    gaps, its archiving lag as the health check measured it, and an RPO that follows the
    log backups rather than the full."""
    vault = wal_vault
    pg = new_cluster(pg_template, area, "pitr", settings={"track_commit_timestamp": "on"})
    vault.add_server("pitr", pg)
    assert vault.ok("protect", "pitr", "--all", "--restart")["archiving_active"]
    pg.execute("CREATE TABLE ledger (id int PRIMARY KEY)")
    vault.backup("pitr", "--type", "full")
    for i in range(5):
        pg.execute("INSERT INTO ledger VALUES (%s)", params=(i,))
    vault.backup("pitr", "--type", "log")
    checked = vault.ok("alerts", "check")
    (lag,) = [f for f in checked if f["check"] == "archive_lag" and f["server"] == "pitr"]
    chain = vault.chain("pitr")
    (newest_range,) = chain["log_ranges"]
    serve = start_serve(vault, area / "serve.log")
    try:
        with httpx.Client(base_url=serve.url, timeout=60, headers={
                "Authorization": f"Bearer {serve.tokens['reader']}"}) as c:
            figures = scrape(c)
    finally:
        serve.stop()
    end = datetime.fromisoformat(newest_range["end_time"])
    assert value(figures, "dbsafe_log_chain_newest_wal_timestamp_seconds",
                 server="pitr") == pytest.approx(end.timestamp(), abs=0.001)
    assert value(figures, "dbsafe_log_chain_gaps", server="pitr") == len(chain["gaps"]) == 0
    assert value(figures, "dbsafe_archive_lag_bytes", server="pitr") == \
        lag["details"]["lag_bytes"]
    rpo = value(figures, "dbsafe_database_rpo_seconds", server="pitr", database="postgres")
    assert rpo == pytest.approx((datetime.now(UTC) - end).total_seconds(), abs=30)
