"""Writer locks: which processes may still deduplicate against a pack garbage collection is
about to delete (docs/repository-format.md, *Garbage collection*).

A lock is a small object ``locks/<client id>-<scope>-<pid>-<random>`` (not fsynced: after a
crash its process is gone, which is exactly when the lock stops counting). The client id is
the random id of the client folder (``client.json``), the scope says where the pid means
something (``core.concurrency.pid_scope``: kernel boot, pid namespace, VM). Who may call a
lock stale:

- its own client, in the same scope: by its pid (gone, a zombie, or another process start
  time under that pid) — at once;
- anyone else (another client, a clone of this one on another VM, this client after a
  reboot): only by its heartbeat. A writer rewrites its lock every ``REFRESH_SECONDS``; a
  lock not refreshed for ``STALE_SECONDS`` is stale. A writer checks before it commits
  (``WriterLock.check``) that its heartbeat never lapsed that long, else it refuses: others
  may have judged it gone and deleted packs it deduplicated against.

The host name plays no part (cloned VMs and pods share it). Locks of older dbsafe versions
(``<host>-<pid>-<random>``, no heartbeat) are judged as those versions did.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dbsafe.core.concurrency import boot_id, pid_alive, pid_scope, process_start
from dbsafe.core.errors import DbsafeError
from dbsafe.storage.base import Storage

LOCKS = "locks"
REFRESH_SECONDS = 300.0   # restic's numbers: refreshed every 5 minutes,
STALE_SECONDS = 1800.0    # stale for everyone else after 30 minutes without a refresh
# The client id of a repository opened without one (a library caller, a test): random per
# process, so nobody else judges its locks by pid.
PROCESS_CLIENT = secrets.token_hex(8)
LEGACY_HOST = socket.gethostname().replace("-", "_")  # how locks of older versions name hosts
log = logging.getLogger("dbsafe.vault")
LAPSED = "its heartbeat lapsed (the process was stopped or cut off)"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _age(stamp: object) -> float | None:
    """Seconds since an ISO time, or None when it is not one."""
    try:
        then = datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    if then.tzinfo is None:
        return None
    return (datetime.now(UTC) - then).total_seconds()


def _pid_is(pid: int, proc_start: object, boot: object) -> bool:
    """Whether ``pid`` on this machine is still the process that wrote a lock."""
    if not pid_alive(pid):
        return False
    if boot is not None and boot != boot_id():
        return False
    start = process_start(pid)
    return start is None or proc_start is None or start == proc_start


@dataclass(frozen=True)
class LockInfo:
    name: str
    client: str | None   # None: a lock of an older version (``host`` names its host)
    scope: str | None
    host: str
    pid: int
    doc: dict[str, Any]

    def alive(self, client_id: str) -> bool:
        """Whether the lock may still be held, as judged by client ``client_id``."""
        if self.client is None:  # an older version's lock: judged as it judged
            if self.host != LEGACY_HOST:
                return True
            return _pid_is(self.pid, self.doc.get("proc_start"), self.doc.get("boot_id"))
        if self.client == client_id and self.scope == pid_scope():
            return _pid_is(self.pid, self.doc.get("proc_start"), self.doc.get("boot_id"))
        age = _age(self.doc.get("refreshed") or self.doc.get("started"))
        return age is None or age < STALE_SECONDS

    def describe(self) -> dict[str, Any]:
        return {"lock": self.name, "kind": self.doc.get("kind"), "client": self.client,
                "host": self.doc.get("host", self.host), "pid": self.pid,
                "started": self.doc.get("started"), "refreshed": self.doc.get("refreshed")}


class WriterLock:
    """One writer's lock, refreshed by a thread of its own until ``release`` (idempotent)."""

    def __init__(self, storage: Storage, kind: str, client_id: str) -> None:
        self._storage = storage
        pid = os.getpid()
        self.name = f"{client_id}-{pid_scope()}-{pid}-{secrets.token_hex(6)}"
        self._doc = {"kind": kind, "client": client_id, "host": socket.gethostname(),
                     "pid": pid, "started": _now(), "boot_id": boot_id(),
                     "proc_start": process_start(pid)}
        self._lost: str | None = None
        self._stop = threading.Event()
        self._write()
        self._refreshed = time.time()
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                        name="dbsafe-lock-refresh")
        self._thread.start()

    def _write(self) -> None:
        self._doc["refreshed"] = _now()
        self._storage.put(f"{LOCKS}/{self.name}", json.dumps(self._doc).encode(),
                          durable=False)

    def _lapsed(self) -> bool:
        """Whether the heartbeat went quiet long enough for another client to call it stale
        (a process stopped or a VM paused counts: the wall clock moved on)."""
        return time.time() - self._refreshed > STALE_SECONDS - REFRESH_SECONDS

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                if self._lapsed():
                    self._lost = LAPSED
                elif not self._storage.exists(f"{LOCKS}/{self.name}"):
                    self._lost = "another client removed it as stale"
                else:
                    self._write()
                    self._refreshed = time.time()
            except Exception as exc:  # the storage may be back at the next beat
                log.warning("refreshing writer lock %s failed: %s", self.name, exc)
            if self._lost is not None:
                log.error("writer lock %s lost: %s", self.name, self._lost)
                return

    def check(self) -> None:
        """Refuse to commit (``vault.lock_lost``) when other clients may have judged this
        lock stale: packs this writer deduplicated against may be gone."""
        if self._lost is None and self._lapsed():
            self._lost = LAPSED
        if self._lost is not None:
            raise DbsafeError("vault.lock_lost", lock=self.name, reason=self._lost)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._storage.delete(f"{LOCKS}/{self.name}")


def _parse(storage: Storage, name: str) -> LockInfo | None:
    parts = name.split("-")
    if len(parts) == 4 and parts[2].isdigit():
        client: str | None = parts[0]
        scope: str | None = parts[1]
        pid_text, host = parts[2], ""
    elif len(parts) == 3 and parts[1].isdigit():
        client = scope = None
        host, pid_text = parts[0], parts[1]
    else:
        return None
    try:
        doc = json.loads(storage.get(f"{LOCKS}/{name}"))
    except FileNotFoundError:
        return None  # released meanwhile
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return LockInfo(name, client, scope, host, int(pid_text), doc)


def all_locks(storage: Storage) -> Iterator[LockInfo]:
    for name in sorted(storage.names(LOCKS)):
        info = _parse(storage, name)
        if info is not None:
            yield info


def live_locks(storage: Storage, client_id: str) -> list[LockInfo]:
    return [lock for lock in all_locks(storage) if lock.alive(client_id)]


def lock_alive(storage: Storage, name: str, client_id: str) -> bool:
    """Whether the lock ``name`` still exists and may still be held."""
    info = _parse(storage, name)
    return info is not None and info.alive(client_id)


def remove_stale(storage: Storage, client_id: str) -> int:
    """Remove the locks judged stale; returns how many."""
    removed = 0
    for lock in all_locks(storage):
        if not lock.alive(client_id):
            with contextlib.suppress(FileNotFoundError):
                storage.delete(f"{LOCKS}/{lock.name}")
            removed += 1
    return removed
