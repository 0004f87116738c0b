"""Input is checked at the edge, before any work: ports, counts, ids, names and paths out of
range are usage errors with a stable code (the CLI's ``usage.invalid``, exit 2, JSON under
``--json``; the API's ``request.invalid``), never an OverflowError deep in a restore or a
restore folder written for a server that cannot start; and an operating system's refusal
is reported as what it is, not as dbsafe's internal error."""

from __future__ import annotations

import json

import secrets_guard
from conftest import run_cli
from fastapi.testclient import TestClient

from dbsafe.cli.web_app import create_app


def _usage_error(res) -> dict:
    """A usage error as ``--json`` prints it: exit 2, one JSON object, no box of text."""
    assert res.returncode == 2, res.describe()
    assert "╭" not in res.stdout + res.stderr and "Traceback" not in res.stderr, res.describe()
    error = json.loads(res.stdout)["error"]
    assert error["code"] == "usage.invalid" and error["message"], res.describe()
    return error


def test_usage_errors_under_json_are_json(vault):
    for args, said in ((["jobs", "--no-such-option"], "No such option"),
                       (["backup"], "Missing argument"),
                       (["jobs", "--limit", "many"], "is not a valid integer"),
                       (["restore", "x", "--point", "p"], "exactly one of --to-pgdata"),
                       (["serve", "--port", "0"], "0 is not in the range")):
        error = _usage_error(vault.run(*args, "--json"))
        assert said in error["message"] and said in error["details"]["reason"], error
    # people still get Click's text (and its exit status)
    res = vault.run("jobs", "--no-such-option")
    assert res.returncode == 2 and res.stdout == "" and "No such option" in res.stderr


def test_ports_out_of_range_write_nothing(src_vault, area):
    """``restore --port 0 --start`` used to write the whole point and then fail to start;
    ``--port 99999`` ended in ``internal``. Both are refused before anything is written,
    as is a port no server can listen on at ``server add``; the API refuses them too."""
    point = src_vault.backup("src", "--db", "appdb")["point_id"]
    target = area / "restored"
    for port in ("0", "99999", "-1", "80"):
        error = _usage_error(src_vault.run("restore", "src", "--point", point, "--to-pgdata",
                                           target, "--port", port, "--start", "--json"))
        assert error["details"]["option"] == "--port", error
        assert not target.exists()
    for port in ("0", "99999", "-1"):
        error = _usage_error(src_vault.run("server", "add", "other", "--pgdata", area,
                                           "--port", port, "--json"))
        assert error["details"]["option"] == "--port"
    assert [s["name"] for s in src_vault.ok("server", "list")] == ["src"]
    token = src_vault.ok("token", "create", "edge", "--role", "contributor")["token"]
    secrets_guard.register(token)
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(src_vault.path), base_url="http://localhost") as client:
        for port in (0, 99999, -1):
            res = client.post("/api/v1/servers/src/restores", headers=auth, json={
                "point_id": point, "target": {"kind": "pgdata", "path": str(target),
                                              "port": port, "start": True}})
            assert res.status_code == 422, res.text
            assert res.json()["error"]["code"] == "request.invalid"
            res = client.post("/api/v1/servers", headers=auth, json={
                "name": "other", "pgdata": str(area), "port": port})
            assert res.status_code == 422 and "port" in res.json()["error"]["message"]
    assert not target.exists()


BEYOND_BOUNDS = [
    ["jobs", "--limit", "99999999999999999999999"],        # was internal: OverflowError
    ["audit", "--limit", "0"],
    ["alerts", "resolve", "99999999999999999999999"],      # was internal: OverflowError
    ["alerts", "check", "--min-free-pct", "200"],          # was accepted
    ["gc", "--wait", "-5"],                                # was accepted
    ["restore", "x", "--point", "p", "--to-pgdata", "/tmp/" + "a" * 300],
    ["restore", "x", "--point", "p", "--to-pgdata", "/tmp/r", "--workers", "0"],
    ["server", "add", "a/b", "--pgdata", "/tmp", "--port", "5432"],
    ["token", "create", "a b", "--role", "reader"],
    ["plan", "--cores", "99999999999999999999", "--bandwidth-mbps", "100", "--db-count", "1",
     "--db-size-gb", "1", "--change-rate-pct", "1"],
]


def test_counts_ids_names_and_paths_are_bounded_like_the_api(vault):
    for args in BEYOND_BOUNDS:
        _usage_error(vault.run(*args, "--json"))
    assert vault.ok("token", "list") == []


def test_an_operating_system_refusal_is_not_an_internal_error(cli_env, area):
    """A vault folder that is a file: the host's condition, said with the path, not a bug
    of dbsafe's to report."""
    not_a_folder = area / "a-file"
    not_a_folder.write_text("x")
    res = run_cli(cli_env, "jobs", "--json", vault=not_a_folder)
    assert res.returncode == 5, res.describe()
    error = json.loads(res.stdout)["error"]
    assert error["code"] == "system.io_failed", res.describe()
    assert error["details"]["errno"] == "ENOTDIR" and str(not_a_folder) in error["message"]
