"""Restore checks of a target on an agent's host run on that host (fleet.check_restore): the
control plane queues a ``restore-check`` job to the agent, which answers with what it sees.

Real processes on loopback (tests/fleet_helpers.py): a `dbsafe serve` control plane and
`dbsafe agent run` agents with folders of their own. They share one filesystem and one
network, so what differs between hosts here is each agent's own client: its restore roots
(tests/fleet/test_fleet_hosts.py shows a port used only on the target's host, in
namespaces).
"""

from __future__ import annotations

import re
import time

import pytest
import secrets_guard
from conftest import allow_restores, make_vault, run_cli
from fleet_helpers import LOST_AFTER, ControlPlane, agents_of


@pytest.fixture
def fleet(area, cli_env):
    vault = make_vault(cli_env, area / "cp")
    # the control plane's own restore root is not the agents': a folder below an agent's
    # root is refused here and allowed there
    allow_restores(vault.path, area / "cp-restores")
    cp = ControlPlane(vault, area)
    with agents_of(cp, area) as add_agent:
        yield cp, add_agent


def _verdicts(res) -> dict:
    assert res.status_code == 200, res.text
    return {c["check"]: (c["ok"], c["code"]) for c in res.json()["checks"]}


def test_checks_of_a_target_on_an_agents_host_are_that_hosts(fleet, source, area):
    cp, add_agent = fleet
    a, b = add_agent("host-a"), add_agent("host-b")
    cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", source.pgdata,
                "--port", source.port)
    point = cp.vault.backup("db1", "--db", "appdb")["point_id"]
    roots_b = area / "restores-b"
    added = run_cli(b.env, "vault", "restore-roots", "add", str(roots_b), "--json",
                    vault=b.home / "vault")
    assert added.returncode == 0, added.describe()
    busy = roots_b / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    api = cp.client("operator")

    def check(path, host=None) -> dict:
        target = {"kind": "pgdata", "path": str(path), "host": host}
        res = api.post("/api/v1/servers/db1/restores/check",
                       json={"point_id": point, "target": target})
        assert res.json().get("host") == host, res.text
        return _verdicts(res)

    # a folder below host b's restore root: checked there it is new and allowed; checked
    # here (no host) it is outside this host's roots
    fresh = roots_b / "copy"
    there = check(fresh, "host-b")
    assert there == {"source": (True, None), "version": (True, None), "folder": (True, None),
                     "port": (True, None), "space": (True, None)}, there
    assert check(fresh)["folder"] == (False, "restore.target_outside_roots")
    assert check(busy, "host-b")["folder"] == (False, "restore.target_exists")
    assert not fresh.exists()  # nothing written
    # the source's rows (another agent's server) are read there; an unknown point fails
    # as a check, the rest not checked
    res = api.post("/api/v1/servers/db1/restores/check",
                   json={"point_id": "nope", "target": {"kind": "files", "host": b.id,
                                                        "path": str(fresh)}})
    assert res.status_code == 200 and res.json()["host"] == "host-b", res.text
    assert res.json()["checks"][0]["code"] == "point.unknown"
    # one database into the agent's live server: checked by host a's agent
    into = {"kind": "server", "server": "db1", "database": "appdb", "new_name": "appdb"}
    res = api.post("/api/v1/servers/db1/restores/check", json={"point_id": point,
                                                               "target": into})
    assert res.json()["host"] == "host-a"
    assert _verdicts(res)["name"] == (False, "restore.database_exists")

    # the CLI's --check: the same function, exit 1 when a check fails
    out = cp.vault.run("restore", "db1", "--point", point, "--to-pgdata", str(busy),
                       "--host", "host-b", "--check", "--json")
    assert out.returncode == 1 and out.json()["host"] == "host-b", out.describe()
    assert {c["check"]: c["code"] for c in out.json()["checks"]}["folder"] == \
        "restore.target_exists"

    # the portal's wizard: hosts to restore on, servers by host, the chosen host's checks
    portal = cp.client(None)
    token = cp.vault.ok("token", "create", "portal-op", "--role", "operator")["token"]
    secrets_guard.register(token)
    login = re.search(r'name="login_csrf" value="([^"]+)"', portal.get("/login").text)
    page = portal.post("/login", data={"token": token, "next": "/", "login_csrf":
                                       login.group(1)}, follow_redirects=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    wizard = portal.get("/servers/db1/restore")
    assert wizard.status_code == 200
    assert f'<option value="{b.id}">host-b</option>' in wizard.text
    assert '<optgroup label="on host-a">' in wizard.text
    form = {"csrf_token": csrf, "action": "check", "source": "point", "point": point,
            "database": "appdb", "target": "pgdata", "path": str(busy), "host": b.id}
    res = portal.post("/servers/db1/restore", data=form)
    assert res.status_code == 200 and "Checked on host-b" in res.text, res.text
    assert "restore.target_exists" in res.text and "Start restore" not in res.text
    res = portal.post("/servers/db1/restore", data={**form, "path": str(fresh)})
    assert "Start restore" in res.text and "restore.target_outside_roots" not in res.text

    # checks are jobs of the target's host, and no restore: no restore alert, no restore job
    jobs = [j for j in cp.vault.jobs() if j["type"] in ("restore", "restore-check")]
    assert jobs and all(j["type"] == "restore-check" for j in jobs)
    assert {j["host"] for j in jobs} == {"host-a", "host-b"}
    assert all(j["state"] == "completed" for j in jobs), jobs

    # host b's agent gone: the check ends (its queued job failed by the control plane)
    # with an error that says so, within the bound
    b.kill()
    started = time.monotonic()
    res = api.post("/api/v1/servers/db1/restores/check",
                   json={"point_id": point, "target": {"kind": "pgdata", "host": "host-b",
                                                       "path": str(fresh)}})
    assert res.status_code == 503, res.text
    assert res.json()["error"]["code"] == "restore.check_unanswered"
    message = res.json()["error"]["message"]
    assert "host-b did not answer the restore checks (it has not called since" in message, \
        message
    assert time.monotonic() - started < 2 * LOST_AFTER + 10
    kinds = {x["kind"] for x in cp.vault.ok("alerts", "--all")}
    assert not kinds & {"restore_failed", "restore_succeeded"}, kinds
