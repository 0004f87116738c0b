"""Types of the page-checksum C extension (_pagecheck.c)."""

from typing_extensions import Buffer

def checksums(data: Buffer, first_blkno: int, /) -> bytes:
    """uint16 checksums of each whole page, as bytes (native order)."""

def bad_pages(data: Buffer, first_blkno: int, /) -> list[int]:
    """Indexes of the pages whose stored checksum is wrong."""
