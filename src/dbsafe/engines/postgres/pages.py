"""PostgreSQL page checks for backup readers: checksums and page LSNs.

The checksum loop is C (``_pagecheck.c``, built with the package): no maintained library
computes PostgreSQL's page checksum, and the loop must run at memory speed without the
GIL in every reader thread. A numba version was as fast once loaded, but importing numba
held the GIL for most of a second at every backup's start and cost 130 MB of memory; a
numpy version ran at about 350 MB/s and held the GIL between its small array operations.
"""

from __future__ import annotations

from dbsafe.engines.postgres._pagecheck import bad_pages as _bad_pages
from dbsafe.engines.postgres._pagecheck import checksums as _checksums

PAGE_SIZE = 8192


def page_checksums(data: bytes, first_blkno: int) -> list[int]:
    """The checksum PostgreSQL would compute for each whole page of ``data``."""
    raw = _checksums(data, first_blkno)
    return [int.from_bytes(raw[i:i + 2], "little") for i in range(0, len(raw), 2)]


def bad_pages(data: bytes | memoryview, first_blkno: int) -> list[int]:
    """Indexes (within ``data``) of whole pages whose stored checksum is wrong.

    All-zero pages are valid (PostgreSQL's PageIsVerified: a new, never-written page).
    """
    return _bad_pages(data, first_blkno)


def page_lsn(page: bytes | memoryview) -> int:
    hi = int.from_bytes(page[0:4], "little")
    lo = int.from_bytes(page[4:8], "little")
    return (hi << 32) | lo
