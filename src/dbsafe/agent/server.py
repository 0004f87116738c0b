"""The agent process: a local socket that archives WAL files into the vault.

Requests are one JSON line each: ``{"op": "push", "cwd", "path", "name"}`` from the archive
command (cwd is the data directory PostgreSQL runs it in) and ``{"op": "status"}``. A push
is answered ``{"ok": true}`` only once the file is durable in the vault.

Read-ahead: on each push the agent looks at ``pg_wal/archive_status/*.ready`` and starts
archiving the next files in parallel, so that when PostgreSQL asks for them (one at a time,
in order) they are usually done already and the answer is immediate.

Compression: a file's new blocks are stored at the zstd level of the server's policy (raw
when the policy's compression is off; level 1 without a policy), looked up at most every
``LEVEL_TTL`` seconds.

Replica sets: every node archives (archive_mode=always), but only the node the set's backup
preference names for log backups stores; a push from another node is acknowledged once the
vault holds that file with equal content (``Archiver._defer``), so no node drops WAL the
vault does not have.

The spool (agent/spool.py, agent/spooling.py): a file the repository has not stored after
``spool_after`` seconds, or any file while the repository is away (it failed within the
last few seconds: unreachable, failing after its retries), is kept durably in the host's
bounded spool and acknowledged, so that ``pg_wal`` does not fill up; the spool is drained
into the repository as soon as it answers. A file the spool has no room for waits for the
repository, as without a spool.

Who may talk to it: the socket (0660) and its run folder (0750) belong to root and the
group of the clusters' owners (engines/postgres/agent_process.py), and a push is accepted
only from the OS user owning that data directory, or root (the peer's uid, SO_PEERCRED).
Others learn at most that an agent runs (``status`` details, which name files and errors, go to
root). A push names a file of the server's pg_wal by a WAL file name, equal to the path's last
component; the file is read only if it is a regular file (services/logchain/archive.py). Each
connection has ``READ_TIMEOUT`` seconds to send its request, and at most
``MAX_CONNECTIONS`` are served at once: beyond that a connection is answered "busy" at once
(the archive command fails, PostgreSQL retries).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import socketserver
import struct
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from dbsafe.agent.daemon import (
    AgentPaths,
    agent_paths,
    install_client,
    ping,
    running_pid,
    socket_group,
)
from dbsafe.agent.spool import WalSpool
from dbsafe.agent.spooling import UNREACHABLE, SpoolKeeper
from dbsafe.core.errors import DbsafeError
from dbsafe.core.sdk_logging import resident_logging
from dbsafe.engines.postgres import wal
from dbsafe.services import activity
from dbsafe.services.handle import Vault
from dbsafe.services.logchain import (
    already_held,
    archive_wal_file,
    content_checksum,
)

READ_AHEAD = 8
WORKERS = 2
READ_TIMEOUT = 30.0  # seconds a connection has to send its request line
MAX_CONNECTIONS = 64  # connections served at once; PostgreSQL runs one archive command
#                       at a time per cluster, so this is many clusters' worth
MAX_REQUEST = 65536
LOG_NODE_TTL = 2.0   # seconds a replica set's log node choice is reused
LEVEL_TTL = 2.0      # seconds a server's compression level (its policy's) is reused
DEFER_WAIT = 10.0    # seconds a deferred push waits for the log node to archive the file
DEFER_POLL = 0.25
SPOOL_AFTER = 60.0   # seconds a push waits for the repository before the spool takes it
SPOOL_MAX_MIB = 4096  # the spool's default bound
log = logging.getLogger("dbsafe.agent")


class Archiver:
    """Archive WAL files once each, with read-ahead; callers wait on a shared future."""

    def __init__(self, vault: Vault, spool: WalSpool | None = None,
                 spool_after: float = SPOOL_AFTER) -> None:
        self.vault = vault
        self.spool_after = spool_after
        self.keeper = SpoolKeeper(vault, spool, self._level) \
            if spool is not None and spool.enabled else None
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="dbsafe-archive")
        self._lock = threading.Lock()
        self._running: dict[str, Future] = {}
        self._servers: dict[str, dict] = {}
        self._log_nodes: dict[str, tuple[float, str | None]] = {}
        self._levels: dict[str, tuple[float, int]] = {}
        self._look_lock = threading.Lock()
        self.archived = 0
        self.failures = 0
        self.last_error: str | None = None
        self.vault_full = False  # a full vault refused a file since the last success

    def server_for(self, cwd: str) -> dict | None:
        key = os.path.realpath(cwd)
        if key not in self._servers:
            self._servers = {os.path.realpath(s["pgdata"]): s
                             for s in self.vault.catalog.list_servers()
                             if s["kind"] == "server"}  # not a replica set's own entry
        return self._servers.get(key)

    def _submit(self, server: dict, path: str, name: str) -> Future:
        with self._lock:
            fut = self._running.get(path)
            if fut is None:
                fut = self._pool.submit(self._archive, server, path, name)
                self._running[path] = fut
            return fut

    def _archive(self, server: dict, path: str, name: str) -> dict:
        try:
            record = archive_wal_file(self.vault, server, Path(path), name,
                                      self._level(server))
        except BaseException as exc:
            with self._lock:
                self.failures += 1
                self.last_error = f"{name}: {exc}"
                self._running.pop(path, None)
                if getattr(exc, "code", None) == "vault.full":
                    self.vault_full = True
            log.error("archiving %s of %s failed: %s", name, server["name"], exc)
            raise
        with self._lock:
            self.archived += 1
            was_full, self.vault_full = self.vault_full, False
        if was_full:
            activity.vault_writable(self.vault.catalog)
        return record

    def push(self, server: dict, path: str, name: str) -> None:
        server = self._refreshed(server)
        if server.get("replica_set") and self._log_node(server) != server["name"]:
            self._defer(server, path, name)
            return
        keeper = self.keeper
        if keeper is not None and keeper.away() and keeper.keep(server, path, name):
            return
        fut = self._submit(server, path, name)
        self._read_ahead(server, path)
        try:
            fut.result(timeout=self.spool_after if keeper is not None else None)
        except FutureTimeout:  # the repository is too slow to answer: spool the file
            assert keeper is not None
            fut.add_done_callback(lambda done: self._forget(path, done))
            keeper.set_away()
            if not keeper.keep(server, path, name):
                fut.result()  # no room in the spool: wait for the repository
        except DbsafeError as exc:
            if exc.code not in UNREACHABLE or keeper is None:
                raise
            keeper.set_away()
            if not keeper.keep(server, path, name):
                raise
        finally:
            self._forget(path, fut)

    def _forget(self, path: str, fut: Future) -> None:
        with self._lock:
            if self._running.get(path) is fut and fut.done():
                del self._running[path]

    def _refreshed(self, server: dict) -> dict:
        """The server's catalog row again: it may have joined or left a replica set since
        it was cached."""
        row = self.vault.catalog.get_server(server["name"])
        return row if row is not None else server

    def _log_node(self, server: dict) -> str | None:
        """Which node of the server's replica set takes log backups now (looked up at most
        every LOG_NODE_TTL seconds: it connects to every node)."""
        from dbsafe.services import protection

        name = server["replica_set"]
        with self._look_lock:  # one look at the nodes at a time, shared by every push
            now = time.monotonic()
            cached = self._log_nodes.get(name)
            if cached is not None and cached[0] > now:
                return cached[1]
            try:
                taker = protection.log_node(self.vault, name)
            except DbsafeError as exc:
                log.warning("replica set %s: %s", name, exc.message)
                taker = None
            self._log_nodes[name] = (time.monotonic() + LOG_NODE_TTL, taker)
            return taker

    def _level(self, server: dict) -> int:
        """The zstd level of the server's policy for its WAL (0: stored raw), looked up at
        most every LEVEL_TTL seconds: a policy edited or changed applies within that."""
        from dbsafe.services.inventory import compression_for

        with self._look_lock:
            cached = self._levels.get(server["name"])
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        level = compression_for(self.vault, server)[0]  # a failure fails this file's push
        with self._look_lock:
            self._levels[server["name"]] = (time.monotonic() + LEVEL_TTL, level)
        return level

    def _defer(self, server: dict, path: str, name: str) -> None:
        """A node that does not take log backups now: acknowledge the file once the node
        that does has archived it (equal content), waiting up to DEFER_WAIT seconds (not at
        all when no node takes log backups now); if in the meantime this node becomes the
        one, archive it here."""
        deadline = time.monotonic() + DEFER_WAIT
        checksum = content_checksum(self.vault, server, Path(path), name)
        while True:
            if already_held(self.vault, server, name, checksum) is not None:
                return
            taker = self._log_node(server)
            if taker == server["name"]:
                self._submit(server, path, name).result()
                return
            # no node takes log backups now (secondary-only without a secondary, a primary
            # outside the vault's region): say so at once, PostgreSQL asks again later
            if taker is None or time.monotonic() > deadline:
                raise DbsafeError("archive.deferred", name=name, server=server["name"],
                                  set=server["replica_set"], taker=taker or "no node")
            time.sleep(DEFER_POLL)

    def _read_ahead(self, server: dict, path: str) -> None:
        status = Path(path).parent / "archive_status"
        try:
            ready = sorted(n[:-6] for n in os.listdir(status) if n.endswith(".ready"))
        except OSError:
            return
        current = os.path.basename(path)
        # only names PostgreSQL gives WAL files: anything else in archive_status was put
        # there by someone else (the files themselves are checked when they are read)
        names = [n for n in ready if n != current and wal.wal_file_kind(n) is not None]
        for name in names[:READ_AHEAD]:
            self._submit(server, str(Path(path).parent / name), name)

    def status(self, details: bool = True) -> dict:
        """The agent's counters and last error (which names files and errors) with
        ``details``; only that it runs without."""
        if not details:
            return {"ok": True, "pid": os.getpid()}
        with self._lock:
            counters: dict[str, object] = {
                "ok": True, "pid": os.getpid(), "archived": self.archived,
                "failures": self.failures, "in_progress": len(self._running),
                "last_error": self.last_error}
        counters.update(self.keeper.status() if self.keeper is not None
                        else {"spooled": 0, "spool": None})
        return counters


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class _Handler(socketserver.StreamRequestHandler):
    server: _AgentServer
    timeout = READ_TIMEOUT  # on every read and write of the connection

    def handle(self) -> None:
        try:
            line = self.rfile.readline(MAX_REQUEST)
        except OSError:  # nothing sent in time, or the client went away
            return
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
            reply = self.server.answer(request, _peer_uid(self.request))
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(reply).encode() + b"\n")


class _AgentServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, socket_path: Path, archiver: Archiver) -> None:
        self.archiver = archiver
        self.stopped = threading.Event()  # set when serving ends (the spool's drain stops)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(str(socket_path), _Handler)

    # a stream server's requests are sockets (the base class's also allows datagrams)
    def process_request(self, request: socket.socket,  # type: ignore[override]
                        client_address: object) -> None:
        """A thread per connection, up to MAX_CONNECTIONS; beyond, "busy" at once."""
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(json.dumps({
                    "ok": False, "error": f"the agent is busy ({MAX_CONNECTIONS} connections "
                    "at once); PostgreSQL keeps the file and retries"}).encode() + b"\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket,  # type: ignore[override]
                               client_address: object) -> None:
        """ThreadingMixIn's, with the slot given back before the connection is closed (a
        client that saw the end may connect again at once)."""
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._slots.release()
            self.shutdown_request(request)

    def answer(self, request: dict, uid: int) -> dict:
        if request.get("op") == "status":
            return self.archiver.status(details=uid in (0, os.geteuid()))
        if request.get("op") != "push":
            return {"ok": False, "error": f"unknown op {request.get('op')!r}"}
        cwd, path, name = request["cwd"], request["path"], request["name"]
        if not all(isinstance(v, str) for v in (cwd, path, name)):
            raise ValueError("cwd, path and name must be strings")
        path = os.path.normpath(path)
        server = self.archiver.server_for(cwd)
        if server is None:
            return {"ok": False, "error": f"{cwd} is not a data directory registered in this "
                    "vault; register it with `dbsafe server add`"}
        owner = os.stat(server["pgdata"]).st_uid
        if uid not in (0, owner):
            return {"ok": False, "error": f"uid {uid} may not archive WAL of {server['name']}"}
        if wal.wal_file_kind(name) is None or os.path.basename(path) != name:
            return {"ok": False, "error": f"{name!r} is not the name of the WAL file {path}"}
        if os.path.realpath(os.path.dirname(path)) != os.path.realpath(
                os.path.join(server["pgdata"], "pg_wal")):
            return {"ok": False, "error": f"{path} is not a file of {server['name']}'s pg_wal"}
        try:
            self.archiver.push(server, path, name)
        except DbsafeError as exc:
            return {"ok": False, "error": exc.message, "code": exc.code}
        except Exception as exc:  # disk full, catalog locked, ...: PostgreSQL retries
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True}


def serve(paths: AgentPaths, archiver: Archiver) -> _AgentServer:
    """The agent's socket, bound and reachable only by root and the clusters' owners'
    group (``daemon.socket_group``); serve it with ``serve_forever``."""
    paths.socket.unlink(missing_ok=True)
    server = _AgentServer(paths.socket, archiver)
    group = socket_group()
    if group is not None:
        with contextlib.suppress(PermissionError):  # not root: the agent's own group
            os.chown(paths.socket, -1, group)
    os.chmod(paths.socket, 0o660)
    return server


def open_socket(vault: Vault, spool_max_mib: int = SPOOL_MAX_MIB,
                spool_after: float = SPOOL_AFTER) -> tuple[_AgentServer, AgentPaths]:
    """The vault's agent socket, bound, with its archive command installed and this
    process's pid recorded, and its spool drained in the background (the thread ends with
    the socket); ``agent.already_running`` when another agent serves it."""
    paths = agent_paths(vault.repo.config["vault_id"])
    install_client(paths)
    other = running_pid(paths)
    if other is not None and other != os.getpid() and ping(paths) is not None:
        raise DbsafeError("agent.already_running", pid=other, socket=paths.socket)
    archiver = Archiver(vault, WalSpool(paths.run_dir / "spool", spool_max_mib << 20),
                        spool_after)
    server = serve(paths, archiver)
    paths.pid_file.write_text(f"{os.getpid()}\n")
    if archiver.keeper is not None:
        threading.Thread(target=archiver.keeper.drain_forever, args=(server.stopped,),
                         name="wal-spool", daemon=True).start()
    return server, paths


def serve_until_shutdown(server: _AgentServer, paths: AgentPaths) -> None:
    """Serve the socket until ``server.shutdown()``; then remove it and the pid file."""
    log.info("dbsafe agent %d serving %s", os.getpid(), paths.socket)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.stopped.set()
        server.server_close()
        paths.socket.unlink(missing_ok=True)
        paths.pid_file.unlink(missing_ok=True)
        log.info("dbsafe agent %d stopped serving %s", os.getpid(), paths.socket)


def run(vault: Vault, json_lines: bool = False, spool_max_mib: int = SPOOL_MAX_MIB,
        spool_after: float = SPOOL_AFTER) -> None:
    """Serve until SIGTERM/SIGINT; one agent per vault (a second one exits). ``json_lines``:
    log one JSON object a line."""
    resident_logging(json_lines, text_format="%(asctime)s %(levelname)s %(message)s")
    server, paths = open_socket(vault, spool_max_mib, spool_after)

    def stop(_signum, _frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve_until_shutdown(server, paths)
