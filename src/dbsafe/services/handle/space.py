"""Room in the vault's storage: checked before a write whose size is known, and a full
storage reported as what it is — ``vault.full``, naming where, how much was needed and how
much is free, with a ``vault_full`` alert — never as dbsafe's internal error.

Where the size is known before the work, it is checked first: a WAL file needs at most its
own size (``require``). A backup's is not: what it adds to the vault is what deduplication
and compression leave of what it reads, which only reading tells (an unchanged database's
second full adds almost nothing), and refusing a backup that would have fitted is worse than
stopping one that does not. So a backup runs, and when the storage refuses a write
(storage/local.py turns ENOSPC into ``vault.full``) it stops, drops its unsealed packs and
says how much more it would have needed (``said_by``, ``projected``). The vault's free
space is watched apart from any job (services/operations/monitor.py, ``vault_space_low``).
"""

from __future__ import annotations

from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle.vault_handle import Vault


def require(vault: Vault, need: int, what: str) -> None:
    """``vault.full`` when the vault's storage has less than ``need`` bytes free (a local
    file system; an object store says so only when it refuses a write)."""
    free = vault.repo.storage.free_space()
    if free is not None and free < need:
        raise DbsafeError("vault.full", path=vault.repo.location, what=what, need=need,
                          free=free)


def said_by(exc: DbsafeError, what: str, missing: int = 0) -> DbsafeError:
    """The storage's ``vault.full`` as the work that met it says it: ``what`` was being
    written, and the bytes it still needed (``missing``, at least the refused write's)."""
    need = max(int(exc.details.get("need") or 0), missing)
    return DbsafeError("vault.full", path=exc.details["path"], what=what, need=need,
                       free=exc.details["free"])


def projected(done: int, total: int, stored: int) -> int:
    """Bytes a backup would still have stored: what it had left to read, at the ratio of
    stored to read bytes so far."""
    left = max(0, total - done)
    return left if done <= 0 else int(left * stored / done)
