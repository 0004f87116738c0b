"""The archive command's client: native when a C compiler is at hand, the Python script
otherwise; both speak the same protocol and fail the same way without an agent."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from dbsafe.agent import daemon
from dbsafe.services.inventory.coexistence import same_agent


@pytest.fixture
def paths(tmp_path) -> daemon.AgentPaths:
    return daemon.AgentPaths(tmp_path / "run")


def _serve_once(sock_path: Path, reply: bytes, seen: list) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            seen.append(conn.makefile("rb").readline())
            conn.sendall(reply)
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["native", "python"])
def test_both_clients_push_and_report(paths, kind, monkeypatch, tmp_path):
    if kind == "python":
        monkeypatch.setattr(shutil, "which", lambda name, **_: None)
    elif shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    assert daemon.install_client(paths) == kind
    argv = [str(paths.client), "push", "pg_wal/000000010000000000000007"]
    gone = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    assert gone.returncode == 1 and "agent is not reachable" in gone.stderr

    seen: list[bytes] = []
    thread = _serve_once(paths.socket, b'{"ok": true}\n', seen)
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    thread.join(10)
    assert done.returncode == 0, done.stderr
    import json

    request = json.loads(seen[0])
    assert request == {"op": "push", "cwd": str(tmp_path),
                       "path": str(tmp_path / "pg_wal/000000010000000000000007"),
                       "name": "000000010000000000000007"}
    paths.socket.unlink()
    thread = _serve_once(paths.socket,
                         b'{"ok": false, "error": "disk \\"full\\"", "code": "x"}\n', [])
    refused = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    thread.join(10)
    # the agent's message (the native client keeps its JSON escapes)
    assert refused.returncode == 1
    assert "not archived: disk" in refused.stderr and "full" in refused.stderr


def test_a_rebuilt_client_is_kept_and_older_commands_stay_ours(paths):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    assert daemon.install_client(paths) == "native"
    built = paths.client.stat().st_mtime_ns
    assert daemon.install_client(paths) == "native"
    assert paths.client.stat().st_mtime_ns == built
    ours = paths.archive_command()
    assert ours == f"{paths.client} push %p"
    assert same_agent(f"/usr/bin/python3 -I -S {paths.client} push %p", ours)
    assert not same_agent("/usr/bin/python3 -I -S /elsewhere/dbsafe-wal push %p", ours)
