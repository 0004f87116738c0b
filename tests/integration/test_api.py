"""The REST API end to end: a real ``dbsafe serve`` over a real
vault and PostgreSQL cluster, called with httpx as each role.

One server is registered, protected, backed up and restored over the API (the restored
cluster is started and queried); then the role matrix, 401 on every documented operation
without a token (auth before routing), 403 before lookup, the audit log, revoked tokens.
The tests of this module share the serve and run in order (xdist ``--dist loadfile``)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from api_serve import Serve, start_serve
from conftest import Pg, free_port, make_area, make_vault, new_cluster, remove_area, restored

API = "/api/v1"


@dataclass
class Setup:
    serve: Serve
    pg: Pg
    area: Path


@pytest.fixture(scope="module")
def api(pg_template: Path, cli_env: dict[str, str]) -> Iterator[Setup]:
    area = make_area("api-")
    serve = None
    try:
        pg = new_cluster(pg_template, area, "db")
        pg.execute("CREATE DATABASE appdb")
        pg.execute("CREATE TABLE t AS SELECT g, md5(g::text) AS h "
                   "FROM generate_series(1, 5000) g", "appdb")
        pg.execute("CHECKPOINT")
        serve = start_serve(make_vault(cli_env, area / "vault"), area / "serve.log")
        yield Setup(serve, pg, area)
    finally:
        if serve is not None:
            serve.stop()
        remove_area(area)


def wait_job(client, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] not in ("running", "cancelling"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def events_until_end(serve: Serve, role: str, job_id: str) -> list[tuple[str, dict]]:
    """The job's server-sent events, read until ``event: end``."""
    events, kind = [], None
    with serve.client(role, timeout=300) as c, c.stream("GET", f"/jobs/{job_id}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
                if kind == "end":
                    break
    return events


def error_code(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]["code"]


def test_register_protect_backup_restore(api: Setup):
    """An operator registers and protects a server, backs it up and restores the point into
    a new data directory, started on a port: the restored server answers with the data."""
    op = api.serve.client("operator")
    r = op.post("/servers", json={"name": "db", "pgdata": str(api.pg.pgdata),
                                  "port": api.pg.port})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "db" and r.json()["pg_version"] == 15
    assert op.get("/servers/db").json()["port"] == api.pg.port
    assert [s["name"] for s in op.get("/servers").json()] == ["db"]

    r = op.post("/servers/db/protection", json={"all": True, "recovery_model": "simple"})
    assert r.status_code == 200, r.text
    assert r.json()["recovery_model"] == "SIMPLE" and "appdb" in r.json()["databases"]
    items = {i["name"]: i for i in op.get("/servers/db/items").json()}
    assert items["appdb"]["state"] == "protected"
    discovered = op.post("/servers/db/discovery").json()
    assert "appdb" in [d["name"] for d in discovered["databases"]]

    r = op.post("/servers/db/backups", json={"type": "full"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    events = events_until_end(api.serve, "reader", job_id)
    assert events[-1][0] == "end" and events[-1][1]["state"] == "completed", events[-1]
    assert all(kind == "progress" for kind, _ in events[:-1])
    job = wait_job(op, job_id)
    assert job["state"] == "completed" and job["type"] == "backup"

    points = op.get("/servers/db/points").json()["points"]
    assert [p["type"] for p in points] == ["full"]
    # points come a page at a time (oldest first), bounded like every number of the API
    page = op.get("/servers/db/points", params={"offset": 1, "limit": 5}).json()
    assert (page["total"], page["offset"], page["points"]) == (1, 1, [])
    for bad in ({"limit": 0}, {"limit": 10**6}, {"offset": 2**90}):
        r = op.get("/servers/db/points", params=bad)
        assert r.status_code == 422 and error_code(r) == "request.invalid", bad
    point_id = points[0]["point_id"]
    assert point_id == job["result"]["point_id"]

    target, port = api.area / "restored", free_port()
    r = op.post("/servers/db/restores", json={
        "point_id": point_id,
        "target": {"kind": "pgdata", "path": str(target), "port": port, "start": True}})
    assert r.status_code == 202, r.text
    job = wait_job(op, r.json()["job_id"])
    assert job["state"] == "completed", job
    copy = restored(target, port)
    try:
        assert copy.table_checksums() == api.pg.table_checksums()
        assert copy.scalar("SELECT count(*) FROM t", "appdb") == 5000
    finally:
        copy.stop()

    # verify, as a job too; planner and vault info for any role
    r = op.post("/servers/db/verify", json={})
    assert r.status_code == 202, r.text
    job = wait_job(op, r.json()["job_id"])
    assert job["state"] == "completed" and job["result"]["ok"], job
    reader = api.serve.client("reader")
    plan = reader.post("/planner", json={"cores": 4, "bandwidth_mbps": 1000, "db_count": 50,
                                         "db_size_gb": 10, "change_rate_pct": 5})
    assert plan.status_code == 200 and plan.json()["max_databases"] > 0, plan.text
    info = reader.get("/vault").json()
    assert info["soft_delete"]["enabled"] and info["immutability"] == "off"


def test_no_role_picks_the_programs_folder(api: Setup):
    """dbsafe runs pg_ctl, pg_dump and pg_restore from a server's bin_dir: the API has no
    such field for any role (a contributor picks one only at the command line)."""
    planted = api.area / "bin"
    planted.mkdir()
    (planted / "pg_ctl").write_text(f"#!/bin/sh\ntouch {api.area / 'ran'}\n")
    (planted / "pg_ctl").chmod(0o755)
    for role in ("operator", "contributor"):
        with api.serve.client(role) as client:
            r = client.post("/servers", json={"name": f"planted-{role}",
                                              "pgdata": str(api.pg.pgdata),
                                              "port": api.pg.port, "bin_dir": str(planted)})
        assert r.status_code == 422 and "bin_dir" in r.text, (role, r.text)
    schema = httpx.get(f"{api.serve.url}/openapi.json",
                       headers={"Authorization": f"Bearer {api.serve.tokens['reader']}"})
    assert "bin_dir" not in json.dumps(schema.json()["components"]["schemas"]["ServerRequest"])
    assert not (api.area / "ran").exists()


def test_role_matrix(api: Setup):
    """Reader reads only; operator does all but delete data, change policies and manage
    access; contributor does everything. Refusals are 403 auth.forbidden."""
    reader, op, boss = (api.serve.client(r) for r in ("reader", "operator", "contributor"))
    point_id = reader.get("/servers/db/points").json()["points"][0]["point_id"]
    restore = {"point_id": point_id,
               "target": {"kind": "files", "path": str(api.area / "never")}}

    refused = [
        (reader, "POST", "/servers/db/restores", restore),
        (reader, "POST", "/servers/db/backups", {"type": "full"}),
        (reader, "DELETE", f"/servers/db/points/{point_id}", None),
        (reader, "POST", "/servers", {"name": "x", "pgdata": "/x", "port": 5555}),
        (reader, "PATCH", "/vault", {"soft_delete_days": 30}),
        # a reader learns nothing about what exists: an unknown server is 403, not 404
        (reader, "POST", "/servers/nosuch/restores", restore),
        (op, "POST", "/policies", {"name": "nightly"}),
        (op, "PATCH", "/policies/default", {"keep_daily": 40}),
        (op, "DELETE", "/policies/default", None),
        (op, "POST", "/servers/db/protection/stop", {"delete_data": True}),
        (op, "DELETE", f"/servers/db/points/{point_id}", None),
        (op, "POST", "/tokens", {"name": "mine", "role": "contributor"}),
        (op, "GET", "/alert-channels", None),
        (op, "POST", "/vault/purge", None),
        (op, "POST", "/servers/nosuch/protection/stop", {"delete_data": True}),
    ]
    for client, method, path, body in refused:
        r = client.request(method, path, json=body)
        assert r.status_code == 403 and error_code(r) == "auth.forbidden", (method, path,
                                                                            r.text)
    assert not (api.area / "never").exists()

    # reads are fine for a reader
    for path in ("/servers", "/servers/db", "/servers/db/items", "/policies",
                 "/policies/default", "/alerts", "/drills", "/replica-sets", "/jobs",
                 "/vault", "/instances"):
        assert reader.get(path).status_code == 200, path

    # an operator stops protection keeping the data, and protects again
    r = op.post("/servers/db/protection/stop", json={"databases": ["postgres"]})
    assert r.status_code == 200 and r.json()["data"] == "retained", r.text
    r = op.post("/servers/db/protection", json={"databases": ["postgres"],
                                                "recovery_model": "simple"})
    assert r.status_code == 200, r.text

    # the contributor: policies ...
    r = boss.post("/policies", json={"name": "nightly", "full": "daily", "full_time": "02:30",
                                     "log_every": None, "keep_daily": 7})
    assert r.status_code == 201, r.text
    assert r.json()["recovery_model"] == "SIMPLE" and r.json()["keep_log"] is None
    r = boss.patch("/policies/nightly", json={"keep_daily": 9, "keep_weekly": 4})
    assert r.status_code == 200 and (r.json()["keep_daily"], r.json()["keep_weekly"]) == (9, 4)
    r = boss.patch("/policies/nightly", json={"keep_daily": 3})  # the seed's range: 7-9999
    assert r.status_code == 422 and error_code(r) == "request.invalid", r.text
    assert "keep_daily" in r.json()["error"]["message"]
    r = boss.patch("/policies/nightly", json={"diff_days": ["mon"]})  # weekly fulls only
    assert r.status_code == 400 and error_code(r) == "policy.invalid", r.text
    assert reader.get("/policies/nightly").json()["keep_daily"] == 9
    assert boss.delete("/policies/nightly").json() == {"deleted": "nightly"}
    r = reader.get("/policies/nightly")
    assert r.status_code == 404 and error_code(r) == "policy.unknown"
    # ... deletes a point (soft: the vault keeps it 14 days), an operator brings it back
    r = boss.delete(f"/servers/db/points/{point_id}", params={"reason": "api test"})
    assert r.status_code == 200 and r.json()["soft"], r.text
    assert reader.get("/servers/db/points").json()["points"] == []
    r = op.post(f"/servers/db/points/{point_id}/undelete")
    assert r.status_code == 200, r.text
    assert [p["point_id"] for p in reader.get("/servers/db/points").json()["points"]] == [
        point_id]
    r = boss.delete("/servers/db/points/nosuch-point")
    assert r.status_code == 404 and error_code(r) == "point.unknown"
    # ... and manages access
    r = boss.post("/tokens", json={"name": "extra", "role": "reader"})
    assert r.status_code == 201 and r.json()["role"] == "reader"
    assert boss.delete(f"/tokens/{r.json()['id']}").status_code == 200


def test_an_operator_restores_only_below_the_restore_roots(api: Setup):
    """An operator names the restore's folder, but dbsafe writes only new folders below
    the roots an administrator allowed on the host (here the area), with plain names: a
    folder elsewhere, a link, or shell syntax in a name is refused before any job, and
    nothing is created."""
    op = api.serve.client("operator")
    point_id = op.get("/servers/db/points").json()["points"][0]["point_id"]
    outside = make_area("api-outside-")
    try:
        os.chown(outside, 0, 0)
        (api.area / "to-outside").symlink_to(outside)
        shell = api.area / "x$(touch pwned)`touch pwned`"
        refused = [
            ({"kind": "pgdata", "path": str(outside / "r")}, 403,
             "restore.target_outside_roots"),
            ({"kind": "files", "path": "/etc/dbsafe-restore"}, 403,
             "restore.target_outside_roots"),
            ({"kind": "pgdata", "path": str(shell), "port": free_port(), "start": True}, 400,
             "restore.target_unsafe"),
            ({"kind": "files", "path": str(api.area / "a b;id")}, 400, "restore.target_unsafe"),
            ({"kind": "pgdata", "path": str(api.area / "to-outside" / "r")}, 400,
             "restore.target_unsafe"),
        ]
        listing = sorted(os.listdir(api.area))
        for target, status, code in refused:
            body = {"point_id": point_id, "target": target}
            r = op.post("/servers/db/restores", json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
            checked = op.post("/servers/db/restores/check", json=body).json()
            folder = next(c for c in checked["checks"] if c["check"] == "folder")
            assert (checked["ok"], folder["code"]) == (False, code), checked
        assert sorted(os.listdir(api.area)) == listing and os.listdir(outside) == []
        assert not Path("/etc/dbsafe-restore").exists() and not list(Path.cwd().glob("pwned"))
        roots = api.serve.client("reader").get("/vault").json()["restore_roots"]
        assert roots == [str(api.area)]
    finally:
        (api.area / "to-outside").unlink(missing_ok=True)
        remove_area(outside)


def test_every_operation_needs_a_token(api: Setup):
    """Without a token every documented operation answers 401 auth.required, before any
    routing or lookup (path parameters are not even looked at); a bad token is 401
    auth.invalid."""
    spec = api.serve.client("reader").get(f"{api.serve.url}/openapi.json").json()
    anonymous, forged = api.serve.client(None), api.serve.client(None)
    forged.headers["Authorization"] = "Bearer dbsafe_0000_not-a-real-token"
    checked = 0
    for path, operations in spec["paths"].items():
        if path == f"{API}/health":
            continue
        url = api.serve.url + path.replace("{", "").replace("}", "")
        for method in operations:
            r = anonymous.request(method.upper(), url, json={})
            assert r.status_code == 401 and error_code(r) == "auth.required", (method, path)
            r = forged.request(method.upper(), url, json={})
            assert r.status_code == 401 and error_code(r) == "auth.invalid", (method, path)
            checked += 1
    assert checked >= 50
    assert anonymous.get("/nothing/here").status_code == 401  # unknown paths too


def test_audit_log_and_revoked_token(api: Setup):
    """Every change is in the audit log with who, what, from where and the outcome; a
    revoked token is refused."""
    boss = api.serve.client("contributor")
    log = boss.get("/audit", params={"limit": 1000}).json()
    by = {(e["actor"], e["action"], e["outcome"]) for e in log}
    assert ("token:test-operator", "POST /api/v1/servers", "ok") in by
    assert ("token:test-operator", "POST /api/v1/servers/db/backups", "ok") in by
    assert ("token:test-reader", "POST /api/v1/servers/db/restores", "auth.forbidden") in by
    assert ("token:test-contributor", "DELETE /api/v1/policies/nightly", "ok") in by
    assert ("token:test-contributor", "PATCH /api/v1/policies/nightly",
            "policy.invalid") in by
    entry = next(e for e in log if e["action"] == "POST /api/v1/servers" and e["outcome"] == "ok")
    assert entry["source"] == "127.0.0.1" and entry["role"] == "operator" and entry["at"]
    assert entry["detail"]["name"] == "db"
    assert not [e for e in log if e["action"].startswith("GET ")]  # reads are not changes

    secret = api.serve.token("short-lived", "operator")
    with api.serve.client(None) as c:
        c.headers["Authorization"] = f"Bearer {secret}"
        assert c.get("/whoami").json()["name"] == "token:short-lived"
        token_id = next(t["id"] for t in boss.get("/tokens").json()
                        if t["name"] == "short-lived")
        assert boss.delete(f"/tokens/{token_id}").json()["revoked"]
        r = c.get("/whoami")
        assert r.status_code == 401 and error_code(r) == "auth.invalid"
        r = c.post("/servers/db/backups", json={"type": "full"})
        assert r.status_code == 401 and error_code(r) == "auth.invalid"


def test_a_backup_asked_for_over_the_api_is_compressed_as_the_policy_says(api: Setup):
    """No compress_level: the server's policy's compression (not a fixed level 1)."""
    made = api.serve.client("contributor").post("/policies", json={
        "name": "packed", "log_every": None, "compression_level": 5})
    assert made.status_code == 201, made.text
    op = api.serve.client("operator")
    r = op.post("/servers/db/protection", json={"all": True, "policy": "packed"})
    assert r.status_code == 200, r.text
    r = op.post("/servers/db/backups", json={"type": "copy-only"})
    assert r.status_code == 202, r.text
    job = wait_job(op, r.json()["job_id"])
    assert job["state"] == "completed", job
    assert (job["result"]["compression_level"], job["result"]["compression_from"]) == \
        (5, "policy packed")
