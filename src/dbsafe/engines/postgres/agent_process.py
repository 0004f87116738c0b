"""Where an agent lives (run folder, socket, pid file, client) and starting or stopping it.

One agent per vault. Its run folder must be reachable by the ``postgres`` user, who runs
the archive command: ``/var/lib/dbsafe/agent-<vault id>`` when dbsafe runs as root, the
user's state folder otherwise, or ``$DBSAFE_RUN_DIR/<vault id>`` when that is set. The
folder is the agent's user's, mode 0750, its group the clusters' owners' (``socket_group``):
other local users cannot reach the socket, and only the agent's user can change what is in
it (the archive command's client among them). The agent's log is 0600.

It lives here, below the services, because the services (protection, coexistence, monitor)
and the scheduler start or ask the agent; ``dbsafe.agent.daemon`` re-exports it for the
agent package and the CLI. The client's sources stay in ``dbsafe/agent/`` (package data).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dbsafe.core.child_env import SAFE_PATH, tool_env
from dbsafe.core.concurrency import pid_alive
from dbsafe.core.errors import DbsafeError

CLIENT_PYTHON = "/usr/bin/python3"
CLUSTER_USER = "postgres"
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class AgentPaths:
    run_dir: Path

    @property
    def socket(self) -> Path:
        return self.run_dir / "agent.sock"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "agent.pid"

    @property
    def log(self) -> Path:
        return self.run_dir / "agent.log"

    @property
    def client(self) -> Path:
        return self.run_dir / "dbsafe-wal"

    def archive_command(self) -> str:
        """The archive_command that hands WAL to this agent ('dbsafe-wal' marks it ours)."""
        return f"{self.client} push %p"


def agent_paths(vault_id: str) -> AgentPaths:
    short = vault_id[:12]
    env = os.environ.get("DBSAFE_RUN_DIR")
    if env:
        return AgentPaths(Path(env) / short)
    if os.geteuid() == 0:
        return AgentPaths(Path("/var/lib/dbsafe") / f"agent-{short}")
    import platformdirs  # here: only a path left to the defaults needs it (~9 ms)

    return AgentPaths(Path(platformdirs.user_state_dir("dbsafe")) / f"agent-{short}")


def socket_group() -> int | None:
    """The group that may reach the agent: the ``postgres`` user's (the owner of the
    clusters, who runs the archive command; a cluster of another OS user needs that user
    in this group). None where there is no such user: the agent's own group then."""
    try:
        return pwd.getpwnam(CLUSTER_USER).pw_gid
    except KeyError:
        return None


def _prepare_run_dir(run_dir: Path) -> None:
    """The run folder, made if needed: the agent's user's alone (refused otherwise: who can
    write it could swap the client PostgreSQL runs, or plant links where dbsafe writes),
    0750 with the clusters' owners' group."""
    for folder in reversed([run_dir, *run_dir.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o755)
    st = os.lstat(run_dir)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise DbsafeError("agent.run_dir_unsafe", path=run_dir,
                          reason="it is not a folder of the agent's user")
    group = socket_group()
    if group is not None and st.st_gid != group:
        with contextlib.suppress(PermissionError):  # not root: the agent's own group
            os.chown(run_dir, -1, group, follow_symlinks=False)
    os.chmod(run_dir, 0o750)


def install_client(paths: AgentPaths) -> str:
    """Write the archive command's client (it holds no secret): the C client
    (dbsafe_wal.c) compiled for this socket, else the Python one (client.py). Returns which.
    A client built from the same source for the same socket is kept."""
    _prepare_run_dir(paths.run_dir)
    here = resources.files("dbsafe.agent")
    c_source = here.joinpath("dbsafe_wal.c").read_bytes()
    stamp = hashlib.sha256(c_source + str(paths.socket).encode()).hexdigest()
    stamp_file = paths.client.with_name("dbsafe-wal.built")
    if paths.client.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return "native"
    tmp = paths.client.with_suffix(".tmp")
    if _compile(c_source, paths.socket, tmp):
        kind = "native"
    else:
        python = CLIENT_PYTHON if Path(CLIENT_PYTHON).exists() else sys.executable
        source = here.joinpath("client.py").read_text()
        tmp.write_text(f"#!{python} -IS\n" + source.replace("@SOCKET@", str(paths.socket)))
        kind, stamp = "python", ""
    os.chmod(tmp, 0o755)
    os.replace(tmp, paths.client)
    stamp_file.write_text(stamp)
    return kind


def _compile(source: bytes, socket_path: Path, out: Path) -> bool:
    """cc the C client; False (and the Python client is used) when that is not possible."""
    import shutil
    import tempfile

    cc = shutil.which("cc", path=SAFE_PATH) or shutil.which("gcc", path=SAFE_PATH)
    if cc is None or '"' in str(socket_path) or "\\" in str(socket_path):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "dbsafe_wal.c"
        src.write_bytes(source)
        proc = subprocess.run([cc, "-O2", "-o", str(out), f'-DSOCKET_PATH="{socket_path}"',
                               str(src)], capture_output=True, text=True, timeout=120,
                              env=tool_env())
    return proc.returncode == 0


def ping(paths: AgentPaths, timeout: float = 2.0) -> dict | None:
    """The agent's status, or None when none answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(paths.socket))
            conn.sendall(b'{"op": "status"}\n')
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return json.loads(reply)
    except (OSError, ValueError):
        return None


def running_pid(paths: AgentPaths) -> int | None:
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def ensure_running(vault_path: Path, vault_id: str) -> dict:
    """Start the vault's agent unless it answers already; returns its status."""
    paths = agent_paths(vault_id)
    install_client(paths)
    status = ping(paths)
    if status is not None:
        return status
    fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # errors name files: the agent's user's alone
    with open(fd, "ab") as log:
        subprocess.Popen([sys.executable, "-m", "dbsafe", "--vault", str(vault_path), "agent",
                          "run"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        status = ping(paths)
        if status is not None:
            return status
        time.sleep(0.1)
    raise DbsafeError("agent.start_failed", log=paths.log)


def stop(vault_id: str, timeout: float = 30.0) -> bool:
    """Stop the vault's agent; False when none was running."""
    paths = agent_paths(vault_id)
    pid = running_pid(paths)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True
