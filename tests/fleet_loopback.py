"""A control plane and its agents on this machine, for the tests (loopback, no namespaces;
tests/fleet puts each host in namespaces of its own).

The control plane is a real `dbsafe serve` with its agents' HTTPS listener on 127.0.0.1 (and
its API and portal on another loopback port); each agent is a real `dbsafe agent run` with
its own folder (DBSAFE_AGENT_HOME) registered with a one-time token, the way a VM is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import secrets_guard
from conftest import Vault, free_port, run_cli
from servers.processes import stop_server

LOST_AFTER = 12  # seconds (serve --agent-lost-after): an agent reports every 10


class ControlPlane:
    def __init__(self, vault: Vault, area: Path) -> None:
        self.vault = vault
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.api_url = f"http://127.0.0.1:{free_port()}"  # the API and the portal
        self.log = (area / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbsafe", "--vault", str(vault.path), "serve", "--port",
             self.api_url.rsplit(":", 1)[1], "--tick", "1", "--agents-host", "127.0.0.1",
             "--agents-port", str(self.port), "--agents-url", self.url,
             "--agent-lost-after", str(LOST_AFTER)],
            env=vault.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (self._listening() and self._answering()):
            assert self.proc.poll() is None, (area / "serve.log").read_text()
            assert time.monotonic() < deadline, "the agents' listener did not start"
            time.sleep(0.2)

    def _listening(self) -> bool:
        settings = json.loads((self.vault.path / "client.json").read_text())
        if "agents" not in settings:
            return False
        try:
            httpx.get(f"{self.url}/agent/v1/hello", verify=False, timeout=2)  # noqa: S501
        except httpx.TransportError:
            return False
        return True

    def client(self, role: str | None) -> httpx.Client:
        """A client of the API and /metrics with a new token of ``role`` made by the CLI
        (None: no token)."""
        headers = {}
        if role is not None:
            token = self.vault.ok("token", "create", f"test-{role}-{time.monotonic_ns()}",
                                  "--role", role)["token"]
            secrets_guard.register(token)
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=60)

    def _answering(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/api/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        stop_server(self.proc)
        self.log.close()


class Agent:
    def __init__(self, cp: ControlPlane, area: Path, host: str) -> None:
        self.home = area / f"agent-{host}"
        self.env = {**cp.vault.env, "DBSAFE_AGENT_HOME": str(self.home)}
        self.host = host
        token = cp.vault.ok("agent", "token", "create", "--host", host)
        assert token["command"].startswith(f"dbsafe agent register {cp.url} --token dbr_")
        assert token["fingerprint"] in token["command"]
        res = run_cli(self.env, "agent", "register", cp.url, "--token", token["token"],
                      "--fingerprint", token["fingerprint"], "--host", host, "--json")
        assert res.returncode == 0, res.describe()
        self.id = res.json()["agent_id"]
        self.log_path = area / f"agent-{host}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = self.log_path.open("a")
        self.proc = subprocess.Popen([sys.executable, "-m", "dbsafe", "agent", "run"],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def credential(self) -> str:
        return json.loads((self.home / "agent.json").read_text())["credential"]

    def call(self, cp: ControlPlane, method: str, *args: object) -> httpx.Response:
        """A catalog call with this agent's credential, as its services make them."""
        return httpx.post(f"{cp.url}/agent/v1/catalog/{method}",
                          json={"args": list(args), "kwargs": {}},
                          headers={"Authorization": f"Bearer {self.credential()}"},
                          verify=str(self.home / "control-plane.pem"), timeout=10)
