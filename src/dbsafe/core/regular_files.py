"""Opening, as root, a file someone else may have planted: only a regular file, never
through a symbolic link, never blocking.

The ``postgres`` OS user owns the data directory and pg_wal, so it can put a symbolic link
(to /etc/shadow, to /dev/zero), a FIFO or a device where dbsafe expects a PostgreSQL file.
``open_regular`` opens with ``O_NOFOLLOW`` (a link at the last component fails) and
``O_NONBLOCK`` (a FIFO without a writer opens at once instead of blocking forever), then
``fstat``s what it opened and refuses anything but a regular file. Callers cap how much
they read (a regular file can still grow while it is read).
"""

from __future__ import annotations

import errno
import os
import stat

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotRegularFile(Exception):
    """What was found is not a regular file (``reason`` says what it is)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """An open file descriptor of ``path`` and its ``fstat``; raises ``NotRegularFile``
    for anything else, and ``FileNotFoundError`` when nothing is there."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(path, "it is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(path, f"it is {kind_of(st.st_mode)}, not a regular file")
    return fd, st


def read_regular(path: str, cap: int) -> tuple[bytes, os.stat_result]:
    """The whole of a regular file (``open_regular``) and its ``fstat``, when it holds at
    most ``cap`` bytes (it may grow while it is read); else ``NotRegularFile``."""
    fd, st = open_regular(path)
    try:
        chunks: list[bytes] = []
        total = 0
        while st.st_size <= cap and total <= cap:
            chunk = os.read(fd, min(cap + 1 - total, 1 << 24))
            if not chunk:
                return b"".join(chunks), st
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    raise NotRegularFile(path, f"it is larger than {cap} bytes")


def read_head(path: str, size: int) -> bytes:
    """The first ``size`` bytes (fewer when it is shorter) of a regular file
    (``open_regular``): the start of a large file that may not need reading whole."""
    fd, _ = open_regular(path)
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


SMALL_FILE = 64 << 10


def read_small(path: str, cap: int = SMALL_FILE) -> str:
    """The text of a small file another user writes (PG_VERSION, postmaster.pid): a
    regular file of at most ``cap`` bytes, else ``NotRegularFile``; ``FileNotFoundError``
    when there is none. A link to /dev/zero or a FIFO in its place never stalls dbsafe."""
    return read_regular(path, cap)[0].decode(errors="replace")
