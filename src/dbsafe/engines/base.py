"""What every engine hands the services: files to copy, read block by block.

The services run the parallel copy loop and the vault; the engine only says which files
make up a backup and how to read one block of one of them safely.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple

from dbsafe.core.regular_files import NotRegularFile, open_regular


class SourceFile(NamedTuple):
    """One file to back up. ``path`` is relative to the data directory and uses '/'.
    Immutable (what the walk saw stays what it saw), and a tuple: a walk makes one per file,
    600,000 on a server of 2,000 databases, and a frozen dataclass costs three times as much
    to make (1.6 against 0.5 µs)."""

    path: str
    abspath: str
    size: int
    mode: int
    mtime: float
    paged: bool = False  # holds 8 KiB pages with checksums (a relation segment)
    first_page: int = 0  # block number of its first page (segment number x pages per segment)
    identity: tuple[int, int] | None = None  # (device, inode) the walk saw
    owner: int | None = None  # uid owning the data directory, when identity is given

    def open(self) -> int:
        """A read-only descriptor of this file, refused (``NotRegularFile``) unless it is
        a regular file reached without a link at its last component and, when the walk
        recorded it, the very file the walk saw, or one the data directory's owner put in
        its place (PostgreSQL renames a few files over older ones, e.g. at checkpoints).
        So a file swapped for a link, a FIFO or another folder's file after the walk never
        makes root read what is not the cluster's. Readers stay within ``size``.
        ``FileNotFoundError`` when it is gone (a dropped relation)."""
        fd, st = open_regular(self.abspath)
        if self.identity is not None and (st.st_dev, st.st_ino) != self.identity \
                and st.st_uid != self.owner:
            os.close(fd)
            raise NotRegularFile(self.abspath, f"it was replaced since the backup listed it, "
                                 f"by a file of uid {st.st_uid}, not the data directory's "
                                 f"owner's")
        return fd


@dataclass
class BlockRead:
    """The bytes of one block, with any corrupt pages found while reading it.

    A differential's read also says which pages of ``data`` to keep: ``pages`` holds runs
    ``(first page index within data, count)``; None means the whole block.
    """

    data: bytes
    corrupt_pages: list[int] = field(default_factory=list)
    pages: list[tuple[int, int]] | None = None
