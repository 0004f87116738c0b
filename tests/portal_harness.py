"""What the portal's integration tests share: a real `dbsafe serve` (no scheduler) over a
test vault, portal users of each role added through the CLI, and clients logged in through
the login form, with the CSRF token every form carries taken from a page."""

from __future__ import annotations

import contextlib
import re
import secrets
import signal
import time
from collections.abc import Iterator

import httpx
import secrets_guard
from conftest import Pg, free_port, new_cluster

CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]*)"')  # the login form's own
USERS = {"carla": "contributor", "otto": "operator", "rita": "reader"}


def csrf(html: str) -> str:
    found = CSRF.search(html)
    assert found and found.group(1), "no CSRF token in the page"
    return found.group(1)


def add_users(vault, cli_env: dict[str, str], users: dict[str, str] = USERS
              ) -> dict[str, str]:
    """Portal users of these roles, added with `dbsafe user add`; their passwords."""
    passwords = {}
    for name, role in users.items():
        passwords[name] = f"pw-{secrets.token_urlsafe(16)}"
        secrets_guard.register(passwords[name])
        env = {**cli_env, "DBSAFE_USER_PASSWORD": passwords[name]}
        type(vault)(vault.path, env).ok("user", "add", name, "--role", role)
    return passwords


def login_answer(client: httpx.Client, name: str, password: str) -> httpx.Response:
    """The login form posted as a browser does (its own CSRF token first)."""
    form = LOGIN_CSRF.search(client.get("/login").text).group(1)
    return client.post("/login", data={"name": name, "login_csrf": form,
                                       "password": password, "next": "/"})


@contextlib.contextmanager
def logged_in(url: str, name: str, password: str, timeout: float = 120
              ) -> Iterator[httpx.Client]:
    """A client logged in through the login form (its session cookie kept)."""
    with httpx.Client(base_url=url, timeout=timeout) as client:
        answer = login_answer(client, name, password)
        assert answer.status_code == 303, answer.text
        secrets_guard.register(client.cookies["dbsafe_session"])
        yield client


@contextlib.contextmanager
def serving(vault, output: list[str] | None = None) -> Iterator[str]:
    """`dbsafe serve --no-scheduler` over ``vault`` on a free port, once it answers its
    health check; its URL. Stopped (SIGTERM, then killed) on the way out; what it printed
    goes to ``output``."""
    port = free_port()
    serve = vault.popen("serve", "--no-scheduler", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            assert serve.poll() is None, serve.communicate()
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            printed = serve.communicate(timeout=60)
        except Exception:  # noqa: BLE001 - never leave it running
            serve.kill()
            printed = serve.communicate()
        if output is not None:
            output.extend(p for p in printed if p)


def shop_cluster(pg_template, area) -> Pg:
    """The browser tests' cluster: database ``shop`` with a table of 100 timestamped rows
    (``marks``), for the timeline and a restore to an instant among them."""
    pg = new_cluster(pg_template, area, "src")
    pg.execute("CREATE DATABASE shop")
    pg.execute("CREATE TABLE marks (id int PRIMARY KEY, at timestamptz NOT NULL)", "shop")
    pg.execute("INSERT INTO marks SELECT g, clock_timestamp() FROM generate_series(1, 100) g",
               "shop")
    return pg
