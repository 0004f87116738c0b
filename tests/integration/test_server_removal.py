"""Removing a server and adding alert channels through a real ``dbsafe serve``: the least
privilege each needs, and what is refused whatever the role.

A protected server archives its WAL through dbsafe's agent: removing it would leave
PostgreSQL handing WAL to an agent that no longer takes it (pg_wal grows until production
stops). Removal needs the contributor's ``delete`` and is refused while the server is
protected or still archives through dbsafe."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_serve import Serve, start_serve
from conftest import Pg, make_area, make_vault, new_cluster, remove_area


@dataclass
class Setup:
    serve: Serve
    pg: Pg


@pytest.fixture(scope="module")
def served(pg_template: Path, cli_env: dict[str, str]) -> Iterator[Setup]:
    area = make_area("removal-")
    serve = None
    try:
        pg = new_cluster(pg_template, area, "prod")
        vault = make_vault({**cli_env, "DBSAFE_RUN_DIR": str(area / "run")}, area / "vault")
        vault.add_server("prod", pg)
        serve = start_serve(vault, area / "serve.log")
        yield Setup(serve, pg)
    finally:
        if serve is not None:
            serve.stop()
        remove_area(area)  # stops the cluster and the agent


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def _archive_command(pg: Pg, expected: str) -> str:
    """``archive_command`` once a reload has reached new sessions (it is asynchronous)."""
    deadline = time.monotonic() + 30
    while (found := pg.scalar("SHOW archive_command")) != expected:
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    return found


def test_only_a_contributor_removes_a_server_and_never_while_dbsafe_archives_it(
        served: Setup):
    op, boss = served.serve.client("operator"), served.serve.client("contributor")
    pg = served.pg
    r = op.post("/servers/prod/protection", json={"all": True, "restart": True})
    assert r.status_code == 200 and r.json()["archiving_active"], r.text
    ours = pg.scalar("SHOW archive_command")
    assert "dbsafe" in ours

    assert _error(op.delete("/servers/prod"), 403)["code"] == "auth.forbidden"
    refused = _error(boss.delete("/servers/prod"), 409)
    assert refused["code"] == "server.protected"
    assert "dbsafe unprotect prod" in refused["message"]
    assert op.get("/servers/prod").status_code == 200
    assert _archive_command(pg, ours) == ours  # production still archives

    # Stopping protection (an operator, data retained) turns dbsafe's archiving off.
    r = op.post("/servers/prod/protection/stop", json={})
    assert r.status_code == 200 and r.json()["archiving_turned_off"], r.text
    assert r.json()["restart_needed"]  # archive_mode=off takes a restart: said, not hidden
    assert "dbsafe" not in _archive_command(pg, "")

    # An archive_command that still hands WAL to this vault's agent is refused too.
    pg.execute(f"ALTER SYSTEM SET archive_command = '{ours}'")
    pg.execute("SELECT pg_reload_conf()")
    _archive_command(pg, ours)
    assert _error(boss.delete("/servers/prod"), 409)["code"] == "server.archiving_ours"
    pg.execute("ALTER SYSTEM RESET archive_command")
    pg.execute("SELECT pg_reload_conf()")
    _archive_command(pg, "")

    assert _error(op.delete("/servers/prod"), 403)["code"] == "auth.forbidden"
    r = boss.delete("/servers/prod")
    assert r.status_code == 200 and r.json() == {"removed": "prod"}, r.text
    assert _error(op.get("/servers/prod"), 404)["code"] == "server.unknown"


def test_alert_channels_take_smtp_passwords_only_from_dbsafe_smtp_variables_over_tls(
        served: Setup):
    boss = served.serve.client("contributor")
    email = {"host": "127.0.0.1", "user": "alerts", "starttls": True}

    def add(**options) -> object:
        return boss.post("/alert-channels", json={"kind": "email", "target": "a@example.org",
                                                  "email": {**email, **options}})

    for var in ("HOME", "AWS_SECRET_ACCESS_KEY", "DBSAFE_PASSPHRASE"):
        assert _error(add(password_env=var), 422)["code"] == "request.invalid", var
    out = _error(add(password_env="DBSAFE_SMTP_PW", starttls=False), 400)
    assert out["code"] == "alerts.channel_invalid" and "TLS" in out["message"]
    assert boss.get("/alert-channels").json() == []
    r = add(password_env="DBSAFE_SMTP_PW")
    assert r.status_code == 201 and r.json()["options"]["starttls"] is True, r.text
