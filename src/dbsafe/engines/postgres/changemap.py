"""Change maps: which pages of which relation files the WAL between two LSNs changes.

docs/change-map.md says what counts as a change and why the map of ``[base start, this
backup's start)`` is enough for a differential. Built here from WAL segments in order
(wal.block_references: every record's block references, and the file events of the
records that create, cut or drop files); a segment the map cannot vouch for raises
``Unusable`` with the reason, and the differential falls back to its page-LSN scan: a
map is never silently partial.

Block numbers are kept per relation as sorted arrays of uint32, sorted and merged in C
(_walscan.c): the WAL of a busy hour names millions of blocks, a Python set of them would
cost ~70 bytes each, and numpy's import cost every differential ~0.08 s of its start.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from dbsafe.engines.postgres import _walscan
from dbsafe.engines.postgres.files import RELATION_FILE
from dbsafe.engines.postgres.wal import (
    SegmentChanges,
    changes,
    file_events,
    format_lsn,
    segment_file_name,
)

GLOBAL_TABLESPACE, DEFAULT_TABLESPACE = 1664, 1663
MAIN_FORK = 0

Relation = tuple[int, int, int]  # (tablespace, database, relfilenumber)
BLOCKS = "I"  # a relation's block numbers: sorted, each once, native uint32
assert array(BLOCKS).itemsize == 4, "the C helpers read the block numbers as uint32"


class Unusable(Exception):  # noqa: N818 - a reason, not a failure: the caller falls back
    """The WAL of the range cannot say which pages changed; ``str()`` says why."""


@dataclass
class ChangeMap:
    """The main-fork pages changed in ``[start_lsn, stop_lsn)``, and the files to read
    whole: relations created in the range (``whole``), databases created or copied
    (``whole_databases``), tablespaces created (``whole_tablespaces``). ``truncated``: the
    smallest size in blocks a relation was cut to (pages from there on are read)."""

    start_lsn: int
    stop_lsn: int
    blocks: dict[Relation, array] = field(default_factory=dict)
    whole: set[Relation] = field(default_factory=set)
    truncated: dict[Relation, int] = field(default_factory=dict)
    whole_databases: set[tuple[int, int]] = field(default_factory=set)
    whole_tablespaces: set[int] = field(default_factory=set)
    segments: list[str] = field(default_factory=list)
    records: int = 0

    def pages(self, path: str, first_page: int, pages: int, base_pages: int
              ) -> list[tuple[int, int]] | None:
        """Runs ``(first, count)`` of the pages of a main-fork segment file to read: those
        the map names, and those past the base's copy (``base_pages``) or past where a
        truncation cut the relation. None: read the file whole (created in the range, or a
        path the map cannot place)."""
        rel = relation_of(path)
        if rel is None or rel in self.whole or rel[:2] in self.whole_databases \
                or rel[0] in self.whole_tablespaces:
            return None
        tail = base_pages
        cut = self.truncated.get(rel)
        if cut is not None:
            tail = min(tail, max(0, cut - first_page))
        named = self.blocks.get(rel)
        runs = [] if named is None else \
            _walscan.block_runs(named, first_page, first_page + min(pages, tail))
        if tail < pages:  # every named page lies before the tail
            if runs and sum(runs[-1]) == tail:
                runs[-1] = (runs[-1][0], pages - runs[-1][0])
            else:
                runs.append((tail, pages - tail))
        return runs

    def touches(self, path: str) -> bool:
        """Whether the map names any change of the relation whose main fork is at ``path``
        (True for a path it cannot place)."""
        rel = relation_of(path)
        return rel is None or rel in self.blocks or rel in self.truncated \
            or rel in self.whole or rel[:2] in self.whole_databases \
            or rel[0] in self.whole_tablespaces

    def describe(self) -> dict:
        return {"start_lsn": format_lsn(self.start_lsn), "stop_lsn": format_lsn(self.stop_lsn),
                "first_segment": self.segments[0] if self.segments else None,
                "last_segment": self.segments[-1] if self.segments else None,
                "segments": len(self.segments), "records": self.records,
                "relations": len(self.blocks),
                "blocks": sum(len(b) for b in self.blocks.values())}


def relation_of(path: str) -> Relation | None:
    """(tablespace, database, relfilenumber) of a main-fork file's path in the data
    directory: ``global/R``, ``base/D/R[.N]``, ``pg_tblspc/S/<version>/D/R[.N]``."""
    parts = path.split("/")
    m = RELATION_FILE.match(parts[-1])
    if m is None or m.group(3) is not None:
        return None
    rel = int(m.group(1))
    if parts[0] == "global" and len(parts) == 2:
        return GLOBAL_TABLESPACE, 0, rel
    if parts[0] == "base" and len(parts) == 3 and parts[1].isdigit():
        return DEFAULT_TABLESPACE, int(parts[1]), rel
    if parts[0] == "pg_tblspc" and len(parts) == 5 and parts[1].isdigit() \
            and parts[3].isdigit():
        return int(parts[1]), int(parts[3]), rel
    return None


def block_numbers(values: bytes | array) -> array:
    """Block numbers (native uint32 values, any order, repeats allowed) sorted, each once."""
    return array(BLOCKS, _walscan.sorted_unique(values))


def from_summaries(rows: list[tuple[int, int, int, int, int, bool]], start_lsn: int,
                   stop_lsn: int) -> ChangeMap:
    """The map of PostgreSQL 17's own WAL summaries (engines/postgres/summaries.py): rows
    (relfilenode, tablespace, database, fork, block, is_limit_block) of ranges that cover
    ``[start_lsn, stop_lsn)``, maybe more. A limit block is where a fork was created (0)
    or cut; relfilenode 0 with a limit stands for every relation of a database made anew
    (CREATE DATABASE copying files: walsummarizer.c, SummarizeDbaseRecord)."""
    m = ChangeMap(start_lsn, stop_lsn)
    parts: dict[Relation, list[int]] = {}
    for node, spc, db, fork, block, limit in rows:
        if node == 0:
            if limit:
                m.whole_databases.add((spc, db))
            continue
        if fork != MAIN_FORK:
            continue
        rel = (spc, db, node)
        if limit:
            m.truncated[rel] = min(m.truncated.get(rel, block), block)
        else:
            parts.setdefault(rel, []).append(block)
    for rel, blocks in parts.items():
        m.blocks[rel] = block_numbers(array(BLOCKS, blocks))
    m.records = len(rows)
    return m


class MapBuilder:
    """Builds the map of ``[start_lsn, stop_lsn)`` on ``timeline`` from its segments, given
    in order by ``add`` (each with the next one's bytes when a record crosses into it)."""

    def __init__(self, start_lsn: int, stop_lsn: int, timeline: int, segment_size: int
                 ) -> None:
        self.map = ChangeMap(start_lsn, stop_lsn)
        self.timeline = timeline
        self.segment_size = segment_size
        self._parts: dict[Relation, list[bytes]] = {}

    def name(self, segno: int) -> str:
        return segment_file_name(self.timeline, segno, self.segment_size)

    def add(self, segno: int, data: bytes, following: bytes | None = None) -> None:
        """Add one segment's changes; ``following``: the next segment's bytes (a record
        that starts here may end there)."""
        self.take(segno, self.decode(segno, data, following))

    def decode(self, segno: int, data: bytes, following: bytes | None = None
               ) -> SegmentChanges:
        """One segment's changes, checked (``Unusable`` says why not): the part of ``add``
        that threads may run for several segments at once (the C decoder runs without
        the GIL), ``take`` then adding them in order."""
        name = self.name(segno)
        seg_lsn = segno * self.segment_size
        found = changes(data, segno, self.segment_size, following)
        if len(data) != self.segment_size and not (  # the pages up to a switch will do
                len(data) < self.segment_size and found.switched):
            raise Unusable(f"WAL segment {name} is {len(data)} bytes, not "
                           f"{self.segment_size}")
        if found.undecoded:
            raise Unusable(f"{found.undecoded} record(s) of WAL segment {name} could not be "
                           "decoded")
        stop = self.map.stop_lsn
        ends_here = seg_lsn + len(data)
        if found.unfinished_lsn is not None and found.unfinished_lsn < stop:
            raise Unusable(f"the record at {format_lsn(found.unfinished_lsn)} in WAL segment "
                           f"{name} goes on past the next segment")
        if found.end_lsn < min(stop, ends_here) and not found.switched:
            raise Unusable(f"WAL segment {name} ends at {format_lsn(found.end_lsn)}, before "
                           f"{format_lsn(min(stop, ends_here))} (damaged, or an old file)")
        return found

    def take(self, segno: int, found: SegmentChanges) -> None:
        """Add segment ``segno``'s decoded changes; segments are taken in order."""
        self._add_refs(found)
        self._add_events(found)
        self.map.records += found.records
        self.map.segments.append(self.name(segno))

    def _add_refs(self, found: SegmentChanges) -> None:
        for rel, blocks in _walscan.blocks_by_relation(found.packed_refs, self.map.start_lsn,
                                                       self.map.stop_lsn).items():
            self._parts.setdefault(rel, []).append(blocks)

    def _add_events(self, found: SegmentChanges) -> None:
        try:
            events = file_events(found)
        except ValueError as exc:
            raise Unusable(str(exc)) from None
        m = self.map
        for e in events:
            if not m.start_lsn <= e.lsn < m.stop_lsn:
                continue
            rel = (e.spc, e.db, e.rel)
            if e.kind == "create" and e.fork == MAIN_FORK:
                m.whole.add(rel)
            elif e.kind == "truncate" and MAIN_FORK in e.truncated_forks:
                m.truncated[rel] = min(m.truncated.get(rel, e.blocks), e.blocks)
            elif e.kind in ("database copy", "database create"):
                m.whole_databases.add((e.spc, e.db))
            elif e.kind == "tablespace create":
                m.whole_tablespaces.add(e.spc)
            # drops need nothing: the files are gone from the listing, and a number used
            # again is a create

    def finish(self) -> ChangeMap:
        for rel, parts in self._parts.items():
            self.map.blocks[rel] = array(BLOCKS, parts[0]) if len(parts) == 1 \
                else block_numbers(b"".join(parts))
        self._parts = {}
        return self.map

