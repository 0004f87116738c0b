"""The loop of ``dbsafe serve``: every few seconds, supervise the WAL agent, refresh
discovery when due, check health, and hand due runs to the runner. Each of these is a step
(scheduler/steps.py): one that fails is a job and an alert, and the loop goes on.

One scheduler per vault catalog: while it runs it holds ``serve.lock`` in the vault's
client folder (flock: a second ``serve`` on this host is refused with the first one's pid)
and the catalog's lock ``scheduler`` (services/handle/vault_handle.py ``exclusive``: SQLite, this
host;
a PostgreSQL catalog, every host sharing it), so a second scheduler is refused instead of
doubling every backup.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

from dbsafe.catalog.base import parse_time
from dbsafe.core.errors import DbsafeError
from dbsafe.scheduler.clock import Clock, SystemClock
from dbsafe.scheduler.due import Work, due_work
from dbsafe.scheduler.execute import Executor
from dbsafe.scheduler.runner import DEFAULT_PER_HOST, DEFAULT_PER_SERVER, DEFAULT_TOTAL, Runner
from dbsafe.scheduler.steps import run_step
from dbsafe.services import fleet
from dbsafe.services.handle import Vault

log = logging.getLogger("dbsafe.scheduler")
DISCOVER_EVERY = timedelta(hours=8)
HEALTH_EVERY = timedelta(minutes=1)
TICK_SECONDS = 5.0


class Scheduler:
    def __init__(self, vault_path: Path, clock: Clock | None = None, *,
                 per_server: int = DEFAULT_PER_SERVER, total: int = DEFAULT_TOTAL,
                 per_host: int = DEFAULT_PER_HOST,
                 tick_seconds: float = TICK_SECONDS, discover_every: timedelta = DISCOVER_EVERY,
                 health_every: timedelta = HEALTH_EVERY, supervise_agent: bool = True,
                 agent_lost_after: timedelta = fleet.LOST_AFTER) -> None:
        self.vault_path = Path(vault_path)
        self.clock = clock or SystemClock()
        self.vault = Vault.open(self.vault_path)
        self.tick_seconds = tick_seconds
        self.discover_every = discover_every
        self.health_every = health_every
        self.supervise_agent = supervise_agent
        self.agent_lost_after = agent_lost_after
        self.runner = Runner(Executor(self.vault_path, self.clock, self.vault.catalog,
                                      self._host_of), per_server, total,
                             limit_of=self._server_limit, host_of=self._host_of,
                             per_host=per_host)
        self._last_health: datetime | None = None
        self._lock_fd: int | None = None
        self._catalog_lock: contextlib.ExitStack | None = None

    # one scheduler per vault catalog ---------------------------------------------------------
    def acquire(self) -> None:
        """Take both locks, or raise ``serve.already_running`` (this host: with the other
        one's pid) or ``serve.scheduler_elsewhere`` (another host on the shared catalog)."""
        path = self.vault_path / "serve.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise DbsafeError("serve.already_running", pid=pid) from None
        held = contextlib.ExitStack()
        try:
            held.enter_context(self.vault.exclusive("scheduler"))
        except DbsafeError as exc:
            os.close(fd)
            if exc.code != "catalog.busy":
                raise
            raise DbsafeError("serve.scheduler_elsewhere",
                              catalog=self.vault.catalog.describe()["location"]) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd, self._catalog_lock = fd, held

    def release(self) -> None:
        if self._catalog_lock is not None:
            self._catalog_lock.close()
            self._catalog_lock = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # the loop --------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop``; holds the locks (taken here unless the caller
        took them, as ``serve`` does to refuse a second scheduler before it serves)."""
        if self._lock_fd is None:
            self.acquire()
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - the loop must outlive one bad tick
                    log.exception("scheduler tick failed")
                self.clock.wait(self.tick_seconds, stop)
        finally:
            self.runner.join()
            self.release()

    def tick(self) -> list[Work]:
        """One pass; returns the runs it started (or queued)."""
        now = self.clock.now()
        self._supervise_agent()
        run_step(self.vault, "fleet", None,
                 lambda: fleet.watch_agents(self.vault, now, self.agent_lost_after))
        self._discover(now)
        self._check_health(now)
        done = run_step(self.vault, "schedule", None, lambda: self._schedule(now),
                        warnings_of=lambda done: done[1])
        return done[0] if done else []

    def _schedule(self, now: datetime) -> tuple[list[Work], list[str]]:
        """Hand the due runs to the runner; (the runs, warnings: policies in use that are
        missing, whose items are then never scheduled)."""
        from dbsafe.services.inventory import get_policy

        catalog = self.vault.catalog
        users: dict[str, set[str]] = {}
        for item in catalog.list_items():
            if item["policy"]:
                users.setdefault(item["policy"], set()).add(item["server"])
        policies, missing = {}, []
        for name, servers in sorted(users.items()):
            try:
                policies[name] = get_policy(self.vault, name)
            except DbsafeError as exc:
                missing.append(f"policy {name} of the protected databases of "
                               f"{', '.join(sorted(servers))} cannot be read ({exc.message}); "
                               f"nothing of theirs is scheduled: protect them with another "
                               f"policy (`dbsafe protect NAME --all --policy P`)")
        due = due_work(catalog, policies, now, self.runner.busy(), self._job_lost)
        for work in due:
            catalog.claim_slot(work.instance_id, work.policy, work.kind, work.slot.isoformat(),
                               work.attempt)
            log.info("%s: scheduled %s (slot %s, attempt %d)", work.server, work.kind,
                     work.slot.isoformat(), work.attempt)
            self.runner.submit(work)
        return due, missing

    # helpers -----------------------------------------------------------------------------------
    def _job_lost(self, job_id: str | None) -> bool:
        if job_id is None:
            return True  # claimed, then serve stopped before the run started
        if job_id.startswith("skipped"):
            return False
        from dbsafe.services.activity import get_job

        try:
            job = get_job(self.vault.catalog, job_id)
        except DbsafeError:
            return True
        return job["state"] == "failed" and job["error_code"] == "job.abandoned"

    def _server_limit(self, server: str) -> int | None:
        row = self.vault.catalog.get_server(server)
        return row["max_concurrent"] if row else None

    def _host_of(self, server: str) -> str | None:
        """The agent whose host runs ``server``'s work (None: this host's)."""
        row = self.vault.catalog.get_server(server)
        return row.get("agent_id") if row else None

    def _supervise_agent(self) -> None:
        """serve keeps the WAL agent alive: after a reboot or a crash it is started again
        (when a server of this host is in the FULL model: another host's agent archives its
        own servers' WAL)."""
        if not self.supervise_agent:
            return

        def ensure() -> None:
            if any(s["recovery_model"] == "FULL" and self.vault.is_here(s)
                   for s in self.vault.catalog.list_servers()):  # other hosts': their agents
                from dbsafe.engines.postgres import agent_process as daemon

                daemon.ensure_running(self.vault_path, self.vault.repo.config["vault_id"])

        run_step(self.vault, "agent", None, ensure)

    def _discover(self, now: datetime) -> None:
        for name in run_step(self.vault, "discovery", None, lambda: self._to_discover(now)) \
                or []:
            run_step(self.vault, "discovery", name,
                     functools.partial(fleet.discover, self.vault, name, now=now),
                     warnings_of=lambda found: found["warnings"])

    def _to_discover(self, now: datetime) -> list[str]:
        """Servers whose last discovery is older than ``discover_every`` and that have
        something to discover for (protected items, or auto-protection)."""
        due = []
        for server in self.vault.catalog.list_servers():
            last = server.get("discovered")
            if last and now - parse_time(last) < self.discover_every:
                continue
            # a silent agent's server waits until it is back (asked last: it reads the
            # agent's row, and every pass looks at every server)
            if (server.get("auto_protect_policy")
                    or self.vault.catalog.list_items(server["instance_id"])) \
                    and fleet.discovers_now(self.vault, server):
                due.append(server["name"])
        return due

    def _check_health(self, now: datetime) -> None:
        if self._last_health and now - self._last_health < self.health_every:
            return
        self._last_health = now
        from dbsafe.services.operations import check_health, checks_not_run

        run_step(self.vault, "health-check", None, lambda: check_health(self.vault, now),
                 warnings_of=checks_not_run)
