"""The portal's settings area against a real `dbsafe serve` (no scheduler) over a vault with
a real PostgreSQL cluster registered: every role reads the vault's settings as the API
shows them, only a Backup Contributor gets the forms (the others are refused when posting
anyway), a refused change shows the code the API answers, alert channels are added,
tested (a closed port fails with its reason, a live receiver gets the test) and removed,
a token's secret is shown once and revoking it shuts the API to it, a user added in the
portal logs in, and neither a password nor a token's secret reaches the audit log."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import secrets_guard
from alert_receivers import Webhook
from conftest import free_port, make_vault, new_cluster
from portal_harness import USERS, add_users, csrf, logged_in, login_answer, serving

TOKEN_SECRET = re.compile(r'id="token-secret"[^>]*>(dbs_[^<]+)<')


@dataclass
class Portal:
    url: str
    vault: object              # conftest.Vault
    passwords: dict[str, str]
    serve_output: list[str] = field(default_factory=list)

    def login_answer(self, client: httpx.Client, name: str, password: str) -> httpx.Response:
        return login_answer(client, name, password)

    def login(self, name: str, password: str | None = None
              ) -> contextlib.AbstractContextManager[httpx.Client]:
        """A client logged in through the login form (its session cookie kept)."""
        return logged_in(self.url, name, password or self.passwords[name], timeout=60)

    def info(self) -> dict:
        return self.vault.ok("vault", "info")


def refused(answer: httpx.Response, status: int, code: str) -> str:
    """The page refused with ``code`` beside its form; returns the page."""
    assert answer.status_code == status, answer.text
    assert f"<code>{code}</code>" in answer.text, answer.text
    return answer.text


def api_code(client: httpx.Client, token: str, body: dict) -> tuple[int, str]:
    """What the API's PATCH /vault answers the same change (with the session's cookie and
    its CSRF token, as a page's script would send it)."""
    answer = client.patch("/api/v1/vault", json=body, headers={"X-CSRF-Token": token})
    return answer.status_code, answer.json()["error"]["code"]


@pytest.fixture(scope="module")
def portal(pg_template, module_area, cli_env) -> Iterator[Portal]:
    pg = new_cluster(pg_template, module_area, "pg")
    vault = make_vault(cli_env, module_area / "vault")
    vault.add_server("pg", pg)
    passwords = add_users(vault, cli_env)
    output: list[str] = []
    with serving(vault, output) as url:
        found = Portal(url, vault, passwords, output)
        yield found
    output = "".join(found.serve_output)
    assert not secrets_guard.leaks_in(output), "dbsafe serve printed a secret"
    assert "Traceback" not in output, output


FORBIDDEN_POSTS = (
    ("/settings/region", {"region": "West Europe"}),
    ("/settings/soft-delete", {"enabled": "on", "days": "30"}),
    ("/settings/immutability", {"state": "on"}),
    ("/settings/alerts", {"kind": "webhook", "target": "http://127.0.0.1:9/hook"}),
    ("/settings/alerts/1/test", {}),
    ("/settings/alerts/1/remove", {}),
    ("/settings/access/tokens", {"name": "sneaky", "role": "contributor"}),
    ("/settings/access/tokens/abcd1234/revoke", {}),
    ("/settings/access/users/carla/remove", {}),
)


def test_every_role_reads_the_settings_and_only_a_contributor_changes_them(portal):
    sneaky_password = f"sneaky-{secrets.token_urlsafe(12)}"
    secrets_guard.register(sneaky_password)
    for name in ("rita", "otto"):
        with portal.login(name) as c:
            page = c.get("/settings")
            assert page.status_code == 200 and 'href="/settings">Settings</a>' in page.text
            shown = c.get("/api/v1/vault").json()
            assert shown["region"] is None and shown["immutability"] == "off"
            assert shown["soft_delete"] == {"enabled": True, "days": 14}
            assert 'id="vault-region">not set<' in page.text
            assert "on: deleted points are kept 14 days" in page.text
            assert 'id="vault-immutability">off<' in page.text
            assert 'action="/settings/' not in page.text          # no forms
            assert 'href="/settings/access"' not in page.text     # nor their tabs
            for path in ("/settings/alerts", "/settings/access"):
                answer = c.get(path)
                assert answer.status_code == 403 and "auth.forbidden" in answer.text, path
            token = csrf(page.text)                  # the logout form's: a valid token
            for path, form in (*FORBIDDEN_POSTS, ("/settings/access/users", {
                    "name": "sneaky", "role": "contributor", "password": sneaky_password,
                    "password_again": sneaky_password})):
                answer = c.post(path, data={**form, "csrf_token": token})
                assert answer.status_code == 403 and "auth.forbidden" in answer.text, path
            assert sneaky_password not in answer.text
    info = portal.info()
    assert info["region"] is None and info["immutability"] == "off"
    assert info["soft_delete"] == {"enabled": True, "days": 14}
    assert {u["name"] for u in portal.vault.ok("user", "list")} == set(USERS)
    assert portal.vault.ok("token", "list") == []
    assert portal.vault.ok("alerts", "channel", "list") == []


def test_region_and_soft_delete_are_changed_with_the_services_checks(portal):
    with portal.login("carla") as c:
        page = c.get("/settings")
        token = csrf(page.text)
        for form in ('action="/settings/region"', 'action="/settings/soft-delete"',
                     'action="/settings/immutability"'):
            assert form in page.text
        assert 'name="days" min="14" max="180"' in page.text

        # refusals: the services' codes, the same as the API's, beside the form
        text = refused(c.post("/settings/region", data={"region": "Atlantis",
                                                       "csrf_token": token}),
                       400, "region.unknown")
        assert 'value="Atlantis"' in text                    # what was typed is kept
        assert api_code(c, token, {"region": "Atlantis"}) == (400, "region.unknown")
        text = refused(c.post("/settings/soft-delete", data={"enabled": "on", "days": "5",
                                                            "csrf_token": token}),
                       400, "softdelete.days_out_of_range")
        assert "choose 14 to 180 days, or turn soft delete off" in text
        assert "--off" not in text
        assert api_code(c, token, {"soft_delete_days": 5}) == \
            (400, "softdelete.days_out_of_range")
        text = refused(c.post("/settings/soft-delete", data={"enabled": "on", "days": "ten",
                                                            "csrf_token": token}),
                       422, "request.invalid")
        assert "must be a whole number" in text
        forged = c.post("/settings/soft-delete", data={"enabled": "on", "days": "30"})
        assert forged.status_code == 403 and "auth.csrf" in forged.text
        assert portal.info()["soft_delete"] == {"enabled": True, "days": 14}

        done = c.post("/settings/soft-delete", data={"enabled": "on", "days": "30",
                                                    "csrf_token": token})
        assert done.status_code == 303 and done.headers["location"] == "/settings"
        assert "on: deleted points are kept 30 days" in c.get("/settings").text
        assert portal.info()["soft_delete"] == {"enabled": True, "days": 30}
        off = c.post("/settings/soft-delete", data={"days": "30", "csrf_token": token})
        assert off.status_code == 303
        assert "off: deleted points go at once" in c.get("/settings").text
        assert portal.info()["soft_delete"] == {"enabled": False, "days": 30}
        c.post("/settings/soft-delete", data={"enabled": "on", "days": "30",
                                              "csrf_token": token})
        assert portal.info()["soft_delete"] == {"enabled": True, "days": 30}

        done = c.post("/settings/region", data={"region": "west europe",
                                               "csrf_token": token})
        assert done.status_code == 303
        page = c.get("/settings")
        assert 'id="vault-region">West Europe<' in page.text
        assert 'action="/settings/region"' not in page.text   # set once
        assert portal.info()["region"] == "West Europe"
        assert c.get("/api/v1/vault").json()["region"] == "West Europe"
        refused(c.post("/settings/region", data={"region": "North Europe",
                                                "csrf_token": token}),
                409, "vault.region_fixed")
        assert api_code(c, token, {"region": "North Europe"}) == (409, "vault.region_fixed")
        assert portal.info()["region"] == "West Europe"


def _channel_id(portal: Portal, target: str) -> int:
    (found,) = [ch for ch in portal.vault.ok("alerts", "channel", "list")
                if ch["target"] == target]
    return found["id"]


def test_alert_channels_are_added_tested_and_removed(portal):
    hook = Webhook()
    closed = f"http://127.0.0.1:{free_port()}/hook"     # nobody listens there
    try:
        with portal.login("carla") as c:
            page = c.get("/settings/alerts")
            assert page.status_code == 200 and 'action="/settings/alerts"' in page.text
            assert "no channels" in page.text
            token = csrf(page.text)

            def add(**form: str) -> httpx.Response:
                return c.post("/settings/alerts", data={**form, "csrf_token": token})

            text = refused(add(kind="webhook", target="ftp://example.com/x"),
                           400, "alerts.channel_invalid")
            assert "is not an http:// or https:// URL" in text and "--help" not in text
            text = refused(add(kind="email", target="dba@example.com"),
                           400, "alerts.channel_invalid")
            assert "needs the SMTP server (“SMTP server”)" in text
            text = refused(add(kind="email", target="dba@example.com", host="smtp.example.com",
                               user="alerts", password_env="DBSAFE_SMTP_PASSWORD"),
                           400, "alerts.channel_invalid")
            assert "a password is only sent over TLS: add “STARTTLS”, or “Implicit TLS”" \
                in text
            assert 'value="smtp.example.com"' in text               # the draft is kept
            text = refused(add(kind="webhook", target=closed, host="smtp.example.com"),
                           400, "alerts.channel_invalid")
            assert "the SMTP settings go with an e-mail address" in text
            assert "--smtp" not in c.get("/settings/alerts").text + text
            assert portal.vault.ok("alerts", "channel", "list") == []

            assert add(kind="webhook", target=closed).status_code == 303
            assert add(kind="webhook", target=f"{hook.url}/hook",
                       on_success="on").status_code == 303
            assert add(kind="email", target="dba@example.com", host="smtp.example.com",
                       starttls="on", user="alerts",
                       password_env="DBSAFE_SMTP_PASSWORD").status_code == 303
            listed = c.get("/settings/alerts").text
            assert closed in listed and f"{hook.url}/hook" in listed
            assert ("SMTP smtp.example.com:25, STARTTLS, user alerts (password from "
                    "DBSAFE_SMTP_PASSWORD)") in listed
            mail = [ch for ch in portal.vault.ok("alerts", "channel", "list")
                    if ch["kind"] == "email"]
            assert mail[0]["options"] == {"host": "smtp.example.com", "port": 25,
                                          "starttls": True, "user": "alerts",
                                          "password_env": "DBSAFE_SMTP_PASSWORD"}

            dead = _channel_id(portal, closed)
            text = refused(c.post(f"/settings/alerts/{dead}/test", data={"csrf_token": token}),
                           502, "alerts.delivery_failed")
            assert f"did not reach channel {dead} ({closed})" in text
            assert "Connection refused" in text and "Traceback" not in text
            live = _channel_id(portal, f"{hook.url}/hook")
            sent = c.post(f"/settings/alerts/{live}/test", data={"csrf_token": token})
            assert sent.status_code == 200
            assert f"test alert delivered to channel {live}" in sent.text
            assert hook.events("/hook") == ["test"]

            for channel in portal.vault.ok("alerts", "channel", "list"):
                gone = c.post(f"/settings/alerts/{channel['id']}/remove",
                              data={"csrf_token": token})
                assert gone.status_code == 303 and gone.headers["location"] == \
                    "/settings/alerts"
            assert portal.vault.ok("alerts", "channel", "list") == []
            text = refused(c.post(f"/settings/alerts/{live}/remove",
                                  data={"csrf_token": token}),
                           404, "alerts.channel_unknown")
            assert "dbsafe alerts" not in text
    finally:
        hook.close()


def test_a_token_is_shown_once_works_and_is_revoked(portal):
    with portal.login("carla") as c:
        page = c.get("/settings/access")
        assert page.status_code == 200 and 'action="/settings/access/tokens"' in page.text
        token = csrf(page.text)
        refused(c.post("/settings/access/tokens", data={"name": "has space", "role": "reader",
                                                        "csrf_token": token}),
                422, "request.invalid")
        refused(c.post("/settings/access/tokens", data={"name": "ci", "role": "admin",
                                                        "csrf_token": token}),
                400, "auth.role_unknown")
        made = c.post("/settings/access/tokens", data={"name": "ci-reader", "role": "reader",
                                                       "csrf_token": token})
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        secret = TOKEN_SECRET.search(made.text).group(1)
        secrets_guard.register(secret)
        assert "it will not be shown again" in made.text
        (row,) = portal.vault.ok("token", "list")
        assert (row["name"], row["role"], row["created_by"]) == \
            ("ci-reader", "reader", "user:carla")

        with httpx.Client(base_url=portal.url, timeout=60,
                          headers={"Authorization": f"Bearer {secret}"}) as api:
            who = api.get("/api/v1/whoami")
            assert who.status_code == 200
            assert (who.json()["name"], who.json()["role"]) == ("token:ci-reader", "reader")
            listed = c.get("/settings/access").text
            assert "ci-reader" in listed and secret not in listed
            assert secret.split("_", 2)[2] not in listed    # dbs_<id>_<secret>
            assert 'id="token-secret"' not in listed

            done = c.post(f"/settings/access/tokens/{row['id']}/revoke",
                          data={"csrf_token": token})
            assert done.status_code == 303 and done.headers["location"] == "/settings/access"
            refused_call = api.get("/api/v1/whoami")
            assert refused_call.status_code == 401
            assert refused_call.json()["error"]["code"] == "auth.invalid"
        assert portal.vault.ok("token", "list")[0]["revoked"]
        listed = c.get("/settings/access").text
        assert f'action="/settings/access/tokens/{row["id"]}/revoke"' not in listed
        text = refused(c.post("/settings/access/tokens/nosuch/revoke",
                              data={"csrf_token": token}),
                       404, "token.unknown")
        assert "dbsafe token" not in text


def test_a_user_added_in_the_portal_logs_in_and_is_removed(portal):
    password = f"ursula-{secrets.token_urlsafe(16)}"
    other = f"other-{secrets.token_urlsafe(16)}"
    secrets_guard.register(password, other)
    with portal.login("carla") as c:
        token = csrf(c.get("/settings/access").text)

        def add(**form: str) -> httpx.Response:
            return c.post("/settings/access/users", data={**form, "csrf_token": token})

        text = refused(add(name="ursula", role="operator", password=password,
                           password_again=other), 400, "key.passphrase_mismatch")
        assert 'value="ursula"' in text                     # the name is kept, no password
        text += refused(add(name="ursula", role="operator", password="short-pw",
                            password_again="short-pw"), 400, "user.password_weak")
        text += refused(add(name="no spaces allowed", role="operator", password=password,
                            password_again=password), 422, "request.invalid")
        text += refused(add(name="carla", role="reader", password=password,
                            password_again=password), 409, "user.exists")
        assert password not in text and other not in text
        assert "ursula" not in {u["name"] for u in portal.vault.ok("user", "list")}

        done = add(name="ursula", role="operator", password=password,
                   password_again=password)
        assert done.status_code == 303 and done.headers["location"] == "/settings/access"
        listed = c.get("/settings/access").text
        assert "<td>ursula</td>" in listed and password not in listed
        assert {u["name"]: u["role"] for u in portal.vault.ok("user", "list")}["ursula"] == \
            "operator"

        with portal.login("ursula", password) as u:
            who = u.get("/api/v1/whoami").json()
            assert (who["name"], who["role"]) == ("user:ursula", "operator")
            assert u.get("/settings/access").status_code == 403
            gone = c.post("/settings/access/users/ursula/remove", data={"csrf_token": token})
            assert gone.status_code == 303
            ended = u.get("/settings", follow_redirects=False)
            assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
            again = portal.login_answer(u, "ursula", password)
            assert again.status_code == 401 and "wrong user name or password" in again.text
        text = refused(c.post("/settings/access/users/ursula/remove",
                              data={"csrf_token": token}),
                       404, "user.unknown")
        assert "dbsafe user" not in text


def test_no_password_or_token_secret_reaches_the_audit_log(portal):
    with portal.login("carla") as c:
        pages, before = [], None
        while True:
            page = c.get("/audit", params={"before": before} if before else {})
            pages.append(page.text)
            older = re.search(r'href="/audit\?[^"]*before=(\d+)"', page.text)
            if not older:
                break
            before = older.group(1)
        text = "".join(pages)
    assert not secrets_guard.leaks_in(text)
    assert "POST /settings/access/users" in text and "password: ***" in text
    assert "password_again: ***" in text
    rows = portal.vault.ok("audit", "--limit", "1000")
    assert not secrets_guard.leaks_in(json.dumps(rows))
    added = [r for r in rows if r["action"] == "POST /settings/access/users"]
    assert {r["outcome"] for r in added} >= {"ok", "auth.forbidden", "user.password_weak",
                                             "key.passphrase_mismatch"}
    for r in added:
        assert r["detail"]["password"] == r["detail"]["password_again"] == "***", r
    tokens = [r for r in rows if r["action"] == "POST /settings/access/tokens"
              and r["outcome"] == "ok"]
    assert tokens and tokens[0]["detail"]["name"] == "ci-reader"
    region = [r["outcome"] for r in rows if r["action"] == "POST /settings/region"]
    assert {"ok", "region.unknown", "vault.region_fixed", "auth.forbidden"} <= set(region)


def test_immutability_is_tightened_and_a_locked_vault_stays_locked(portal):
    """Last: it locks the module's vault for good."""
    with portal.login("carla") as c:
        token = csrf(c.get("/settings").text)

        def post(path: str, **form: str) -> httpx.Response:
            return c.post(path, data={**form, "csrf_token": token})

        refused(post("/settings/immutability", state="sideways"),
                400, "immutability.state_unknown")
        assert post("/settings/immutability", state="on").status_code == 303
        page = c.get("/settings").text
        assert 'id="vault-immutability">on<' in page
        assert ">Turn immutability off</button>" in page and ">Lock immutability</button>" in page
        text = refused(post("/settings/soft-delete", enabled="on", days="20"),
                       409, "immutability.soft_delete_locked")
        assert "now 30 days, asked 20 days" in text
        assert api_code(c, token, {"soft_delete_days": 20}) == \
            (409, "immutability.soft_delete_locked")
        refused(post("/settings/soft-delete", days="30"), 409, "immutability.soft_delete_locked")
        assert post("/settings/soft-delete", enabled="on", days="45").status_code == 303
        assert portal.info()["soft_delete"] == {"enabled": True, "days": 45}

        assert post("/settings/immutability", state="off").status_code == 303   # on: undone
        assert portal.info()["immutability"] == "off"
        assert post("/settings/immutability", state="locked").status_code == 303
        page = c.get("/settings").text
        assert 'id="vault-immutability">locked (cannot be undone)<' in page
        assert 'action="/settings/immutability"' not in page
        text = refused(post("/settings/immutability", state="off"), 409, "immutability.locked")
        assert "cannot be turned off" in text
        assert api_code(c, token, {"immutability": "off"}) == (409, "immutability.locked")
        assert portal.info()["immutability"] == "locked"
