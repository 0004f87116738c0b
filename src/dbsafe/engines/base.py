"""What every engine hands the services: files to copy, read block by block.

The services run the parallel copy loop and the vault; the engine only says which files
make up a backup and how to read one block of one of them safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceFile:
    """One file to back up. ``path`` is relative to the data directory and uses '/'."""

    path: str
    abspath: str
    size: int
    mode: int
    mtime: float
    paged: bool = False  # holds 8 KiB pages with checksums (a relation segment)
    first_page: int = 0  # block number of its first page (segment number x pages per segment)


@dataclass
class BlockRead:
    """The bytes of one block, with any corrupt pages found while reading it.

    A differential's read also says which pages of ``data`` to keep: ``pages`` holds runs
    ``(first page index within data, count)``; None means the whole block.
    """

    data: bytes
    corrupt_pages: list[int] = field(default_factory=list)
    pages: list[tuple[int, int]] | None = None
