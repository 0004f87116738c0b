"""What one scheduled run does: a backup (turned into a full when the chain needs it),
then retention, the purge of soft-deleted points and garbage collection; or a restore
drill. Every run is an ordinary job with trigger "scheduled"; a run that fails before its
job could start (the server is down) is recorded as a failed job all the same, so its alert
is raised; the steps after a backup record their own failures (scheduler/steps.py).

Each run opens the vault afresh: the block index it deduplicates against is then read after
any garbage collection that ran since (a long-lived index could point at swept packs). A run
an agent does (its server's host has one) uses the scheduler's catalog: this process only
follows the agent's job, and a catalog of its own per run held two connections for nothing
(40 runs at once took 97 of PostgreSQL's 100).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from dbsafe.catalog.base import Catalog
from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow
from dbsafe.scheduler.clock import Clock
from dbsafe.scheduler.due import Work
from dbsafe.scheduler.steps import run_step
from dbsafe.services.activity import job_started, record_job
from dbsafe.services.handle import Vault

log = logging.getLogger("dbsafe.scheduler")
# Refusals that mean "this item cannot take this type now": skipped with a warning on the
# items, not failed (the seed: scheduled log backups under SIMPLE are skipped).
SKIP_CODES = ("backup.log_simple", "backup.archiving_inactive", "backup.read_only_db")
# Refusals that mean "a run of this kind is going on": the running one covers the slot.
BUSY_CODES = ("backup.already_running", "drill.already_running")


class Executor:
    def __init__(self, vault_path: Path, clock: Clock, catalog: Catalog | None = None,
                 host_of: Callable[[str], str | None] = lambda server: None) -> None:
        """``catalog``: the scheduler's, for the runs of agents' servers (``host_of``)."""
        self.vault_path = vault_path
        self.clock = clock
        self.catalog = catalog
        self.host_of = host_of

    def __call__(self, work: Work) -> None:
        shared = self.catalog if self.catalog is not None and \
            self.host_of(work.server) is not None else None
        vault = Vault.open(self.vault_path, catalog=shared)
        try:
            if work.kind == "drill":
                self._drill(vault, work)
            else:
                self._backup(vault, work)
        finally:
            if shared is None:
                vault.catalog.close()

    def _backup(self, vault: Vault, work: Work) -> None:
        from dbsafe.services import backup, fleet
        from dbsafe.services.inventory import get_policy, get_server

        with Attempt(vault, work) as attempt:
            server = get_server(vault, work.server)
            get_policy(vault, work.policy)  # a slot of a policy deleted since: a failed job
            kind, reason = backup.effective_type(vault, server, work.kind, self.clock.now())
            attempt.backup_type, attempt.reason = kind, reason
            if kind == "diff":
                self._warn_read_only(vault, server)
            # compressed as the instance's policy says, as every backup is
            result = fleet.take_backup(vault, backup.BackupRequest(
                work.server, kind, trigger="scheduled", reason=reason))
        if attempt.ended:
            return
        vault.catalog.set_slot_job(work.instance_id, work.policy, work.kind, result["job_id"])
        self._clear_warnings(vault, server, work.kind)
        self._maintain(vault, work.server)

    def _maintain(self, vault: Vault, name: str) -> None:
        """After a scheduled backup: retention of its server, the purge of soft-deleted
        points whose time is up, and garbage collection when either deleted something
        (packs a running writer may still use wait for the next run)."""
        from dbsafe.services.lifecycle import apply_retention, purge_due, run_gc

        now = self.clock.now()
        pruned = run_step(vault, "retention", name, lambda: apply_retention(vault, name, now),
                          warnings_of=_retention_warnings) or {}
        purged = run_step(vault, "purge", None, lambda: purge_due(vault, now)) or {}
        if pruned.get("expired") or (pruned.get("wal") or {}).get("wal_files_deleted") \
                or purged.get("purged"):
            run_step(vault, "gc", None, lambda: run_gc(vault))

    def _drill(self, vault: Vault, work: Work) -> None:
        from dbsafe.services.fleet import run_drill  # on the server's agent, if it has one

        with Attempt(vault, work) as attempt:
            row = run_drill(vault, work.server)
        if not attempt.ended:
            vault.catalog.set_slot_job(work.instance_id, work.policy, work.kind,
                                       row["job_id"])

    @staticmethod
    def _warn_read_only(vault: Vault, server: dict) -> None:
        """A read-only database takes no differential (the seed): it is restored from its
        full; the instance's differential carries its unchanged files by reference."""
        protected = set(vault.catalog.list_protected(server["instance_id"]))
        for db in vault.catalog.list_databases(server["instance_id"]):
            if db["name"] in protected and db["read_only"]:
                vault.catalog.set_item(
                    server["instance_id"], db["name"],
                    warning="scheduled differential skipped: read-only databases take full "
                            "and copy-only backups only (restored from the latest full)")

    @staticmethod
    def _clear_warnings(vault: Vault, server: dict, kind: str) -> None:
        for item in vault.catalog.list_items(server["instance_id"]):
            if (item["warning"] or "").startswith(f"scheduled {kind} backup skipped"):
                vault.catalog.set_item(server["instance_id"], item["name"], warning=None)


def _retention_warnings(result: dict) -> list[str]:
    return [f"retention did not run: {result['skipped']}"] if result.get("skipped") else []


class Attempt:
    """One scheduled backup or drill: notes the jobs it starts (the slot names the first
    at once); an error ends it, as a job that failed (the one it started, or one recorded
    now with the error: a backup of a server that is down fails before its job exists)
    whose hook raises ``backup_failed`` or ``drill_failed``, and the slot names that job.
    A refusal in ``SKIP_CODES`` or ``BUSY_CODES`` only skips the slot. ``ended`` tells the
    caller to stop there."""

    def __init__(self, vault: Vault, work: Work) -> None:
        self.vault = vault
        self.work = work
        self.backup_type: str | None = None if work.kind == "drill" else work.kind
        self.reason: str | None = None
        self.started = utcnow()
        self.jobs: list[str] = []
        self.ended = False

    def __enter__(self) -> Attempt:
        self._token = job_started.set(self._started)
        return self

    def _started(self, job_id: str) -> None:
        """The slot names the run's first job as soon as it exists: a job queued for an
        agent goes on while this process restarts, and a slot naming no job would look
        lost to the next scheduler, which would run it again."""
        self.jobs.append(job_id)
        if len(self.jobs) == 1:
            self.vault.catalog.set_slot_job(self.work.instance_id, self.work.policy,
                                            self.work.kind, job_id)

    def __exit__(self, exc_type, exc, tb) -> bool:
        job_started.reset(self._token)
        if not isinstance(exc, Exception):
            return False
        self.ended = True
        work, catalog = self.work, self.vault.catalog
        what = "drill" if work.kind == "drill" else f"{self.backup_type} backup"
        if isinstance(exc, DbsafeError) and exc.code in SKIP_CODES + BUSY_CODES:
            _skip(self.vault, work, exc)
            return True
        if isinstance(exc, DbsafeError):
            log.warning("%s: scheduled %s failed: [%s] %s", work.server, what, exc.code,
                        exc.message)
        else:  # a bug: the traceback to the log, one line to the job and its alert
            log.exception("%s: scheduled %s failed", work.server, what)
        job_id = self.jobs[0] if self.jobs else record_job(
            catalog, "drill" if work.kind == "drill" else "backup", work.server,
            started=self.started, error=exc, backup_type=self.backup_type,
            reason=self.reason)
        catalog.set_slot_job(work.instance_id, work.policy, work.kind, job_id)
        return True


def _skip(vault: Vault, work: Work, exc: DbsafeError) -> None:
    note = f"scheduled {work.kind} backup skipped: {exc.message}"
    log.warning("%s: %s", work.server, note)
    vault.catalog.set_slot_job(work.instance_id, work.policy, work.kind,
                               f"skipped: {exc.code}")
    if exc.code not in BUSY_CODES:
        for name in vault.catalog.list_protected(work.instance_id):
            vault.catalog.set_item(work.instance_id, name, warning=note)
