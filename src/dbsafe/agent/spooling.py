"""When the agent's WAL goes to its spool instead of the repository, how it gets there
later, and the alerts that say so (docs/wal-spool.md). agent/spool.py keeps the files;
agent/server.py's ``Archiver`` decides, push by push, whether the repository answers.

The repository counts as away for ``AWAY_FOR`` seconds after it failed (unreachable, or
failing after its retries): pushes then go straight to the spool instead of each waiting
for the repository to fail again. ``drain`` copies spooled files into the repository,
oldest first, until it fails; it runs every ``DRAIN_EVERY`` seconds. The alerts are
``wal_spooled`` (a server's files wait in the spool: the instants they cover cannot be
restored yet) and ``wal_spool_filling`` (the spool is at 75 % of its bound, or full).
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dbsafe.agent.spool import WalSpool
from dbsafe.core.errors import DbsafeError
from dbsafe.core.units import size_text
from dbsafe.services import activity
from dbsafe.services.handle import Vault
from dbsafe.services.logchain import archive_wal_bytes, read_wal_file

AWAY_FOR = 10.0      # seconds pushes go straight to the spool after the repository failed
DRAIN_EVERY = 2.0    # seconds between two looks at the spool
UNREACHABLE = ("storage.unreachable", "storage.request_failed")  # the repository, not the file
log = logging.getLogger("dbsafe.agent")


class SpoolKeeper:
    """The spool of one agent, with the repository's state as the pushes saw it.
    ``level_of(server)``: the zstd level a server's WAL is stored at (its policy's)."""

    def __init__(self, vault: Vault, spool: WalSpool, level_of: Callable[[dict], int]) -> None:
        self.vault = vault
        self.spool = spool
        self.level_of = level_of
        self.spooled = 0  # files kept since the agent started
        self._away_until = 0.0  # monotonic: until then the repository counts as away
        self._lock = threading.Lock()

    def away(self) -> bool:
        return time.monotonic() < self._away_until

    def set_away(self) -> None:
        self._away_until = time.monotonic() + AWAY_FOR

    def keep(self, server: dict, path: str, name: str) -> bool:
        """Keep the file in the spool (True), or say the spool is full (False)."""
        data, st = read_wal_file(server, Path(path), name)
        kept = self.spool.put(server["instance_id"], name, data, st.st_mtime)
        if kept:
            with self._lock:
                self.spooled += 1
            log.warning("the repository did not answer: WAL file %s of %s kept in the "
                        "spool (%s of %s)", name, server["name"], size_text(self.spool.used()),
                        size_text(self.spool.max_bytes))
            self._alert(activity.WAL_SPOOLED, server["name"],
                        f"the repository could not be reached: WAL files of {server['name']} "
                        f"are kept in the spool of host {platform.node()} "
                        f"({self.spool.folder}) until it answers; the instants they cover "
                        "cannot be restored until then")
        if not kept or self.spool.filling():
            state = "is full: PostgreSQL keeps its WAL in pg_wal again" if not kept else \
                "fills up"
            self._alert(activity.WAL_SPOOL_FILLING, server["name"],
                        f"the WAL spool of host {platform.node()} {state} "
                        f"({size_text(self.spool.used())} of "
                        f"{size_text(self.spool.max_bytes)}): make the repository reachable, "
                        "or give the spool room (`dbsafe agent run --spool-max-mib`)")
        return kept

    def drain(self) -> int:
        """Copy spooled files into the repository, oldest first, until it fails; resolve
        the alerts of the servers left with nothing spooled. Returns the files copied."""
        if self.away():
            return 0
        pending = self.spool.pending()
        if not pending:
            return 0
        servers = {s["instance_id"]: s for s in self.vault.catalog.list_servers()}
        copied = 0
        for item in pending:
            server = servers.get(item.instance_id)
            if server is None:  # removed from the vault meanwhile: kept, and said
                log.error("spooled WAL file %s belongs to no registered server (instance "
                          "%d); it stays in %s", item.name, item.instance_id, item.path)
                continue
            try:
                data, mtime = self.spool.read(item)
                archive_wal_bytes(self.vault, server, item.name, data, mtime,
                                  self.level_of(server))
            except DbsafeError as exc:
                if exc.code in UNREACHABLE:
                    self.set_away()
                    break
                log.error("spooled WAL file %s of %s: %s; it stays in %s", item.name,
                          server["name"], exc.message, item.path)
                continue
            except Exception as exc:  # noqa: BLE001 - a damaged file must not stop the rest
                log.error("spooled WAL file %s of %s: %s; it stays in %s", item.name,
                          server["name"], exc, item.path)
                continue
            self.spool.remove(item)
            copied += 1
        left = {s.instance_id for s in self.spool.pending()}
        for instance_id in {i.instance_id for i in pending} - left:
            self._resolve(activity.WAL_SPOOLED, servers[instance_id]["name"])
        if copied:
            log.info("%d spooled WAL files copied into the repository", copied)
        if not self.spool.filling():
            for instance_id in {i.instance_id for i in pending if i.instance_id in servers}:
                self._resolve(activity.WAL_SPOOL_FILLING, servers[instance_id]["name"])
        return copied

    def drain_forever(self, stop: threading.Event) -> None:
        while not stop.wait(DRAIN_EVERY):
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - the next look tries again
                log.exception("draining the WAL spool failed")

    def status(self) -> dict:
        with self._lock:
            spooled = self.spooled
        return {"spooled": spooled, "spool": self.spool.status()}

    def _alert(self, kind: str, server: str, message: str) -> None:
        try:
            activity.raise_alert(self.vault.catalog, kind, activity.KINDS[kind], message,
                                 server=server, item=platform.node())
        except Exception as exc:  # noqa: BLE001 - the file is safe; the alert comes later
            log.warning("could not raise %s for %s: %s", kind, server, exc)

    def _resolve(self, kind: str, server: str) -> None:
        try:
            activity.resolve_alerts(self.vault.catalog, kind, server=server,
                                    item=platform.node())
        except Exception as exc:  # noqa: BLE001 - resolved at the next drain
            log.warning("could not resolve %s for %s: %s", kind, server, exc)
