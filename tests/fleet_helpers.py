"""A control plane and its agents as real processes on this machine (loopback, no
namespaces): shared by tests/integration/test_fleet_agents.py (the fleet's mechanics) and
tests/integration/test_fleet_scale.py (40 agents, one simulated hour of the scheduler).

The control plane is a real `dbsafe serve` with its agents' HTTPS listener on 127.0.0.1; each
agent is a real `dbsafe agent run` with its own folder (DBSAFE_AGENT_HOME) registered with a
one-time token for its host name. The repository is the vault's folder, which every process
here can reach (one machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import secrets_guard
from conftest import Vault, free_port, run_cli
from servers.processes import stop_server

LOST_AFTER = 12  # seconds (serve --agent-lost-after): an agent reports every 10


class ControlPlane:
    """`dbsafe serve` listening for agents; ``scheduler=False`` serves the API and the
    agents only (`--no-scheduler`: the scheduler runs elsewhere)."""

    def __init__(self, vault: Vault, area: Path, *, scheduler: bool = True,
                 lost_after: float = LOST_AFTER) -> None:
        self.vault = vault
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.api_url = f"http://127.0.0.1:{free_port()}"  # the API and the portal
        self.log_path = area / "serve.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbsafe", "--vault", str(vault.path), "serve", "--port",
             self.api_url.rsplit(":", 1)[1], "--tick", "1", "--agents-host", "127.0.0.1",
             "--agents-port", str(self.port), "--agents-url", self.url, "--agent-lost-after",
             str(lost_after), *([] if scheduler else ["--no-scheduler"])],
            env=vault.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (self._listening() and self._answering()):
            assert self.proc.poll() is None, self.log_path.read_text()
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

    def _answering(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/api/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

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

    def stop(self) -> None:
        stop_server(self.proc)
        self.log.close()


class Agent:
    """An agent registered for ``host`` (token, then `dbsafe agent register`); ``start``
    runs it. Its folder and its run folder (its WAL socket, /var/lib/dbsafe on a host of its
    own) are the host's: one agent per vault may serve a run folder, so agents of several
    simulated hosts on this machine need one each (the area's finalizer stops an agent by
    the pid it leaves there)."""

    def __init__(self, cp: ControlPlane, area: Path, host: str) -> None:
        self.home = area / f"agent-{host}"
        self.run_dir = area / f"run-{host}"
        self.env = {**cp.vault.env, "DBSAFE_AGENT_HOME": str(self.home),
                    "DBSAFE_RUN_DIR": str(self.run_dir)}
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

    def wait_serving(self, timeout: float = 60) -> None:
        """Until the agent has greeted the control plane and polls for jobs."""
        deadline = time.monotonic() + timeout
        while f"of host {self.host} serving" not in self.log_path.read_text():
            assert self.proc is not None and self.proc.poll() is None, \
                self.log_path.read_text()
            assert time.monotonic() < deadline, f"the agent of {self.host} did not start"
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL (when it still runs), and its pid file goes: a killed agent leaves it,
        and the area's finalizer would signal whatever process has that pid by then."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pid_file in self.run_dir.glob("*/agent.pid"):
            if pid_file.read_text().strip() == str(self.proc.pid):
                pid_file.unlink()
        self.log.close()

    def credential(self) -> str:
        return json.loads((self.home / "agent.json").read_text())["credential"]

    def call(self, cp: ControlPlane, method: str, *args: object) -> httpx.Response:
        """A catalog call with this agent's credential, as its services make them."""
        return httpx.post(f"{cp.url}/agent/v1/catalog/{method}",
                          json={"args": list(args), "kwargs": {}},
                          headers={"Authorization": f"Bearer {self.credential()}"},
                          verify=str(self.home / "control-plane.pem"), timeout=10)


@contextlib.contextmanager
def agents_of(cp: ControlPlane, area: Path) -> Iterator[Callable[[str], Agent]]:
    """``add_agent(host)``: an agent registered for ``host``, started and serving. On exit
    every agent is killed, the control plane stopped and the logs printed (pytest shows
    them when the test failed)."""
    agents: list[Agent] = []

    def add_agent(host: str) -> Agent:
        agent = Agent(cp, area, host)
        agent.start()
        agents.append(agent)
        agent.wait_serving()
        return agent
    try:
        yield add_agent
    finally:
        for agent in agents:
            agent.kill()
        cp.stop()
        print_logs(area)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_logs(area: Path, tail: int = 4000) -> None:
    """The end of every log in ``area`` (shown by pytest when the test failed)."""
    for log in sorted(area.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text()[-tail:]}")
