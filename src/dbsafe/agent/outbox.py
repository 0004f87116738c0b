"""An agent's reports that wait for its control plane (docs/fleet.md, *Resilience*).

While the control plane is down or unreachable, an agent keeps archiving WAL: PostgreSQL's
archive_command is answered once the file is durable in the repository, which the agent
reaches without the control plane. The catalog rows that go with it (a WAL file's record, a
resolved "vault full" alert) are appended here, each line fsynced before the push is
answered, and sent in order once the control plane answers again. They are idempotent (a
WAL file's row replaces itself), so a line sent twice after a crash does no harm, and the
control plane would also find the WAL files by reconciling with the repository.

Bounded (``MAX_LINES``): past it a push fails, and PostgreSQL keeps the WAL and retries.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from dbsafe.core.errors import DbsafeError
from dbsafe.core.private_files import write_private

log = logging.getLogger("dbsafe.agent")
MAX_LINES = 100_000  # about a month of one cluster's WAL at a segment a minute
FLUSH_EVERY = 2.0


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._lines = self._count()

    def _count(self) -> int:
        try:
            with self.path.open("rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def __len__(self) -> int:
        return self._lines

    def append(self, method: str, args: list, kwargs: dict) -> None:
        line = json.dumps({"method": method, "args": args, "kwargs": kwargs}, default=str)
        with self._lock:
            if self._lines >= MAX_LINES:
                raise DbsafeError("agent.outbox_full", path=self.path, lines=MAX_LINES)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
                         0o600)
            try:
                os.write(fd, line.encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._lines += 1

    def flush(self, send: Any) -> int:
        """Send the waiting lines in order with ``send(method, args, kwargs)``; stop at the
        first that fails to reach the control plane. Returns how many were sent."""
        with self._lock:
            try:
                lines = self.path.read_bytes().splitlines()
            except FileNotFoundError:
                return 0
            sent = 0
            try:
                for raw in lines:
                    entry = json.loads(raw)
                    try:
                        send(entry["method"], entry["args"], entry["kwargs"])
                    except DbsafeError as exc:
                        if exc.code == "agent.control_unreachable":
                            break
                        log.warning("a waiting report was refused, dropped: %s", exc.message)
                    sent += 1
            finally:
                self._rewrite(lines[sent:])
            return sent

    def _rewrite(self, rest: list[bytes]) -> None:
        if not rest:
            self.path.unlink(missing_ok=True)
        else:
            write_private(self.path, b"".join(line + b"\n" for line in rest))
        self._lines = len(rest)

    def run_flusher(self, send: Any, stop: threading.Event) -> None:
        """Until ``stop``: send what waits, every FLUSH_EVERY seconds."""
        while not stop.wait(FLUSH_EVERY):
            if self._lines:
                sent = self.flush(send)
                if sent:
                    log.info("%d waiting report(s) reached the control plane", sent)
