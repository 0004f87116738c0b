"""`dbsafe serve` as a user starts it: one process answering the API and the portal beside
the scheduler; TLS off loopback (or --insecure), HTTPS with the given certificate, one
scheduler per vault, a clean stop on SIGTERM."""

from __future__ import annotations

import re
import signal
import ssl
import time

import httpx
from certs import self_signed
from conftest import free_port


def _wait_up(url: str, proc, **client) -> httpx.Response:
    for _ in range(150):
        assert proc.poll() is None, proc.communicate()
        try:
            return httpx.get(url, timeout=2, **client)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def _stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def test_off_loopback_needs_tls_or_insecure(vault):
    vault.fail("serve.tls_needed", "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    vault.fail("serve.tls_files", "serve", "--tls-cert", "/nonexistent.pem")


def test_https_with_the_given_certificate_and_secure_session_cookies(vault, area):
    cert, key = self_signed(area)
    port = free_port()
    token = vault.ok("token", "create", "t", "--role", "reader")["token"]
    serve = vault.popen("serve", "--no-scheduler", "--port", port, "--tls-cert", cert,
                        "--tls-key", key)
    try:
        tls = ssl.create_default_context(cafile=str(cert))
        health = _wait_up(f"https://127.0.0.1:{port}/api/v1/health", serve, verify=tls)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls) as client:
            form = re.search(r'name="login_csrf" value="([^"]+)"',
                             client.get("/login").text).group(1)
            login = client.post("/login", data={"token": token, "next": "/",
                                                "login_csrf": form}, follow_redirects=False)
            assert login.status_code == 303
            cookie = login.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            assert client.get("/").status_code == 200  # the session opens the dashboard
        with httpx.Client(verify=False) as plain:  # noqa: S501 - proves plain HTTP is refused
            try:
                answer = plain.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
                assert answer.status_code >= 400
            except httpx.TransportError:
                pass
    finally:
        _stop(serve)


def test_one_scheduler_per_vault_and_a_clean_stop(vault):
    first_port, second_port = free_port(), free_port()
    first = vault.popen("serve", "--port", first_port, "--tick", "1")
    try:
        _wait_up(f"http://127.0.0.1:{first_port}/api/v1/health", first)
        second = vault.popen("serve", "--port", second_port)
        _out, err = second.communicate(timeout=60)
        assert second.returncode != 0 and "serve.already_running" in err, err
        # an API-only process beside it is fine (a second host, or a reader's portal)
        api_only = vault.popen("serve", "--no-scheduler", "--port", second_port)
        try:
            answer = _wait_up(f"http://127.0.0.1:{second_port}/api/v1/jobs", api_only)
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "auth.required"
        finally:
            _stop(api_only)
    finally:
        err = _stop(first)
    assert "Traceback" not in err
