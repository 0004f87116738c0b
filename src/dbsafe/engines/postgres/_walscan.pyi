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

def blocks_by_relation(refs: Buffer, start_lsn: int, stop_lsn: int, /
                       ) -> dict[tuple[int, int, int], bytes]:
    """The main-fork blocks referenced in [start_lsn, stop_lsn), per relation (spc, db,
    rel): bytes of sorted, distinct native uint32."""

def sorted_unique(data: Buffer, /) -> bytes:
    """Native uint32 values sorted, each once."""

def block_runs(blocks: Buffer, start: int, stop: int, /) -> list[tuple[int, int]]:
    """Runs (first - start, count) of sorted, distinct uint32 ``blocks`` in [start, stop)."""
