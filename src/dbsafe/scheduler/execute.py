"""What one scheduled run does: a backup (turned into a full when the chain needs it),
then retention; or a restore drill. Every run is an ordinary job with trigger "scheduled".

Each run opens the vault afresh: the block index it deduplicates against is then read after
any garbage collection that ran since (a long-lived index could point at swept packs).
"""

from __future__ import annotations

import logging
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.scheduler.clock import Clock
from dbsafe.scheduler.due import Work
from dbsafe.services.vault import Vault

log = logging.getLogger("dbsafe.scheduler")
# Refusals that mean "this item cannot take this type now": skipped with a warning on the
# items, not failed (the seed: scheduled log backups under SIMPLE are skipped).
SKIP_CODES = ("backup.log_simple", "backup.archiving_inactive", "backup.read_only_db")


class Executor:
    def __init__(self, vault_path: Path, clock: Clock) -> None:
        self.vault_path = vault_path
        self.clock = clock

    def __call__(self, work: Work) -> None:
        vault = Vault.open(self.vault_path)
        try:
            if work.kind == "drill":
                self._drill(vault, work)
            else:
                self._backup(vault, work)
        finally:
            vault.catalog.close()

    def _backup(self, vault: Vault, work: Work) -> None:
        from dbsafe.services import healing
        from dbsafe.services.backup import run_backup
        from dbsafe.services.log_backup import run_log_backup
        from dbsafe.services.retention import apply_retention
        from dbsafe.services.servers import get_server
        from dbsafe.services.softdelete import purge_due

        server = get_server(vault, work.server)
        kind, reason = healing.effective_type(vault, server, work.kind, self.clock.now())
        if kind == "diff":
            self._warn_read_only(vault, server)
        try:
            if kind == "log":
                result = run_log_backup(vault, work.server, trigger="scheduled", reason=reason)
            else:  # compressed as the instance's policy says, as every backup is
                result = run_backup(vault, work.server, kind, trigger="scheduled",
                                    reason=reason)
        except DbsafeError as exc:
            if exc.code == "backup.already_running" or exc.code in SKIP_CODES:
                self._skip(vault, work, exc)
                return
            job = self._latest_job(vault, work.server, kind)
            if job:
                vault.catalog.set_slot_job(work.instance_id, work.policy, work.kind, job)
            raise
        vault.catalog.set_slot_job(work.instance_id, work.policy, work.kind, result["job_id"])
        self._clear_warnings(vault, server, work.kind)
        pruned = apply_retention(vault, work.server, self.clock.now())
        purged = purge_due(vault, self.clock.now())  # soft-deleted points whose time is up
        if pruned.get("expired") or (pruned.get("wal") or {}).get("wal_files_deleted") \
                or purged["purged"]:
            from dbsafe.services.prune import run_gc

            run_gc(vault)  # packs a running writer may still use wait for the next run

    def _drill(self, vault: Vault, work: Work) -> None:
        from dbsafe.services.drills import run_drill

        try:
            row = run_drill(vault, work.server)
        except DbsafeError:
            job = self._latest_job(vault, work.server, None, type="drill")
            if job:
                vault.catalog.set_slot_job(work.instance_id, work.policy, work.kind, job)
            raise
        job = row.get("job_id") or self._latest_job(vault, work.server, None, type="drill")
        vault.catalog.set_slot_job(work.instance_id, work.policy, work.kind, job or "drill")

    @staticmethod
    def _latest_job(vault: Vault, server: str, backup_type: str | None,
                    type: str = "backup") -> str | None:
        rows = vault.catalog.list_jobs(1, server=server, type=type, backup_type=backup_type,
                                       trigger="scheduled")
        return rows[0]["id"] if rows else None

    @staticmethod
    def _skip(vault: Vault, work: Work, exc: DbsafeError) -> None:
        note = f"scheduled {work.kind} backup skipped: {exc.message}"
        log.warning("%s: %s", work.server, note)
        vault.catalog.set_slot_job(work.instance_id, work.policy, work.kind,
                                   f"skipped: {exc.code}")
        if exc.code != "backup.already_running":
            for name in vault.catalog.list_protected(work.instance_id):
                vault.catalog.set_item(work.instance_id, name, warning=note)

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
