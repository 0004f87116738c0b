"""The WAL spool: a bounded folder on the host that holds WAL files while the repository
cannot be reached, so that ``pg_wal`` does not fill up (PostgreSQL stops when it does).

Why acknowledging a spooled file is sound: a file PostgreSQL cannot archive stays in
``pg_wal``, on this host's disk; a spooled file is on this host's disk too, written and
flushed (``fsync`` of the file and of its folder) before the archive command is answered.
Its only copy is local in both cases; what changes is that the spool is bounded and
compressed and outside ``pg_wal``. The agent copies spooled files into the repository as
soon as it answers again (agent/spooling.py, ``SpoolKeeper.drain``); until then the instants
they cover cannot be restored, and the chain says so (a log backup waits for them). With
``--spool-max-mib 0`` there is no spool: a file is acknowledged only once the repository
holds it, and PostgreSQL keeps it meanwhile.

Layout (docs/wal-spool.md): ``<run folder>/spool/<instance id>/<WAL file name>.zst``, one
zstd frame with its content checksum, the file's mtime kept as the spooled file's. The
folder is root's alone (0700): the clusters' owners cannot plant or read files there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import zstandard

from dbsafe.core.private_files import fsync_folder, write_private
from dbsafe.engines.postgres import wal

SPOOL_LEVEL = 1            # zstd level of a spooled file: WAL compresses well at level 1
FILLING_AT = 0.75          # the share of the bound at which the spool alerts
RESERVE = 256 << 20        # bytes left free on the spool's file system, whatever the bound
_INSTANCE = re.compile(r"^[0-9]{1,18}$")


@dataclass(frozen=True)
class Spooled:
    """One spooled WAL file: the server (by instance id) it belongs to and its name."""

    instance_id: int
    name: str
    path: Path


class WalSpool:
    """The spool of one agent; thread-safe (the socket's threads add, the drain removes)."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._compressor = zstandard.ZstdCompressor(level=SPOOL_LEVEL, write_checksum=True)
        if max_bytes > 0:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        self._used = self._measure()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _measure(self) -> int:
        return sum(s.path.stat().st_size for s in self.pending())

    def used(self) -> int:
        with self._lock:
            return self._used

    def filling(self) -> bool:
        """At or past ``FILLING_AT`` of the bound: time to alert."""
        return self.enabled and self.used() >= FILLING_AT * self.max_bytes

    def put(self, instance_id: int, name: str, data: bytes, mtime: float) -> bool:
        """Keep ``data`` durably; False (nothing written) when the bound or the file
        system's free space (less ``RESERVE``) has no room for it."""
        if not self.enabled:
            return False
        packed = self._compressor.compress(data)
        with self._lock:
            if self._used + len(packed) > self.max_bytes or \
                    shutil.disk_usage(self.folder).free - len(packed) < RESERVE:
                return False
            folder = self.folder / str(instance_id)
            folder.mkdir(mode=0o700, exist_ok=True)
            target = folder / f"{name}.zst"
            replaced = target.stat().st_size if target.exists() else 0
            write_private(target, packed)  # beside it, fsynced, renamed over it
            os.utime(target, (mtime, mtime), follow_symlinks=False)
            fsync_folder(folder)
            fsync_folder(self.folder)
            self._used += len(packed) - replaced
            return True

    def pending(self) -> list[Spooled]:
        """Spooled files, oldest WAL first within each server; only names this module
        writes (anything else in the folder is left alone and never read)."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                if not (_INSTANCE.match(entry.name) and entry.is_dir(follow_symlinks=False)):
                    continue
                for item in os.scandir(entry.path):
                    name = item.name.removesuffix(".zst")
                    if item.name.endswith(".zst") and wal.wal_file_kind(name) is not None \
                            and item.is_file(follow_symlinks=False):
                        found.append(Spooled(int(entry.name), name, Path(item.path)))
        return sorted(found, key=lambda s: (s.instance_id, s.name))

    def read(self, item: Spooled) -> tuple[bytes, float]:
        """(the file's bytes, its mtime); a damaged file raises ``zstandard.ZstdError``."""
        fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            mtime = os.fstat(f.fileno()).st_mtime
            return zstandard.ZstdDecompressor().decompress(f.read()), mtime

    def remove(self, item: Spooled) -> None:
        """The repository holds the file now."""
        with self._lock:
            try:
                size = item.path.stat().st_size
                item.path.unlink()
            except FileNotFoundError:
                return
            self._used -= size

    def status(self) -> dict:
        files = self.pending()
        return {"files": len(files), "bytes": self.used(), "max_bytes": self.max_bytes,
                "servers": sorted({f.instance_id for f in files})}
