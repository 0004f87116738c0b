"""Types of the WAL segment scanner C extension (_walscan.c)."""

from typing import Any

from typing_extensions import Buffer

def scan_segment(
    data: Buffer, segment_lsn: int, /
) -> tuple[int, int | None, int | None, int, int, list[tuple[bytes, int, int]]]:
    """(end_lsn, first_xact_time, last_xact_time, xacts, switched, [(name, time, lsn)])."""

def block_references(data: Buffer, segment_lsn: int, next: Buffer = ..., /
                     ) -> dict[str, Any]:
    """With ``next`` (the next segment's bytes), a record crossing into it is read whole,
    none starting there is read.
    {magic, end_lsn, unfinished_lsn, continued, records, undecoded, switched, refs (packed
    ``<QIIIII``: lsn, spc, db, rel, fork, block), main_data [(lsn, rmid, info, bytes)]}."""
