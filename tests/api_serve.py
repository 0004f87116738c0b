"""``dbsafe serve`` for the API tests: started as a subprocess on a free loopback
port over a real vault, with tokens of each role made by the CLI, and stopped by pid."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import secrets_guard
from conftest import Vault, free_port

ROLES = ("reader", "operator", "contributor")


@dataclass
class Serve:
    """A running ``dbsafe serve``: its base URL, process, and a token per role."""

    vault: Vault
    url: str
    proc: subprocess.Popen
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = None, timeout: float = 60) -> httpx.Client:
        """A client for the API (``/api/v1``), with the role's token (None: no token)."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=timeout)

    def token(self, name: str, role: str) -> str:
        """A new token made by the CLI (registered as a secret: never written anywhere)."""
        secret = self.vault.ok("token", "create", name, "--role", role)["token"]
        secrets_guard.register(secret)
        return secret

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def start_serve(vault: Vault, log: Path, *extra: str) -> Serve:
    """Start ``dbsafe serve --no-scheduler`` (output to ``log``: a pipe nobody reads could
    fill and stall it) with a token of each role; wait until it answers."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dbsafe", "--vault", str(vault.path),
                                 "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--no-scheduler", *extra],
                                env=vault.env, stdout=out, stderr=subprocess.STDOUT)
    serve = Serve(vault, f"http://127.0.0.1:{port}", proc, log)
    try:
        serve.tokens = {role: serve.token(f"test-{role}", role) for role in ROLES}
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}: {log.read_text()}"
            try:
                if httpx.get(f"{serve.url}/api/v1/health", timeout=2).status_code == 200:
                    return serve
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve did not answer: {log.read_text()}"
            time.sleep(0.2)
    except BaseException:
        serve.stop()
        raise
