"""The fleet's servers page in a real browser (Playwright from npm driving Debian's
chromium, tests/browser/fleet_views.mjs): a real control plane with a real agent of
host-a owning a server and a server of its own host (tests/fleet_loopback.py). The page
groups the servers by host with the agent's version, last contact and state; the restore
wizard offers host-a for a data directory and shows the checks run there; "Register a
VM" answers with the command to run there; revoking asks to confirm, then the agent shows
revoked; the dashboard counts the fleet's hosts.

Screenshots go to tests/artefacts/browser/ (gitignored).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
import secrets_guard
from conftest import make_vault, new_cluster, run_cli
from fleet_helpers import Agent, ControlPlane

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT = ROOT / "tools" / "node" / "node_modules" / "playwright-core"
CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = ROOT / "tests" / "artefacts" / "browser"
SCRIPT = Path(__file__).with_name("fleet_views.mjs")


def test_servers_by_host_register_and_revoke(pg_template, area, cli_env):
    for need, what in ((PLAYWRIGHT, "playwright-core"), (CHROMIUM, "chromium")):
        if not need.exists():
            pytest.fail(f"{what} is missing ({need}): run scripts/install.sh --test")
    vault = make_vault(cli_env, area / "cp")
    cp = ControlPlane(vault, area)
    agent = None
    try:
        agent = Agent(cp, area, "host-a")
        agent.start()
        remote = new_cluster(pg_template, area, "remote")
        local = new_cluster(pg_template, area, "local")
        vault.ok("server", "add", "db1", "--agent", agent.id, "--pgdata", remote.pgdata,
                 "--port", remote.port)
        vault.add_server("local", local)
        password = secrets.token_urlsafe(18)
        secrets_guard.register(password)
        out = run_cli({**vault.env, "DBSAFE_USER_PASSWORD": password}, "user", "add", "ana",
                      "--role", "contributor", "--json", vault=vault.path)
        assert out.returncode == 0, out.describe()
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTEFACTS.glob("fleet-*.png"):
            old.unlink()
        env = {**os.environ, "DBSAFE_URL": cp.api_url, "DBSAFE_USER": "ana",
               "DBSAFE_PASSWORD": password, "AGENT_ID": agent.id,
               "ARTEFACTS": str(ARTEFACTS), "PLAYWRIGHT_CORE": str(PLAYWRIGHT)}
        flow = subprocess.run(["node", str(SCRIPT)], env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        if agent is not None:
            agent.kill()
        cp.stop()
    assert flow.returncode == 0, flow.stdout + flow.stderr
    results = {}
    for line in flow.stdout.splitlines():
        if line.startswith("@@result "):
            _, key, text = line.split(" ", 2)
            results[key] = json.loads(text)
    secrets_guard.register(results["command"].split("--token ")[1].split()[0])

    assert results["groups"] == {"this host": ["local"], "host-a": ["db1"]}
    assert results["wizard_groups"] == [["on this host", ["local"]], ["on host-a", ["db1"]]]
    assert results["host_shown"] == {"server": False, "files": True, "pgdata": True}
    assert results["host_options"] == [["", "this host"], [agent.id, "host-a"]]
    assert results["checked_on"].startswith("Checked on host-a"), results["checked_on"]
    assert results["checks"][0] == "source"  # db1 has no backup: the rest not checked
    assert [j["host"] for j in vault.ok("jobs") if j["type"] == "restore-check"] == \
        ["host-a"]
    facts = results["agent_facts"]
    assert f"agent {agent.id}" in facts and "active" in facts and " ago" in facts, facts
    assert results["command"].startswith(f"dbsafe agent register {cp.url} --token dbr_")
    assert "--fingerprint sha256:" in results["command"]
    assert len(results["dialogs"]) == 1 and "host-a" in results["dialogs"][0]
    assert results["state_after"] == "revoked"
    assert vault.ok("agent", "show", agent.id)["state"] == "revoked"
    assert results["dashboard_hosts"] == "2"
    assert [row[0] for row in results["dashboard_per_host"]] == ["this host", "host-a"]
