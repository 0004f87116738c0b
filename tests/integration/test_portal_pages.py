"""The portal's pages against a real `dbsafe serve` (no scheduler) over a vault with a real
PostgreSQL cluster registered: every page answers, a database is protected and a policy
created and edited through the forms (CSRF token taken from the page), the model's refusal
shows beside the form, a Backup Reader sees no action buttons and is refused when posting
anyway, and a finished backup's job page shows its result."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import secrets_guard
from conftest import make_vault, new_cluster
from portal_harness import add_users, csrf, logged_in, serving

from dbsafe.services import activity
from dbsafe.services.activity import alerts as alert_service
from dbsafe.services.handle.vault_handle import Vault as ServiceVault


@dataclass
class Portal:
    url: str
    vault: object              # conftest.Vault
    pg: object                 # conftest.Pg
    passwords: dict[str, str]

    def login(self, name: str) -> contextlib.AbstractContextManager[httpx.Client]:
        """A client logged in through the login form (its session cookie kept)."""
        return logged_in(self.url, name, self.passwords[name], timeout=60)


@pytest.fixture(scope="module")
def portal(pg_template, module_area, cli_env) -> Iterator[Portal]:
    pg = new_cluster(pg_template, module_area, "pg")
    for db in ("app1", "app2", "app3"):
        pg.execute(f"CREATE DATABASE {db}")
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", "app1")
    pg.execute("CREATE DATABASE tmpl IS_TEMPLATE true")
    vault = make_vault(cli_env, module_area / "vault")
    vault.add_server("pg", pg)
    passwords = add_users(vault, cli_env)
    with serving(vault) as url:
        yield Portal(url, vault, pg, passwords)


RAW_INSTANT = re.compile(r">[^<]*\d{4}-\d\d-\d\dT\d\d:\d\d")  # ISO in a page's text


def test_every_page_answers(portal):
    with portal.login("carla") as c:
        assert c.get("/databases").status_code == 200
        servers = c.get("/servers")
        assert servers.status_code == 200 and 'href="/servers/pg"' in servers.text
        page = c.get("/servers/pg")
        assert page.status_code == 200
        # the last discovery: when the server was added (its databases were listed then)
        assert "last discovery</th><td>never" not in page.text
        # live databases, with the reason one cannot be protected
        assert "app1" in page.text and "template database" in page.text
        assert "Discover databases now" in page.text and "Protect selected" in page.text
        found = c.post("/servers/pg/discover", data={"csrf_token": csrf(page.text)})
        assert found.status_code == 200 and "discovered" in found.text
        policies = c.get("/policies")
        assert policies.status_code == 200 and 'href="/policies/default"' in policies.text
        assert c.get("/policies/default").status_code == 200
        for state in ("active", "resolved"):
            assert c.get("/alerts", params={"state": state}).status_code == 200
        assert "Resource planner" in c.get("/planner").text
        plan = c.get("/planner", params={"cores": 4, "bandwidth_mbps": 1000, "db_count": 20,
                                         "db_size_gb": 5, "change_rate_pct": 3,
                                         "policy": "default"})
        assert plan.status_code == 200 and "recommended maximum" in plan.text
        refused = c.get("/planner", params={"cores": 0, "bandwidth_mbps": 1000,
                                            "db_count": 20, "db_size_gb": 5,
                                            "change_rate_pct": 3})
        assert refused.status_code == 400 and "--cores must be at least 1" in refused.text
        assert c.get("/jobs").status_code == 200
        missing = c.get("/servers/nosuch")
        assert missing.status_code == 404 and "server.unknown" in missing.text
    anonymous = httpx.get(f"{portal.url}/databases")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


def test_protect_backup_and_job_page(portal):
    with portal.login("otto") as c:
        page = c.get("/servers/pg")
        token = csrf(page.text)
        # no CSRF token: refused before anything happens
        forged = c.post("/servers/pg/protect", data={"db": "app1", "policy": "-",
                                                     "action": "selected"})
        assert forged.status_code == 403 and "auth.csrf" in forged.text
        assert portal.vault.ok("items", "pg") == []
        # a template database is refused with its reason, nothing else changes
        refused = c.post("/servers/pg/protect", data={"db": "tmpl", "policy": "-",
                                                      "action": "selected",
                                                      "csrf_token": token})
        assert refused.status_code == 400 and "cannot be protected" in refused.text
        done = c.post("/servers/pg/protect", data={"db": ["app1", "app2"], "policy": "-",
                                                   "action": "selected", "csrf_token": token})
        assert done.status_code == 200, done.text
        assert "protected 2 database(s) with policy none, recovery model SIMPLE" in done.text
        items = {i["name"]: i for i in portal.vault.ok("items", "pg")}
        assert set(items) == {"app1", "app2"}
        assert all(i["state"] == "protected" for i in items.values())
        listed = c.get("/databases", params={"search": "app"})
        assert 'href="/servers/pg/databases/app1"' in listed.text
        assert "1–2 of 2 databases" in listed.text
        assert "no full backup yet" in listed.text           # health reason, on hover

        job_id = portal.vault.backup("pg", "--type", "full")["job_id"]
        jobs = c.get("/jobs", params={"server": "pg", "type": "backup"})
        assert f'href="/jobs/{job_id}"' in jobs.text
        job = c.get(f"/jobs/{job_id}")
        assert job.status_code == 200 and "completed" in job.text
        # what was done, in words, before the whole result (kept folded, as JSON)
        facts = job.text[job.text.index('id="job-facts"'):job.text.index("<details>")]
        assert "<th>recovery point</th>" in facts and "<th>stored</th>" in facts
        assert "<th>took</th>" in facts and (" MiB" in facts or " KiB" in facts)
        assert "The whole result" in job.text and "point_id" in job.text
        assert "Cancel job" not in job.text                  # it is not running
        # the live stream the page follows, authenticated by the session cookie
        events = c.get(f"/api/v1/jobs/{job_id}/events")
        assert events.status_code == 200 and "event: end" in events.text
        late = c.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token})
        assert late.status_code == 409 and "job.not_running" in late.text
        board = c.get("/")  # the dashboard's table of the databases worst off
        worst = board.text[board.text.index('id="worst"'):board.text.index("<h2>Fleet</h2>")]
        assert "pg/app1" in worst and "pg/app2" in worst and "no log backups" in worst
        healthy = c.get("/databases", params={"health": "healthy", "server": "pg"})
        assert "app1" in healthy.text and "app2" in healthy.text

        # an operator may stop protection keeping data, not deleting it
        stop = c.get("/servers/pg")
        assert "Stop protection, keep data" in stop.text
        assert "Stop protection and delete data" not in stop.text
        denied = c.post("/servers/pg/unprotect", data={"db": "app2", "data": "delete",
                                                       "csrf_token": token})
        assert denied.status_code == 403 and "auth.forbidden" in denied.text
        kept = c.post("/servers/pg/unprotect", data={"db": "app2", "data": "retain",
                                                     "csrf_token": token})
        assert kept.status_code == 200 and "data retained" in kept.text
        assert {i["name"]: i["state"] for i in portal.vault.ok("items", "pg")}["app2"] == \
            "stopped"


def test_the_timeline_zooms_around_an_instant_picked_on_it(portal):
    """`?time=` (what "Zoom in here" sends) centres a 15-minute window on the instant; the
    window links keep it; an instant without a zone is refused, not guessed."""
    point = portal.vault.backup("pg", "--type", "copy-only")
    with portal.login("rita") as c:
        page = c.get("/servers/pg/databases/app1", params={"time": point["end_time"]})
        assert page.status_code == 200, page.text
        assert 'class="current" aria-current="true">15m</a>' in page.text
        assert ">back to now</a>" in page.text and "&amp;time=" in page.text
        assert f'data-point="{point["point_id"]}"' in page.text   # inside the window
        naive = c.get("/servers/pg/databases/app1", params={"time": "2026-12-05T10:00:00"})
        assert naive.status_code == 400 and "time.zone_missing" in naive.text
    with portal.login("otto") as c:
        page = c.get("/servers/pg/databases/app1")
        assert ">Zoom in here</button>" in page.text


def test_jobs_are_listed_a_page_at_a_time_and_cut_by_when_they_started(portal):
    """60 jobs of one server, 45 of them days old: the portal pages through them 50 at a
    time and cuts them to the last 24 hours; the API pages the same list, says the total
    in ``X-Total-Count``, and takes a time range only as instants with their zone."""
    service_vault = ServiceVault.open(portal.vault.path)
    now = datetime.now(UTC)
    try:
        for n in range(60):
            started = now - (timedelta(days=3, minutes=n) if n >= 15 else timedelta(minutes=n))
            activity.record_job(service_vault.catalog, "verify", "paged", trigger="on-demand",
                                started=started.isoformat(timespec="milliseconds"),
                                result={"checked": n})
    finally:
        service_vault.catalog.close()
    row = re.compile(r'<tr>\s*<td><a href="/jobs/')
    with portal.login("rita") as c:
        first = c.get("/jobs", params={"server": "paged"})
        assert "60 jobs, newest first; times in UTC" in first.text
        assert len(row.findall(first.text)) == 50 and "page 1 of 2" in first.text
        assert "next »" in first.text and "« previous" not in first.text
        second = c.get("/jobs", params={"server": "paged", "offset": 50})
        assert len(row.findall(second.text)) == 10 and "page 2 of 2" in second.text
        recent = c.get("/jobs", params={"server": "paged", "range": "24h"})
        assert "15 jobs" in recent.text and len(row.findall(recent.text)) == 15
        assert c.get("/jobs", params={"range": "1y"}).status_code == 422

        api = c.get("/api/v1/jobs", params={"server": "paged", "limit": 20, "offset": 40})
        assert api.status_code == 200 and api.headers["X-Total-Count"] == "60"
        assert [j["result"]["checked"] for j in api.json()] == list(range(40, 60))
        since = (now - timedelta(hours=1)).isoformat()
        cut = c.get("/api/v1/jobs", params={"server": "paged", "since": since})
        assert cut.headers["X-Total-Count"] == "15" and len(cut.json()) == 15
        until = c.get("/api/v1/jobs", params={"server": "paged", "until": since})
        assert until.headers["X-Total-Count"] == "45"
        naive = c.get("/api/v1/jobs", params={"since": "2026-12-05T10:00:00"})
        assert naive.status_code == 400 and "time.zone_missing" in naive.text
        number = c.get("/api/v1/jobs", params={"until": "0.5"})   # never a timestamp
        assert number.status_code == 400 and "time.bad_instant" in number.text


def test_the_audit_log_is_for_the_role_that_manages_users(portal):
    with portal.login("carla") as c:
        log = c.get("/audit")
        assert log.status_code == 200 and 'href="/audit"' in log.text
        rows = log.text[log.text.index('id="audit-table"'):]
        assert "user add" in rows and "cli@" in rows      # the users the fixture added
        none = c.get("/audit", params={"actor": "nobody"})
        assert "nothing recorded by nobody" in none.text
    with portal.login("rita") as c:
        assert 'href="/audit"' not in c.get("/jobs").text
        refused = c.get("/audit")
        assert refused.status_code == 403 and "auth.forbidden" in refused.text


def test_reports_page_its_csv_files_and_the_api_give_the_same_rows(portal):
    service_vault = ServiceVault.open(portal.vault.path)
    now = datetime.now(UTC)
    try:
        for n in range(4):
            job = activity.record_job(service_vault.catalog, "verify", "reported", result={},
                                      started=(now - timedelta(hours=n)).isoformat())
            if n == 3:  # failed, without raising an alert the other tests would see
                service_vault.catalog.update_job(job, state="failed")
    finally:
        service_vault.catalog.close()
    with portal.login("rita") as c:
        api = c.get("/api/v1/reports", params={"days": 7})
        assert api.status_code == 200
        mine = [r for r in api.json()["jobs"] if r["server"] == "reported"]
        assert mine == [{"server": "reported", "type": "verify", "jobs": 4, "completed": 3,
                         "with_warnings": 0, "failed": 1, "cancelled": 0,
                         "success_rate": 0.75}]
        assert c.get("/api/v1/reports", params={"days": 0}).status_code == 422
        page = c.get("/reports", params={"days": 7})
        assert page.status_code == 200 and 'href="/reports"' in page.text
        jobs = page.text[page.text.index('id="report-jobs"'):page.text.index("Restore drills")]
        assert "<td>reported</td><td>verify</td><td>4</td><td>3</td>" in jobs
        assert "75.0 %" in jobs
        assert '<svg id="report-stored"' in page.text and '<svg id="report-jobs"' in page.text
        assert c.get("/reports", params={"days": 400}).status_code == 422
        table = c.get("/reports/jobs.csv", params={"days": 7})
        assert table.headers["content-type"].startswith("text/csv")
        assert "attachment" in table.headers["content-disposition"]
        lines = table.text.splitlines()
        assert lines[0] == ("server,type,jobs,completed,with_warnings,failed,cancelled,"
                            "success_rate")
        assert "reported,verify,4,3,0,1,0,0.75" in lines
        assert c.get("/reports/databases.csv", params={"days": 7}).text.splitlines()[0] == (
            "server,database,size_at_start,size_at_end,growth,stored_by_backups,held_at_end")
    point = portal.vault.backup("pg")
    with portal.login("rita") as c:
        rows = {r["database"]: r for r in c.get("/api/v1/reports").json()["databases"]
                if r["server"] == "pg"}
        assert "app1" in rows, rows
        assert rows["app1"]["size_at_end"] > 0 and rows["app1"]["stored_by_backups"] > 0
        assert sum(r["stored_by_backups"] for r in rows.values()) >= point["bytes_stored"]
        usage = c.get("/reports/databases.csv").text.splitlines()
        assert f"pg,app1,,{rows['app1']['size_at_end']}," in "\n".join(usage)
        page = c.get("/reports").text
        table = page[page.index('id="report-databases"'):page.index("<h2>Jobs")]
        assert 'href="/servers/pg/databases/app1">app1</a>' in table
        assert "the instance" in table
        # one server's rows: API, page (its CSV links keep the choice) and CSV agree
        mine = c.get("/api/v1/reports", params={"server": "pg"}).json()
        assert mine["server"] == "pg" and mine["databases"] and mine["jobs"]
        assert {r["server"] for t in ("storage", "databases", "jobs") for r in mine[t]} \
            == {"pg"}
        assert mine["databases"] == [r for r in c.get("/api/v1/reports").json()[
            "databases"] if r["server"] == "pg"]
        unknown = c.get("/api/v1/reports", params={"server": "nope"})
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "server.unknown")
        one = c.get("/reports", params={"server": "pg"}).text
        assert "<option selected>pg</option>" in one
        assert 'href="/reports/databases.csv?days=30&amp;server=pg"' in one
        csv_rows = c.get("/reports/jobs.csv", params={"server": "pg"}).text.splitlines()[1:]
        assert csv_rows and all(r.startswith("pg,") for r in csv_rows)
        board = c.get("/")
        assert '<svg id="chart-jobs"' in board.text and '<svg id="chart-stored"' in board.text
        assert '<svg id="chart-rpo"' in board.text


def test_each_viewer_reads_instants_in_the_zone_they_chose(portal):
    service_vault = ServiceVault.open(portal.vault.path)
    try:
        activity.record_job(service_vault.catalog, "verify", "zoned", result={},
                            started="2026-07-01T10:00:00.000+00:00")
    finally:
        service_vault.catalog.close()
    with portal.login("rita") as c:
        page = c.get("/jobs", params={"server": "zoned"})
        assert "times in UTC" in page.text and "2026-07-01 10:00:00 UTC" in page.text
        token = csrf(page.text)
        chosen = c.post("/viewer/zone", data={"zone": "Europe/Berlin", "csrf_token": token,
                                              "back": "/jobs?server=zoned"})
        assert chosen.status_code == 303 and chosen.headers["location"] == "/jobs?server=zoned"
        page = c.get("/jobs", params={"server": "zoned"})
        assert "times in Europe/Berlin" in page.text
        assert "2026-07-01 12:00:00 CEST" in page.text    # summer time, named
        assert c.get("/databases").status_code == 200      # its cached table too
        unknown = c.post("/viewer/zone", data={"zone": "Mars/Olympus", "csrf_token": token})
        assert unknown.status_code == 400 and "time.zone_unknown" in unknown.text
        away = c.post("/viewer/zone", data={"zone": "UTC", "csrf_token": token,
                                            "back": "https://elsewhere.example/x"})
        assert away.headers["location"] == "/"               # never another site
        assert "2026-07-01 10:00:00 UTC" in c.get("/jobs", params={"server": "zoned"}).text
    with portal.login("otto") as other:                     # a cookie of that browser only
        assert "times in UTC" in other.get("/jobs").text


def _policy_form(token: str, **changes: object) -> dict:
    form = {"csrf_token": token, "full": "daily", "full_time": "02:00", "timezone": "UTC",
            "log_every": "", "keep_daily": "30", "keep_weekly": "", "keep_monthly": "",
            "keep_yearly": "", "keep_diff": "", "keep_log": "", "compression": "on",
            "compression_level": "3", "drill_time": "04:00"}
    form.update(changes)
    return form


def test_policy_create_edit_delete(portal):
    with portal.login("carla") as c:
        page = c.get("/policies")
        token = csrf(page.text)
        # the form carries the model's ranges for the browser to check
        assert 'name="keep_daily" min="7" max="9999"' in page.text
        assert 'name="keep_log" min="7" max="35"' in page.text
        assert r'pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,62}"' in page.text
        bad = c.post("/policies", data=_policy_form(token, name="nightly", keep_daily="3"))
        assert bad.status_code == 400
        assert "keep_daily must be 7 to 9999 days, not 3" in bad.text
        assert 'value="nightly"' in bad.text                  # the draft is kept
        assert c.get("/policies/nightly").status_code == 404   # nothing was saved
        made = c.post("/policies", data=_policy_form(token, name="nightly"))
        assert made.status_code == 303 and made.headers["location"] == "/policies/nightly"
        stored = portal.vault.ok("policy", "show", "nightly")
        assert stored["full_time"] == "02:00" and stored["log_every"] is None
        assert stored["compression_level"] == 3 and stored["recovery_model"] == "SIMPLE"

        weekly = _policy_form(token, full="weekly", full_days=["sun", "wed"], keep_daily="",
                              keep_weekly="8", diff_days=["mon"], keep_diff="14",
                              log_every="30", keep_log="50")
        refused = c.post("/policies/nightly", data=weekly)
        assert refused.status_code == 400
        assert "keep_log must be 7 to 35 days, not 50" in refused.text
        assert portal.vault.ok("policy", "show", "nightly")["full"] == "daily"
        edited = c.post("/policies/nightly", data={**weekly, "keep_log": "14"})
        assert edited.status_code == 200 and "saved and applied" in edited.text
        stored = portal.vault.ok("policy", "show", "nightly")
        assert stored["full_days"] == ["wed", "sun"] and stored["keep_log"] == 14
        assert stored["recovery_model"] == "FULL"

        gone = c.post("/policies/nightly/delete", data={"csrf_token": token})
        assert gone.status_code == 303
        assert "nightly" not in {p["name"] for p in portal.vault.ok("policy", "list")}


def test_reader_sees_no_actions_and_is_refused(portal):
    service_vault = ServiceVault.open(portal.vault.path)
    try:
        alert = alert_service.raise_alert(service_vault.catalog, "archive_lag", "warning",
                                          "archiving of pg lags 2 GiB behind", server="pg")
    finally:
        service_vault.catalog.close()
    with portal.login("rita") as c:
        pages = {path: c.get(path) for path in ("/servers", "/servers/pg", "/policies",
                                                 "/policies/default", "/alerts")}
        assert all(p.status_code == 200 for p in pages.values())
        text = "".join(p.text for p in pages.values())
        for button in ("Discover databases now", "Protect selected", "Protect all",
                       "Stop protection, keep data", "Stop protection and delete data",
                       "Turn on", "Create policy", "Save and apply", "Delete policy",
                       "Resolve", "Create a registration token", "Revoke"):
            assert f">{button}</button>" not in text, button
        assert "Register a VM" not in text
        assert text.count("</button>") == 5      # the log-out button of each page
        assert "archiving of pg lags 2 GiB behind" in pages["/alerts"].text
        token = csrf(pages["/alerts"].text)      # the logout form's: a valid token
        for path, form in (("/servers/pg/protect", {"db": "app3", "action": "selected"}),
                           ("/servers/pg/discover", {}),
                           ("/policies", _policy_form(token, name="sneaky")),
                           (f"/alerts/{alert['id']}/resolve", {}),
                           ("/servers/register-vm", {"host": "vm1"}),
                           ("/agents/nosuch/revoke", {})):
            answer = c.post(path, data={**form, "csrf_token": token})
            assert answer.status_code == 403 and "auth.forbidden" in answer.text, path
    assert "app3" not in {i["name"] for i in portal.vault.ok("items", "pg")}
    assert [a["id"] for a in portal.vault.ok("alerts")] == [alert["id"]]

    with portal.login("otto") as c:
        page = c.get("/alerts")
        assert ">Resolve</button>" in page.text
        done = c.post(f"/alerts/{alert['id']}/resolve", data={"csrf_token": csrf(page.text)})
        assert done.status_code == 303
        resolved = c.get("/alerts", params={"state": "resolved"})
        assert "archiving of pg lags 2 GiB behind" in resolved.text
    assert portal.vault.ok("alerts") == []


def test_protect_all_and_auto_protection(portal):
    """After the reader's test (which checks app3 stays unprotected)."""
    portal.vault.ok("policy", "create", "nolog", "--log-every", "none")
    with portal.login("otto") as c:
        token = csrf(c.get("/servers/pg").text)
        done = c.post("/servers/pg/protect", data={"policy": "-", "action": "all",
                                                   "csrf_token": token})
        assert done.status_code == 200 and "protected 3 database(s)" in done.text, done.text
        items = {i["name"]: i["state"] for i in portal.vault.ok("items", "pg")}
        assert items == dict.fromkeys(("app1", "app2", "app3", "postgres"), "protected")

        none = c.post("/servers/pg/auto", data={"policy": "-", "enable": "true",
                                                "csrf_token": token})
        assert none.status_code == 422 and "auto-protection needs a policy" in none.text
        on = c.post("/servers/pg/auto", data={"policy": "nolog", "enable": "true",
                                              "csrf_token": token})
        assert on.status_code == 200 and "auto-protection on" in on.text, on.text
        assert "on, policy nolog" in on.text
        portal.pg.execute("CREATE DATABASE app4")
        found = c.post("/servers/pg/discover", data={"csrf_token": token})
        assert "auto-protected app4" in found.text
        assert {i["name"]: i["policy"] for i in portal.vault.ok("items", "pg")}["app4"] == \
            "nolog"
        off = c.post("/servers/pg/auto", data={"enable": "false", "csrf_token": token})
        assert off.status_code == 200 and "auto-protection off" in off.text
        portal.pg.execute("CREATE DATABASE app5")
        c.post("/servers/pg/discover", data={"csrf_token": token})
        assert "app5" not in {i["name"] for i in portal.vault.ok("items", "pg")}


def test_back_up_now_is_compressed_as_the_policy_says(portal):
    """A database page's "Back up now": the policy's compression, not a fixed level 1."""
    portal.vault.ok("policy", "create", "packed", "--log-every", "none",
                    "--compression-level", "5")
    portal.vault.ok("protect", "pg", "--all", "--policy", "packed")
    with portal.login("otto") as c:
        page = c.get("/servers/pg/databases/app1")
        started = c.post("/servers/pg/databases/app1/backup",
                         data={"type": "copy-only", "csrf_token": csrf(page.text)})
        assert started.status_code == 303, started.text
        job_id = started.headers["location"].rsplit("/", 1)[1]
        assert "event: end" in c.get(f"/api/v1/jobs/{job_id}/events").text
        job = c.get(f"/api/v1/jobs/{job_id}").json()
    assert job["state"] == "completed", job
    assert (job["result"]["compression_level"], job["result"]["compression_from"]) == \
        (5, "policy packed")


def test_register_a_vm_before_any_agents_listener(portal):
    """A contributor's "Register a VM" on a serve that never listened for agents: the
    command holds the placeholder address and the page says why; a host name that is not
    one is refused beside the form; a form without the session's CSRF token changes
    nothing. The servers page groups this one-machine vault's server under "this host"."""
    with portal.login("carla") as c:
        page = c.get("/servers")
        assert 'data-host="this host"' in page.text and "Register a VM" in page.text
        done = c.post("/servers/register-vm", data={"host": "vm1", "expires": "10",
                                                    "csrf_token": csrf(page.text)})
        assert done.status_code == 200, done.text
        command = re.search(r'id="register-command"[^>]*>([^<]+)<', done.text).group(1)
        secrets_guard.register(command.split("--token ")[1].split()[0])
        assert command.startswith("dbsafe agent register https://CONTROL-PLANE:8271 "
                                  "--token dbr_") and "--fingerprint" not in command
        assert "has not listened for agents yet" in done.text and "vm1" in done.text
        refused = c.post("/servers/register-vm", data={"host": "not a host",
                                                       "csrf_token": csrf(page.text)})
        assert refused.status_code == 400 and "is not a host name" in refused.text
        forged = c.post("/servers/register-vm", data={"host": "vm2"})
        assert forged.status_code == 403 and "auth.csrf" in forged.text
        unknown = c.post("/agents/nosuch/revoke", data={"csrf_token": csrf(page.text)})
        assert unknown.status_code == 404 and "agent.unknown" in unknown.text


def test_instants_show_as_everywhere_else_on_every_page(portal):
    """Issue 20's one time convention: no page prints an instant as raw ISO (with its "T"),
    with a point, its job and its alerts there to show."""
    portal.vault.backup("pg")
    jobs = [j for j in portal.vault.jobs() if j["server"] == "pg"][:3]  # newest first
    assert jobs
    with portal.login("carla") as c:
        paths = ["/", "/servers", "/servers/pg", "/servers/pg/databases/app1", "/databases",
                 "/jobs", "/policies", "/policies/default", "/alerts", "/reports", "/audit",
                 "/settings", "/settings/alerts", "/settings/access", "/servers/pg/instant",
                 "/servers/pg/restore?database=app1"] + [f"/jobs/{j['id']}" for j in jobs]
        for path in paths:
            shown = c.get(path)
            assert shown.status_code == 200, path
            # (a <pre> holds what is copied as it is: a job's raw result, a command)
            text = re.sub(r"<pre[^>]*>.*?</pre>", "", shown.text, flags=re.S)
            assert not RAW_INSTANT.findall(text), (path, RAW_INSTANT.findall(text))

