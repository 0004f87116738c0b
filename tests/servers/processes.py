"""Start a server subprocess on a free loopback port and stop it by its pid."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start_server(argv_for_port, log: Path, env: dict | None = None,
                 timeout: float = 60, host: str = "127.0.0.1") -> tuple[subprocess.Popen, int]:
    """Run ``argv_for_port(port)`` on a free port until it accepts connections; a port taken
    meanwhile by another worker is retried on a new one."""
    from conftest import free_port

    for _attempt in range(3):
        port = free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv_for_port(port), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if port_open(port, host):
                return proc, port
            time.sleep(0.1)
        stop_server(proc)
    raise RuntimeError(f"{argv_for_port(0)[0]} did not start; see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the process we started (by its pid), politely first."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
