"""Restore checks (services/restore_checks.py) through POST /api/v1/servers/{s}/restores/check:
each check ok or failed with its code and message, nothing started or written; the same
checks refuse a restore that would fail them."""

from __future__ import annotations

import socket

import pytest
import secrets_guard
from fastapi.testclient import TestClient

from dbsafe.api.app import create_app


@pytest.fixture
def api(src_vault, area):
    point = src_vault.backup("src", "--db", "appdb")["point_id"]
    tokens = {}
    for role in ("operator", "reader"):
        tokens[role] = src_vault.ok("token", "create", f"t-{role}", "--role", role)["token"]
        secrets_guard.register(tokens[role])
    with TestClient(create_app(src_vault.path)) as client:
        yield client, tokens, point


def _check(client, token, body, server="src"):
    return client.post(f"/api/v1/servers/{server}/restores/check", json=body,
                       headers={"Authorization": f"Bearer {token}"})


def _verdicts(res) -> dict:
    assert res.status_code == 200, res.text
    return {c["check"]: (c["ok"], c["code"]) for c in res.json()["checks"]}


def test_checks_of_a_database_restore_into_a_server(api, source):
    client, tokens, point = api
    target = {"kind": "server", "server": "src", "database": "appdb", "new_name": "appdb_copy"}
    res = _check(client, tokens["operator"], {"point_id": point, "target": target})
    assert _verdicts(res) == {"source": (True, None), "database": (True, None),
                              "version": (True, None), "name": (True, None),
                              "space": (True, None)}
    assert res.json()["ok"] is True
    # a name that exists, a database the point does not hold
    clash = {**target, "new_name": "appdb"}
    found = _verdicts(_check(client, tokens["operator"], {"point_id": point, "target": clash}))
    assert found["name"] == (False, "restore.database_exists") and found["space"][0]
    other = {**target, "database": "bench"}
    found = _verdicts(_check(client, tokens["operator"], {"point_id": point, "target": other}))
    assert found["database"] == (False, "restore.database_not_in_point")
    assert not source.scalar("SELECT count(*) FROM pg_database WHERE datname = 'appdb_copy'")


def test_checks_of_an_instance_restore(api, area):
    client, tokens, point = api
    busy = area / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        body = {"point_id": point, "target": {"kind": "pgdata", "path": str(busy),
                                              "port": taken, "start": True}}
        found = _verdicts(_check(client, tokens["operator"], body))
    assert found == {"source": (True, None), "version": (True, None),
                     "folder": (False, "restore.target_not_empty"),
                     "port": (False, "restore.port_in_use"), "space": (True, None)}
    fresh = area / "new" / "pgdata"
    body = {"point_id": point, "target": {"kind": "files", "path": str(fresh)}}
    assert _verdicts(_check(client, tokens["operator"], body)) == {
        "source": (True, None), "folder": (True, None), "space": (True, None)}
    assert not fresh.parent.exists()  # nothing written


def test_an_unresolved_source_leaves_the_rest_unchecked(api):
    client, tokens, _ = api
    target = {"kind": "server", "server": "src", "database": "appdb", "new_name": "x"}
    res = _check(client, tokens["operator"], {"time": "2026-01-01T00:00:00Z", "target": target})
    checks = res.json()["checks"]
    assert checks[0]["code"] == "restore.simple_model" and not res.json()["ok"]
    assert all(not c["ok"] and "not checked" in c["message"] for c in checks[1:])


def test_a_reader_may_not_check_and_a_restore_refuses_what_the_checks_refuse(api):
    client, tokens, point = api
    target = {"kind": "server", "server": "src", "database": "appdb", "new_name": "appdb"}
    res = _check(client, tokens["reader"], {"point_id": point, "target": target})
    assert res.status_code == 403 and res.json()["error"]["code"] == "auth.forbidden"
    res = client.post("/api/v1/servers/src/restores", json={"point_id": point,
                                                            "target": target},
                      headers={"Authorization": f"Bearer {tokens['operator']}"})
    assert res.status_code == 409 and res.json()["error"]["code"] == "restore.database_exists"
