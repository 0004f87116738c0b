"""Making many freshly written files durable at once.

A restore writes thousands of files; an fsync per file costs a disk flush each. Linux's
``syncfs`` flushes a whole file system in one call (PostgreSQL 16 offers the same choice as
``--sync-method=syncfs``). Asking for writeback of every chunk while writing
(sync_file_range) was measured slower here: the writers are then throttled to the disk's
pace while CPU work is still to do; restore fsyncs only its large files early. Python
has no binding for syncfs, so it is called through libc; where it is missing, every file
is fsynced instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterable

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def sync_trees(folders: Iterable[int]) -> None:
    """Make every file and folder below the open folders ``folders`` (descriptors) durable."""
    if _syncfs is not None:
        seen: set[int] = set()
        for fd in folders:
            dev = os.fstat(fd).st_dev
            if dev in seen:
                continue
            seen.add(dev)
            if _syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
        return
    for top in folders:
        for _path, _dirs, files, dir_fd in os.fwalk(".", dir_fd=top):
            for name in [*files, "."]:
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:  # a tablespace link: its tree is synced
                        continue
                    raise
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
