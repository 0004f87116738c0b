"""Making many freshly written files durable at once.

A restore writes thousands of files; an fsync per file costs a disk flush each. Linux's
``syncfs`` flushes a whole file system in one call (PostgreSQL 16 offers the same choice as
``--sync-method=syncfs``). Python has no binding for it, so it is called through libc;
where it is missing, every file is fsynced instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterable
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now, without waiting for it.

    PostgreSQL does the same (pg_flush_data): the disk works while we keep writing, and
    the final sync finds little left to do. A no-op where sync_file_range is missing.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def sync_trees(roots: Iterable[Path]) -> None:
    """Make every file and folder under ``roots`` durable."""
    roots = [Path(r) for r in roots]
    if _syncfs is not None:
        seen: set[int] = set()
        for root in roots:
            dev = os.stat(root).st_dev
            if dev in seen:
                continue
            seen.add(dev)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err), str(root))
            finally:
                os.close(fd)
        return
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in [*files, "."]:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
