"""WAL file names, LSNs, timeline history files, and what a segment holds.

Names follow PostgreSQL (src/include/access/xlog_internal.h): a segment is
``TTTTTTTTXXXXXXXXYYYYYYYY`` (timeline, then the segment number split in two), a timeline
history file is ``TTTTTTTT.history``, a backup history file ``<segment>.XXXXXXXX.backup``,
and a promoted server's last segment of the old timeline may come as ``<segment>.partial``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import overload

from dbsafe.engines.postgres._walscan import block_references, scan_segment

SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")
PARTIAL = re.compile(r"^[0-9A-F]{24}\.partial$")
BACKUP_HISTORY = re.compile(r"^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")
WAL_FILE_KINDS = (("segment", SEGMENT), ("history", HISTORY), ("partial", PARTIAL),
                  ("backup", BACKUP_HISTORY))
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def parse_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def wal_segment_name(timeline: int, lsn: int, segment_size: int) -> str:
    return segment_file_name(timeline, lsn // segment_size, segment_size)


def segment_file_name(timeline: int, segno: int, segment_size: int) -> str:
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


LONG_PAGE_HEADER = 40  # XLogLongPageHeaderData: a segment's first page header
WAL_PAGE = 8192  # XLOG_BLCKSZ: WAL is written in pages of this size


def record_segments(start_lsn: int, stop_lsn: int, segment_size: int) -> range:
    """The segments holding a record that starts in ``[start_lsn, stop_lsn)``: none starts
    in a segment's first ``LONG_PAGE_HEADER`` bytes, so a range ending there (a position
    just after a segment switch) does not need that segment, which may not be written
    yet."""
    last = max(start_lsn, stop_lsn - 1 - LONG_PAGE_HEADER)
    return range(start_lsn // segment_size, last // segment_size + 1)


def parse_segment_name(name: str, segment_size: int) -> tuple[int, int] | None:
    """(timeline, segment number) of a segment file name, or None for other WAL files."""
    m = SEGMENT.match(name)
    if not m:
        return None
    per_id = 0x100000000 // segment_size
    return int(m.group(1), 16), int(m.group(2), 16) * per_id + int(m.group(3), 16)


def wal_file_kind(name: str) -> str | None:
    """"segment", "history", "partial" or "backup" for a name PostgreSQL gives a file it
    archives; None for any other name."""
    for kind, pattern in WAL_FILE_KINDS:
        if pattern.match(name):
            return kind
    return None


@overload
def pg_time(microseconds: int) -> datetime: ...
@overload
def pg_time(microseconds: None) -> None: ...
@overload
def pg_time(microseconds: int | None) -> datetime | None: ...
def pg_time(microseconds: int | None) -> datetime | None:
    """A PostgreSQL TimestampTz (microseconds since 2000-01-01 UTC) as an aware datetime."""
    if microseconds is None:
        return None
    return PG_EPOCH + timedelta(microseconds=microseconds)


@dataclass
class SegmentFacts:
    end_lsn: int                      # where valid WAL in the segment ends
    first_xact_time: datetime | None  # first commit/abort record's timestamp
    last_xact_time: datetime | None   # last one: recovery to a time needs one after it
    xacts: int
    switched: bool                    # ends with a WAL switch record
    restore_points: list[dict] = field(default_factory=list)


def scan(data: bytes, segno: int, segment_size: int) -> SegmentFacts:
    end, first, last, xacts, switched, points = scan_segment(data, segno * segment_size)
    return SegmentFacts(end, pg_time(first), pg_time(last), xacts, bool(switched), [
        {"name": name.rstrip(b"\0").decode("utf-8", "replace"),
         "time": pg_time(t).isoformat(), "lsn": format_lsn(lsn)} for name, t, lsn in points])


FORKS = ("main", "fsm", "vm", "init")
_REF = struct.Struct("<QIIIII")


@dataclass(frozen=True)
class BlockRef:
    """One block a WAL record changes: the record's LSN, the relation (tablespace, database,
    relfilenumber), the fork (0 main, 1 fsm, 2 vm, 3 init) and the block number."""

    lsn: int
    spc: int
    db: int
    rel: int
    fork: int
    block: int


@dataclass
class SegmentChanges:
    """What a segment's records change (docs/change-map.md): the blocks they name
    (``packed_refs``, ``<QIIIII`` each: lsn, spc, db, rel, fork, block; ``refs`` unpacks
    them), and the main data of the records that create, cut or drop files, to be read by
    the change map. ``undecoded`` records made no sense: a map that needs this segment is
    unusable. ``unfinished_lsn``: a record that goes on in the next segment (not read
    here); ``continued``: bytes at the start that end a record of the previous one."""

    end_lsn: int
    records: int
    undecoded: int
    unfinished_lsn: int | None
    continued: int
    switched: bool
    packed_refs: bytes
    main_data: list[tuple[int, int, int, bytes]]  # (lsn, resource manager, info, data)
    magic: int  # the pages' XLOG_PAGE_MAGIC: which major wrote them

    @property
    def refs(self) -> list[BlockRef]:
        return [BlockRef(*ref) for ref in _REF.iter_unpack(self.packed_refs)]


def changes(data: bytes, segno: int, segment_size: int, following: bytes | None = None
            ) -> SegmentChanges:
    """The changes of the records that start in segment ``segno``; with ``following``
    (the next segment's bytes), a record that crosses into it is read whole."""
    found = (block_references(data, segno * segment_size) if following is None
             else block_references(data, segno * segment_size, following))
    return SegmentChanges(
        found["end_lsn"], found["records"], found["undecoded"], found["unfinished_lsn"],
        found["continued"], bool(found["switched"]), found["refs"], found["main_data"],
        found["magic"])


@dataclass(frozen=True)
class FileEvent:
    """A change of files that names no block (docs/change-map.md, *What counts as a
    change*): ``kind`` is create, truncate (``blocks``: the size it was cut to), database
    copy (a directory copied file by file), database create (its blocks follow as block
    references), database drop, tablespace create or tablespace drop. ``spc``/``db`` name
    the directory; ``rel``/``fork`` the relation fork for create and truncate;
    ``truncated_forks``: the forks a truncate cut (main, fsm, vm)."""

    lsn: int
    kind: str
    spc: int = 0
    db: int = 0
    rel: int = 0
    fork: int = 0
    blocks: int = 0
    truncated_forks: tuple[int, ...] = ()


RM_SMGR, RM_DBASE, RM_TBLSPC = 2, 4, 5
_SMGR_CREATE, _SMGR_TRUNCATE = 0x10, 0x20
_TRUNCATE_FLAGS = ((0x1, 0), (0x4, 1), (0x2, 2))  # SMGR_TRUNCATE_HEAP, _FSM, _VM: fork
# XLOG_PAGE_MAGIC of the majors whose records changed: 13 (a drop of a database names all
# its tablespaces in one record), 15 (CREATE DATABASE got two records)
_MAGIC_PG13, _MAGIC_PG15 = 0xD106, 0xD110


def file_events(found: SegmentChanges) -> list[FileEvent]:
    """The file events of a segment's storage, database and tablespace records; ValueError
    for one whose main data is not the expected size (the map is then unusable)."""
    events: list[FileEvent] = []
    for lsn, rmid, info, data in found.main_data:
        events += _file_events(lsn, rmid, info & 0xF0, data, found.magic)
    return events


def _file_events(lsn: int, rmid: int, op: int, data: bytes, magic: int) -> list[FileEvent]:
    def oids(count: int) -> tuple[int, ...]:
        if len(data) < 4 * count:
            raise ValueError(f"a record at {format_lsn(lsn)} is too short ({len(data)} bytes)")
        return struct.unpack_from(f"<{count}I", data)

    if rmid == RM_SMGR and op == _SMGR_CREATE:  # xl_smgr_create: locator, fork
        spc, db, rel, fork = oids(4)
        return [FileEvent(lsn, "create", spc, db, rel, fork)]
    if rmid == RM_SMGR and op == _SMGR_TRUNCATE:  # xl_smgr_truncate: blkno, locator, flags
        blocks, spc, db, rel, flags = oids(5)
        return [FileEvent(lsn, "truncate", spc, db, rel, 0, blocks,
                          tuple(fork for flag, fork in _TRUNCATE_FLAGS if flags & flag))]
    if rmid == RM_DBASE:
        # 15 and later: 0x00 a directory copied, 0x10 one created empty (WAL_LOG), 0x20 a
        # drop; before 15: 0x00 copied, 0x10 a drop
        pg15 = magic >= _MAGIC_PG15
        if op == (0x20 if pg15 else 0x10):
            if magic < _MAGIC_PG13:  # xl_dbase_drop_rec: database, one tablespace
                db, spc = oids(2)
                return [FileEvent(lsn, "database drop", spc, db)]
            # from 13: database, count, the tablespaces it had files in
            db, count = oids(2)
            return [FileEvent(lsn, "database drop", spc, db) for spc in oids(2 + count)[2:]]
        if op == 0x00 or (pg15 and op == 0x10):  # xl_dbase_create_*_rec: db, tablespace
            db, spc = oids(2)
            return [FileEvent(lsn, "database copy" if op == 0x00 else "database create",
                              spc, db)]
        return []
    if rmid == RM_TBLSPC and op in (0x00, 0x10):  # xl_tblspc_create_rec / _drop_rec: oid
        (spc,) = oids(1)
        return [FileEvent(lsn, "tablespace create" if op == 0x00 else "tablespace drop",
                          spc)]
    return []


@dataclass(frozen=True)
class TimelineSwitch:
    parent: int        # the timeline we came from
    switch_lsn: int    # where the child timeline branched off the parent


def parse_history(text: str) -> list[TimelineSwitch]:
    """The ancestors of a timeline from its history file, oldest first.

    Each line is ``parentTLI <tab> switchpoint <tab> reason``; comments start with '#'.
    """
    switches = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        switches.append(TimelineSwitch(int(parts[0]), parse_lsn(parts[1])))
    return switches
