"""A control plane and its agents on this machine (loopback, no namespaces: the fleet's
mechanics — registration, scoped calls, the job queue, lost agents, revocation; the tests in
tests/fleet put each host in namespaces of its own).

The control plane is a real `dbsafe serve` with its agents' HTTPS listener on 127.0.0.1; each
agent is a real `dbsafe agent run` with its own folder (DBSAFE_AGENT_HOME) registered with a
one-time token (tests/fleet_helpers.py). The repository is a local folder both can reach (one
machine).
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest
import secrets_guard
from conftest import make_vault, wait_for
from fleet_helpers import LOST_AFTER, Agent, ControlPlane, agents_of, print_logs


@pytest.fixture(params=[True], ids=["scheduler"])
def fleet(area, cli_env, request):
    vault = make_vault(cli_env, area / "cp")
    cp = ControlPlane(vault, area, scheduler=request.param)
    with agents_of(cp, area) as add_agent:
        yield cp, add_agent


def _job(cp: ControlPlane, job_id: str) -> dict:
    return cp.vault.ok("job", "show", job_id)


def test_agent_backs_up_its_hosts_server(fleet, source, area):
    cp, add_agent = fleet
    a = add_agent("host-a")
    listed = {x["id"]: x for x in cp.vault.ok("agent", "list")}
    assert listed[a.id]["host"] == "host-a" and listed[a.id]["state"] == "active"

    added = cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", source.pgdata,
                        "--port", source.port)
    assert added["name"] == "db1" and added["pg_version"] == 15
    assert cp.vault.ok("agent", "show", a.id)["servers"] == ["db1"]
    # a path names one cluster on one host: the same path here is another host's cluster
    here = cp.vault.ok("server", "add", "local", "--pgdata", source.pgdata, "--port",
                       source.port)
    assert here["name"] == "local"
    cp.vault.fail("server.pgdata_registered", "server", "add", "again", "--pgdata",
                  source.pgdata, "--port", source.port)
    cp.vault.ok("server", "remove", "local")

    expected = source.table_checksums()
    full = cp.vault.backup("db1", "--type", "full")
    job = _job(cp, full["job_id"])
    assert job["state"] == "completed" and job["host"] == "host-a", job
    assert job["agent_id"] == a.id
    assert [p["point_id"] for p in cp.vault.points("db1")] == [full["point_id"]]

    # the data is in the repository: the control plane restores it without the agent
    cp.vault.restore_matches("db1", full["point_id"], expected, area / "restored")


def test_agent_may_act_only_for_its_own_servers(fleet, source):
    cp, add_agent = fleet
    a, b = add_agent("host-a"), add_agent("host-b")
    cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", source.pgdata,
                "--port", source.port)
    assert a.call(cp, "get_server", "db1").status_code == 200

    refused = b.call(cp, "get_server", "db1")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "agent.out_of_scope"
    assert b.call(cp, "list_servers").json() == {"result": []}
    # a method no rule allows (the API tokens), and a forged column name
    assert b.call(cp, "list_tokens").status_code == 403
    forged = httpx.post(f"{cp.url}/agent/v1/catalog/update_job",
                        json={"args": ["x"], "kwargs": {"state = 'x'; --": 1}},
                        headers={"Authorization": f"Bearer {a.credential()}"},
                        verify=str(a.home / "control-plane.pem"), timeout=10)
    assert forged.status_code == 403, forged.text
    audit = cp.vault.ok("audit", "--limit", "50")
    refusals = [r for r in audit if r["actor"] == f"agent:{b.id}"]
    assert {r["action"] for r in refusals} >= {"catalog.get_server", "catalog.list_tokens"}
    assert all(r["outcome"] == "agent.out_of_scope" for r in refusals)

    cp.vault.ok("agent", "revoke", b.id)
    gone = b.call(cp, "list_servers")
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "agent.revoked"
    assert cp.vault.ok("agent", "show", b.id)["state"] == "revoked"
    # a queued job of a revoked agent fails at once (here: none; a's still work)
    assert a.call(cp, "get_server", "db1").status_code == 200


def test_killed_agent_fails_its_job_within_the_bound(fleet, source, area):
    cp, add_agent = fleet
    a = add_agent("host-a")
    cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", source.pgdata,
                "--port", source.port)
    # zstd at level 19 on one thread: slow enough to be killed midway
    follow = cp.vault.popen("backup", "db1", "--type", "full", "--compress-level", "19",
                            "--workers", "1", "--json")
    deadline = time.monotonic() + 60
    running = None
    while running is None:
        assert time.monotonic() < deadline, "the agent took no job"
        jobs = [j for j in cp.vault.jobs() if j["type"] == "backup"]
        running = next((j for j in jobs if j["state"] == "running" and j["bytes_done"] > 0),
                       None)
        time.sleep(0.1)
    os.kill(a.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    out, err = follow.communicate(timeout=LOST_AFTER + 60)
    took = time.monotonic() - killed
    assert follow.returncode != 0, out + err
    assert json.loads(out)["error"]["code"] == "job.agent_lost", out
    job = _job(cp, running["id"])
    assert job["state"] == "failed" and job["error_code"] == "job.agent_lost"
    assert "host-a" in job["error_message"]
    assert took < LOST_AFTER + 10, took  # the bound: lost_after plus a scheduler pass
    assert cp.vault.points("db1") == []  # nothing half-written is visible

    a.kill()
    a.start()
    full = cp.vault.backup("db1", "--type", "full")
    assert [p["point_id"] for p in cp.vault.points("db1")] == [full["point_id"]]


@pytest.mark.parametrize("fleet", [False], ids=["no-scheduler"], indirect=True)
def test_a_silent_agents_job_ends_where_no_scheduler_runs(fleet, source):
    """`serve --no-scheduler` (the scheduler elsewhere, or nowhere): the agents' listener
    fails a job its agent cannot take within the bound, so a command following it ends."""
    cp, add_agent = fleet
    a = add_agent("host-a")
    cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", source.pgdata,
                "--port", source.port)
    a.kill()
    started = time.monotonic()
    out = cp.vault.fail("job.agent_lost", "backup", "db1", "--type", "full")
    assert "host-a" in out["error"]["message"]
    assert time.monotonic() - started < 2 * LOST_AFTER + 10


def test_an_encrypted_vaults_agent_uses_the_key_imported_on_its_host(area, cli_env, source):
    """An encrypted vault in a fleet: the agent's folder holds no key until the key
    exported on the control plane is imported there (`dbsafe key import`, with the agent's
    folder as the vault); then the agent backs up its host's server, encrypted, and the
    control plane restores it."""
    from conftest import Vault

    passphrase = {"DBSAFE_PASSPHRASE": "fleet key passphrase 31415"}
    secrets_guard.register(passphrase["DBSAFE_PASSPHRASE"])
    vault = Vault(area / "cp", {**cli_env, **passphrase})
    assert vault.ok("vault", "init", "--encryption", "on")["encrypted"] is True
    cp = ControlPlane(vault, area)
    agent = None
    try:
        agent = Agent(cp, area, "host-a")
        # another host's keys folder: the control plane's key file is not there
        agent.env["DBSAFE_KEY_DIR"] = str(area / "host-a-keys")
        agent_vault = Vault(agent.home / "vault", {**agent.env, **passphrase})
        assert agent_vault.ok("key", "show")["key_on_this_client"] is False
        agent.env.update(passphrase)
        agent.start()
        agent.wait_serving()
        vault.ok("server", "add", "db1", "--agent", agent.id, "--pgdata", source.pgdata,
                 "--port", source.port)
        refused = vault.fail("key.missing", "backup", "db1", "--type", "full")
        assert "key import" in refused["error"]["message"], refused
        vault.ok("key", "export", area / "fleet.key")
        imported = agent_vault.ok("key", "import", area / "fleet.key")
        assert imported["vault_id"] == vault.ok("vault", "info")["vault_id"]
        expected = source.table_checksums()
        full = vault.backup("db1", "--type", "full")
        assert _job(cp, full["job_id"])["host"] == "host-a"
        vault.restore_matches("db1", full["point_id"], expected, area / "restored")
    finally:
        if agent is not None:
            agent.kill()
        cp.stop()
        print_logs(area)


def _findings(cp: ControlPlane, server: str) -> dict[str, dict]:
    return {f["check"]: f for f in cp.vault.ok("alerts", "check") if f["server"] == server}


def test_health_of_an_agents_server_comes_from_its_reports(fleet, area, pg_template):
    """The control plane cannot reach an agent's cluster: its health checks judge what the
    agent reports (every few seconds) — the cluster answers or not, and how far archiving
    lags — and its log chain from the catalog, as for a server of this host."""
    from conftest import new_cluster

    cp, add_agent = fleet
    a = add_agent("host-a")
    pg = new_cluster(pg_template, area, "reported")
    try:
        cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", pg.pgdata,
                    "--port", pg.port)
        assert cp.vault.ok("protect", "db1", "--all", "--recovery-model", "FULL",
                           "--restart")["archiving_active"] is True
        # discovery runs on the cluster's host too
        pg.execute("CREATE DATABASE fresh")
        found = cp.vault.ok("discover", "db1")
        assert "fresh" in {d["name"] for d in found["databases"]}, found
        jobs = cp.vault.ok("jobs", "--type", "discovery")  # the scheduler's too, maybe
        assert jobs and all(j["host"] == "host-a" and j["agent_id"] == a.id
                            and j["state"] == "completed" for j in jobs), jobs
        cp.vault.backup("db1", "--type", "full")

        def reported() -> dict[str, dict] | None:
            found = _findings(cp, "db1")
            return found if "server_unreachable" in found and "archive_lag" in found else None
        found = wait_for(reported, "the agent's first report")
        assert found["server_unreachable"]["ok"] is True
        assert "reported by its agent" in found["server_unreachable"]["message"]
        assert found["archive_lag"]["ok"] is True
        assert found["archive_lag"]["details"]["lag_bytes"] < 64 << 20, found["archive_lag"]
        assert found["chain_broken"]["ok"] is True

        pg.stop()
        found = wait_for(lambda: (f := _findings(cp, "db1")).get("server_unreachable", {})
                          .get("ok") is False and f, "the report of a stopped cluster")
        assert "unreachable from its host" in found["server_unreachable"]["message"]
        (alert,) = [x for x in cp.vault.ok("alerts") if x["kind"] == "server_unreachable"]
        assert alert["server"] == "db1"

        pg.start()
        wait_for(lambda: _findings(cp, "db1").get("server_unreachable", {}).get("ok"),
                  "the report of the started cluster")
        assert [x for x in cp.vault.ok("alerts") if x["kind"] == "server_unreachable"] == []
    finally:
        pg.stop()
