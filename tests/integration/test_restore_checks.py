"""Restore checks (services/restore/checks.py) through POST /api/v1/servers/{s}/restores/check:
each check ok or failed with its code and message, nothing started or written; the same
checks refuse a restore that would fail them."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import secrets_guard
from fastapi.testclient import TestClient

from dbsafe.cli.web_app import create_app


@pytest.fixture
def api(src_vault, area):
    point = src_vault.backup("src", "--db", "appdb")["point_id"]
    tokens = {}
    for role in ("operator", "reader"):
        tokens[role] = src_vault.ok("token", "create", f"t-{role}", "--role", role)["token"]
        secrets_guard.register(tokens[role])
    # a loopback name: the app answers only the names it is served as (api/hosts.py)
    with TestClient(create_app(src_vault.path), base_url="http://localhost") as client:
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
                              "space": (True, None), "roles": (True, None)}
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
                     "folder": (False, "restore.target_exists"),
                     "port": (False, "restore.port_in_use"), "space": (True, None)}
    # the rules the restore holds: below a restore root, with a plain name
    for path, code in (("/etc/dbsafe-never", "restore.target_outside_roots"),
                       (str(area / "x$(id)"), "restore.target_unsafe")):
        body = {"point_id": point, "target": {"kind": "pgdata", "path": path}}
        assert _verdicts(_check(client, tokens["operator"], body))["folder"] == (False, code)
    assert not (area / "x$(id)").exists() and not Path("/etc/dbsafe-never").exists()
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


def _login(client, token) -> str:
    """A portal session from an API token; the CSRF token its forms carry."""
    form = re.search(r'name="login_csrf" value="([^"]+)"', client.get("/login").text)
    res = client.post("/login", data={"token": token, "next": "/", "login_csrf": form.group(1)})
    assert res.status_code == 200, res.text
    return re.search(r'name="csrf_token" value="([^"]+)"', res.text).group(1)


def test_the_wizard_checks_before_it_offers_to_start(api):
    client, tokens, point = api
    csrf = _login(client, tokens["operator"])
    page = client.get("/servers/src/databases/appdb?window=24h")
    assert page.status_code == 200 and 'class="mark full"' in page.text and point in page.text
    wizard = client.get(f"/servers/src/restore?database=appdb&point={point}")
    assert wizard.status_code == 200 and f'value="{point}"' in wizard.text
    form = {"csrf_token": csrf, "action": "check", "source": "point", "point": point,
            "database": "appdb", "target": "server", "target_server": "src",
            "new_name": "appdb"}
    res = client.post("/servers/src/restore", data=form)
    assert res.status_code == 200 and "restore.database_exists" in res.text
    assert "Start restore" not in res.text
    # starting anyway is refused by the same checks: the page again, no job
    res = client.post("/servers/src/restore", data={**form, "action": "start"},
                      follow_redirects=False)
    assert res.status_code == 200 and "restore.database_exists" in res.text
    res = client.post("/servers/src/restore", data={**form, "new_name": "appdb_copy"})
    assert res.status_code == 200 and "Start restore" in res.text
    # a form the API model refuses: one failed check, nothing else run
    res = client.post("/servers/src/restore", data={**form, "source": "time", "time": ""})
    assert res.status_code == 422 and "request.invalid" in res.text
    res = client.post("/servers/src/restore", data={**form, "csrf_token": "forged"})
    assert res.status_code == 403 and "auth.csrf" in res.text


def test_a_reader_sees_the_database_but_not_the_wizard(api):
    client, tokens, _ = api
    _login(client, tokens["reader"])
    page = client.get("/servers/src/databases/appdb")
    assert page.status_code == 200 and "Back up now" not in page.text
    assert "Restore…" not in page.text
    res = client.get("/servers/src/restore?database=appdb")
    assert res.status_code == 403 and "auth.forbidden" in res.text
