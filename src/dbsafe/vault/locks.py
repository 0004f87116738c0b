"""Writer locks: which processes may still deduplicate against a pack garbage collection is
about to delete (docs/repository-format.md, *Garbage collection*).

A lock is a small object ``locks/<host>-<pid>-<random>`` (on a local vault not fsynced:
after a crash its process is gone, which is exactly when the lock stops counting). Host and
pid are in the name, so liveness is known from the name alone; the boot id and the process
start time in the content catch a pid reused after a reboot or by another process.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dbsafe.core.concurrency import pid_alive
from dbsafe.storage.base import Storage

LOCKS = "locks"
HOST = socket.gethostname().replace("-", "_")  # as in tmp/ names (storage.local)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22)."""
    fields = _stat(pid)
    return fields[19] if fields else None


@dataclass(frozen=True)
class LockInfo:
    name: str
    host: str
    pid: int
    doc: dict

    def alive(self) -> bool:
        if self.host != HOST:
            return True  # cannot be checked from here: assume it runs
        if not pid_alive(self.pid):
            return False
        boot = self.doc.get("boot_id")
        if boot is not None and boot != _boot_id():
            return False
        fields = _stat(self.pid)
        if fields is None:
            return True  # no /proc: the pid exists, assume it is the writer
        if fields[0] == "Z":
            return False  # exited, not yet reaped
        start = self.doc.get("proc_start")
        return start is None or start == fields[19]

    def describe(self) -> dict:
        return {"lock": self.name, "kind": self.doc.get("kind"), "host": self.host,
                "pid": self.pid, "started": self.doc.get("started")}


class WriterLock:
    """One writer's lock; ``release`` removes it (idempotent)."""

    def __init__(self, storage: Storage, kind: str) -> None:
        self._storage = storage
        pid = os.getpid()
        self.name = f"{HOST}-{pid}-{secrets.token_hex(6)}"
        doc = {"kind": kind, "host": HOST, "pid": pid,
               "started": datetime.now(UTC).isoformat(timespec="milliseconds"),
               "boot_id": _boot_id(), "proc_start": process_start(pid)}
        storage.put(f"{LOCKS}/{self.name}", json.dumps(doc).encode(), durable=False)

    def release(self) -> None:
        self._storage.delete(f"{LOCKS}/{self.name}")


def _parse(storage: Storage, name: str) -> LockInfo | None:
    host, _, rest = name.partition("-")
    pid_text = rest.partition("-")[0]
    if not pid_text.isdigit():
        return None
    try:
        doc = json.loads(storage.get(f"{LOCKS}/{name}"))
    except FileNotFoundError:
        return None  # released meanwhile
    except (OSError, ValueError):
        doc = {}
    return LockInfo(name, host, int(pid_text), doc)


def all_locks(storage: Storage) -> Iterator[LockInfo]:
    for name in sorted(storage.names(LOCKS)):
        info = _parse(storage, name)
        if info is not None:
            yield info


def live_locks(storage: Storage) -> list[LockInfo]:
    return [lock for lock in all_locks(storage) if lock.alive()]


def lock_alive(storage: Storage, name: str) -> bool:
    """Whether the lock ``name`` still exists and its process runs."""
    info = _parse(storage, name)
    return info is not None and info.alive()


def remove_stale(storage: Storage) -> int:
    """Remove the locks of this host's dead processes; returns how many."""
    removed = 0
    for lock in all_locks(storage):
        if not lock.alive():
            storage.delete(f"{LOCKS}/{lock.name}")
            removed += 1
    return removed
