"""The agent's socket (agent/server.py): who can reach it, what it tells whom, how long and
how many connections it serves, which files a push may name; and how the agent reads a
file of pg_wal as root (services/logchain/archive.py). A real vault, an agent served in a thread,
clients as root, as postgres and as nobody."""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PG_BIN, chown_postgres, make_area, pg_uid_gid, remove_area

from dbsafe.agent import daemon, server
from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.logchain import archive

SEGMENT = 16 << 20
FIRST, SECOND = "000000010000000000000001", "000000010000000000000002"
ASK = ("import socket, sys\n"
       "s = socket.socket(socket.AF_UNIX)\n"
       "s.settimeout(30)\n"
       "s.connect(sys.argv[1])\n"
       "s.sendall(sys.argv[2].encode() + b'\\n')\n"
       "print(s.makefile().readline())\n")


@dataclass
class Agent:
    paths: daemon.AgentPaths
    pgdata: Path
    server: server._AgentServer

    def ask(self, request: dict, timeout: float = 60) -> dict:
        """One request as root (the timeout only guards the run against a hang)."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.paths.socket))
            conn.sendall(json.dumps(request).encode() + b"\n")
            return json.loads(conn.makefile().readline())

    def ask_as(self, user: str, request: dict) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", user, "--", "/usr/bin/python3", "-c", ASK,
                               str(self.paths.socket), json.dumps(request)],
                              capture_output=True, text=True, timeout=60)

    def push(self, name: str, path_name: str | None = None) -> dict:
        return self.ask({"op": "push", "cwd": str(self.pgdata),
                         "path": str(self.pgdata / "pg_wal" / (path_name or name)),
                         "name": name})


@pytest.fixture
def agent() -> Iterator[Agent]:
    area = make_area("agent-")  # reachable by postgres, unlike pytest's tmp_path
    vault = srv = None
    try:
        vault = Vault.init(area / "vault")
        pgdata = area / "pgdata"
        (pgdata / "pg_wal" / "archive_status").mkdir(parents=True)
        chown_postgres(pgdata, recursive=True)
        vault.catalog.add_server("pg", socket.gethostname(), None, {
            "pgdata": str(pgdata), "port": 1, "host": None, "bin_dir": str(PG_BIN),
            "socket_dir": None, "pg_version": 15, "system_identifier": "7",
            "recovery_model": "FULL", "data_checksums": 0, "wal_segment_size": SEGMENT})
        paths = daemon.AgentPaths(area / "run")
        daemon.install_client(paths)
        srv = server.serve(paths, server.Archiver(vault))
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        yield Agent(paths, pgdata, srv)
    finally:
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        if vault is not None:
            vault.catalog.close()
        remove_area(area)


def _plant(pgdata: Path, name: str, kind: str) -> None:
    path = pgdata / "pg_wal" / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(b"\0" * (SEGMENT if kind == "segment" else SEGMENT + 1))
    os.chown(path, *pg_uid_gid(), follow_symlinks=False)


def test_only_root_and_the_clusters_group_reach_the_socket(agent):
    postgres_gid = grp.getgrnam("postgres").gr_gid
    run = os.stat(agent.paths.run_dir)
    sock = os.stat(agent.paths.socket)
    assert (run.st_uid, run.st_gid, stat.S_IMODE(run.st_mode)) == (0, postgres_gid, 0o750)
    assert (sock.st_gid, stat.S_IMODE(sock.st_mode)) == (postgres_gid, 0o660)
    # root sees what the agent did (counts, the last error, which names files)
    assert {"archived", "failures", "last_error"} <= set(agent.ask({"op": "status"}))
    # the clusters' owner learns only that it runs
    as_postgres = agent.ask_as("postgres", {"op": "status"})
    assert as_postgres.returncode == 0, as_postgres.stderr
    assert set(json.loads(as_postgres.stdout)) == {"ok", "pid"}
    # anyone else cannot even connect
    as_nobody = agent.ask_as("nobody", {"op": "status"})
    assert as_nobody.returncode != 0 and "PermissionError" in as_nobody.stderr


def test_a_push_names_a_wal_file_and_only_regular_files_are_read(agent):
    _plant(agent.pgdata, FIRST, "segment")
    _plant(agent.pgdata, "00000001000000000000000A", "fifo")
    _plant(agent.pgdata, "00000001000000000000000B", "link")
    # the name is the path's last component, and a WAL file's name
    refused = agent.push(SECOND, path_name=FIRST)
    assert not refused["ok"] and "is not the name of the WAL file" in refused["error"]
    (agent.pgdata / "pg_wal" / "passwd").write_text("x")
    assert not agent.push("passwd")["ok"]
    # a FIFO would block the open, /dev/zero a read, forever: both refused at once
    fifo = agent.push("00000001000000000000000A")
    assert fifo["code"] == "archive.file_refused" and "a FIFO" in fifo["error"]
    link = agent.push("00000001000000000000000B")
    assert link["code"] == "archive.file_refused" and "symbolic link" in link["error"]
    # and the next push of a real file is archived
    assert agent.push(FIRST) == {"ok": True}


def test_idle_connections_time_out_and_connections_are_bounded(agent, monkeypatch):
    assert 0 < server._Handler.timeout <= 60  # never waits for a client forever
    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 2)
    paths = daemon.AgentPaths(agent.paths.run_dir.parent / "run2")  # an agent of 2 slots
    paths.run_dir.mkdir()
    small = server.serve(paths, agent.server.archiver)
    threading.Thread(target=small.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        idle = []
        for _ in range(2):  # connections that never send a request take every slot
            conn = socket.socket(socket.AF_UNIX)
            conn.settimeout(60)  # guards the run against a hang only
            conn.connect(str(paths.socket))
            idle.append(conn)
        with socket.socket(socket.AF_UNIX) as extra:
            extra.settimeout(60)
            extra.connect(str(paths.socket))
            reply = json.loads(extra.makefile().readline())
        assert not reply["ok"] and "busy" in reply["error"]
        for conn in idle:  # the agent hangs up on a connection that sends nothing in time
            assert conn.recv(100) == b""
            conn.close()
        assert Agent(paths, agent.pgdata, small).ask({"op": "status"})["ok"]
    finally:
        small.shutdown()
        small.server_close()


def test_wal_files_read_as_root(tmp_path):
    """read_wal_file: a WAL file name, a regular file reached without a link, at most a
    segment (history and backup files: 1 MiB), read before any lock is taken."""
    pgdata = tmp_path
    (pgdata / "pg_wal").mkdir()
    srv = {"name": "pg", "wal_segment_size": SEGMENT}

    def refused(name: str) -> str:
        with pytest.raises(DbsafeError) as caught:
            archive.read_wal_file(srv, pgdata / "pg_wal" / name, name)
        assert caught.value.code == "archive.file_refused"
        return caught.value.message

    _plant(pgdata, FIRST, "segment")
    data, st = archive.read_wal_file(srv, pgdata / "pg_wal" / FIRST, FIRST)
    assert len(data) == SEGMENT == st.st_size
    _plant(pgdata, SECOND, "oversize")
    assert f"larger than {SEGMENT} bytes (a segment file)" in refused(SECOND)
    (pgdata / "pg_wal" / "00000002.history").write_bytes(b"1\t0/3000000\tno reason\n" * 60000)
    assert "larger than 1048576 bytes (a history file)" in refused("00000002.history")
    (pgdata / "pg_wal" / "000000010000000000000003.00000028.backup").mkdir()
    assert "a folder" in refused("000000010000000000000003.00000028.backup")
    _plant(pgdata, "000000010000000000000004.partial", "fifo")
    assert "a FIFO" in refused("000000010000000000000004.partial")
    (pgdata / "pg_wal" / "shadow").symlink_to("/etc/shadow")
    assert "not the name of a WAL file" in refused("shadow")
