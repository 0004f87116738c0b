"""One rule for an instant typed without a zone, in the CLI, the API and the portal: refused
with ``time.zone_missing``, the same message everywhere, offering the two readings ready to
paste. Before, the CLI read it as the host's local time and the API and the portal as UTC:
with ``TZ=Europe/Berlin`` the same text restored to instants an hour apart. With a zone,
written three ways, all three restore to the same instant."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC
from zoneinfo import ZoneInfo

import secrets_guard
from conftest import new_cluster, run_cli
from fastapi.testclient import TestClient
from markupsafe import escape

from dbsafe.cli.web_app import create_app

BERLIN = "Europe/Berlin"


def _target_line(folder) -> str:
    (line,) = re.findall(r"recovery_target_time = .*", (folder / "RESTORE.txt").read_text())
    return line


def _wait_job(client, auth, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while (job := client.get(f"/api/v1/jobs/{job_id}", headers=auth).json())["state"] in (
            "running", "cancelling"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["state"] == "completed", job
    return job


def _in_berlin():
    """This process on a host in Berlin (the API and the portal run in it), until undone."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = BERLIN
    time.tzset()

    def undo() -> None:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()
    return undo


def test_an_instant_without_a_zone_is_refused_alike_everywhere(pg_template, area, wal_vault):
    vault = wal_vault
    pg = new_cluster(pg_template, area, "pitr", settings={"track_commit_timestamp": "on"})
    vault.add_server("pitr", pg)
    vault.ok("protect", "pitr", "--all", "--restart")
    pg.execute("CREATE TABLE ledger (id int PRIMARY KEY)")
    pg.execute("INSERT INTO ledger SELECT generate_series(1, 10)")
    vault.backup("pitr", "--type", "full")
    for i in range(11, 21):  # commits spread over more than a second
        pg.execute("INSERT INTO ledger VALUES (%s)", params=(i,))
        time.sleep(0.15)
    vault.backup("pitr", "--type", "log")
    commits = [r[0] for r in pg.execute("SELECT pg_xact_commit_timestamp(xmin) FROM ledger "
                                        "WHERE id > 10 ORDER BY id")]
    # a whole second (what someone types) between two commits: inside the chain whatever
    # the machine's speed (a second after a commit may fall past the chain's end)
    instant = next(b.astimezone(UTC).replace(microsecond=0)
                   for a, b in zip(commits, commits[1:], strict=False)
                   if a < b.replace(microsecond=0) < b)
    berlin = instant.astimezone(ZoneInfo(BERLIN))
    wall = berlin.replace(tzinfo=None).isoformat()  # what someone in Berlin would type

    token = vault.ok("token", "create", "pitr", "--role", "operator")["token"]
    secrets_guard.register(token)
    auth = {"Authorization": f"Bearer {token}"}
    undo = _in_berlin()
    try:
        # the CLI, on a host in Berlin
        res = run_cli({**vault.env, "TZ": BERLIN}, "restore", "pitr", "--time", wall,
                      "--as-files", area / "cli-naive", "--json", vault=vault.path)
        assert res.returncode == 2, res.describe()
        error = res.json()["error"]
        assert error["code"] == "time.zone_missing", res.describe()
        message = error["message"]
        assert f"{berlin.isoformat()} ({BERLIN}, the zone of the dbsafe host)" in message
        assert f"{wall}Z" in message
        with TestClient(create_app(vault.path), base_url="http://localhost") as client:
            # the API: the restore and its checks
            body = {"time": wall, "target": {"kind": "files", "path": str(area / "api-naive")}}
            res = client.post("/api/v1/servers/pitr/restores", json=body, headers=auth)
            assert res.status_code == 400, res.text
            assert res.json()["error"] == error
            res = client.post("/api/v1/servers/pitr/restores/check", json=body, headers=auth)
            source = res.json()["checks"][0]
            assert (source["code"], source["message"]) == ("time.zone_missing", message)
            # the portal's wizard
            login = re.search(r'name="login_csrf" value="([^"]+)"', client.get("/login").text)
            page = client.post("/login", data={"token": token, "next": "/",
                                               "login_csrf": login.group(1)})
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            form = {"csrf_token": csrf, "action": "start", "source": "time", "time": wall,
                    "target": "files", "files_path": str(area / "portal-naive")}
            page = client.post("/servers/pitr/restore", data=form, follow_redirects=False)
            assert page.status_code == 200 and "time.zone_missing" in page.text
            assert str(escape(message)) in page.text and "Start restore" not in page.text
            assert not list(area.glob("*-naive"))

            # with a zone, written three ways: the same instant everywhere
            vault.ok("restore", "pitr", "--time", berlin.isoformat(), "--as-files",
                     area / "cli")
            body = {"time": instant.isoformat().replace("+00:00", "Z"),
                    "target": {"kind": "files", "path": str(area / "api")}}
            res = client.post("/api/v1/servers/pitr/restores", json=body, headers=auth)
            assert res.status_code == 202, res.text
            _wait_job(client, auth, res.json()["job_id"])
            kolkata = instant.astimezone(ZoneInfo("Asia/Kolkata")).isoformat()
            page = client.post("/servers/pitr/restore", follow_redirects=False,
                               data={**form, "time": kolkata, "files_path": str(area / "portal")})
            assert page.status_code == 303, page.text
            _wait_job(client, auth, page.headers["location"].rsplit("/", 1)[1])
    finally:
        undo()
    lines = {_target_line(area / where) for where in ("cli", "api", "portal")}
    assert lines == {f"recovery_target_time = '{instant.isoformat()}'"}, lines
