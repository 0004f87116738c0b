"""Every day-one task of the portal clicked through in a real browser: Playwright
(playwright-core from npm, driving Debian's chromium) runs tests/browser/tasks_flow.mjs
against `dbsafe serve` over a real vault and one real PostgreSQL cluster, which the portal
itself registers. Each task is done with the least role the portal lets do it (a Backup
Operator adds the server, protects, changes the policy, backs up, verifies, drills,
undeletes; a Backup Contributor registers a VM, creates the policy, deletes a point,
changes the vault's settings, alert channels, tokens and users, reads the audit log), and
after each one the script stops (``@@step``) for this file to check its effect through
the CLI, not through the page that did it. Then a Backup Reader visits the same pages,
sees no action, and the tasks' forms posted with its session (and CSRF token) are refused
and change nothing.

Screenshots of every page visited go to tests/artefacts/browser/tasks/ (gitignored).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import secrets_guard
from alert_receivers import Webhook
from portal_harness import add_users, logged_in, serving, shop_cluster

from dbsafe.services.handle import Vault as ServiceVault

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT = ROOT / "tools" / "node" / "node_modules" / "playwright-core"
CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = ROOT / "tests" / "artefacts" / "browser" / "tasks"
SCRIPT = Path(__file__).with_name("tasks_flow.mjs")
FLOW_SECONDS = 600  # a hung browser is killed after this (no assertion on the time)
USERS = {"carla": "contributor", "otto": "operator", "rita": "reader"}
POLICY = "weekly-simple"
NEW_USER = "ana"
REGISTRATION_PREFIX = "dbr_"  # a VM's one-time registration token: dbr_<id>_<secret>


@pytest.fixture
def serve(wal_vault, pg_template, area):
    """One cluster with database ``shop``, not registered (the portal adds it); a portal
    user of each role (added with the CLI); a webhook receiver; `dbsafe serve` (no
    scheduler). Yields (url, cluster, passwords, webhook)."""
    for need, what in ((PLAYWRIGHT, "playwright-core"), (CHROMIUM, "chromium")):
        if not need.exists():
            pytest.fail(f"{what} is missing ({need}): run scripts/install.sh --test")
    pg = shop_cluster(pg_template, area)
    passwords = add_users(wal_vault, wal_vault.env, USERS)
    hook = Webhook()
    try:
        with serving(wal_vault) as url:
            yield url, pg, passwords, hook
    finally:
        hook.close()


class Checks:
    """What each ``@@step`` of the script checks, through the CLI (``dbsafe ... --json``)."""

    def __init__(self, vault, url: str, pg, hook: Webhook, new_password: str) -> None:
        self.vault, self.url, self.pg, self.hook = vault, url, pg, hook
        self.new_password = new_password
        self.results: dict[str, object] = {}
        self.token_secret = ""
        self.before_reader: dict[str, object] = {}
        self.done: list[str] = []

    def cli(self, *args: str) -> object:
        return self.vault.ok(*args)

    def items(self) -> dict[str, dict]:
        return {i["name"]: i for i in self.cli("items", "src")}

    def points(self, *extra: str) -> list[str]:
        return [p["point_id"] for p in self.cli("points", "src", *extra)["points"]]

    def point(self) -> str:
        return self.results["job_backup"]["point_id"]

    def job(self, name: str) -> dict:
        shown = self.results[f"job_{name}"]
        assert shown["shown"] == "completed", shown    # the job page's own final state
        return self.cli("job", "show", shown["id"])

    def api(self, bearer: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/v1/servers", timeout=30,
                         headers={"Authorization": f"Bearer {bearer}"})

    def state(self) -> dict[str, object]:
        """Everything a task changes, as the CLI shows it (the reader must change none)."""
        return {"servers": self.cli("server", "list"), "items": self.cli("items"),
                "policies": sorted(p["name"] for p in self.cli("policy", "list")),
                "jobs": [(j["id"], j["state"]) for j in self.cli("jobs", "--limit", "200")],
                "points": self.points(), "deleted": self.points("--deleted"),
                "vault": self.cli("vault", "info"),
                "channels": self.cli("alerts", "channel", "list"),
                "tokens": self.cli("token", "list"), "users": self.cli("user", "list")}

    def run(self, name: str) -> None:
        getattr(self, name.replace("-", "_"))()
        self.done.append(name)

    # 1 ------------------------------------------------------------------------------
    def server_added(self) -> None:
        servers = {s["name"]: s for s in self.cli("server", "list")}
        assert set(servers) == {"src"}, servers
        src = servers["src"]
        assert (src["pgdata"], src["port"]) == (str(self.pg.pgdata), self.pg.port), src
        assert src["runs_on"] == "this host", src
        assert self.results["server_added"].startswith("registered src: PostgreSQL 15"), \
            self.results["server_added"]

    def vm_registered(self) -> None:
        shown = self.results["registration"]
        command = shown["command"]
        token = command.split("--token ")[1].split()[0]
        secrets_guard.register(token)
        assert command.startswith("dbsafe agent register https://CONTROL-PLANE:8271 "
                                  f"--token {REGISTRATION_PREFIX}"), command
        assert "by the agent of host vm1 only" in shown["text"], shown["text"]
        token_id, _, secret = token.removeprefix(REGISTRATION_PREFIX).partition("_")
        # the token shown is the one the catalog holds: one-time, unused, for vm1, 30 min
        catalog = ServiceVault.records(self.vault.path)
        try:
            row = catalog.get_agent_token(token_id)
        finally:
            catalog.close()
        assert row is not None, token_id
        assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest(), row
        assert (row["host"], row["created_by"], row["used"]) == ("vm1", "user:carla", None)
        lives = datetime.fromisoformat(row["expires"]) - datetime.fromisoformat(row["created"])
        assert lives.total_seconds() == 30 * 60, row

    # 2 ------------------------------------------------------------------------------
    def policy_created(self) -> None:
        made = self.cli("policy", "show", POLICY)
        wanted = {"full": "weekly", "full_days": ["sun"], "full_time": "02:30",
                  "timezone": "Europe/Berlin", "diff_days": ["wed"], "log_every": None,
                  "keep_daily": None, "keep_weekly": 12, "keep_diff": 14, "keep_log": None,
                  "compression": True, "compression_level": 3, "synthetic_full": False,
                  "recovery_model": "SIMPLE", "items_using": []}
        assert {k: made[k] for k in wanted} == wanted, made

    def protected(self) -> None:
        items = self.items()
        assert set(items) == {"shop"}, items
        assert (items["shop"]["state"], items["shop"]["policy"]) == ("protected", None), items
        assert self.cli("server", "list")[0]["recovery_model"] == "SIMPLE"
        assert self.results["protected"].startswith("protected 1 database(s) with policy "
                                                    "none"), self.results["protected"]

    def policy_changed(self) -> None:
        items = self.items()
        assert (items["shop"]["state"], items["shop"]["policy"]) == \
            ("protected", POLICY), items
        assert self.cli("policy", "show", POLICY)["items_using"] == ["src/shop"]
        assert self.results["policy_changed"].startswith(
            f"1 protected database(s) now use policy {POLICY}"), self.results

    # 3 ------------------------------------------------------------------------------
    def backed_up(self) -> None:
        job = self.job("backup")
        assert (job["state"], job["type"], job["backup_type"], job["server"]) == \
            ("completed", "backup", "full", "src"), job
        point = job["result"]["point_id"]
        assert point == self.point()
        listed = {p["point_id"]: p for p in self.cli("points", "src")["points"]}
        assert list(listed) == [point], listed     # the instance's one point
        assert listed[point]["type"] == "full" and "shop" in listed[point]["databases"]

    def verified(self) -> None:
        job = self.job("verify")
        assert (job["state"], job["type"], job["server"]) == ("completed", "verify", "src")
        assert [p["point_id"] for p in job["result"]["points"]] == [self.point()], job

    def drilled(self) -> None:
        job = self.job("drill")
        assert (job["state"], job["type"]) == ("completed", "drill"), job
        (drill,) = self.cli("drills", "--server", "src")
        assert drill["id"] == job["id"] and drill["state"] == "completed", drill
        assert drill["point_id"] == self.point(), drill

    # 4 ------------------------------------------------------------------------------
    def point_deleted(self) -> None:
        point = self.point()
        assert self.points() == [] and self.points("--deleted") == [point]
        shown = self.results["deleted"]
        assert shown["done"].startswith(f"point {point} deleted: kept until"), shown
        assert point in shown["listed"], shown
        dialogs = shown["dialogs"]
        assert len(dialogs) == 1 and dialogs[0].startswith(f"Delete point {point} (full of "), \
            dialogs

    def point_undeleted(self) -> None:
        point = self.point()
        assert self.points() == [point] and self.points("--deleted") == []
        assert self.results["undeleted"] == f"point {point} undeleted: restorable as before"

    # 5 ------------------------------------------------------------------------------
    def settings_changed(self) -> None:
        info = self.cli("vault", "info")
        assert info["region"] == "West Europe", info
        assert info["soft_delete"] == {"enabled": True, "days": 21}, info
        assert info["immutability"] == "on", info
        shown = self.results["settings"]
        assert (shown["region"], shown["soft_delete"], shown["immutability"]) == \
            ("West Europe", "on: deleted points are kept 21 days", "on"), shown
        assert shown["dialogs"] == ["Set the vault's region? It cannot change afterwards."]

    def immutability_off(self) -> None:
        assert self.cli("vault", "info")["immutability"] == "off"
        assert self.results["immutability_off"] == "off"

    # 6 ------------------------------------------------------------------------------
    def channel_added(self) -> None:
        (channel,) = self.cli("alerts", "channel", "list")
        assert (channel["kind"], channel["target"], channel["on_success"]) == \
            ("webhook", f"{self.hook.url}/hook", False), channel
        assert self.hook.posts == []

    def channel_tested(self) -> None:
        assert self.hook.events("/hook") == ["test"], self.hook.posts
        (channel,) = self.cli("alerts", "channel", "list")
        assert self.results["channel_tested"] == \
            f"test alert delivered to channel {channel['id']} ({self.hook.url}/hook)"

    def channel_removed(self) -> None:
        assert self.cli("alerts", "channel", "list") == []
        dialogs = self.results["channel_removed"]["dialogs"]
        assert len(dialogs) == 1 and dialogs[0].startswith("Remove channel "), dialogs

    # 7 ------------------------------------------------------------------------------
    def token_created(self) -> None:
        self.token_secret = self.results["token"]["secret"]
        secrets_guard.register(self.token_secret)
        (token,) = self.cli("token", "list")
        assert (token["name"], token["role"], token["created_by"], token["revoked"]) == \
            ("ci-reader", "reader", "user:carla", None), token
        assert self.token_secret.startswith(f"dbs_{token['id']}_")
        answer = self.api(self.token_secret)          # the secret shown works
        assert answer.status_code == 200, answer.text
        assert [s["name"] for s in answer.json()] == ["src"]

    def token_revoked(self) -> None:
        assert self.results["secret_again"] == 0      # shown once only
        (token,) = self.cli("token", "list")
        assert token["name"] == "ci-reader" and token["revoked"] is not None, token
        answer = self.api(self.token_secret)
        assert answer.status_code == 401, answer.text
        dialogs = self.results["token_revoked"]["dialogs"]
        assert len(dialogs) == 1 and dialogs[0].startswith(f"Revoke token {token['id']} "
                                                           "(ci-reader)?"), dialogs

    def user_added(self) -> None:
        users = {u["name"]: u["role"] for u in self.cli("user", "list")}
        assert users == {**USERS, NEW_USER: "operator"}, users
        with logged_in(self.url, NEW_USER, self.new_password) as client:  # the password set
            assert "user:ana · operator" in client.get("/").text

    def user_removed(self) -> None:
        users = {u["name"]: u["role"] for u in self.cli("user", "list")}
        assert users == USERS, users
        dialogs = self.results["user_removed"]["dialogs"]
        assert dialogs == [f"Remove user {NEW_USER}? Their sessions end now."], dialogs

    # 8 ------------------------------------------------------------------------------
    def audited(self) -> None:
        point = self.point()
        (channel_test,) = [p for p in self.cli("audit", "--limit", "200")
                           if p["action"].endswith("/test")]
        channel = channel_test["target"].split("/")[3]
        token_id = self.cli("token", "list")[0]["id"]
        done = [("otto", "/servers"), ("carla", "/servers/register-vm"),
                ("carla", "/policies"), ("otto", "/servers/src/protect"),
                ("otto", "/servers/src/policy"), ("otto", "/servers/src/backup"),
                ("otto", "/servers/src/verify"), ("otto", "/servers/src/drill"),
                ("carla", f"/servers/src/points/{point}/delete"),
                ("otto", f"/servers/src/points/{point}/undelete"),
                ("carla", "/settings/region"), ("carla", "/settings/soft-delete"),
                ("carla", "/settings/immutability"), ("carla", "/settings/immutability"),
                ("carla", "/settings/alerts"), ("carla", f"/settings/alerts/{channel}/test"),
                ("carla", f"/settings/alerts/{channel}/remove"),
                ("carla", "/settings/access/tokens"),
                ("carla", f"/settings/access/tokens/{token_id}/revoke"),
                ("carla", "/settings/access/users"),
                ("carla", f"/settings/access/users/{NEW_USER}/remove")]
        wanted = [(f"user:{who} ({USERS[who]})", f"POST {path}", "ok") for who, path in done]
        # the page's columns: when, who, from, what, on, outcome, details
        shown = [(r[1], r[3], r[5]) for r in self.results["audit"]
                 if r[1].startswith("user:") and r[3].startswith("POST ")]
        assert sorted(shown) == sorted(wanted), shown
        logged = [(f"{a['actor']} ({a['role']})", a["action"], a["outcome"])
                  for a in self.cli("audit", "--limit", "200")
                  if a["actor"].startswith("user:") and a["action"].startswith("POST ")]
        assert sorted(logged) == sorted(wanted), logged
        self.before_reader = self.state()

    def reader_refused(self) -> None:
        pages = self.results["reader_pages"]
        for page in pages:
            if page["path"] in ("/settings/alerts", "/settings/access", "/audit",
                                "/servers/src/restore"):
                assert (page["status"], page["code"]) == (403, "auth.forbidden"), page
            else:
                assert page["status"] == 200, page
                assert page["forms"] == [] and page["buttons"] == [], page
        (server_page,) = [p for p in pages if p["path"] == "/servers/src"]
        assert server_page["database_links"] == 1   # its protected databases still listed
        assert len(pages) == 14
        posts = self.results["reader_posts"]
        assert len(posts) == 15
        for post in posts:
            assert (post["status"], post["code"]) == (403, "auth.forbidden"), post
        assert self.results["reader_dialogs"] == []
        assert self.state() == self.before_reader
        refused = [a for a in self.cli("audit", "--limit", "200")
                   if a["actor"] == "user:rita" and a["action"].startswith("POST ")]
        assert sorted((a["action"], a["outcome"]) for a in refused) == \
            sorted((f"POST {p['path']}", "auth.forbidden") for p in posts)


def _watchdog(flow: subprocess.Popen) -> threading.Timer:
    """Kills node and its chromium if the run hangs (a stuck step would block the read)."""
    def kill() -> None:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGKILL)
    timer = threading.Timer(FLOW_SECONDS, kill)
    timer.daemon = True
    timer.start()
    return timer


def test_every_task_in_the_browser_and_a_reader_refused(serve, wal_vault):
    url, pg, passwords, hook = serve
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True)
    new_password = f"pw-{secrets.token_urlsafe(16)}"
    secrets_guard.register(new_password)
    checks = Checks(wal_vault, url, pg, hook, new_password)
    users = {role: [name, passwords[name]] for name, role in USERS.items()}
    env = {**os.environ, "DBSAFE_URL": url, "USERS": json.dumps(users),
           "PG_DATA": str(pg.pgdata), "PG_PORT": str(pg.port), "DATABASE": "shop",
           "POLICY": POLICY, "HOOK_URL": f"{hook.url}/hook", "NEW_USER": NEW_USER,
           "NEW_USER_PASSWORD": new_password, "ARTEFACTS": str(ARTEFACTS),
           "PLAYWRIGHT_CORE": str(PLAYWRIGHT)}
    log: list[str] = []
    with open(ARTEFACTS / "node-stderr.log", "w") as stderr:
        # node and its chromium in a process group of their own: all of it goes at the end
        flow = subprocess.Popen(["node", str(SCRIPT)], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
                                start_new_session=True)
        timer = _watchdog(flow)
        try:
            for line in flow.stdout:
                log.append(line.rstrip())
                if line.startswith("@@step "):
                    checks.run(line.split()[1])
                    flow.stdin.write("ok\n")
                    flow.stdin.flush()
                elif line.startswith("@@result "):
                    _, key, text = line.rstrip().split(" ", 2)
                    checks.results[key] = json.loads(text)
            flow.wait(60)
        finally:
            timer.cancel()
            if flow.poll() is None:
                os.killpg(flow.pid, signal.SIGKILL)
                flow.wait()
    printed = "\n".join(log) + "\n" + (ARTEFACTS / "node-stderr.log").read_text()
    assert flow.returncode == 0, printed
    assert checks.done == ["server-added", "vm-registered", "policy-created", "protected",
                           "policy-changed", "backed-up", "verified", "drilled",
                           "point-deleted", "point-undeleted", "settings-changed",
                           "immutability-off", "channel-added", "channel-tested",
                           "channel-removed", "token-created", "token-revoked",
                           "user-added", "user-removed", "audited", "reader-refused"], printed
    assert len(list(ARTEFACTS.glob("*.png"))) >= 40   # a screenshot of every page
