"""The local side of a copy-on-write file: the 8 KiB pages written since the mount.

A file of the point that PostgreSQL writes to gets a sparse local file of its size; a page
it writes is first copied up whole from the point (unless the write covers it), then
written here, and from then on read from here. ``pages`` says which pages are local;
``base_limit`` is where the point's bytes stop counting (a truncation cut them: past it the
file reads zeros until written again). A file made after the mount has no point under it
and lives here alone (``pages`` unused).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PAGE = 8192  # PostgreSQL's page: the unit of a copy-up


class LocalPages:
    def __init__(self, path: Path, size: int, base_size: int) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600)
        os.ftruncate(self.fd, size)
        self.size = size
        self.base_limit = base_size
        self.pages: set[int] = set()

    @property
    def stored(self) -> int:
        """Bytes this file takes on the local disk."""
        return os.fstat(self.fd).st_blocks * 512

    def pages_to_copy_up(self, off: int, length: int) -> list[int]:
        """The pages a write of ``length`` bytes at ``off`` changes only in part and whose
        bytes still come from the point: they are copied up before the write."""
        if length <= 0:
            return []
        first, last = off // PAGE, (off + length - 1) // PAGE
        out = []
        for page in {first, last}:
            if page in self.pages or page * PAGE >= self.base_limit:
                continue
            whole = off <= page * PAGE and off + length >= (page + 1) * PAGE
            if not whole:
                out.append(page)
        return sorted(out)

    def put_page(self, page: int, data: bytes) -> None:
        os.pwrite(self.fd, data[:PAGE], page * PAGE)
        self.pages.add(page)

    def write(self, off: int, data: bytes, track: bool) -> None:
        os.pwrite(self.fd, data, off)
        if track and data:
            self.pages.update(range(off // PAGE, (off + len(data) - 1) // PAGE + 1))
        self.size = max(self.size, off + len(data))

    def read(self, off: int, length: int) -> bytes:
        data = os.pread(self.fd, length, off)
        return data if len(data) == length else data + bytes(length - len(data))

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        if size < self.size:
            self.base_limit = min(self.base_limit, size)
            end = -(-size // PAGE)
            self.pages = {p for p in self.pages if p < end}
        self.size = size

    def close(self, remove: bool = False) -> None:
        os.close(self.fd)
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
