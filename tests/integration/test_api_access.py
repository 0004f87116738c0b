"""Who may reach the API and the portal, against a real ``dbsafe serve`` over a vault with no
cluster (nothing here needs one): the OpenAPI document needs a caller; only the names the
serve answers to are answered (DNS rebinding); the login form has a CSRF token, logins are
throttled without locking a user out of the browser she uses, and are hashed apart from
every other endpoint; a session opened with a token ends when the token is revoked by the
CLI; forwarding headers are believed only from the proxy named; job event streams are
capped and end when their token is revoked; numbers out of bounds are 422.

The serve believes forwarding headers from 127.0.0.2 only; clients pick their source
address among 127.0.0.0/8 (all of it is this host) to stand for several machines."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import secrets_guard
from api_serve import Serve, start_serve
from conftest import Vault, make_area, make_vault, remove_area

from dbsafe.api.gate import CallerCache
from dbsafe.portal import login_guard
from dbsafe.services.activity.jobs import Job
from dbsafe.services.handle.vault_handle import Vault as ServiceVault

CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')
CODE = re.compile(r'data-code="([^"]+)"')
PROXY = "127.0.0.2"


@dataclass
class Setup:
    serve: Serve
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def api(cli_env: dict[str, str]) -> Iterator[Setup]:
    area = make_area("apiaccess-")
    serve = None
    try:
        vault = make_vault(cli_env, area / "vault")
        passwords = {}
        for name in ("ana", "bob"):
            passwords[name] = f"pw-{secrets.token_urlsafe(16)}"
            secrets_guard.register(passwords[name])
            Vault(vault.path, {**cli_env, "DBSAFE_USER_PASSWORD": passwords[name]}).ok(
                "user", "add", name, "--role", "operator")
        serve = start_serve(vault, area / "serve.log", "--forwarded-allow-ips", PROXY)
        yield Setup(serve, passwords)
    finally:
        if serve is not None:
            serve.stop()
        remove_area(area)


def browser(serve: Serve, source: str = "127.0.0.1") -> httpx.Client:
    """A client of the portal from ``source`` (an address of 127.0.0.0/8)."""
    return httpx.Client(base_url=serve.url, timeout=120,
                        transport=httpx.HTTPTransport(local_address=source))


def form_token(client: httpx.Client) -> str:
    """The login form's CSRF token (its cookie is set by the same answer)."""
    page = client.get("/login")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    return found.group(1) if found else ""


def login(client: httpx.Client, **form: str) -> httpx.Response:
    """The login form, filled in as a browser does (with its CSRF token)."""
    return client.post("/login", data={"next": "/", **form, "login_csrf": form_token(client)})


def page_code(response: httpx.Response) -> str:
    return CODE.search(response.text).group(1)


def api_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def token_id(serve: Serve, name: str) -> str:
    return next(t["id"] for t in serve.vault.ok("token", "list") if t["name"] == name)


def test_the_openapi_document_and_its_page_need_a_caller(api: Setup):
    anonymous = httpx.Client(base_url=api.serve.url)
    for path in ("/openapi.json", "/api/docs"):
        r = anonymous.get(path)
        assert r.status_code == 401 and api_code(r) == "auth.required", path
    assert anonymous.get("/docs/oauth2-redirect").status_code != 200
    with api.serve.client("reader") as reader:
        assert reader.get(f"{api.serve.url}/openapi.json").json()["paths"]
        assert "swagger" in reader.get(f"{api.serve.url}/api/docs").text.lower()


def test_only_the_names_it_is_served_as_are_answered(api: Setup):
    """A page of another site that rebinds its name to 127.0.0.1 sends that name in Host:
    refused before anything runs, API and portal alike, even with a valid token."""
    with api.serve.client("contributor") as c:
        for path in ("/api/v1/health", "/api/v1/whoami", "/login", "/"):
            r = c.get(api.serve.url + path, headers={"Host": "rebind.attacker.example"})
            assert r.status_code == 400 and api_code(r) == "request.bad_host", path
        port = api.serve.url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            r = c.get("/whoami", headers={"Host": host})
            assert r.status_code == 200, host


def test_the_login_form_needs_its_own_csrf_token(api: Setup):
    token = api.serve.tokens["reader"]
    with browser(api.serve) as c:
        r = c.post("/login", data={"token": token, "next": "/"})  # as a forged form would
        assert r.status_code == 403 and page_code(r) == "auth.csrf"
        assert "dbsafe_session" not in c.cookies
        c.get("/login")  # the cookie is set, but a forged form cannot know its value
        r = c.post("/login", data={"token": token, "next": "/", "login_csrf": "guess"})
        assert r.status_code == 403 and "dbsafe_session" not in c.cookies
        r = login(c, token=token)
        assert r.status_code == 303 and c.get("/api/v1/whoami").status_code == 200


def test_a_session_opened_with_a_token_ends_when_the_cli_revokes_it(api: Setup):
    """Revoked by another process (the CLI): the session is refused once the gate's memory
    of it has lapsed (``CallerCache.TTL``, the bound docs/access.md states)."""
    secret = api.serve.token("pasted", "operator")
    with browser(api.serve) as c:
        assert login(c, token=secret).status_code == 303
        r = c.get("/api/v1/whoami")
        seen = time.monotonic()
        assert r.status_code == 200 and r.json()["name"] == "token:pasted"
        api.serve.vault.ok("token", "revoke", token_id(api.serve, "pasted"))
        time.sleep(max(0.0, seen + CallerCache.TTL - time.monotonic()) + 0.1)
        r = c.get("/api/v1/whoami")
        assert r.status_code == 401 and api_code(r) == "auth.invalid"
        r = c.get("/databases", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_failed_logins_are_throttled_without_locking_the_user_out(api: Setup):
    """An attacker's failures as ana hold the attacker's address, and ana's account for
    browsers that never logged in as her; ana's own browser still logs her in."""
    with browser(api.serve, "127.0.0.4") as own, browser(api.serve, "127.0.0.3") as attacker:
        assert login(own, name="ana", password=api.passwords["ana"]).status_code == 303
        for n in range(login_guard.LIMIT):
            r = login(attacker, name="ana", password=f"guess {n}")
            assert r.status_code == 401 and page_code(r) == "auth.bad_login", n
        for password in ("one more guess", api.passwords["ana"]):
            r = login(attacker, name="ana", password=password)
            assert r.status_code == 429 and page_code(r) == "auth.throttled"
            assert 1 <= int(r.headers["Retry-After"]) <= login_guard.WINDOW
            assert "dbsafe_session" not in attacker.cookies
        r = login(own, name="ana", password=api.passwords["ana"])
        assert r.status_code == 303, r.text
    with browser(api.serve, "127.0.0.5") as elsewhere:
        r = login(elsewhere, name="ana", password=api.passwords["ana"])
        assert r.status_code == 429 and page_code(r) == "auth.throttled"  # a new browser
        assert login(elsewhere, name="bob", password=api.passwords["bob"]).status_code == 303


def test_a_failed_login_is_audited_with_a_bounded_name(api: Setup):
    typed = "mallory\x1b[2J\n" + "x" * 20_000
    with browser(api.serve, "127.0.0.6") as c:
        assert login(c, name=typed, password="whatever").status_code == 401
    with api.serve.client("contributor") as boss:
        rows = [e for e in boss.get("/audit", params={"limit": 1000}).json()
                if e["action"] == "login" and e["source"] == "127.0.0.6"]
    assert len(rows) == 1 and rows[0]["outcome"] == "auth.bad_login"
    actor = rows[0]["actor"]
    assert actor.startswith("user:mallory?[2J?x") and actor.endswith("…")
    assert len(actor) <= len("user:") + 64 and actor.isprintable()


def _held_login(serve: Serve, source: str, name: str) -> tuple[socket.socket, bytes]:
    """A failed login from ``source``, sent whole but for its last byte: the serve reads a
    body whole before anything runs, so the request waits until ``_release``."""
    with browser(serve, source) as c:
        csrf = form_token(c)
    body = urlencode({"name": name, "password": "wrong password", "login_csrf": csrf,
                      "next": "/"}).encode()
    head = (f"POST /login HTTP/1.1\r\nHost: {serve.url.removeprefix('http://')}\r\n"
            f"Cookie: dbsafe_login={csrf}\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(serve.url.removeprefix("http://").split(":"),
                                    timeout=120, source_address=(source, 0))
    sock.sendall(head + body[:-1])
    return sock, body[-1:]


def _answer(sock: socket.socket) -> tuple[int, str]:
    """(status, error code) of a held login's answer."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    text = data.decode(errors="replace")
    return int(text.split(" ", 2)[1]), CODE.search(text).group(1)


def test_a_burst_of_logins_leaves_the_other_endpoints_answering(api: Setup):
    """24 logins from 24 addresses arriving at once: at most 2 are hashed at a time and 6
    wait, the rest are told at once to come back (503 auth.busy); meanwhile the health and
    an authenticated endpoint (which needs the shared thread pool) answer."""
    burst = 24
    held = [_held_login(api.serve, f"127.0.1.{n + 1}", f"nobody{n}") for n in range(burst)]
    with api.serve.client("reader") as reader, ThreadPoolExecutor(burst) as pool:
        for sock, last_byte in held:  # each request is complete microseconds after the last
            sock.sendall(last_byte)
        answers = [pool.submit(_answer, sock) for sock, _ in held]
        health = httpx.get(f"{api.serve.url}/api/v1/health", timeout=120)
        who = reader.get("/whoami")
        outstanding = sum(not a.done() for a in answers)
        results = [a.result() for a in answers]
    assert health.status_code == 200 and who.status_code == 200, who.text
    assert outstanding, "the endpoints answered only after every login"
    assert set(results) <= {(401, "auth.bad_login"), (503, "auth.busy")}, results
    assert results.count((503, "auth.busy")) >= 1, results
    assert results.count((401, "auth.bad_login")) >= login_guard.HASH_WORKERS, results


def test_forwarding_headers_are_believed_from_the_named_proxy_only(api: Setup):
    """From 127.0.0.1 (not the proxy) X-Forwarded-* change nothing: the audit keeps the
    real address and the cookie gets no Secure flag; from the proxy they count."""
    forwarded = {"X-Forwarded-For": "198.51.100.23", "X-Forwarded-Proto": "https"}
    seen = {}
    for source in ("127.0.0.1", PROXY):
        secret = api.serve.token(f"via-{source}", "reader")
        with browser(api.serve, source) as c:
            c.headers.update(forwarded)
            csrf = form_token(c)
            # the login cookie may be Secure (https at the proxy): sent by hand here
            r = c.post("/login", data={"token": secret, "login_csrf": csrf},
                       headers={"Cookie": f"dbsafe_login={csrf}"})
            assert r.status_code == 303, r.text
            cookie = next(h for h in r.headers.get_list("set-cookie")
                          if h.startswith("dbsafe_session="))
            seen[source] = ["secure" in cookie.lower()]
    with api.serve.client("contributor") as boss:
        log = boss.get("/audit", params={"limit": 1000}).json()
    for source in ("127.0.0.1", PROXY):
        seen[source].append(next(e["source"] for e in log
                                 if e["actor"] == f"token:via-{source}"))
    assert seen == {"127.0.0.1": [False, "127.0.0.1"], PROXY: [True, "198.51.100.23"]}


def _first_event(lines: Iterator[str]) -> str:
    for line in lines:
        if line.startswith("event: "):
            return line.removeprefix("event: ")
    raise AssertionError("the stream ended without an event")


def test_job_event_streams_are_capped_and_end_when_their_token_is_revoked(api: Setup):
    vault = ServiceVault.open(api.serve.vault.path)
    job = Job(vault.catalog, "verify", None).__enter__()  # runs as long as this test
    secret = api.serve.token("follower", "reader")
    try:
        with contextlib.ExitStack() as stack:
            c = stack.enter_context(httpx.Client(
                base_url=f"{api.serve.url}/api/v1", timeout=120,
                headers={"Authorization": f"Bearer {secret}"}))
            streams = []
            for _ in range(8):
                r = stack.enter_context(c.stream("GET", f"/jobs/{job.id}/events"))
                assert r.status_code == 200
                lines = r.iter_lines()
                assert _first_event(lines) == "progress"
                streams.append(lines)
            r = c.get(f"/jobs/{job.id}/events")
            assert r.status_code == 429 and api_code(r) == "request.too_many_streams"
            assert int(r.headers["Retry-After"]) >= 1
            with api.serve.client("reader") as other, \
                    other.stream("GET", f"/jobs/{job.id}/events") as r:
                assert r.status_code == 200  # another caller is not held by this one's
            api.serve.vault.ok("token", "revoke", token_id(api.serve, "follower"))
            for lines in streams:  # each gets an error event at its next check, and ends
                assert _first_event(lines) == "error"
                data = next(line for line in lines if line.startswith("data: "))
                assert json.loads(data.removeprefix("data: "))["error"]["code"] == \
                    "auth.invalid"
                assert not [line for line in lines if line.startswith("event: ")]
    finally:
        job.__exit__(None, None, None)
        vault.catalog.close()


def test_numbers_out_of_bounds_are_refused(api: Setup):
    huge = "6683262415715635662067597312"
    taken = [("/items", "offset"), ("/items", "limit"), ("/alerts", "offset"),
             ("/alerts", "limit"), ("/servers/db/points", "offset"),
             ("/servers/db/points", "limit"), ("/audit", "before_id"), ("/jobs", "limit"),
             ("/drills", "limit"), ("/alerts/99999999999999999999999/resolve", None)]
    with api.serve.client("contributor") as c:
        for path, name in taken:
            r = c.request("POST" if name is None else "GET", path,
                          params={name: huge} if name else None)
            assert r.status_code == 422 and api_code(r) == "request.invalid", (path, r.text)
    assert "Traceback" not in Path(api.serve.log).read_text()
