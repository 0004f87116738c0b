"""Day-one tasks in the portal against a real `dbsafe serve` (no scheduler) over a vault
with a real PostgreSQL cluster registered: adding a second real cluster as a server (and
its refusals, with the API's codes in the form's words), changing the policy of the
protected databases, an instance backup, a verify and a drill started from the pages and
followed to their end, deleting a point (refused by an immutable vault) and undeleting it.
Each is checked by what the CLI then sees. A Backup Reader sees none of these buttons and is
refused (403 ``auth.forbidden``) when posting anyway; a Backup Operator may undelete but not
delete."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import Pg, allow_restores, make_vault, new_cluster, own_cluster, wait_for
from portal_harness import add_users, csrf, logged_in, serving

from dbsafe.services.access import fuse_problem

JOB_DEADLINE = 600.0   # seconds a job started from a page may take on a loaded machine
ENDED = ("completed", "completed_with_warnings", "failed", "cancelled")


@dataclass
class Portal:
    url: str
    vault: object              # conftest.Vault
    pg: Pg                     # registered as "pg"
    other: Pg                  # its own initdb, running, not registered: added in a test
    stopped: Pg                # a data directory whose cluster is not running
    area: Path
    passwords: dict[str, str]

    def login(self, name: str) -> contextlib.AbstractContextManager[httpx.Client]:
        """A client logged in through the login form (its session cookie kept)."""
        return logged_in(self.url, name, self.passwords[name])

    def job(self, job_id: str) -> dict:
        """The job as the CLI shows it once it has ended (polled; never timed)."""
        return wait_for(lambda: (j := self.vault.ok("job", "show", job_id))["state"] in ENDED
                        and j, f"job {job_id} to end", timeout=JOB_DEADLINE, every=1.0)


def started_job(answer: httpx.Response) -> str:
    """The job id a form's answer sends the browser to (303 to /jobs/{id})."""
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("/jobs/"), location
    return location.removeprefix("/jobs/")


def shown(html: str, element_id: str) -> str:
    """The text of what a page says beside a form (a refusal, what was done), by id."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</p>', html, re.S)
    assert found, f"no #{element_id} in the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found.group(1))).strip()


@pytest.fixture(scope="module")
def portal(pg_template, module_area, cli_env) -> Iterator[Portal]:
    pg = new_cluster(pg_template, module_area, "pg")
    for db in ("app1", "app2"):
        pg.execute(f"CREATE DATABASE {db}")
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", "app1")
    other = own_cluster(module_area, "other")
    stopped = new_cluster(pg_template, module_area, "stopped", start=False)
    vault = make_vault(cli_env, module_area / "vault")
    vault.add_server("pg", pg)
    passwords = add_users(vault, cli_env)
    with serving(vault) as url:
        yield Portal(url, vault, pg, other, stopped, module_area, passwords)


def _servers(portal: Portal) -> dict[str, dict]:
    return {s["name"]: s for s in portal.vault.ok("server", "list")}


def test_add_a_server_through_the_form(portal):
    other = portal.other
    with portal.login("otto") as c:
        page = c.get("/servers")
        assert "Add a server" in page.text and 'action="/servers"' in page.text
        token = csrf(page.text)
        form = {"name": "pg2", "pgdata": str(other.pgdata), "port": str(other.port),
                "host": "", "csrf_token": token}
        forged = c.post("/servers", data={**form, "csrf_token": ""})
        assert forged.status_code == 403 and "auth.csrf" in forged.text

        # each refusal: the API's code and status, in the form's words, the fields kept
        missing = portal.area / "nosuch"
        refused = c.post("/servers", data={**form, "pgdata": str(missing)})
        assert refused.status_code == 400, refused.text
        said = shown(refused.text, "add-refused")
        assert said.startswith("server.pgdata_missing:") and "(no such folder)" in said
        assert 'value="pg2"' in refused.text and f'value="{missing}"' in refused.text

        refused = c.post("/servers", data={**form, "pgdata": str(portal.stopped.pgdata)})
        assert refused.status_code == 409, refused.text
        said = shown(refused.text, "add-refused")
        assert said.startswith("server.not_running:") and "start it, then add it again" in said

        wrong = other.port + 1
        refused = c.post("/servers", data={**form, "port": str(wrong)})
        assert refused.status_code == 400, refused.text
        said = shown(refused.text, "add-refused")
        assert said.startswith("server.wrong_port:")
        assert f"listens on port {other.port}, not {wrong}: give port {other.port}" in said
        assert "--" not in said                       # no command-line option named

        refused = c.post("/servers", data={**form, "name": "pg"})
        assert refused.status_code == 409
        said = shown(refused.text, "add-refused")
        assert said.startswith("server.exists:") and "choose another name" in said
        assert "dbsafe server" not in said            # no command to run instead

        refused = c.post("/servers", data={**form, "name": "again",
                                           "pgdata": str(portal.pg.pgdata),
                                           "port": str(portal.pg.port)})
        assert refused.status_code == 409
        assert shown(refused.text, "add-refused").startswith("server.pgdata_registered:")

        refused = c.post("/servers", data={**form, "pgdata": "var/lib/postgresql"})
        assert refused.status_code == 422
        said = shown(refused.text, "add-refused")
        assert said.startswith("request.invalid:") and "full path" in said
        assert "pgdata" not in said                   # the field as the form names it
        refused = c.post("/servers", data={**form, "port": "70000"})
        assert refused.status_code == 422 and "from 1 to 65535" in refused.text
        assert set(_servers(portal)) == {"pg"}           # nothing refused was registered

        added = c.post("/servers", data=form)
        assert added.status_code == 200, added.text
        assert "registered" in added.text and 'href="/servers/pg2"' in added.text
        assert 'id="add-refused"' not in added.text
    server = _servers(portal)["pg2"]
    assert (server["pgdata"], server["port"]) == (str(other.pgdata), other.port)
    assert server["runs_on"] == "this host"
    with portal.login("otto") as c:
        page = c.get("/servers/pg2")
        assert page.status_code == 200 and "Protect selected" in page.text


def test_change_the_policy_of_the_protected_databases(portal):
    vault = portal.vault
    vault.ok("policy", "create", "nolog", "--log-every", "none", "--keep-daily", "10")
    vault.ok("protect", "pg", "--db", "app1", "--db", "app2", "--recovery-model", "simple")
    assert {i["name"]: i["policy"] for i in vault.ok("items", "pg")} == \
        {"app1": None, "app2": None}
    with portal.login("otto") as c:
        page = c.get("/servers/pg")
        assert 'id="policy-form"' in page.text and ">Change policy</button>" in page.text
        token = csrf(page.text)
        unknown = c.post("/servers/pg/policy", data={"policy": "nosuch", "csrf_token": token})
        assert unknown.status_code == 404 and "policy.unknown" in unknown.text
        assert {i["policy"] for i in vault.ok("items", "pg")} == {None}

        done = c.post("/servers/pg/policy", data={"policy": "nolog", "csrf_token": token})
        assert done.status_code == 200, done.text
        assert "2 protected database(s) now use policy nolog, recovery model SIMPLE" in \
            done.text
        database = c.get("/servers/pg/databases/app1")
        assert 'href="/servers/pg#policy"' in database.text
    items = vault.ok("items", "pg")
    assert {i["name"]: (i["policy"], i["state"]) for i in items} == \
        {"app1": ("nolog", "protected"), "app2": ("nolog", "protected")}


def test_instance_backup_verify_and_drill_from_the_pages(portal):
    vault = portal.vault
    with portal.login("otto") as c:
        page = c.get("/servers/pg")
        token = csrf(page.text)
        assert ">Back up now</button>" in page.text
        assert '<option value="log">' not in page.text    # SIMPLE: no log backups
        backup = portal.job(started_job(c.post("/servers/pg/backup",
                                               data={"type": "full", "csrf_token": token})))
        assert backup["state"] == "completed", backup
        assert backup["type"] == "backup" and backup["server"] == "pg"
        point = backup["result"]["point_id"]
        listed = {p["point_id"]: p for p in vault.points("pg")}
        assert {"app1", "app2"} <= set(listed[point]["databases"])  # the instance's

        everything = portal.job(started_job(c.post("/servers/pg/verify",
                                                   data={"csrf_token": token})))
        assert everything["state"] == "completed", everything
        assert everything["type"] == "verify"
        assert point in [p["point_id"] for p in everything["result"]["points"]]

        database = c.get("/servers/pg/databases/app1")
        assert f'name="point" value="{point}">Verify</button>' in database.text
        one = portal.job(started_job(c.post("/servers/pg/verify",
                                            data={"point": point, "csrf_token": token})))
        assert one["state"] == "completed", one
        assert [p["point_id"] for p in one["result"]["points"]] == [point]

        drill = portal.job(started_job(c.post("/servers/pg/drill",
                                              data={"point": point, "csrf_token": token})))
        assert drill["state"] == "completed", drill
        assert drill["type"] == "drill"
        # what fails before a job starts fails the request, with its code, and starts none
        jobs = len(vault.jobs())
        unknown = c.post("/servers/pg/drill", data={"point": "nosuch", "csrf_token": token})
        assert unknown.status_code == 404 and "point.unknown" in unknown.text
        assert len(vault.jobs()) == jobs
    drills = vault.ok("drills", "--server", "pg")
    assert drills[0]["id"] == drill["id"] and drills[0]["state"] == "completed"
    assert drills[0]["point_id"] == point


def _deleted(portal: Portal) -> list[str]:
    return [p["point_id"] for p in portal.vault.ok("points", "pg", "--deleted")["points"]]


def test_delete_and_undelete_a_point(portal):
    vault = portal.vault
    point = vault.backup("pg")["point_id"]   # under policy nolog: retained 10 days
    database = "/servers/pg/databases/app1"
    with portal.login("otto") as c:
        page = c.get(database)
        token = csrf(page.text)
        assert ">Delete</button>" not in page.text      # an operator may not delete
        denied = c.post(f"/servers/pg/points/{point}/delete",
                        data={"database": "app1", "csrf_token": token})
        assert denied.status_code == 403 and "auth.forbidden" in denied.text
    assert point in [p["point_id"] for p in vault.points("pg")]

    vault.ok("vault", "immutability", "on")
    try:
        with portal.login("carla") as c:
            page = c.get(database)
            token = csrf(page.text)
            # the form asks to confirm first (portal.js: data-confirm)
            assert re.search(rf'<form [^>]*action="/servers/pg/points/{point}/delete"\s+'
                             rf'data-confirm="Delete point {point} ', page.text)
            held = c.post(f"/servers/pg/points/{point}/delete",
                          data={"database": "app1", "csrf_token": token})
            assert held.status_code == 409, held.text
            assert shown(held.text, "points-refused").startswith("immutability.retained:")
            assert point in [p["point_id"] for p in vault.points("pg")] and \
                _deleted(portal) == []
    finally:
        vault.ok("vault", "immutability", "off")

    with portal.login("carla") as c:
        token = csrf(c.get(database).text)
        elsewhere = c.post(f"/servers/pg2/points/{point}/delete",
                           data={"database": "postgres", "csrf_token": token})
        assert elsewhere.status_code == 404 and "point.unknown" in elsewhere.text
        done = c.post(f"/servers/pg/points/{point}/delete",
                      data={"database": "app1", "csrf_token": token})
        assert done.status_code == 200, done.text
        assert f"point {point} deleted: kept until" in shown(done.text, "points-done")
        assert 'id="deleted-points"' in done.text
    assert point not in [p["point_id"] for p in vault.points("pg")]
    assert _deleted(portal) == [point]

    with portal.login("otto") as c:
        page = c.get(database)
        undelete = f'action="/servers/pg/points/{point}/undelete"'
        assert undelete in page.text and ">Undelete</button>" in page.text
        back = c.post(f"/servers/pg/points/{point}/undelete",
                      data={"database": "app1", "csrf_token": csrf(page.text)})
        assert back.status_code == 200, back.text
        assert f"point {point} undeleted" in shown(back.text, "points-done")
        again = c.post(f"/servers/pg/points/{point}/undelete",
                       data={"database": "app1", "csrf_token": csrf(page.text)})
        assert again.status_code == 409
        assert shown(again.text, "points-refused").startswith("softdelete.not_deleted:")
    assert point in [p["point_id"] for p in vault.points("pg")] and _deleted(portal) == []

    # left deleted for the reader's test: it sees the point listed, with no button
    vault.ok("delete-point", point)
    assert _deleted(portal) == [point]


def test_a_reader_sees_no_task_and_is_refused(portal):
    vault = portal.vault
    point = _deleted(portal)[0]
    live = vault.points("pg")[0]["point_id"]
    jobs, servers = len(vault.jobs()), set(_servers(portal))
    with portal.login("rita") as c:
        pages = {path: c.get(path) for path in ("/servers", "/servers/pg",
                                                 "/servers/pg/databases/app1")}
        assert all(p.status_code == 200 for p in pages.values())
        text = "".join(p.text for p in pages.values())
        assert "Add a server" not in text and 'id="policy-form"' not in text
        assert point in pages["/servers/pg/databases/app1"].text    # listed as deleted
        for button in ("Add server", "Back up now", "Verify every point",
                       "Start a restore drill", "Change policy", "Verify", "Drill", "Delete",
                       "Undelete"):
            assert f">{button}</button>" not in text, button
        token = csrf(text)                               # the log-out form's: a valid one
        for path, form in (("/servers", {"name": "sneaky", "pgdata": "/nowhere",
                                          "port": "5432"}),
                           ("/servers/pg/backup", {"type": "full"}),
                           ("/servers/pg/verify", {}),
                           ("/servers/pg/drill", {}),
                           ("/servers/pg/policy", {"policy": "default"}),
                           (f"/servers/pg/points/{live}/delete", {"database": "app1"}),
                           (f"/servers/pg/points/{point}/undelete", {"database": "app1"})):
            answer = c.post(path, data={**form, "csrf_token": token})
            assert answer.status_code == 403 and "auth.forbidden" in answer.text, path
    assert len(vault.jobs()) == jobs and set(_servers(portal)) == servers
    assert {i["policy"] for i in vault.ok("items", "pg")} == {"nolog"}
    assert _deleted(portal) == [point]


@pytest.mark.skipif(fuse_problem() is not None, reason="instant access needs FUSE")
def test_open_an_instance_at_a_point_and_stop_it(portal):
    """The timeline's "Open at this instant…" leads to the server's instant page; the
    instance starts as a job, is listed with its connection string and time left, answers,
    and its Stop button removes it. A reader sees neither button and is refused."""
    allow_restores(portal.vault.path, portal.area)  # instances run below a restore root
    point = portal.vault.backup("pg")["point_id"]
    with portal.login("otto") as c:
        assert "Open at this instant…</button>" in c.get("/servers/pg/databases/app1").text
        page = c.get(f"/servers/pg/instant?point={point}")
        token = csrf(page.text)
        assert "Open at this instant</button>" in page.text
        job = portal.job(started_job(c.post("/servers/pg/instant", data={
            "point": point, "ttl": "1h", "csrf_token": token})))
        assert job["state"] == "completed" and job["type"] == "instant", job["error_message"]
        run = job["result"]
        listed = c.get("/servers/pg/instant").text
        assert run["id"] in listed and f'psql "{run["connection"]}"' in listed
        assert re.search(r"<td>(59|60) min</td>", listed)
        instance = Pg(pgdata=Path(run["mountpoint"]), port=run["port"],
                      sockdir=Path(run["socket_dir"]))
        assert instance.scalar("SELECT count(*) FROM t", "app1") == 1000
        stopped = c.post(f"/servers/pg/instant/{run['id']}/stop", data={"csrf_token": token})
        assert stopped.status_code == 303
    assert portal.vault.ok("instant", "list") == []
    # the API: start one, list it, stop it; a reader may list only
    secret = portal.vault.ok("token", "create", "instant-op", "--role", "operator")["token"]
    read = portal.vault.ok("token", "create", "instant-ro", "--role", "reader")["token"]
    with httpx.Client(base_url=f"{portal.url}/api/v1", timeout=120,
                      headers={"Authorization": f"Bearer {secret}"}) as api:
        answer = api.post("/servers/pg/instant", json={"point_id": point, "ttl_seconds": 600})
        assert answer.status_code == 202, answer.text
        job = portal.job(answer.json()["job_id"])
        assert job["state"] == "completed", job["error_message"]
        listed = api.get("/instant", headers={"Authorization": f"Bearer {read}"}).json()
        assert [r["id"] for r in listed] == [job["result"]["id"]]
        assert api.post("/servers/pg/instant", json={"point_id": point},
                        headers={"Authorization": f"Bearer {read}"}).status_code == 403
        assert api.delete(f"/instant/{job['result']['id']}").json()["stopped"] is True
        assert api.delete(f"/instant/{job['result']['id']}").status_code == 404
    assert portal.vault.ok("instant", "list") == []
    with portal.login("rita") as reader:
        page = reader.get(f"/servers/pg/instant?point={point}")
        assert page.status_code == 200 and "Open at this instant</button>" not in page.text
        refused = reader.post("/servers/pg/instant", data={"point": point})
        assert refused.status_code == 403 and "auth.forbidden" in refused.text


@pytest.mark.skipif(fuse_problem() is not None, reason="instant access needs FUSE")
def test_restore_a_table_through_the_wizard(portal):
    """The wizard's "tables into a server": its checks (a taken name is refused before
    anything starts), then the job, which brings the table back under a new name."""
    allow_restores(portal.vault.path, portal.area)
    point = portal.vault.backup("pg")["point_id"]
    form = {"source": "point", "point": point, "database": "app1", "target": "tables",
            "tables": "public.t", "tables_server": "pg", "table_as": "t_back"}
    try:
        with portal.login("otto") as c:
            page = c.get(f"/servers/pg/restore?database=app1&point={point}")
            assert 'value="tables"' in page.text
            token = csrf(page.text)
            checked = c.post("/servers/pg/restore", data={**form, "csrf_token": token,
                                                          "action": "check"})
            assert checked.status_code == 200 and 'id="start-restore"' in checked.text
            job = portal.job(started_job(c.post("/servers/pg/restore", data={
                **form, "csrf_token": token, "action": "start"})))
            assert job["state"] == "completed", job["error_message"]
            assert job["result"]["tables"] == [{"table": "public.t",
                                                "restored_as": "public.t_back"}]
            assert portal.pg.scalar("SELECT count(*) FROM t_back", "app1") == 1000
            again = c.post("/servers/pg/restore", data={**form, "csrf_token": token,
                                                        "action": "check"})
            assert "restore.table_exists" in again.text
            assert 'id="start-restore"' not in again.text
    finally:
        portal.pg.execute("DROP TABLE IF EXISTS t_back", "app1")
